//! The admin endpoints the CLI uses (`assumed status`, `reload`, `mfa`): on
//! the same listener, behind the same token as credentials, and only for
//! callers on this machine — a container that was given the token to read
//! credentials must not also reload the config or feed MFA codes.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::oneshot;

use super::AppState;
use super::error::ApiError;
use super::guard::authorize;
use super::listener::Connection;
use crate::cache::CacheError;
use crate::credentials::format_expiration;
use crate::daemon::Control;
use crate::sts::MfaUse;

/// The header that carries an MFA code (no endpoint takes a body).
pub const MFA_CODE_HEADER: &str = "x-assumed-mfa-code";

/// The token, from a loopback peer.
fn admit(
    state: &AppState,
    connection: Option<&Connection>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !connection.is_some_and(|c| c.peer.ip().is_loopback()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AdminFromLoopbackOnly",
            "the admin endpoints answer only callers on the daemon's own machine",
        ));
    }
    authorize(&state.token, headers)
}

pub async fn status(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&state, connection.as_deref(), &headers)?;
    let roles: Vec<RoleWithClients> = state
        .cache
        .status()
        .into_iter()
        .map(|role| RoleWithClients {
            clients: state.clients.recent(&role.name, state.token.expose()),
            role,
        })
        .collect();
    Ok(
        Json(serde_json::json!({ "default_role": state.default_role(), "roles": roles }))
            .into_response(),
    )
}

/// A role's status and the processes that took its credentials recently.
#[derive(serde::Serialize)]
struct RoleWithClients {
    #[serde(flatten)]
    role: crate::cache::RoleStatus,
    clients: Vec<crate::clients::ClientStatus>,
}

pub async fn reload(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&state, connection.as_deref(), &headers)?;
    let (reply, outcome) = oneshot::channel();
    let unavailable = || ApiError::unavailable("ShuttingDown", "the daemon is shutting down");
    state
        .control
        .send(Control::Reload(reply))
        .await
        .map_err(|_| unavailable())?;
    match outcome.await.map_err(|_| unavailable())? {
        Ok(summary) => Ok(Json(serde_json::json!({ "message": summary })).into_response()),
        Err(errors) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidConfig",
            format!("the new config was refused; the previous one keeps serving:\n{errors}"),
        )),
    }
}

pub async fn mfa(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    admit(&state, connection.as_deref(), &headers)?;
    let Ok(Path(name)) = name else {
        return Err(ApiError::unknown_role());
    };
    let code = headers
        .get(MFA_CODE_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|code| code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::bad_request("an MFA code is six digits"))?;
    let role = state.cache.role(&name).ok_or_else(ApiError::unknown_role)?;
    let used = state
        .sts
        .provide_mfa(&role, code)
        .await
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, error.code, error.message))?;
    match state.cache.refresh_now(&name).await {
        Ok(creds) => {
            let message = match used {
                MfaUse::Session { until } => format!(
                    "role {name} is ready; the MFA session lasts until {}",
                    format_expiration(until)
                ),
                MfaUse::OneTimeCode => format!(
                    "role {name} is ready until {}; the next session will need a new code",
                    format_expiration(creds.expiration())
                ),
            };
            Ok(Json(serde_json::json!({ "message": message })).into_response())
        }
        Err(CacheError::UnknownRole) => Err(ApiError::unknown_role()),
        Err(CacheError::Unavailable(error)) => Err(ApiError::unavailable(
            &error.code,
            &format!("role {name} is still unavailable: {}", error.message),
        )),
    }
}
