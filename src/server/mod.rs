//! HTTP: one router serves every endpoint on every listener. Handlers never
//! call STS; they ask the cache, which answers from memory when it can.

mod ecs;
pub mod error;
mod guard;

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

/// A request that takes longer than this is cut off: only a cold STS call
/// (with the SDK's own retries) comes near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AppState {
    pub cache: Cache,
    pub token: Token,
    pub default_role: Option<String>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/role/{name}", get(ecs::role))
        .route("/creds", get(ecs::default_role))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
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

/// Serves `router` on every listener until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listeners: Vec<TcpListener>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let mut stopped = stopped.clone();
        let app = router.clone();
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
