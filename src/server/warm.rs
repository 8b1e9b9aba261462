//! The warm path: a credential request whose role is in memory, answered
//! straight from the connection's service without going through the router.
//!
//! This is where nearly every request lands (an SDK asks again and again for
//! credentials the cache already holds), so it costs what nginx costs for a
//! static file behind a header check: no boxed futures, no per-request
//! metric keys, no header maps of our own beyond the answer's two headers,
//! and the pre-serialised body handed out as a `Bytes` clone.
//!
//! It only ever answers when everything the router would do ends in a 200
//! from memory: the same guard (`guard::check`), the same token or IMDS
//! session check, a fresh cache hit. Anything else — an error to report, a
//! cold role, a query string, a percent-encoded name, another spelling of
//! the IMDS path (`…/ROLE/`, doubled slashes, which `imds::canonical`
//! rewrites) — returns the request untouched and the router answers it, so refusals and their JSON bodies
//! exist in one place only. The metrics it records are the router's own
//! series (route template, status `200`, latency), through handles
//! registered once.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderValue, Method, Request, Response, header};
use bytes::Bytes;
use http_body_util::Full;

use super::connection::Connection;
use super::guard;
use super::imds::{self, ImdsRole};
use super::metrics::RouteMetrics;
use super::settings::Settings;
use super::state::AppState;
use crate::credentials::Credentials;

const ROLE_PREFIX: &str = "/role/";
const IMDS_PREFIX: &str = "/latest/meta-data/iam/security-credentials/";

/// What a listener's warm path serves: the main listener serves all three
/// credential routes, an `imds_listen` listener only its role's IMDS answer.
pub struct Warm {
    state: Arc<AppState>,
    /// `None`: this listener has no container endpoint.
    ecs: Option<EcsMetrics>,
    imds_role: ImdsRole,
    imds: RouteMetrics,
}

struct EcsMetrics {
    role: RouteMetrics,
    creds: RouteMetrics,
}

/// A request the warm path did not answer, handed back for the router.
pub type Declined<B> = Request<B>;

impl Warm {
    /// For the main listener. Call after `metrics::install`, so the handles
    /// are the recorder's (before it they are no-ops, as `counter!` is).
    pub fn main(state: Arc<AppState>) -> Self {
        Warm {
            state,
            ecs: Some(EcsMetrics {
                role: RouteMetrics::new("/role/:name"),
                creds: RouteMetrics::new("/creds"),
            }),
            imds_role: ImdsRole::Default,
            imds: RouteMetrics::new(imds::CREDENTIALS_ROUTE),
        }
    }

    /// For an `imds_listen` listener of `role`.
    pub fn imds_only(state: Arc<AppState>, role: &str) -> Self {
        Warm {
            state,
            ecs: None,
            imds_role: ImdsRole::Fixed(role.to_owned()),
            imds: RouteMetrics::new(imds::CREDENTIALS_ROUTE),
        }
    }

    /// The answer, when this is a warm credential request that passes every
    /// check; otherwise the request back, unchanged. (Handed back by value:
    /// boxing it would cost the router's path an allocation for nothing.)
    #[allow(clippy::result_large_err)]
    pub fn answer<B>(
        &self,
        connection: &Connection,
        request: Request<B>,
    ) -> Result<Response<Full<Bytes>>, Declined<B>> {
        let started = Instant::now();
        if request.method() != Method::GET || request.uri().query().is_some() {
            return Err(request);
        }
        let path = request.uri().path();
        let served = if let Some(name) = path.strip_prefix(IMDS_PREFIX) {
            self.imds(connection, &request, name)
                .map(|body| (body, &self.imds, false))
        } else if let Some(ecs) = &self.ecs {
            if let Some(name) = path.strip_prefix(ROLE_PREFIX) {
                self.ecs(connection, &request, Some(name))
                    .map(|body| (body, &ecs.role, true))
            } else if path == "/creds" {
                self.ecs(connection, &request, None)
                    .map(|body| (body, &ecs.creds, true))
            } else {
                None
            }
        } else {
            None
        };
        let Some((body, metrics, ecs)) = served else {
            return Err(request);
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.reserve(2);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if ecs {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        metrics.ok(started);
        Ok(response)
    }

    /// The container endpoint: the guard, the token (or `trust_subnet`),
    /// then memory. `name` is `None` for `/creds` (the default role).
    fn ecs<B>(
        &self,
        connection: &Connection,
        request: &Request<B>,
        name: Option<&str>,
    ) -> Option<Bytes> {
        let settings = self.state.settings();
        screen(&settings, connection, request)?;
        guard::authorize_peer(
            &settings.token,
            settings.trust_subnet.as_ref(),
            Some(connection),
            request.headers(),
        )
        .ok()?;
        let creds = match name {
            Some(name) => self.take(&settings, connection, plain_segment(name)?)?,
            None => self.take(&settings, connection, settings.default_role.as_deref()?)?,
        };
        Some(creds.container_body())
    }

    /// `name`'s credentials from memory, noted against the client (`status`'s
    /// clients), as the handlers do. A `confirm` role is the handlers' to
    /// answer: they ask who is asking.
    fn take(
        &self,
        settings: &Settings,
        connection: &Connection,
        name: &str,
    ) -> Option<Arc<Credentials>> {
        let confirm = &settings.confirm;
        if !confirm.is_empty() && confirm.contains_key(name) {
            return None;
        }
        let creds = self.state.cache.get_warm(name)?;
        self.state.clients.took(&connection.client, name);
        Some(creds)
    }

    /// IMDS credentials: the guard, the session token, the one role this
    /// IMDS serves, then memory.
    fn imds<B>(&self, connection: &Connection, request: &Request<B>, name: &str) -> Option<Bytes> {
        let settings = self.state.settings();
        screen(&settings, connection, request)?;
        imds::session_ok(
            &self.state.session_tokens,
            settings.imdsv1,
            request.headers(),
        )
        .ok()?;
        let name = plain_segment(name)?;
        let serves = match &self.imds_role {
            ImdsRole::Fixed(role) => role == name,
            ImdsRole::Default => settings.default_role.as_deref() == Some(name),
        };
        if !serves {
            return None;
        }
        let creds = self.take(&settings, connection, name)?;
        Some(creds.imds_body())
    }
}

/// What the router runs before every credential route: the guard (Host,
/// browser, body) and `users` (the connection's owner, found when it was
/// accepted).
fn screen<B>(settings: &Settings, connection: &Connection, request: &Request<B>) -> Option<()> {
    guard::check(
        &settings.allowed_hosts,
        Some(connection.local),
        request.method(),
        request.headers(),
    )
    .ok()?;
    settings.users.admit(connection.owner).ok()
}

/// A path segment the router would hand over unchanged: not empty, no
/// further `/`, nothing percent-encoded (the router decodes those; leave
/// them to it).
fn plain_segment(segment: &str) -> Option<&str> {
    (!segment.is_empty() && !segment.contains(['/', '%'])).then_some(segment)
}
