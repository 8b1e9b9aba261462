//! The container-credentials endpoint (what ECS gives a task), read by SDKs
//! through `AWS_CONTAINER_CREDENTIALS_FULL_URI`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::connection::Connection;
use super::error::ApiError;
use super::guard::authorize_peer;
use super::state::AppState;
use crate::clients::NAMING_WAIT;

pub async fn role(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    admit(&state, connection.as_deref(), &headers)?;
    let Path(name) =
        name.map_err(|_| ApiError::bad_request("the role name in the path is not valid"))?;
    answer(&state, connection.as_deref(), &name).await
}

pub async fn default_role(
    State(state): State<Arc<AppState>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admit(&state, connection.as_deref(), &headers)?;
    let name = state.default_role().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NoDefaultRole",
            "no default_role is configured; use /role/NAME",
        )
    })?;
    answer(&state, connection.as_deref(), &name).await
}

/// The token, unless the peer is inside `trust_subnet`.
fn admit(
    state: &AppState,
    connection: Option<&Connection>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let settings = state.settings();
    authorize_peer(
        &settings.token,
        settings.trust_subnet.as_ref(),
        connection,
        headers,
    )
}

async fn answer(
    state: &AppState,
    connection: Option<&Connection>,
    name: &str,
) -> Result<Response, ApiError> {
    super::confirm::gate(state, connection, name).await?;
    match state.cache.get(name).await {
        Ok(creds) => {
            if let Some(connection) = connection {
                state.clients.took(&connection.client, name);
                // A connection's first credential answer waits (bounded) for
                // its process to be named, so a client that exits once it has
                // the answer is still there to be found (`clients`).
                connection.client.named_within(NAMING_WAIT).await;
            }
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                creds.container_body(),
            )
                .into_response())
        }
        Err(error) => Err(ApiError::no_credentials(name, error)),
    }
}
