//! The command line: `check`, `roles`, `env`.

use crate::harness::{Daemon, StsProxy, daemon::binary, run};

async fn check(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write");
    let output = run(tokio::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-aws-credentials"),
        ))
    .await;
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    (output.status.code(), text)
}

const VALID: &str = r#"
[server]
default_role = "dev"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

#[tokio::test]
async fn check_accepts_a_valid_config() {
    let (code, text) = check(VALID).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[tokio::test]
async fn check_names_each_error_with_its_line_and_exits_2() {
    let cases: &[(&str, &str, &str)] = &[
        ("syntax", "[roles.dev\nrole_arn = 1\n", "config.toml:1:"),
        (
            "unknown key",
            "[server]\nlisten_on = []\n",
            "config.toml:2:1: unknown key \"listen_on\"",
        ),
        (
            "role arn",
            "[roles.dev]\nrole_arn = \"arn:aws:iam::1:role/x\"\n",
            "config.toml:2:12",
        ),
        (
            "duration range",
            "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\nduration = \"13h\"\n",
            "config.toml:3:12",
        ),
        (
            "duration syntax",
            "[server]\nrefresh_before = \"soon\"\n",
            "config.toml:2:18",
        ),
        (
            "session name",
            "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\nsession_name = \"a b\"\n",
            "config.toml:3:16",
        ),
        (
            "via missing",
            "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\nvia = \"hub\"\n",
            "config.toml:3:7",
        ),
        (
            "via cycle",
            "[roles.a]\nrole_arn = \"arn:aws:iam::111111111111:role/a\"\nvia = \"b\"\n[roles.b]\nrole_arn = \"arn:aws:iam::111111111111:role/b\"\nvia = \"a\"\n",
            "cycle",
        ),
        (
            "default role",
            "[server]\nimport_profiles = false\ndefault_role = \"nope\"\n",
            "config.toml:3:16",
        ),
        (
            "default role among imported profiles too",
            "[server]\ndefault_role = \"nope\"\n",
            "config.toml:2:16: default_role \"nope\" names neither",
        ),
        (
            "exposed listen",
            "[server]\nlisten = [\"0.0.0.0:9911\"]\n",
            "expose",
        ),
    ];
    for (what, config, expected) in cases {
        let (code, text) = check(config).await;
        assert_eq!(code, Some(2), "{what}: {text}");
        assert!(
            text.contains(expected),
            "{what}: expected {expected:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn check_reports_every_problem_at_once() {
    let config =
        "[server]\nrefresh_before = \"soon\"\nbogus = 1\n[roles.dev]\nrole_arn = \"nope\"\n";
    let (code, text) = check(config).await;
    assert_eq!(code, Some(2));
    assert_eq!(
        text.lines().filter(|l| l.contains("config.toml:")).count(),
        3,
        "{text}"
    );
}

#[tokio::test]
async fn serve_refuses_an_invalid_config_and_names_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\nduration = \"5m\"\n",
    )
    .expect("write");
    let output = run(tokio::process::Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(&path))
    .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("config.toml:3:12"));
}

#[tokio::test]
async fn roles_and_env_describe_the_configured_roles() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(
        &proxy.url(),
        "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\n",
    )
    .await;
    let roles = run(daemon.cli().arg("roles")).await;
    let roles = String::from_utf8_lossy(&roles.stdout);
    assert!(
        roles.contains("dev") && roles.contains("arn:aws:iam::111111111111:role/dev"),
        "{roles}"
    );

    let env = run(daemon.cli().args(["env", "dev", "--format", "json"])).await;
    assert!(env.status.success());
    let env: serde_json::Value = serde_json::from_slice(&env.stdout).expect("json");
    assert_eq!(
        env["set"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        daemon.url("/role/dev")
    );
    assert_eq!(
        env["set"]["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
        daemon.token_path.display().to_string()
    );
    let unset: Vec<&str> = env["unset"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
    ] {
        assert!(unset.contains(&name), "{name} is unset");
    }

    let sh = run(daemon.cli().args(["env", "dev"])).await;
    let sh = String::from_utf8_lossy(&sh.stdout);
    assert!(
        sh.contains(&format!(
            "export AWS_CONTAINER_CREDENTIALS_FULL_URI='{}'",
            daemon.url("/role/dev")
        )),
        "{sh}"
    );

    let unknown = run(daemon.cli().args(["env", "nope"])).await;
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn serve_ignores_container_variables_that_point_at_itself() {
    // A shell set up by `assumed env` must not make the daemon ask itself for
    // its source credentials. Here the daemon's own FULL_URI variable points
    // at its listener; it must still sign with the static source keys.
    let proxy = StsProxy::start().await;
    let port = crate::harness::free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let token = dir.path().join("run/token");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntoken_file = \"{}\"\n[source]\nregion = \"us-east-1\"\nsts_endpoint = \"{}\"\n[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\n",
            token.display(),
            proxy.url()
        ),
    )
    .expect("write");
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_clear()
        .envs(crate::harness::daemon::base_env(dir.path()))
        .env("AWS_ACCESS_KEY_ID", crate::harness::daemon::SOURCE_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "source-secret")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://127.0.0.1:{port}/role/dev"),
        )
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/role/dev");
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(secret) = std::fs::read_to_string(&token) {
            if let Ok(response) = client
                .get(&url)
                .header("authorization", secret)
                .send()
                .await
            {
                answer = Some(response.status().as_u16());
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;
    assert_eq!(answer, Some(200));
    assert_eq!(
        proxy.calls()[0].access_key_id.as_deref(),
        Some(crate::harness::daemon::SOURCE_KEY_ID)
    );
}

#[tokio::test]
async fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
    let output =
        run(tokio::process::Command::new(binary()).args(["check", "--config", example])).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
