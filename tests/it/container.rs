//! The container-credentials endpoint, as SDKs and the AWS CLI use it.

use std::path::Path;

use crate::harness::{Daemon, StsProxy, python, run};

use crate::harness::{DEV_ALICE as DEV, DEV_ALICE_ARN};

fn is_whole_second_utc(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `aws sts get-caller-identity --output json` succeeded as role dev.
fn assert_caller_is_dev(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(result["Arn"], DEV_ALICE_ARN);
}

#[tokio::test]
async fn answer_has_the_container_credentials_shape() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let json = answer.json();
    for key in [
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
        "RoleArn",
        "AccountId",
    ] {
        assert!(json[key].is_string(), "{key} missing in {json}");
    }
    assert!(
        json.get("Code").is_none(),
        "no Code field on the container endpoint"
    );
    let expiration = json["Expiration"].as_str().unwrap_or_default();
    assert!(
        is_whole_second_utc(expiration),
        "Expiration {expiration:?} is not YYYY-MM-DDTHH:MM:SSZ"
    );
    assert_eq!(json["RoleArn"], "arn:aws:iam::111111111111:role/dev");
    assert_eq!(json["AccountId"], "111111111111");
    // The AssumeRole call carried the configured session name.
    let call = &proxy.calls()[0];
    assert_eq!(call.action, "AssumeRole");
    assert_eq!(
        call.params.get("RoleSessionName").map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        call.access_key_id.as_deref(),
        Some(crate::harness::daemon::SOURCE_KEY_ID)
    );
}

#[tokio::test]
async fn default_role_is_served_at_creds() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(
        crate::harness::Options::new(&proxy.url(), DEV).server("default_role = \"dev\""),
    )
    .await;
    let answer = daemon.get("/creds").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["RoleArn"],
        "arn:aws:iam::111111111111:role/dev"
    );
}

#[tokio::test]
async fn token_and_role_errors_are_json_with_honest_statuses() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;

    let missing = daemon.get_with("/role/dev", &[]).await;
    assert_eq!(missing.status, 401);
    let wrong = daemon
        .get_with("/role/dev", &[("authorization", "not-the-token")])
        .await;
    assert_eq!(wrong.status, 403);
    let bearer = format!("Bearer {}", daemon.token());
    let with_bearer = daemon
        .get_with("/role/dev", &[("authorization", &bearer)])
        .await;
    assert_eq!(with_bearer.status, 403, "the raw token, not a Bearer token");
    // Unauthenticated callers cannot probe which roles exist.
    let probe = daemon.get_with("/role/nope", &[]).await;
    assert_eq!(probe.status, 401);
    let unknown = daemon.get("/role/nope").await;
    assert_eq!(unknown.status, 404);

    for answer in [&missing, &wrong, &unknown] {
        assert_eq!(answer.content_type, "application/json");
        let json = answer.json();
        assert!(
            json["code"].is_string() && json["message"].is_string(),
            "{json}"
        );
        assert!(
            !answer.body.contains("dev"),
            "an error names no role: {}",
            answer.body
        );
        assert!(
            !answer.body.contains(&daemon.token()),
            "an error never echoes the token"
        );
    }
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "refused requests never reach STS"
    );
}

#[tokio::test]
async fn boto3_gets_the_role_through_full_uri_and_token_file() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let result = daemon.boto3_whoami("dev", 1).await;
    assert_eq!(result["arn"], DEV_ALICE_ARN);
    assert_eq!(result["method"], "container-role");
}

#[tokio::test]
async fn aws_cli_v1_gets_the_role_through_full_uri_and_token_file() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let output = run(tokio::process::Command::new(python())
        .args([
            "-m",
            "awscli",
            "sts",
            "get-caller-identity",
            "--output",
            "json",
        ])
        .args(["--endpoint-url", &proxy.url()])
        .env_clear()
        .envs(daemon.client_env("dev")))
    .await;
    assert_caller_is_dev("aws v1", &output);
}

#[tokio::test]
async fn exec_runs_debian_aws_cli_v2_with_the_role() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    // Debian's CLI 2.9 reads only AWS_CONTAINER_AUTHORIZATION_TOKEN, which exec sets.
    let output = run(daemon
        .cli()
        .args([
            "exec",
            "dev",
            "--",
            "/usr/bin/aws",
            "sts",
            "get-caller-identity",
        ])
        .args(["--output", "json", "--endpoint-url", &proxy.url()]))
    .await;
    assert_caller_is_dev("exec aws", &output);
}

#[tokio::test]
async fn exec_passes_on_the_exit_status_and_a_clean_environment() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let output = run(daemon
        .cli()
        .env("AWS_ACCESS_KEY_ID", "AKIASHOULDBEGONE")
        .env("AWS_PROFILE", "someone-else")
        .args(["exec", "dev", "--", "sh", "-c"])
        .arg("env | grep '^AWS_' | sort; exit 7"))
    .await;
    assert_eq!(output.status.code(), Some(7));
    let env = String::from_utf8_lossy(&output.stdout);
    assert!(!env.contains("AWS_ACCESS_KEY_ID"), "{env}");
    assert!(!env.contains("AWS_PROFILE"), "{env}");
    let full_uri = format!(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI={}",
        daemon.url("/role/dev")
    );
    assert!(env.contains(&full_uri), "{env}");
    assert!(env.contains(&format!(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN={}",
        daemon.token()
    )));
    assert!(env.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="));
}

#[tokio::test]
async fn token_file_is_private_and_exactly_the_token() {
    use std::os::unix::fs::PermissionsExt;
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let token = std::fs::read(&daemon.token_path).expect("token file");
    assert!(token.len() >= 32);
    assert!(
        token.iter().all(u8::is_ascii_graphic),
        "visible ASCII, no newline"
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&daemon.token_path), 0o600);
    assert_eq!(mode(daemon.token_path.parent().expect("dir")), 0o700);
}
