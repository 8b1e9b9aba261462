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
    let settings = settings::Settings {
        default_role: Some("dev".into()),
        imdsv1: false,
        trust_subnet: None,
        allowed_hosts: guard::AllowedHosts::new(&[]),
        users: users::LocalUsers::new(&[]),
        region: "us-east-1".into(),
        token: crate::token::Token::generate().expect("token"),
        confirm: Default::default(),
        ask_on_desktop: false,
    };
    let fixed = Fixed {
        metrics: false,
        bench_static: false,
    };
    let cache = Cache::new(
        roles,
        Arc::new(AlwaysIssues),
        timing,
        Clock::system(),
        tokio::runtime::Handle::current(),
    );
    let upstream = Arc::new(crate::sts::Sts::new(crate::config::SourceConfig::default()));
    let clients = crate::clients::Clients::new();
    AppState::new(cache, upstream, clients, settings, fixed)
        .expect("state")
        .0
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
        Just("admin".to_owned()),
        Just("latest".to_owned()),
        Just("meta-data".to_owned()),
        Just("iam".to_owned()),
        Just("security-credentials".to_owned()),
        Just("..".to_owned()),
        Just("%00".to_owned()),
        Just("%FF".to_owned()),
        Just("".to_owned()),
        // `/admin/source` asks STS for the source's identity: never from a test.
        "[a-zA-Z0-9%._~-]{1,40}".prop_filter("no real STS call", |s| s != "source"),
    ]
}

/// Every endpoint with its method (and a few near misses), an endpoint with
/// any method, or a random path: random segments alone almost never spell a
/// route, so the handlers behind the guards would hardly run.
fn route() -> impl Strategy<Value = (&'static str, String)> {
    const ROUTES: &[(&str, &str)] = &[
        ("GET", "/role/dev"),
        ("GET", "/role/denied"),
        ("GET", "/role/unknown"),
        ("GET", "/role/"),
        ("GET", "/creds"),
        ("GET", "/admin/status"),
        ("PUT", "/admin/reload"),
        ("DELETE", "/admin/mfa"),
        ("PUT", "/admin/mfa/dev"),
        ("GET", "/admin/console/dev"),
        ("GET", "/admin/console/denied"),
        ("GET", "/admin/source/unknown"),
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", "/latest/meta-data/iam/security-credentials/dev"),
        ("GET", "/latest/meta-data/iam/security-credentials/denied"),
        ("GET", "/latest/meta-data/iam/info"),
        ("GET", "/latest/meta-data/placement/region"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
    ];
    let method = || {
        prop_oneof![
            Just("GET"),
            Just("PUT"),
            Just("POST"),
            Just("OPTIONS"),
            Just("DELETE"),
        ]
    };
    let endpoint = || proptest::sample::select(ROUTES);
    let random_path = proptest::collection::vec(path_segment(), 0..6)
        .prop_map(|segments| format!("/{}", segments.join("/")));
    prop_oneof![
        4 => endpoint().prop_map(|(method, path)| (method, path.to_owned())),
        1 => (method(), endpoint()).prop_map(|(method, (_, path))| (method, path.to_owned())),
        1 => (method(), random_path),
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

/// What a request presents as a secret: the real one (the daemon's token, a
/// session token it issued), a wrong one, or none.
#[derive(Clone, Copy, Debug)]
enum Presented {
    Real,
    Wrong,
    Absent,
}

fn presented() -> impl Strategy<Value = Presented> {
    prop_oneof![
        4 => Just(Presented::Real),
        1 => Just(Presented::Wrong),
        1 => Just(Presented::Absent),
    ]
}

/// Who the listener says is calling; `None` is a request without a
/// connection (as the in-process router sees it).
#[derive(Clone, Copy, Debug)]
enum Caller {
    None,
    OwnUser,
    OtherUser,
    Remote,
}

fn caller() -> impl Strategy<Value = Caller> {
    prop_oneof![
        1 => Just(Caller::None),
        4 => Just(Caller::OwnUser),
        1 => Just(Caller::OtherUser),
        1 => Just(Caller::Remote),
    ]
}

fn connection(caller: Caller) -> Option<connection::Connection> {
    use crate::peer::{PeerOwner, SocketOwner};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let own = unsafe { libc::geteuid() };
    let (peer, owner) = match caller {
        Caller::None => return None,
        Caller::OwnUser => (
            "127.0.0.1:40000",
            PeerOwner::Local(SocketOwner { uid: own, inode: 1 }),
        ),
        Caller::OtherUser => (
            "127.0.0.1:40001",
            PeerOwner::Local(SocketOwner {
                uid: own.wrapping_add(1),
                inode: 2,
            }),
        ),
        Caller::Remote => ("10.0.0.5:40002", PeerOwner::Remote),
    };
    let peer = peer.parse().expect("addr");
    Some(connection::Connection {
        local: "127.0.0.1:9911".parse().expect("addr"),
        peer,
        owner,
        client: crate::clients::Client::new(peer, owner),
    })
}

/// One generated request.
#[derive(Debug)]
struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    loopback_host: bool,
    token: Presented,
    session: Presented,
    caller: Caller,
}

fn case() -> impl Strategy<Value = Case> {
    // Stray headers (a second Host or Authorization, an Origin, a body
    // length) stop most requests at the guard; half the cases go without.
    let headers = prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(header_pair(), 1..4),
    ];
    let loopback_host = prop_oneof![9 => Just(true), 1 => Just(false)];
    (
        route(),
        headers,
        loopback_host,
        presented(),
        presented(),
        caller(),
    )
        .prop_map(
            |((method, path), headers, loopback_host, token, session, caller)| Case {
                method,
                path,
                headers,
                loopback_host,
                token,
                session,
                caller,
            },
        )
}

impl Case {
    /// The request, with the real secrets of `state` where the case says so;
    /// `None` for one hyper would never hand us.
    fn request(&self, state: &AppState) -> Option<Request<Body>> {
        let mut builder = Request::builder()
            .method(self.method)
            .uri(self.path.as_str());
        if self.loopback_host {
            builder = builder.header("host", "127.0.0.1:9911");
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let token = match self.token {
            Presented::Real => Some(state.settings().token.expose().to_owned()),
            Presented::Wrong => Some("not-the-token".to_owned()),
            Presented::Absent => None,
        };
        if let Some(token) = token {
            builder = builder.header("authorization", token);
        }
        let session = match self.session {
            Presented::Real => Some(
                state
                    .session_tokens
                    .issue(Duration::from_secs(300), SystemTime::now()),
            ),
            Presented::Wrong => Some("1.00".to_owned()),
            Presented::Absent => None,
        };
        if let Some(session) = session {
            builder = builder.header("x-aws-ec2-metadata-token", session);
        }
        if let Some(connection) = connection(self.caller) {
            builder = builder.extension(connection);
        }
        builder.body(Body::empty()).ok()
    }
}

/// Whatever arrives, the answer is never a 500, every error is the JSON
/// `{"code","message"}` shape, and no body ever holds the daemon's token.
/// Most cases carry the real token (and a real IMDS session), so the
/// credential, refusal (503) and admin handlers run, not only the guards:
/// the test checks at the end that each of them answered.
#[test]
fn any_request_gets_a_well_formed_answer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answered = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let config = ProptestConfig {
        cases: 1024,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let outcome = runner.run(&case(), |case| {
        runtime.block_on(async {
            let state = state();
            let Some(request) = case.request(&state) else {
                return Ok(());
            };
            let (status, content_type, body) = send(&router(state.clone()), request).await;
            let what = format!("{} {}", case.method, case.path);
            prop_assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{}", what);
            let text = String::from_utf8_lossy(&body);
            prop_assert!(
                !text.contains(state.settings().token.expose()),
                "{} echoed the token",
                what
            );
            if status.is_client_error() || status.is_server_error() {
                prop_assert_eq!(content_type.as_str(), "application/json", "{}", what);
                let json: serde_json::Value =
                    serde_json::from_slice(&body).expect("JSON error body");
                prop_assert!(json["code"].is_string() && json["message"].is_string());
            }
            let kind = kind_of(&case.path);
            *answered
                .lock()
                .expect("lock")
                .entry((kind, status.as_u16()))
                .or_insert(0) += 1;
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let answered = answered.into_inner().expect("lock");
    // Each at odds of one in a few dozen cases or better, so 1024 cases miss
    // none of them but by a broken strategy.
    for (kind, status) in [
        ("credentials", 200),
        ("credentials", 503),
        ("credentials", 401),
        ("credentials", 403),
        ("admin", 200),
        ("admin", 503),
        ("admin", 403),
    ] {
        assert!(
            answered.contains_key(&(kind, status)),
            "no case got {status} from a {kind} endpoint; the property ran only on the guards: {answered:?}"
        );
    }
}

/// Which kind of endpoint `path` is, for the check that each kind answered.
fn kind_of(path: &str) -> &'static str {
    if path.starts_with("/admin/") {
        "admin"
    } else if path.starts_with("/role/")
        || path == "/creds"
        || path.starts_with("/latest/meta-data/iam/security-credentials/")
    {
        "credentials"
    } else {
        "other"
    }
}

/// The warm path answers only what the router would answer with a 200 from
/// memory, and then with the same status, headers and body; everything else
/// it hands back for the router.
#[tokio::test]
async fn the_warm_path_answers_exactly_as_the_router_does_or_not_at_all() {
    let state = state();
    let router = router(state.clone());
    let warm = warm::Warm::main(state.clone());
    let peer = "127.0.0.1:40000".parse().expect("addr");
    let connection = connection::Connection {
        local: "127.0.0.1:9911".parse().expect("addr"),
        peer,
        owner: crate::peer::PeerOwner::Remote,
        client: crate::clients::Client::new(peer, crate::peer::PeerOwner::Remote),
    };
    let token = state.settings().token.expose().to_owned();
    let session = state
        .session_tokens
        .issue(Duration::from_secs(300), SystemTime::now());
    let request = |path: &str, headers: &[(&str, &str)]| {
        let mut builder = Request::get(path).header("host", "127.0.0.1:9911");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).expect("request")
    };
    let imds = "/latest/meta-data/iam/security-credentials/dev";
    let role = [("authorization", token.as_str())];
    let imds_session = [("x-aws-ec2-metadata-token", session.as_str())];

    // Cold: nothing held yet, so the router answers (and fetches).
    assert!(
        warm.answer(&connection, request("/role/dev", &role))
            .is_err()
    );
    assert_eq!(
        send(&router, request("/role/dev", &role)).await.0,
        StatusCode::OK
    );

    for (path, headers) in [
        ("/role/dev", &role[..]),
        ("/creds", &role[..]),
        (imds, &imds_session[..]),
    ] {
        let Ok(answer) = warm.answer(&connection, request(path, headers)) else {
            panic!("{path}: a warm request is answered on the warm path");
        };
        let routed = router
            .clone()
            .oneshot(request(path, headers))
            .await
            .expect("infallible");
        assert_eq!(answer.status(), routed.status(), "{path}");
        // The router's body sets Content-Length; hyper writes the same from
        // the warm body's exact size.
        let mut headers = routed.headers().clone();
        let length = headers.remove("content-length").expect("content-length");
        let size = hyper::body::Body::size_hint(answer.body()).exact();
        assert_eq!(
            size.map(|n| n.to_string()),
            length.to_str().ok().map(str::to_owned)
        );
        assert_eq!(answer.headers(), &headers, "{path}");
        let routed = axum::body::to_bytes(routed.into_body(), 1 << 20)
            .await
            .expect("body");
        let answer = http_body_util::BodyExt::collect(answer.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(answer, routed, "{path}");
    }

    // The other forms of the IMDS credentials path that the real service
    // answers (docs/imds.md): the warm path leaves them to the router, which
    // answers each exactly as the warm path answers the canonical one.
    let Ok(canonical) = warm.answer(&connection, request(imds, &imds_session)) else {
        panic!("{imds}: answered on the warm path");
    };
    let canonical = http_body_util::BodyExt::collect(canonical.into_body())
        .await
        .expect("body")
        .to_bytes();
    for path in [
        "/latest/meta-data/iam/security-credentials/dev/",
        "//latest/meta-data/iam/security-credentials/dev",
        "/latest//meta-data/iam/security-credentials/dev",
        "/latest/meta-data/iam/security-credentials//dev",
        "/latest/meta-data/iam/security-credentials/dev//",
    ] {
        assert!(
            warm.answer(&connection, request(path, &imds_session))
                .is_err(),
            "{path}: left to the router"
        );
        let routed = router
            .clone()
            .oneshot(request(path, &imds_session))
            .await
            .expect("infallible");
        assert_eq!(routed.status(), StatusCode::OK, "{path}");
        assert_eq!(
            routed.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body = axum::body::to_bytes(routed.into_body(), 1 << 20)
            .await
            .expect("body");
        assert_eq!(body, canonical, "{path}");
    }

    let wrong_token = [("authorization", "wrong")];
    let browser = [
        ("authorization", token.as_str()),
        ("origin", "https://evil.example"),
    ];
    let body = [("authorization", token.as_str()), ("content-length", "3")];
    let wrong_session = [("x-aws-ec2-metadata-token", "1.00")];
    for (path, headers) in [
        ("/role/dev", &wrong_token[..]),
        ("/role/dev", &[][..]),
        ("/role/dev", &browser[..]),
        ("/role/dev", &body[..]),
        ("/role/dev?x=1", &role[..]),
        ("/role/de%76", &role[..]),
        ("/role/unknown", &role[..]),
        ("/role/denied", &role[..]),
        ("/role/", &role[..]),
        ("/role/dev/", &role[..]),
        (imds, &[][..]),
        (imds, &wrong_session[..]),
        (
            "/latest/meta-data/iam/security-credentials/denied",
            &imds_session[..],
        ),
    ] {
        assert!(
            warm.answer(&connection, request(path, headers)).is_err(),
            "{path} {headers:?}: left to the router"
        );
    }
    let evil_host = Request::get("/role/dev")
        .header("host", "attacker.example")
        .header("authorization", token.as_str())
        .body(Body::empty())
        .expect("request");
    assert!(warm.answer(&connection, evil_host).is_err());
    let put = Request::put("/role/dev")
        .header("host", "127.0.0.1")
        .header("authorization", token.as_str())
        .body(Body::empty())
        .expect("request");
    assert!(warm.answer(&connection, put).is_err());
}

/// Each form of an IMDS path the real service answers (docs/imds.md,
/// "Paths"), through the router in-process: the same answer as the
/// canonical form, and the refusals.
#[tokio::test]
async fn imds_paths_answer_in_every_form_the_real_service_accepts() {
    let state = state();
    let router = router(state.clone());
    let session = state
        .session_tokens
        .issue(Duration::from_secs(300), SystemTime::now());
    let get = |path: &str| {
        Request::get(path)
            .header("host", "127.0.0.1")
            .header("x-aws-ec2-metadata-token", session.as_str())
            .body(Body::empty())
            .expect("request")
    };
    // (form, canonical form): the form answers exactly as the canonical one.
    let same = [
        ("/latest/", "/latest"),
        ("//latest", "/latest"),
        ("//", "/"),
        ("/latest/meta-data/", "/latest/meta-data"),
        ("/latest/meta-data/iam/", "/latest/meta-data/iam"),
        (
            "/latest/meta-data/iam/security-credentials/",
            "/latest/meta-data/iam/security-credentials",
        ),
        (
            "/latest/meta-data/iam/security-credentials-extended/",
            "/latest/meta-data/iam/security-credentials-extended",
        ),
        (
            "/latest/meta-data/placement/availability-zone/",
            "/latest/meta-data/placement/availability-zone",
        ),
        (
            "/latest//meta-data///placement/region//",
            "/latest/meta-data/placement/region",
        ),
        ("/latest/meta-data/iam/info/", "/latest/meta-data/iam/info"),
        (
            "/latest/dynamic/instance-identity/document/",
            "/latest/dynamic/instance-identity/document",
        ),
        (
            "/latest/meta-data/iam/security-credentials/nope/",
            "/latest/meta-data/iam/security-credentials/nope",
        ),
        ("/latest/meta-data/nope/", "/latest/meta-data/nope"),
    ];
    for (form, canonical) in same {
        let (status, content_type, body) = send(&router, get(form)).await;
        let expected = send(&router, get(canonical)).await;
        assert_eq!((status, &content_type), (expected.0, &expected.1), "{form}");
        // iam/info carries the time of the answer; compare all else whole.
        if !canonical.ends_with("/info") {
            assert_eq!(body, expected.2, "{form}");
        }
    }
    for (path, status, body) in [
        ("/", StatusCode::OK, "latest"),
        ("/latest", StatusCode::OK, "dynamic\nmeta-data"),
        ("/latest/meta-data", StatusCode::OK, "iam/\nplacement/"),
        (
            "/latest/meta-data/iam",
            StatusCode::OK,
            "info\nsecurity-credentials/",
        ),
        (
            "/latest/meta-data/placement",
            StatusCode::OK,
            "availability-zone\nregion",
        ),
        ("/latest/dynamic", StatusCode::OK, "instance-identity/"),
        (
            "/latest/dynamic/instance-identity",
            StatusCode::OK,
            "document",
        ),
        (
            "/latest/meta-data/iam/security-credentials",
            StatusCode::OK,
            "dev",
        ),
        ("/latest/meta-data/nope", StatusCode::NOT_FOUND, "NotFound"),
        ("/latest/user-data", StatusCode::NOT_FOUND, "NotFound"),
    ] {
        let answer = send(&router, get(path)).await;
        assert_eq!(answer.0, status, "{path}");
        let text = String::from_utf8_lossy(&answer.2);
        if status == StatusCode::OK {
            assert_eq!((answer.1.as_str(), &*text), ("text/plain", body), "{path}");
        } else {
            assert!(text.contains(body), "{path}: {text}");
        }
    }
    // The token path keeps its exact form: the real service refuses the PUT
    // with a trailing slash.
    let put = |path: &str| {
        Request::put(path)
            .header("host", "127.0.0.1")
            .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
            .body(Body::empty())
            .expect("request")
    };
    assert_eq!(
        send(&router, put("/latest/api/token/")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&router, put("/latest/api/token")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&router, put("//latest//api/token")).await.0,
        StatusCode::OK
    );
    // Paths that are not IMDS paths keep theirs.
    let token = state.settings().token.expose().to_owned();
    for path in ["/role/dev/", "/role//dev", "//creds", "/healthz/"] {
        let request = Request::get(path)
            .header("host", "127.0.0.1")
            .header("authorization", token.as_str())
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            send(&router, request).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}
