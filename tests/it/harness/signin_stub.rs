//! A stand-in for the AWS Sign-In token endpoint (`CreateOAuth2Token`,
//! `POST /v1/token`) that `aws login` sessions are refreshed at, on
//! loopback. Point the daemon at it with `AWS_ENDPOINT_URL_SIGNIN`. It
//! answers every refresh as the real one does for a session that has ended
//! (`AccessDeniedException`, `TOKEN_EXPIRED`) and counts the calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;

use super::served::Served;

/// A P-256 key for the DPoP proofs the SDK signs refreshes with. It signs
/// nothing but requests to this stand-in.
pub const TEST_DPOP_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIP+Qe11UHrHic72uFkpN22KqP4CFU2BhIG/8htCXV3pYoAoGCCqGSM49
AwEHoUQDQgAEDj+qiSE+2CzmkmOe0ipiwztJYa2flYluYU0h03AHStk0yxTkpvPA
o38sMayDBzUxMkFgOFBysz7rIYh0U+YmXg==
-----END EC PRIVATE KEY-----
";

pub struct SigninStub {
    served: Served,
    calls: Arc<AtomicUsize>,
}

impl SigninStub {
    pub async fn start() -> SigninStub {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/v1/token", post(token))
            .with_state(calls.clone());
        let served = Served::start("sign-in stub", app).await;
        SigninStub { served, calls }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.served.address)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn token(State(calls): State<Arc<AtomicUsize>>) -> impl IntoResponse {
    calls.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::BAD_REQUEST,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", "AccessDeniedException"),
        ],
        r#"{"error":"TOKEN_EXPIRED","message":"the session has expired"}"#,
    )
}
