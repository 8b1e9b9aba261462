//! A stand-in for the IAM Identity Center portal (`GetRoleCredentials`), on
//! loopback, for SSO-sourced profiles. Point the daemon at it with
//! `AWS_ENDPOINT_URL_SSO`. It answers only the bearer token it was given.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::served::Served;

pub const SSO_ACCESS_KEY_ID: &str = "ASIASSOSTUBEXAMPLE";

pub struct SsoStub {
    served: Served,
}

impl SsoStub {
    pub async fn start(bearer_token: &str) -> SsoStub {
        let app = Router::new()
            .route("/federation/credentials", get(role_credentials))
            .with_state(Arc::new(bearer_token.to_owned()));
        let served = Served::start("SSO stub", app).await;
        SsoStub { served }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.served.address)
    }
}

async fn role_credentials(
    State(token): State<Arc<String>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let presented = headers
        .get("x-amz-sso_bearer_token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if presented != token.as_str() {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"message":"bad token"}"#.to_owned(),
        );
    }
    let expiration = SystemTime::now() + Duration::from_secs(3600);
    let millis = expiration
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let body = serde_json::json!({
        "roleCredentials": {
            "accessKeyId": SSO_ACCESS_KEY_ID,
            "secretAccessKey": "sso-secret",
            "sessionToken": "sso-session-token",
            "expiration": millis,
        }
    });
    (StatusCode::OK, body.to_string())
}
