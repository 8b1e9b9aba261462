//! The router in-process: panic safety, and a property test that no request
//! shape makes the HTTP surface misbehave.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;

use super::*;
use crate::cache::{Cache, Clock, FetchError, FetchFuture, Fetcher, RoleSpec, Timing};
use crate::config::RoleConfig;
use crate::credentials::{Issued, Secret};

struct AlwaysIssues;

impl Fetcher for AlwaysIssues {
    fn fetch<'a>(&'a self, role: &'a RoleSpec, _: Option<&'a Issued>) -> FetchFuture<'a> {
        Box::pin(async move {
            if role.name == "denied" {
                return Err(FetchError::permanent("AccessDenied", "no"));
            }
            Ok(Issued {
                access_key_id: "ASIATEST".into(),
                secret_access_key: Secret::new("secret"),
                session_token: Secret::new("token"),
                expiration: SystemTime::now() + Duration::from_secs(3600),
                role_arn: "arn:aws:iam::111111111111:role/dev".into(),
                assumed_role_arn: String::new(),
                account_id: "111111111111".into(),
            })
        })
    }
}

fn state() -> Arc<AppState> {
    let roles = ["dev", "denied"].map(|name| RoleSpec {
        name: name.into(),
        config: RoleConfig {
            role_arn: Some(format!("arn:aws:iam::111111111111:role/{name}")),
            ..RoleConfig::default()
        },
    });
    let timing = Timing {
        refresh_before: Duration::from_secs(1800),
        idle_timeout: Duration::from_secs(3600),
        fetch_timeout: Duration::from_secs(60),
    };
    Arc::new(AppState {
        cache: Cache::new(roles, Arc::new(AlwaysIssues), timing, Clock::system()),
        sts: Arc::new(Sts::new(crate::config::SourceConfig::default())),
        token: Token::generate().expect("token"),
        default_role: RwLock::new(Some("dev".into())),
        session_tokens: SessionTokens::new().expect("key"),
        imdsv1: AtomicBool::new(false),
        control: mpsc::channel(1).0,
        bench_static: false,
        region: "us-east-1".into(),
        metrics: false,
        allowed_hosts: guard::AllowedHosts::new(&[]),
        trust_subnet: RwLock::new(None),
        users: users::LocalUsers::new(&[]),
        clients: crate::clients::Clients::new(),
    })
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, content_type, body.to_vec())
}

async fn boom() -> &'static str {
    panic!("handler bug")
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_router_keeps_serving() {
    let state = state();
    let router = finish(Router::new().route("/boom", get(boom)), &state);
    let request = || {
        Request::get("/boom")
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .expect("request")
    };
    let (status, content_type, body) = send(&router, request()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(content_type, "application/json");
    assert!(String::from_utf8_lossy(&body).contains("InternalError"));
    let health = Request::get("/healthz")
        .header("host", "127.0.0.1")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, health).await.0, StatusCode::OK);
    assert_eq!(
        send(&router, request()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("role".to_owned()),
        Just("dev".to_owned()),
        Just("denied".to_owned()),
        Just("latest".to_owned()),
        Just("meta-data".to_owned()),
        Just("iam".to_owned()),
        Just("security-credentials".to_owned()),
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%FF".to_owned()),
        Just("".to_owned()),
        "[a-zA-Z0-9%._~-]{1,40}",
    ]
}

fn header_pair() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("authorization".to_owned()),
        Just("x-aws-ec2-metadata-token".to_owned()),
        Just("x-aws-ec2-metadata-token-ttl-seconds".to_owned()),
        Just("host".to_owned()),
        Just("origin".to_owned()),
        Just("content-length".to_owned()),
        "[a-z-]{1,20}",
    ];
    (name, "[ -~]{0,60}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever arrives, the answer is never a 500, and every error is the
    /// JSON `{"code","message"}` shape.
    #[test]
    fn any_request_gets_a_well_formed_answer(
        method in prop_oneof![Just("GET"), Just("PUT"), Just("POST"), Just("OPTIONS"), Just("DELETE")],
        segments in proptest::collection::vec(path_segment(), 0..6),
        headers in proptest::collection::vec(header_pair(), 0..5),
        loopback_host in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let state = state();
            let router = router(state.clone());
            let path = format!("/{}", segments.join("/"));
            let mut builder = Request::builder().method(method).uri(path.as_str());
            if loopback_host {
                builder = builder.header("host", "127.0.0.1:9911");
            }
            for (name, value) in &headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            let Ok(request) = builder.body(Body::empty()) else {
                return Ok(()); // not a request hyper would ever hand us
            };
            let (status, content_type, body) = send(&router, request).await;
            prop_assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{} {}", method, path);
            if status.is_client_error() || status.is_server_error() {
                prop_assert_eq!(content_type.as_str(), "application/json", "{} {}", method, path);
                let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON error body");
                prop_assert!(json["code"].is_string() && json["message"].is_string());
                let text = String::from_utf8_lossy(&body);
                prop_assert!(!text.contains(state.token.expose()));
            }
            Ok(())
        })?;
    }
}
