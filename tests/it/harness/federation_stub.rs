//! A stand-in for the AWS console federation endpoint, on loopback (the real
//! `signin.aws.amazon.com/federation` cannot be reached from tests). It is a
//! two-call HTTP API; the stand-in answers `Action=getSigninToken` with a
//! fresh `SigninToken` and records every call's query, so a test can look at
//! the `Session` JSON and `SessionDuration` that `assumed console` sent. Point
//! the daemon's config at it with `[source] federation_endpoint = stub.url()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
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
}

pub struct FederationStub {
    served: Served,
    shared: Arc<Mutex<Shared>>,
}

impl FederationStub {
    pub async fn start() -> FederationStub {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new()
            .route("/federation", get(federation))
            .with_state(shared.clone());
        let served = Served::start("federation stand-in", app).await;
        FederationStub { served, shared }
    }

    /// The endpoint URL, as `federation_endpoint` takes it.
    pub fn url(&self) -> String {
        format!("http://{}/federation", self.served.address)
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
) -> impl IntoResponse {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut shared = shared.lock().expect("lock");
    let action = params.get("Action").cloned().unwrap_or_default();
    shared.calls.push(FederationCall { params });
    if action != "getSigninToken" {
        return (StatusCode::BAD_REQUEST, "unknown Action".to_owned());
    }
    if let Some((status, body)) = &shared.refusal {
        return (*status, body.clone());
    }
    let token = FederationStub::token(shared.calls.len());
    (
        StatusCode::OK,
        serde_json::json!({ "SigninToken": token }).to_string(),
    )
}
