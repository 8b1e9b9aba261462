//! The IMDSv2 emulation: token rules, the paths SDKs read, per-role listeners.

use crate::harness::{Answer, Daemon, Options, StsProxy, free_port, run};

const ROLES: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
session_name = "alice"
region = "eu-west-1"
"#;

async fn daemon_with(proxy: &StsProxy, server: &str, roles: &str) -> Daemon {
    Daemon::start_with(Options::new(&proxy.url(), roles).server(server)).await
}

async fn put_token(daemon: &Daemon, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new().put(daemon.url("/latest/api/token"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("PUT token");
    let status = response.status().as_u16();
    let ttl = response
        .headers()
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, ttl, response.text().await.expect("body"))
}

async fn session(daemon: &Daemon) -> String {
    let (status, _, token) =
        put_token(daemon, &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")]).await;
    assert_eq!(status, 200);
    token
}

async fn imds_get(daemon: &Daemon, path: &str, token: &str) -> Answer {
    daemon
        .get_with(path, &[("X-aws-ec2-metadata-token", token)])
        .await
}

fn assert_json_error(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let json = answer.json();
    assert!(
        json["code"].is_string() && json["message"].is_string(),
        "{json}"
    );
}

#[tokio::test]
async fn token_put_enforces_ttl_bounds_and_refuses_forwarded_requests() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let ttl = "X-aws-ec2-metadata-token-ttl-seconds";
    for bad in [None, Some("0"), Some("21601"), Some("-1"), Some("soon")] {
        let headers: Vec<(&str, &str)> = bad.map(|v| (ttl, v)).into_iter().collect();
        let (status, _, _) = put_token(&daemon, &headers).await;
        assert_eq!(status, 400, "TTL {bad:?} is refused");
    }
    let (status, _, _) = put_token(&daemon, &[(ttl, "300"), ("X-Forwarded-For", "10.0.0.1")]).await;
    assert_eq!(status, 403, "a proxied token request is refused");

    let (status, echoed, token) = put_token(&daemon, &[(ttl, "300")]).await;
    assert_eq!(status, 200);
    assert_eq!(
        echoed.as_deref(),
        Some("300"),
        "the TTL comes back in a header (Go and Rust need it)"
    );
    assert!(
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
        "no newline: {token:?}"
    );
    // Header names are case-insensitive.
    let (status, _, _) = put_token(&daemon, &[("X-AWS-EC2-METADATA-TOKEN-TTL-SECONDS", "1")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn credentials_need_a_valid_session_token() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let path = "/latest/meta-data/iam/security-credentials/dev";
    assert_json_error(&daemon.get_with(path, &[]).await, 401);
    assert_json_error(&imds_get(&daemon, path, "1.deadbeef").await, 401);
    let stale = format!("1000.{}", "0".repeat(64));
    assert_json_error(&imds_get(&daemon, path, &stale).await, 401);
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "nothing reached STS without a token"
    );

    let token = session(&daemon).await;
    let list = imds_get(
        &daemon,
        "/latest/meta-data/iam/security-credentials/",
        &token,
    )
    .await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body, "dev",
        "exactly the role name, no trailing newline"
    );

    let answer = imds_get(&daemon, path, &token).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let json = answer.json();
    assert_eq!(json["Code"], "Success");
    assert_eq!(json["Type"], "AWS-HMAC");
    for key in [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
        "LastUpdated",
    ] {
        assert!(json[key].is_string(), "{key} in {json}");
    }
    let expiration = json["Expiration"].as_str().unwrap_or_default();
    assert!(
        crate::harness::parse_utc_timestamp(expiration).is_some() && expiration.len() == 20,
        "{expiration}"
    );

    let other = imds_get(
        &daemon,
        "/latest/meta-data/iam/security-credentials/prod",
        &token,
    )
    .await;
    assert_json_error(&other, 404);
}

#[tokio::test]
async fn imdsv1_works_only_when_the_config_opts_in() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"\nimdsv1 = true", ROLES).await;
    let answer = daemon
        .get_with("/latest/meta-data/iam/security-credentials/dev", &[])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // An invalid token is still refused, even with v1 allowed.
    let forged = imds_get(
        &daemon,
        "/latest/meta-data/iam/security-credentials/dev",
        "x",
    )
    .await;
    assert_json_error(&forged, 401);
}

#[tokio::test]
async fn extended_paths_answer_or_404_never_401_403_or_5xx() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let base = "/latest/meta-data/iam/security-credentials-extended/";
    let token = session(&daemon).await;
    let list = imds_get(&daemon, base, &token).await;
    assert_eq!((list.status, list.body.as_str()), (200, "dev"));
    let creds = imds_get(&daemon, &format!("{base}dev"), &token).await;
    assert_eq!(creds.status, 200);
    assert_eq!(creds.json()["AccountId"], "111111111111");

    proxy.set_fault(Some(crate::harness::Fault::AccessDenied));
    let fresh =
        Daemon::start_with(Options::new(&proxy.url(), ROLES).server("default_role = \"dev\""))
            .await;
    let token = session(&fresh).await;
    for (path, token) in [
        (format!("{base}dev"), token.as_str()),
        (format!("{base}dev"), "forged"),
        (base.to_owned(), "forged"),
        (format!("{base}nope"), token.as_str()),
    ] {
        let answer = imds_get(&fresh, &path, token).await;
        assert_eq!(answer.status, 404, "{path} with {token:?}: {}", answer.body);
    }
}

#[tokio::test]
async fn region_zone_info_and_identity_come_from_the_config() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let token = session(&daemon).await;
    let get = |path: &'static str| imds_get(&daemon, path, &token);
    assert_eq!(
        get("/latest/meta-data/placement/region").await.body,
        "eu-west-1"
    );
    assert_eq!(
        get("/latest/meta-data/placement/availability-zone")
            .await
            .body,
        "eu-west-1a"
    );
    let info = get("/latest/meta-data/iam/info").await.json();
    assert_eq!(info["Code"], "Success");
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::111111111111:instance-profile/dev"
    );
    let document = get("/latest/dynamic/instance-identity/document")
        .await
        .json();
    assert_eq!(document["region"], "eu-west-1");
    assert_eq!(document["accountId"], "111111111111");
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "placement never waits for STS"
    );
}

#[tokio::test]
async fn an_imds_listener_serves_its_own_role() {
    let proxy = StsProxy::start().await;
    let ops_port = free_port();
    let roles = format!(
        "{ROLES}\n[roles.ops]\nrole_arn = \"arn:aws:iam::222222222222:role/ops\"\nimds_listen = \"127.0.0.1:{ops_port}\"\n"
    );
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", &roles).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{ops_port}");
    let token = client
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .expect("PUT")
        .text()
        .await
        .expect("token");
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("X-aws-ec2-metadata-token", &token)
            .send()
    };
    let list = get("/latest/meta-data/iam/security-credentials/")
        .await
        .expect("GET");
    assert_eq!(list.text().await.expect("body"), "ops");
    let creds = get("/latest/meta-data/iam/security-credentials/ops")
        .await
        .expect("GET");
    assert_eq!(creds.status(), 200);
    let dev = get("/latest/meta-data/iam/security-credentials/dev")
        .await
        .expect("GET");
    assert_eq!(dev.status(), 404, "this listener serves ops only");
    let container = get("/role/dev").await.expect("GET");
    assert_eq!(container.status(), 404, "and no container endpoint");
    // The main listener's IMDS is still the default role.
    let main = imds_get(
        &daemon,
        "/latest/meta-data/iam/security-credentials/",
        &session(&daemon).await,
    )
    .await;
    assert_eq!(main.body, "dev");

    let env = run(daemon
        .cli()
        .args(["env", "ops", "--imds", "--format", "json"]))
    .await;
    let env: serde_json::Value = serde_json::from_slice(&env.stdout).expect("json");
    assert_eq!(
        env["set"]["AWS_EC2_METADATA_SERVICE_ENDPOINT"],
        format!("{base}/")
    );
    let refused = run(daemon.cli().args(["env", "nope", "--imds"])).await;
    assert!(!refused.status.success());
}

#[tokio::test]
async fn env_imds_adds_no_proxy_when_a_proxy_is_set() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let plain = run(daemon.cli().args(["env", "dev", "--imds"])).await;
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(
        plain.contains(&format!(
            "export AWS_EC2_METADATA_SERVICE_ENDPOINT='http://127.0.0.1:{}/'",
            daemon.port
        )),
        "{plain}"
    );
    assert!(
        plain.contains("unset AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        "{plain}"
    );
    assert!(!plain.contains("NO_PROXY"), "{plain}");
    let proxied = run(daemon
        .cli()
        .env("HTTP_PROXY", "http://proxy.invalid:3128")
        .args(["env", "dev", "--imds"]))
    .await;
    let proxied = String::from_utf8_lossy(&proxied.stdout);
    assert!(
        proxied.contains("export NO_PROXY='127.0.0.1,localhost'"),
        "{proxied}"
    );
}

#[tokio::test]
async fn botocore_does_not_refetch_on_every_call() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    daemon.boto3_whoami("dev", 50).await;
    let fetches = daemon
        .metric("assumed_http_requests_total", &[("route", "/role/:name")])
        .await;
    assert!(
        (1.0..=2.0).contains(&fetches),
        "50 API calls made {fetches} credential fetches"
    );
    assert_eq!(proxy.count("AssumeRole"), 1);
}

/// What one form of a path must get (docs/imds.md, "Paths").
enum Expect {
    /// 200, `text/plain`, exactly this body.
    Text(&'static str),
    /// 200, JSON with this field.
    Json(&'static str),
    /// The JSON error shape with this status.
    Error(u16),
}

/// Every form the real service accepts, against the running daemon: a
/// trailing slash on a leaf or a category, a category without one, the
/// roots, doubled slashes; and what it refuses.
#[tokio::test]
async fn each_form_of_a_path_gets_what_the_real_service_gives() {
    use Expect::{Error, Json, Text};
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let token = session(&daemon).await;
    let creds = "/latest/meta-data/iam/security-credentials";
    let table: &[(&str, Expect)] = &[
        ("/", Text("latest")),
        ("/latest", Text("dynamic\nmeta-data")),
        ("/latest/", Text("dynamic\nmeta-data")),
        ("/latest/meta-data", Text("iam/\nplacement/")),
        ("/latest/meta-data/", Text("iam/\nplacement/")),
        ("/latest/meta-data/iam", Text("info\nsecurity-credentials/")),
        (
            "/latest/meta-data/iam/",
            Text("info\nsecurity-credentials/"),
        ),
        ("/latest/meta-data/iam/info", Json("InstanceProfileArn")),
        ("/latest/meta-data/iam/info/", Json("InstanceProfileArn")),
        (creds, Text("dev")),
        ("/latest/meta-data/iam/security-credentials/", Text("dev")),
        (
            "/latest/meta-data/iam/security-credentials/dev",
            Json("AccessKeyId"),
        ),
        (
            "/latest/meta-data/iam/security-credentials/dev/",
            Json("AccessKeyId"),
        ),
        (
            "//latest/meta-data/iam/security-credentials/dev",
            Json("AccessKeyId"),
        ),
        (
            "/latest//meta-data/iam/security-credentials//dev",
            Json("AccessKeyId"),
        ),
        (
            "/latest/meta-data/iam/security-credentials-extended/dev/",
            Json("AccountId"),
        ),
        (
            "/latest/meta-data/placement",
            Text("availability-zone\nregion"),
        ),
        (
            "/latest/meta-data/placement/",
            Text("availability-zone\nregion"),
        ),
        (
            "/latest/meta-data/placement/availability-zone",
            Text("eu-west-1a"),
        ),
        (
            "/latest/meta-data/placement/availability-zone/",
            Text("eu-west-1a"),
        ),
        ("/latest/meta-data/placement//region/", Text("eu-west-1")),
        ("/latest/dynamic", Text("instance-identity/")),
        ("/latest/dynamic/", Text("instance-identity/")),
        ("/latest/dynamic/instance-identity/", Text("document")),
        (
            "/latest/dynamic/instance-identity/document/",
            Json("accountId"),
        ),
        (
            "/latest/meta-data/iam/security-credentials/nope",
            Error(404),
        ),
        (
            "/latest/meta-data/iam/security-credentials/nope/",
            Error(404),
        ),
        ("/latest/meta-data/instance-id", Error(404)),
        ("/latest/meta-data/nope/", Error(404)),
        ("/latest/user-data", Error(404)),
        ("/2009-04-04/meta-data/", Error(404)),
    ];
    for (path, expect) in table {
        let answer = imds_get(&daemon, path, &token).await;
        match expect {
            Text(body) => {
                assert_eq!(answer.status, 200, "{path}: {}", answer.body);
                assert_eq!(answer.content_type, "text/plain", "{path}");
                assert_eq!(answer.body, *body, "{path}");
            }
            Json(field) => {
                assert_eq!(answer.status, 200, "{path}: {}", answer.body);
                assert_eq!(answer.content_type, "application/json", "{path}");
                assert!(answer.json()[field].is_string(), "{path}: {}", answer.body);
            }
            Error(status) => assert_json_error(&answer, *status),
        }
    }
    // Every form needs the session, as every path does on the real service.
    for path in [
        "/",
        "/latest/meta-data",
        "/latest/meta-data/iam/security-credentials/dev/",
    ] {
        assert_json_error(&daemon.get_with(path, &[]).await, 401);
    }
    // The token path is the exception: with a trailing slash the real
    // service refuses the PUT (403), and SDKs fall back as they would there.
    let ttl = ("X-aws-ec2-metadata-token-ttl-seconds", "60");
    let put = |path: &str| {
        reqwest::Client::new()
            .put(daemon.url(path))
            .header(ttl.0, ttl.1)
            .send()
    };
    assert_eq!(put("/latest/api/token/").await.expect("PUT").status(), 403);
    assert_eq!(put("//latest/api/token").await.expect("PUT").status(), 200);
    // The container endpoint keeps its own paths exactly.
    let role = daemon
        .get_with("/role//dev", &[("authorization", daemon.token().as_str())])
        .await;
    assert_eq!(role.status, 404, "{}", role.body);
}

/// botocore finds the region at `…/placement/availability-zone/`, with the
/// slash (its `InstanceMetadataRegionFetcher`, used for `defaults_mode =
/// auto`): the answer it reads is the zone, and the region is the zone
/// without its last letter.
#[tokio::test]
async fn botocore_reads_the_region_from_the_zone_with_a_trailing_slash() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "default_role = \"dev\"", ROLES).await;
    let script = "import sys; from botocore.utils import InstanceMetadataRegionFetcher as F; \
                  print(F(timeout=5, config={'ec2_metadata_service_endpoint': sys.argv[1]}).retrieve_region())";
    let output = run(tokio::process::Command::new(crate::harness::python())
        .args(["-c", script, &daemon.url("/")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default()))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "eu-west-1");
}

/// Without a role to serve, the listings leave `iam/` out and `iam` is 404,
/// as on an instance without an instance profile; the rest still answers.
#[tokio::test]
async fn without_a_role_the_listings_leave_iam_out() {
    let proxy = StsProxy::start().await;
    let daemon = daemon_with(&proxy, "", ROLES).await;
    let token = session(&daemon).await;
    for path in ["/latest/meta-data", "/latest/meta-data/"] {
        let answer = imds_get(&daemon, path, &token).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, "placement/"),
            "{path}"
        );
    }
    for path in ["/latest/meta-data/iam", "/latest/meta-data/iam/"] {
        assert_json_error(&imds_get(&daemon, path, &token).await, 404);
    }
    let zone = imds_get(
        &daemon,
        "/latest/meta-data/placement/availability-zone/",
        &token,
    )
    .await;
    assert_eq!((zone.status, zone.body.as_str()), (200, "us-east-1a"));
}
