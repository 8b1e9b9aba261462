//! Prometheus metrics at `/metrics`: requests, latencies, STS calls, and
//! seconds until each role's credentials expire. Counters are recorded where
//! things happen (`metrics::counter!` is a no-op until a recorder exists);
//! this module installs the recorder and renders it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::error::ApiError;
use super::guard::authorize;
use super::state::AppState;
use crate::token::Token;

/// Latency buckets in seconds: answers from memory land in the first few.
const LATENCY_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
pub fn install() -> Option<&'static PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Some(handle);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets(&LATENCY_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::gauge!("assumed_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    crate::cache::register_metrics();
    let handle = HANDLE.get_or_init(|| handle);
    // The recorder keeps every histogram sample until something drains it;
    // without a scraper that is every request since start. Drain it often.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(UPKEEP_EVERY).await;
                handle.run_upkeep();
            }
        });
    }
    Some(handle)
}

/// The series `track` records for one route's 200s, registered once: the
/// warm path (`warm`) records them with an atomic add and a histogram push
/// instead of building a labelled key per request.
pub struct RouteMetrics {
    ok: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    /// `route` as `track` labels it (`/role/:name`).
    pub fn new(route: &'static str) -> Self {
        RouteMetrics {
            ok: metrics::counter!("assumed_http_requests_total", "route" => route, "status" => "200"),
            duration: metrics::histogram!("assumed_http_request_duration_seconds", "route" => route),
        }
    }

    /// A 200 answered, timed from `started`.
    pub fn ok(&self, started: Instant) {
        self.duration.record(started.elapsed().as_secs_f64());
        self.ok.increment(1);
    }
}

/// Counts every request by route template (never the raw path, which could
/// carry anything) and status, and times it. Templates are written
/// `/role/:name`: braces in label values trip up simple parsers.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| route_label(path.as_str()));
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("assumed_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("assumed_http_requests_total", "route" => route, "status" => status)
        .increment(1);
    response
}

/// The label for a route template, made once per template: this runs on
/// every request, and the templates are the router's few fixed strings.
fn route_label(template: &str) -> &'static str {
    static LABELS: OnceLock<parking_lot::RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let labels = LABELS.get_or_init(Default::default);
    if let Some(label) = labels.read().get(template) {
        return label;
    }
    let label: &'static str =
        Box::leak(template.replace('{', ":").replace('}', "").into_boxed_str());
    labels.write().entry(template.to_owned()).or_insert(label)
}

/// The exposition, to token holders only: it names every role, and a caller
/// without the token must not learn which roles exist (docs/security.md).
/// Besides the daemon's own `Authorization: TOKEN`, `Bearer TOKEN` is taken,
/// which is what Prometheus sends from `authorization.credentials_file`.
pub async fn render(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize_scrape(&state.settings().token, &headers) {
        return refused.into_response();
    }
    let Some(handle) = HANDLE.get() else {
        return super::error::ApiError::not_found().into_response();
    };
    let statuses = state.cache.status();
    for role in &statuses {
        let seconds = role.expires_in_seconds.unwrap_or(0) as f64;
        metrics::gauge!("assumed_credentials_expiry_seconds", "role" => role.name.clone())
            .set(seconds);
    }
    let roles: HashSet<&str> = statuses.iter().map(|role| role.name.as_str()).collect();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        current_roles_only(&handle.render(), &roles),
    )
        .into_response()
}

fn authorize_scrape(token: &Token, headers: &HeaderMap) -> Result<(), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match bearer {
        Some(presented) if headers.get_all(header::AUTHORIZATION).iter().count() == 1 => {
            if token.matches(presented) {
                Ok(())
            } else {
                Err(ApiError::wrong_token())
            }
        }
        _ => authorize(token, headers),
    }
}

/// Drops the series of roles a reload removed: the recorder keeps every
/// series it ever saw, and has no way to forget one.
fn current_roles_only(exposition: &str, roles: &HashSet<&str>) -> String {
    let mut kept = String::with_capacity(exposition.len());
    for line in exposition.lines() {
        let role = line
            .split_once("role=\"")
            .filter(|_| !line.starts_with('#'))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(role, _)| role);
        if role.is_none_or(|role| roles.contains(role)) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_removed_roles_are_dropped() {
        let text = "# TYPE x counter\nx{role=\"dev\",outcome=\"ok\"} 1\nx{role=\"gone\"} 2\ny 3\n";
        let roles: HashSet<&str> = ["dev"].into_iter().collect();
        assert_eq!(
            current_roles_only(text, &roles),
            "# TYPE x counter\nx{role=\"dev\",outcome=\"ok\"} 1\ny 3\n"
        );
    }
}
