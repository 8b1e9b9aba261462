//! The admin endpoints the CLI uses (`assumed status`, `reload`, `mfa`): on
//! the same listener, behind the same token as credentials.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::AppState;
use super::error::ApiError;
use super::guard::authorize;
use crate::cache::CacheError;
use crate::credentials::format_expiration;
use crate::daemon::Control;
use crate::sts::MfaUse;

/// The header that carries an MFA code (no endpoint takes a body).
pub const MFA_CODE_HEADER: &str = "x-assumed-mfa-code";

pub async fn status(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.token, &headers)?;
    let roles = state.cache.status();
    Ok(
        Json(serde_json::json!({ "default_role": state.default_role(), "roles": roles }))
            .into_response(),
    )
}

pub async fn reload(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state.token, &headers)?;
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
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    authorize(&state.token, &headers)?;
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
