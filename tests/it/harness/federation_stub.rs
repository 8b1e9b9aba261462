//! A stand-in for the AWS console federation endpoint, on loopback (the real
//! `signin.aws.amazon.com/federation` cannot be reached from tests). It is a
//! two-call HTTP API; the stand-in answers `Action=getSigninToken` with a
//! fresh `SigninToken` and records every call's query, so a test can look at
//! the `Session` JSON and `SessionDuration` that `assumed console` sent. Point
//! the daemon's config at it with `[source] federation_endpoint = stub.url()`.
//!
//! A browser that follows the login URL (`Action=login`) is signed in the way
//! the real endpoint does it, with a cookie: here its value is the access key
//! the token was made for, so whoever reads the browser's cookies back (at
//! `/whoami`, which shows the `Cookie` header it gets) sees whose session it
//! holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::served::Served;

/// One request the stand-in received: its decoded query parameters.
#[derive(Clone, Debug)]
pub struct FederationCall {
    pub params: HashMap<String, String>,
}

impl FederationCall {
    /// The `Session` parameter, parsed.
    pub fn session(&self) -> serde_json::Value {
        let text = self.params.get("Session").expect("a Session parameter");
        serde_json::from_str(text).expect("Session is JSON")
    }
}

#[derive(Default)]
struct Shared {
    calls: Vec<FederationCall>,
    /// Answer getSigninToken with this status and body instead of a token.
    refusal: Option<(StatusCode, String)>,
    /// The `sessionId` (access key) each sign-in token was made for.
    sessions: HashMap<String, String>,
}

/// The cookie `Action=login` sets.
pub const SESSION_COOKIE: &str = "aws-console-session";

pub struct FederationStub {
    served: Served,
    shared: Arc<Mutex<Shared>>,
}

impl FederationStub {
    pub async fn start() -> FederationStub {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/federation", get(federation))
            .route("/whoami", get(whoami))
            .with_state(shared.clone());
        let served = Served::start("federation stand-in", app).await;
        FederationStub { served, shared }
    }

    /// The endpoint URL, as `federation_endpoint` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/federation", self.served.address)
    }

    /// A page that shows the cookies the browser sends it.
    pub fn whoami_url(&self) -> String {
        format!("http://{}/whoami", self.served.address)
    }

    pub fn calls(&self) -> Vec<FederationCall> {
        self.shared.lock().expect("lock").calls.clone()
    }

    /// The sign-in token the stand-in handed out in its `n`th answer (from 1).
    pub fn token(n: usize) -> String {
        format!("stand-in-signin-token-{n}")
    }

    /// Refuse every getSigninToken from now on, the way the real endpoint
    /// does (e.g. a SessionDuration it does not take).
    pub fn refuse(&self, status: u16, body: &str) {
        let status = StatusCode::from_u16(status).expect("status");
        self.shared.lock().expect("lock").refusal = Some((status, body.to_owned()));
    }
}

async fn federation(
    State(shared): State<Arc<Mutex<Shared>>>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut shared = shared.lock().expect("lock");
    let call = FederationCall { params };
    shared.calls.push(call.clone());
    match call.params.get("Action").map(String::as_str) {
        Some("getSigninToken") => {}
        Some("login") => return login(&shared, &call),
        _ => return (StatusCode::BAD_REQUEST, "unknown Action").into_response(),
    }
    if let Some((status, body)) = &shared.refusal {
        return (*status, body.clone()).into_response();
    }
    let token = FederationStub::token(shared.calls.len());
    let session_id = call.session()["sessionId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    shared.sessions.insert(token.clone(), session_id);
    let body = serde_json::json!({ "SigninToken": token }).to_string();
    (StatusCode::OK, body).into_response()
}

/// `Action=login`: a persistent cookie naming the session, as a browser
/// profile keeps it.
fn login(shared: &Shared, call: &FederationCall) -> axum::response::Response {
    let token = call.params.get("SigninToken").cloned().unwrap_or_default();
    let Some(session_id) = shared.sessions.get(&token) else {
        return (StatusCode::BAD_REQUEST, "unknown SigninToken").into_response();
    };
    let cookie = format!("{SESSION_COOKIE}={session_id}; Max-Age=3600; Path=/; HttpOnly");
    (
        [(header::SET_COOKIE, cookie)],
        "<html><body>signed in</body></html>",
    )
        .into_response()
}

async fn whoami(headers: HeaderMap) -> String {
    let cookies = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    format!("<html><body>cookies: {cookies}</body></html>")
}
