//! Each defence of docs/security.md, attacked against the real binary, next
//! to the same request done right.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Daemon, Options, StsProxy, daemon::binary, raw_request, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

fn get(path: &str, host: &str, token: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

fn assert_json(body: &str) {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert!(
        json["code"].is_string() && json["message"].is_string(),
        "{json}"
    );
}

#[tokio::test]
async fn only_loopback_own_and_configured_hosts_are_served() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(
        Options::new(&proxy.url(), DEV).server("allowed_hosts = [\"host.docker.internal\"]"),
    )
    .await;
    let token = daemon.token();
    let port = daemon.port;
    for host in [
        "attacker.example",
        &format!("attacker.example:{port}"),
        "127.0.0.1.nip.io",
        "169.254.169.254",
        "",
    ] {
        let (status, body) = raw_request(port, &get("/role/dev", host, &token, "")).await;
        assert_eq!(status, 403, "Host {host:?}");
        assert_json(&body);
    }
    // DNS rebinding is refused before any other work: not even /healthz answers.
    let (status, _) = raw_request(port, &get("/healthz", "attacker.example", "", "")).await;
    assert_eq!(status, 403);
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "a refused Host never reaches STS"
    );

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".into(),
        "host.docker.internal".into(),
    ] {
        let (status, body) = raw_request(port, &get("/role/dev", &host, &token, "")).await;
        assert_eq!(status, 200, "Host {host:?}: {body}");
    }
}

#[tokio::test]
async fn browser_requests_and_preflights_are_refused() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let token = daemon.token();
    let host = format!("127.0.0.1:{}", daemon.port);
    for header in [
        "Origin: https://evil.example\r\n",
        "Referer: https://evil.example/page\r\n",
        "Sec-Fetch-Mode: no-cors\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120\r\n",
    ] {
        let (status, body) =
            raw_request(daemon.port, &get("/role/dev", &host, &token, header)).await;
        assert_eq!(status, 403, "{header:?}");
        assert_json(&body);
        assert!(!body.contains("Access-Control"), "no CORS grant");
    }
    let preflight = format!(
        "OPTIONS /role/dev HTTP/1.1\r\nHost: {host}\r\nOrigin: https://evil.example\r\n\
         Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n"
    );
    let (status, _) = raw_request(daemon.port, preflight.as_bytes()).await;
    assert_eq!(status, 403);
    let bare_options =
        format!("OPTIONS /role/dev HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    assert_eq!(
        raw_request(daemon.port, bare_options.as_bytes()).await.0,
        403
    );
    assert_eq!(proxy.count("AssumeRole"), 0);

    let sdk_agent = "User-Agent: Boto3/1.43.11 md/Botocore#1.43.11\r\n";
    let (status, _) = raw_request(daemon.port, &get("/role/dev", &host, &token, sdk_agent)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oversized_heads_bodies_and_malformed_paths_get_4xx_never_a_crash() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let token = daemon.token();
    let host = format!("127.0.0.1:{}", daemon.port);
    let port = daemon.port;

    let huge = format!("X-Padding: {}\r\n", "a".repeat(9 * 1024));
    let (status, _) = raw_request(port, &get("/role/dev", &host, &token, &huge)).await;
    assert!(
        status == 431 || status == 400,
        "a head over 8 KiB: {status}"
    );
    let long_name = format!("/role/{}", "x".repeat(10 * 1024));
    let (status, _) = raw_request(port, &get(&long_name, &host, &token, "")).await;
    assert!(
        status == 431 || status == 414 || status == 400,
        "a 10 KiB name: {status}"
    );

    let with_body = format!(
        "GET /role/dev HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    );
    let (status, body) = raw_request(port, with_body.as_bytes()).await;
    assert_eq!(status, 413);
    assert_json(&body);

    for (path, expected) in [
        ("/role/%00", 404),
        ("/role/../x", 404),
        ("/role/..%2Fx", 404),
        ("/role/%FF%FE", 400),
        ("/role/", 404),
        ("/role/dev/extra", 404),
        ("/latest/meta-data/iam/security-credentials/%00", 401),
    ] {
        let (status, body) = raw_request(port, &get(path, &host, &token, "")).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert_json(&body);
    }
    let name_7k = format!("/role/{}", "y".repeat(7 * 1024));
    let (status, body) = raw_request(port, &get(&name_7k, &host, &token, "")).await;
    assert_eq!(status, 404);
    assert_json(&body);
    // Bytes that are not UTF-8 in the request line.
    let mut raw = b"GET /role/\xff\xfe HTTP/1.1\r\nHost: ".to_vec();
    raw.extend_from_slice(host.as_bytes());
    raw.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let (status, _) = raw_request(port, &raw).await;
    assert!((400..500).contains(&status), "non-UTF-8 path: {status}");

    // Still serving after all of that.
    assert_eq!(daemon.get("/role/dev").await.status, 200);
}

#[tokio::test]
async fn idle_and_slow_clients_do_not_delay_a_real_request() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200, "warm");
    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .expect("connect");
        if i % 2 == 0 {
            // Slowloris: half a request head, never finished.
            stream
                .write_all(b"GET /role/dev HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .expect("send");
        }
        idle.push(stream);
    }
    let answered = tokio::time::timeout(Duration::from_secs(5), daemon.get("/role/dev")).await;
    assert_eq!(
        answered
            .expect("answered while 1000 connections idle")
            .status,
        200
    );

    // The unfinished heads are cut off by the header deadline (10 s).
    let mut slow = idle.swap_remove(0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a connection that never finishes its head is closed"
    );
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    let proxy = StsProxy::start().await;
    let mut options = Options::new(&proxy.url(), DEV);
    options.rust_log = "trace".into();
    let daemon = Daemon::start_with(options).await;
    daemon.boto3_whoami("dev", 1).await;
    let creds = daemon.get("/role/dev").await.json();
    let log = daemon.log();
    assert!(log.len() > 1000, "trace logging is on: {} bytes", log.len());
    let secret = creds["SecretAccessKey"].as_str().expect("secret");
    let session = creds["Token"].as_str().expect("token");
    assert!(!log.contains(secret), "the secret key is in the log");
    assert!(!log.contains(session), "the session token is in the log");
    assert!(
        !log.contains(&session[..40]),
        "part of the session token is in the log"
    );
    assert!(
        !log.contains(&daemon.token()),
        "the auth token is in the log"
    );
    assert!(
        !log.contains("source-secret"),
        "the source secret key is in the log"
    );
}

#[tokio::test]
async fn serve_refuses_a_token_file_that_others_can_read() {
    for (dir_mode, file_mode) in [(0o755, 0o600), (0o700, 0o644)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let token_dir = dir.path().join("tokens");
        std::fs::create_dir(&token_dir).expect("mkdir");
        let token = token_dir.join("token");
        std::fs::write(&token, "0123456789abcdef0123456789abcdef").expect("write");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(file_mode))
            .expect("chmod");
        std::fs::set_permissions(&token_dir, std::fs::Permissions::from_mode(dir_mode))
            .expect("chmod");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{}\"]\ntoken_file = \"{}\"\n",
                crate::harness::free_port(),
                token.display()
            ),
        )
        .expect("write");
        let output = run(tokio::process::Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config))
        .await;
        assert!(
            !output.status.success(),
            "started with dir {dir_mode:o} / file {file_mode:o}"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("accessible to other users"), "{stderr}");
        assert!(
            !stderr.contains("0123456789abcdef"),
            "the token is not printed"
        );
    }
}

#[tokio::test]
async fn exposing_a_listener_needs_the_setting_and_warns() {
    let proxy = StsProxy::start().await;
    let port = crate::harness::free_port();
    let mut options = Options::new(&proxy.url(), DEV);
    options.extra_listen = Some(format!("0.0.0.0:{port}"));
    let daemon = Daemon::start_with(options.server("expose = true")).await;
    // The first listener can answer /healthz (the harness's readiness)
    // before the second is set up: wait, bounded, for its line.
    daemon.wait_for_log("listening beyond loopback").await;
}
