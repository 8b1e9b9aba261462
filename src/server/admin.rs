//! The admin endpoints the CLI uses (`assumed status`, `reload`, `mfa`,
//! `console`): on the same listener, behind the same token as credentials,
//! and only for callers on this machine — a container that was given the
//! token to read credentials must not also reload the config or feed MFA codes.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::oneshot;

use super::connection::Connection;
use super::control::Control;
use super::error::ApiError;
use super::guard::authorize;
use super::state::AppState;
use super::upstream::MfaUse;
use crate::cache::RoleSpec;
use crate::credentials::format_expiration;

/// `assumed console`: ROLE's credentials exactly as `/role/ROLE` serves
/// them, plus what the CLI cannot know itself: how they were obtained (the
/// federation endpoint takes `SessionDuration` only for one AssumeRole) and
/// the role's region.
pub async fn console(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    AdmittedFor(name): AdmittedFor,
) -> Result<Response, ApiError> {
    let role = state.cache.role(&name).ok_or_else(ApiError::unknown_role)?;
    // A console is the role's credentials too: the same question first.
    super::confirm::gate(&state, connection.as_deref(), &name).await?;
    let creds = state
        .cache
        .get(&name)
        .await
        .map_err(|error| ApiError::no_credentials(&name, error))?;
    let served: serde_json::Value =
        serde_json::from_slice(&creds.container_body()).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the credentials did not serialise",
            )
        })?;
    let origin = state.upstream.origin(&role);
    let answer = serde_json::json!({
        "credentials": served,
        "region": role.config.region,
        "origin": { "kind": origin.kind, "explanation": origin.explanation },
    });
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response())
}

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
    authorize(&state.settings().token, headers)
}

/// A caller [`admit`] let in; every admin handler takes one (or
/// [`AdmittedFor`]) before anything else.
pub struct Admitted;

impl FromRequestParts<Arc<AppState>> for Admitted {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        admit(state, parts.extensions.get::<Connection>(), &parts.headers)?;
        Ok(Admitted)
    }
}

/// [`Admitted`], then the role named in the path. A path that does not parse
/// names no role: the same 404 as an unknown one.
pub struct AdmittedFor(String);

impl FromRequestParts<Arc<AppState>> for AdmittedFor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        Admitted::from_request_parts(parts, state).await?;
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::unknown_role())?;
        Ok(AdmittedFor(name))
    }
}

pub async fn status(State(state): State<Arc<AppState>>, _: Admitted) -> Json<serde_json::Value> {
    let mut roles = Vec::new();
    for role in state.cache.status() {
        let sts_endpoint = match state.cache.role(&role.name) {
            Some(spec) => Some(state.upstream.sts_endpoint(&spec).await),
            None => None,
        };
        roles.push(RoleWithClients {
            clients: state
                .clients
                .recent(&role.name, state.settings().token.expose()),
            sts_endpoint,
            role,
        });
    }
    let daemon = serde_json::json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let hide = state.settings().token.expose().to_owned();
    let mut pending = state.approvals.pending();
    for question in &mut pending {
        question.program.hide(&hide);
    }
    Json(serde_json::json!({
        "daemon": daemon,
        "default_role": state.default_role(),
        "keyring": state.upstream.keyring_status(),
        "roles": roles,
        "approvals": {
            "pending": pending,
            "decided": state.approvals.decided(),
        },
    }))
}

/// `assumed approve|deny ID`: the person's answer to a `confirm` role's
/// question. A program may not answer its own question: the caller is
/// identified as any confirm client is, and refused if it is the asking
/// process or one it started.
pub async fn answer(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    _: Admitted,
    Path((id, decision)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    let allow = match decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return Err(ApiError::not_found()),
    };
    let no_question = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchQuestion",
            format!("no question {id} is waiting for an answer (answered already, or lapsed)"),
        )
    };
    let asker = state.approvals.asker(id).ok_or_else(no_question)?;
    if allow {
        let answerer = super::confirm::identify(&state, connection.as_deref())
            .await
            .map_err(|why| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "NotApproved",
                    format!("an approval must come from an identified process, and {why}"),
                )
            })?;
        if asker.is_or_started(&answerer) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "NotApproved",
                format!(
                    "{} (pid {}) asked question {id}; it cannot answer it, nor can a process it started",
                    asker.name(),
                    asker.pid
                ),
            ));
        }
    }
    let report = state
        .approvals
        .answer(id, allow, crate::approval::By::Cli)
        .map_err(|_| no_question())?;
    Ok(Json(report).into_response())
}

/// Every role the cache serves now.
fn roles_now(state: &AppState) -> Vec<RoleSpec> {
    let cache = &state.cache;
    cache
        .role_names()
        .iter()
        .filter_map(|name| cache.role(name))
        .collect()
}

/// `keys add`/`rotate` stored keys: they are read again, and roles on keys
/// that changed switch to them at once. A keyring that cannot be read is
/// a 503 naming why (the daemon keeps what it held).
pub async fn reload_keys(
    State(state): State<Arc<AppState>>,
    _: Admitted,
) -> Result<Response, ApiError> {
    let reloaded = state.upstream.reload_keys(roles_now(&state)).await;
    if reloaded.trouble {
        return Err(ApiError::unavailable(
            "KeyringUnavailable",
            &reloaded.message,
        ));
    }
    for name in &reloaded.refetch {
        state.cache.refetch(name);
    }
    Ok(Json(serde_json::json!({
        "message": reloaded.message,
        "refetched": reloaded.refetch,
    }))
    .into_response())
}

/// `credential-process --keys NAME`: a GetSessionToken session of the
/// stored keys, in `credential_process`'s shape; never the keys themselves.
pub async fn keys_session(
    State(state): State<Arc<AppState>>,
    AdmittedFor(name): AdmittedFor,
) -> Result<Response, ApiError> {
    crate::config::validate::key_name(&name).map_err(ApiError::bad_request)?;
    let session = state
        .upstream
        .keys_session(&name, roles_now(&state))
        .await
        .map_err(|error| ApiError::unavailable(&error.code, &error.message))?;
    let answer = serde_json::json!({
        "Version": 1,
        "AccessKeyId": session.access_key_id,
        "SecretAccessKey": session.secret_access_key.expose(),
        "SessionToken": session.session_token.expose(),
        "Expiration": format_expiration(session.expiration),
    });
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(answer),
    )
        .into_response())
}

/// `assumed doctor`: do `[source]`'s credentials work, and how far is our
/// clock from STS's.
pub async fn source(State(state): State<Arc<AppState>>, _: Admitted) -> Response {
    source_report(&state, None).await
}

/// The same for the credentials that sign role `name`'s AssumeRole.
pub async fn source_of_role(
    State(state): State<Arc<AppState>>,
    AdmittedFor(name): AdmittedFor,
) -> Result<Response, ApiError> {
    let root = chain_root(&state, &name)?;
    Ok(source_report(&state, Some(root)).await)
}

/// One GetCallerIdentity; the answer names the identity, never a secret.
async fn source_report(state: &AppState, root: Option<RoleSpec>) -> Response {
    let report = state.upstream.check_source(root.as_ref()).await;
    let (identity, error) = match &report.outcome {
        Ok(identity) => (
            serde_json::json!({
                "arn": identity.arn,
                "expires": identity.expires.map(format_expiration),
            }),
            serde_json::Value::Null,
        ),
        Err(error) => (
            serde_json::Value::Null,
            serde_json::json!({ "code": error.code, "message": error.message }),
        ),
    };
    Json(serde_json::json!({
        "signs_for": root.as_ref().map(|r| &r.name),
        "source": report.source,
        "identity": identity,
        "error": error,
        "clock_skew_seconds": report.clock_skew_seconds,
    }))
    .into_response()
}

/// The role at the start of `name`'s `via` chain: its source signs them all.
fn chain_root(state: &AppState, name: &str) -> Result<RoleSpec, ApiError> {
    let mut role = state.cache.role(name).ok_or_else(ApiError::unknown_role)?;
    // Reload refuses cycles; the bound only keeps a bug from spinning.
    for _ in 0..32 {
        let Some(upstream) = role.config.via.as_deref() else {
            break;
        };
        role = state
            .cache
            .role(upstream)
            .ok_or_else(ApiError::unknown_role)?;
    }
    Ok(role)
}

/// A role's status and the processes that took its credentials recently.
#[derive(serde::Serialize)]
struct RoleWithClients {
    #[serde(flatten)]
    role: crate::cache::RoleStatus,
    clients: Vec<crate::clients::ClientStatus>,
    /// Where its STS calls go, and why there.
    sts_endpoint: Option<super::upstream::StsEndpoint>,
}

pub async fn reload(State(state): State<Arc<AppState>>, _: Admitted) -> Result<Response, ApiError> {
    let (reply, outcome) = oneshot::channel();
    let unavailable = || ApiError::unavailable("ShuttingDown", "the daemon is shutting down");
    state
        .control
        .send(Control::Reload(reply))
        .await
        .map_err(|_| unavailable())?;
    match outcome.await.map_err(|_| unavailable())? {
        // Applied in part is still an answer, not an error: what was not
        // applied is listed, and the CLI exits non-zero for it.
        Ok(reloaded) => Ok(Json(serde_json::json!({
            "message": reloaded.summary(),
            "applied": reloaded.applied,
            "not_applied": reloaded.not_applied,
        }))
        .into_response()),
        Err(errors) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidConfig",
            format!("the new config was refused; the previous one keeps serving:\n{errors}"),
        )),
    }
}

/// `assumed mfa --forget`: every MFA session and pending code is dropped,
/// here and in the file that keeps them across restarts.
pub async fn forget_mfa(
    State(state): State<Arc<AppState>>,
    _: Admitted,
) -> Result<Response, ApiError> {
    let forgotten = state.upstream.forget_mfa().map_err(|message| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "ForgetFailed", message)
    })?;
    Ok(Json(serde_json::json!({
        "message": format!(
            "{forgotten} MFA session(s) forgotten; roles keep the credentials they hold until these expire"
        ),
        "forgotten": forgotten,
    }))
    .into_response())
}

pub async fn mfa(
    State(state): State<Arc<AppState>>,
    AdmittedFor(name): AdmittedFor,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = headers
        .get(MFA_CODE_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|code| code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| ApiError::bad_request("an MFA code is six digits"))?;
    let role = state.cache.role(&name).ok_or_else(ApiError::unknown_role)?;
    let used = state
        .upstream
        .provide_mfa(&role, code)
        .await
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, error.code, error.message))?;
    let creds = state.cache.refresh_now(&name).await.map_err(|error| {
        ApiError::from(error).context(format_args!("role {name} is still unavailable"))
    })?;
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
