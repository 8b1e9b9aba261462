//! HTTP: one router serves every endpoint on every listener. Handlers never
//! call STS; they ask the cache, which answers from memory when it can.

mod ecs;
pub mod error;
mod guard;
mod imds;
pub mod metrics;
pub mod session_token;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::cache::Cache;
use crate::token::Token;
use error::ApiError;
use session_token::SessionTokens;

/// A request that takes longer than this is cut off: only a cold STS call
/// (with the SDK's own retries) comes near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AppState {
    pub cache: Cache,
    pub token: Token,
    pub default_role: Option<String>,
    pub session_tokens: SessionTokens,
    /// Allow token-less IMDS GETs.
    pub imdsv1: bool,
    /// Region IMDS reports for roles that set none.
    pub region: String,
    /// Serve `/metrics`.
    pub metrics: bool,
}

/// The main listener: container endpoint, IMDS for the default role, health.
pub fn router(state: Arc<AppState>) -> Router {
    let imds = imds::router(imds::Imds {
        role: state.default_role.clone(),
        app: state.clone(),
    });
    let mut main = Router::new()
        .route("/role/{name}", get(ecs::role))
        .route("/creds", get(ecs::default_role))
        .with_state(state.clone());
    if state.metrics {
        main = main.route(
            "/metrics",
            get(metrics::render).with_state(state.cache.clone()),
        );
    }
    finish(main.merge(imds))
}

/// An `imds_listen` listener: IMDS for one role, nothing else.
pub fn imds_router(state: Arc<AppState>, role: &str) -> Router {
    finish(imds::router(imds::Imds {
        app: state,
        role: Some(role.to_owned()),
    }))
}

/// What every listener shares: health, the JSON 404, timeouts, panic safety.
fn finish(router: Router) -> Router {
    router
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the request failed unexpectedly",
            ))
        }))
}

pub async fn bind(addresses: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        let listener = TcpListener::bind(address).await.map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot listen on {address}: {error}"))
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serves each listener with its router until `shutdown` completes, then
/// lets in-flight requests finish.
pub async fn serve(
    listeners: Vec<(TcpListener, Router)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (listener, app) in listeners {
        let mut stopped = stopped.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    shutdown.await;
    let _ = stop.send(true);
    while let Some(result) = servers.join_next().await {
        result.map_err(std::io::Error::other)??;
    }
    Ok(())
}
