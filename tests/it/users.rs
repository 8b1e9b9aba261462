//! Credentials go to the daemon owner's processes only (docs/security.md,
//! "Another local user"): the tests run as root, and clients run as
//! `nobody` through `setpriv`. The owner's own clients (boto3, both CLIs,
//! the JS SDK) are the rest of the suite; other namespaces are compose.rs.

use std::time::Duration;

use crate::harness::{Daemon, Options, StsProxy, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;
/// `nobody` on Debian: a user other than the test's root.
const OTHER_UID: u32 = 65534;

/// Whether clients can be run as another user here (root is needed to
/// switch). In CI (`CI` set) they must; elsewhere the test says why it did
/// not run and passes.
pub(crate) fn can_switch_users() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
        "the other-user tests need root (to run clients as nobody), which CI must provide"
    );
    eprintln!("NOTICE: other-user test not run: it needs root to run clients as nobody");
    false
}

/// `curl` as `nobody`: the status and body of one request.
async fn as_other_user(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut command = tokio::process::Command::new("setpriv");
    command.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    let output = run(command.arg(url).env("NO_PROXY", "127.0.0.1")).await;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl as nobody: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn assert_foreign_user(what: &str, (status, body): (u16, String)) {
    assert_eq!(status, 403, "{what}: {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(json["code"], "ForeignUser", "{what}: {json}");
    assert!(json["message"].is_string(), "{what}: {json}");
    assert!(!body.contains("AccessKeyId"), "{what}: {body}");
}

/// An IMDSv2 session token, as the owner would get it.
async fn imds_session(daemon: &Daemon) -> String {
    let response = reqwest::Client::new()
        .put(daemon.url("/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "60")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("token PUT");
    assert_eq!(response.status(), 200);
    response.text().await.expect("token")
}

#[tokio::test]
async fn another_users_processes_get_no_credentials_and_no_admin_only_health() {
    if !can_switch_users() {
        return;
    }
    let proxy = StsProxy::start().await;
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), DEV).server("default_role = \"dev\"")).await;
    let token = daemon.token();
    let session = imds_session(&daemon).await;
    let creds_path = "/latest/meta-data/iam/security-credentials/dev";
    let ttl = ("X-aws-ec2-metadata-token-ttl-seconds", "60");

    assert_foreign_user(
        "IMDS token PUT",
        as_other_user("PUT", &daemon.url("/latest/api/token"), &[ttl]).await,
    );
    assert_foreign_user(
        "IMDS credentials with a valid session token",
        as_other_user(
            "GET",
            &daemon.url(creds_path),
            &[("X-aws-ec2-metadata-token", &session)],
        )
        .await,
    );
    assert_foreign_user(
        "IMDS role name",
        as_other_user(
            "GET",
            &daemon.url("/latest/meta-data/iam/security-credentials/"),
            &[("X-aws-ec2-metadata-token", &session)],
        )
        .await,
    );
    for path in ["/role/dev", "/creds", "/admin/status"] {
        assert_foreign_user(
            &format!("{path} with the real token"),
            as_other_user("GET", &daemon.url(path), &[("Authorization", &token)]).await,
        );
    }
    assert_foreign_user(
        "/admin/reload",
        as_other_user(
            "PUT",
            &daemon.url("/admin/reload"),
            &[("Authorization", &token)],
        )
        .await,
    );
    assert_eq!(
        as_other_user("GET", &daemon.url("/healthz"), &[]).await,
        (200, "ok".to_owned())
    );
    // /metrics is not for other users to be refused (a monitoring agent runs
    // as its own user), but it needs the token from anyone.
    assert_eq!(
        as_other_user("GET", &daemon.url("/metrics"), &[]).await.0,
        401
    );
    assert_eq!(
        as_other_user("GET", &daemon.url("/metrics"), &[("Authorization", &token)])
            .await
            .0,
        200
    );
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "nothing was assumed for the other user"
    );

    // The owner, meanwhile, is served as always.
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    let imds = daemon
        .get_with(creds_path, &[("x-aws-ec2-metadata-token", &session)])
        .await;
    assert_eq!(imds.status, 200, "{}", imds.body);
    assert_eq!(daemon.get("/admin/status").await.status, 200);
}

#[tokio::test]
async fn allow_uids_lets_a_named_user_in_until_a_reload_takes_it_out() {
    if !can_switch_users() {
        return;
    }
    let proxy = StsProxy::start().await;
    let allow = format!("default_role = \"dev\"\nallow_uids = [{OTHER_UID}]");
    let daemon = Daemon::start_with(Options::new(&proxy.url(), DEV).server(&allow)).await;
    assert!(
        daemon.log().contains("allow_uids"),
        "letting other users in is logged: {}",
        daemon.log()
    );
    let token = daemon.token();
    let (status, body) = as_other_user(
        "GET",
        &daemon.url("/role/dev"),
        &[("Authorization", &token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("AccessKeyId"), "{body}");
    let ttl = ("X-aws-ec2-metadata-token-ttl-seconds", "60");
    let (status, session) = as_other_user("PUT", &daemon.url("/latest/api/token"), &[ttl]).await;
    assert_eq!(status, 200, "{session}");

    // Taking the user out applies from the next connection on, without a restart.
    let config = std::fs::read_to_string(&daemon.config_path).expect("config");
    let without = config.replace(&format!("allow_uids = [{OTHER_UID}]"), "");
    assert_ne!(config, without);
    std::fs::write(&daemon.config_path, without).expect("write config");
    daemon.reload().await;
    assert_foreign_user(
        "/role/dev after the reload",
        as_other_user(
            "GET",
            &daemon.url("/role/dev"),
            &[("Authorization", &token)],
        )
        .await,
    );
    assert_eq!(daemon.get("/role/dev").await.status, 200);
}
