//! HTTP: one router serves every endpoint on every listener. Credential
//! handlers never call STS; they ask the cache, which answers from memory
//! when it can.
//!
//! Submodules depend one way: `mod.rs` wires them; `state` holds what the
//! handlers share and the reloadable `settings`; `control` and `upstream`
//! are how the server reaches the daemon and what signs for roles without
//! naming either.

pub mod admin;
mod confirm;
mod connection;
pub mod control;
mod ecs;
pub mod error;
pub mod guard;
mod imds;
pub mod listener;
pub mod metrics;
pub mod session_token;
pub mod settings;
pub mod state;
pub mod upstream;
pub mod users;
mod warm;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::catch_panic::CatchPanicLayer;

use connection::Connection;
use error::ApiError;
pub use state::{AppState, Fixed};

/// A request that takes longer than this is cut off: only a cold STS call
/// (with the SDK's own retries) comes near it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a shutdown waits for requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The main listener: container endpoint, IMDS for the default role, health.
pub fn router(state: Arc<AppState>) -> Router {
    let imds = imds::router(imds::Imds {
        role: imds::ImdsRole::Default,
        app: state.clone(),
    });
    let mut main = Router::new()
        .route("/role/{name}", get(ecs::role))
        .route("/creds", get(ecs::default_role))
        .route("/admin/status", get(admin::status))
        .route("/admin/source", get(admin::source))
        .route("/admin/source/{name}", get(admin::source_of_role))
        .route("/admin/reload", put(admin::reload))
        .route("/admin/mfa/{name}", put(admin::mfa))
        .route("/admin/mfa", delete(admin::forget_mfa))
        .route("/admin/console/{name}", get(admin::console))
        .route("/admin/approvals/{id}/{decision}", post(admin::answer))
        .route("/admin/keys/reload", post(admin::reload_keys))
        .route("/admin/keys/{name}/session", get(admin::keys_session))
        .with_state(state.clone());
    if state.bench_static {
        main = main.route("/__bench/static", get(bench_static));
    }
    let mut main = only_allowed_users(main.merge(imds), &state);
    if state.metrics {
        main = main.route("/metrics", get(metrics::render).with_state(state.clone()));
    }
    finish(main, &state)
}

/// The main listener's router with the warm path in front.
pub fn endpoint(state: Arc<AppState>) -> listener::Endpoint {
    listener::Endpoint {
        router: router(state.clone()),
        clients: state.clients.clone(),
        warm: Some(Arc::new(warm::Warm::main(state))),
    }
}

/// An `imds_listen` listener's router with the warm path in front.
pub fn imds_endpoint(state: Arc<AppState>, role: &str) -> listener::Endpoint {
    listener::Endpoint {
        router: imds_router(state.clone(), role),
        clients: state.clients.clone(),
        warm: Some(Arc::new(warm::Warm::imds_only(state, role))),
    }
}

/// An `imds_listen` listener: IMDS for one role, nothing else.
pub fn imds_router(state: Arc<AppState>, role: &str) -> Router {
    let imds = imds::router(imds::Imds {
        app: state.clone(),
        role: imds::ImdsRole::Fixed(role.to_owned()),
    });
    finish(only_allowed_users(imds, &state), &state)
}

/// Everything routed so far refuses other local users (`users`); what is
/// added afterwards (`/metrics`, `/healthz`) stays open to them.
fn only_allowed_users(router: Router, state: &Arc<AppState>) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        admit_user,
    ))
}

/// `users` with the settings of the moment. Requests without a `Connection`
/// exist only in in-process tests of the router.
async fn admit_user(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let owner = request.extensions().get::<Connection>().map(|c| c.owner);
    let admitted = owner.map_or(Ok(()), |owner| state.settings().users.admit(owner));
    match admitted {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// `guard::check` in front of every route, with the settings of the moment.
async fn screen(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let local = request.extensions().get::<Connection>().map(|c| c.local);
    let allowed = guard::check(
        &state.settings().allowed_hosts,
        local,
        request.method(),
        request.headers(),
    );
    match allowed {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// What every listener shares: health, the JSON 404, the guard in front of
/// everything, metrics, a deadline, and panic safety; and IMDS paths read as
/// the real service reads them (`imds::canonical`), before routing, which
/// is why it wraps the router rather than being one of its layers (those run
/// once a route is chosen).
fn finish(router: Router, state: &Arc<AppState>) -> Router {
    let routed = router
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::middleware::from_fn(deadline))
        .layer(axum::middleware::from_fn_with_state(state.clone(), screen))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the request failed unexpectedly",
            )
            .into_response()
        }));
    Router::new().fallback_service(routed.map_request(imds::canonical::<axum::body::Body>))
}

/// A fixed answer the size of a credentials answer, through the same listener
/// and layers: what the credential endpoint costs on top is the benchmark's figure.
async fn bench_static() -> impl IntoResponse {
    const BODY: &str = concat!(
        r#"{"AccessKeyId":"ASIAEXAMPLEEXAMPLE00","SecretAccessKey":"0000000000000000000000000000000000000000","#,
        r#""Token":""#,
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        r#"","Expiration":"2026-01-01T00:00:00Z","RoleArn":"arn:aws:iam::111111111111:role/dev","AccountId":"111111111111"}"#
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        BODY,
    )
}

/// Cuts off a request that takes too long, with the usual JSON error.
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "Timeout",
            "no answer within the request deadline; STS may be slow or unreachable",
        )
        .into_response(),
    }
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

/// A listener being served; each has its own stop, so a reload can retire
/// one while the others keep serving.
pub struct Serving {
    stop: tokio::sync::watch::Sender<bool>,
    closed: tokio::sync::oneshot::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Serves `endpoint` on `listener` until [`stop`](Self::stop).
    pub fn start(listener: TcpListener, endpoint: listener::Endpoint) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(listener::run(listener, endpoint, stopped, closed_tx));
        Serving { stop, closed, task }
    }

    /// Stops accepting and returns once the socket is closed; the requests
    /// in flight go on, and the handle ends when they have finished.
    pub async fn stop(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        let _ = self.closed.await;
        self.task
    }
}

/// Waits for stopped listeners to finish their requests, for at most
/// `DRAIN_LIMIT`.
pub async fn drain(stopped: Vec<tokio::task::JoinHandle<()>>) {
    let drained = tokio::time::timeout(DRAIN_LIMIT, async {
        for task in stopped {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN_LIMIT:?}; stopping anyway");
    }
}

#[cfg(test)]
mod tests;
