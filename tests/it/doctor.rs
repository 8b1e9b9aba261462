//! `assumed doctor`: each check's ok and fail path, against the real daemon
//! and moto, from shells set up the way users have them.

use std::os::unix::fs::PermissionsExt;

use tokio::process::Command;

use crate::harness::daemon::binary;
use crate::harness::{Daemon, Fault, Options, StsProxy, free_port, run};

use crate::harness::DEV_ALICE as ROLES;

struct Report {
    code: Option<i32>,
    findings: Vec<serde_json::Value>,
    stdout: String,
}

impl Report {
    /// The finding of `check` (the first, for `role`).
    fn get(&self, check: &str) -> &serde_json::Value {
        self.findings
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("no {check} finding in {}", self.stdout))
    }

    fn status(&self, check: &str) -> &str {
        self.get(check)["status"].as_str().unwrap_or_default()
    }

    fn message(&self, check: &str) -> &str {
        self.get(check)["message"].as_str().unwrap_or_default()
    }
}

/// A user's home: `~/.aws/credentials` with the user's keys in `[default]`
/// (line 2), and a region in `~/.aws/config`.
fn users_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(home.path().join(".aws")).expect("mkdir");
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-west-2\n",
    )
    .expect("write");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIAUSEROWNKEYS00001\naws_secret_access_key = s\n",
    )
    .expect("write");
    home
}

/// Runs `script` (sh) in the user's shell, with `$ASSUMED` the binary and
/// the daemon's config; `$@` is `doctor ARGS… --json`.
async fn doctor_in(
    script: &str,
    home: &std::path::Path,
    config: &std::path::Path,
    runtime: &std::path::Path,
    extra_env: &[(&str, String)],
    args: &[&str],
) -> Report {
    let mut command = Command::new("sh");
    command
        .args(["-c", script, "sh", "doctor"])
        .args(args)
        .arg("--json")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", runtime)
        .env("ASSUMED", binary())
        .env("ASSUMED_CONFIG", config)
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())));
    let output = run(&mut command).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(!stdout.contains("user-secret") && !stdout.contains("source-secret"));
    Report {
        code: output.status.code(),
        findings: report["findings"].as_array().cloned().unwrap_or_default(),
        stdout,
    }
}

async fn doctor(
    daemon: &Daemon,
    home: &std::path::Path,
    extra: &[(&str, String)],
    args: &[&str],
) -> Report {
    doctor_in(
        r#"exec "$ASSUMED" "$@""#,
        home,
        &daemon.config_path,
        &daemon.dir.path().join("xdg-run"),
        extra,
        args,
    )
    .await
}

async fn start() -> (StsProxy, Daemon) {
    let proxy = StsProxy::start().await;
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), ROLES).server("default_role = \"dev\""))
            .await;
    (proxy, daemon)
}

#[tokio::test]
async fn a_shell_set_up_by_env_passes_every_check_with_one_sts_call() {
    let (proxy, daemon) = start().await;
    let home = users_home();
    let report = doctor_in(
        r#"eval "$("$ASSUMED" env dev)" && exec "$ASSUMED" "$@""#,
        home.path(),
        &daemon.config_path,
        &daemon.dir.path().join("xdg-run"),
        &[],
        &["dev"],
    )
    .await;
    assert_eq!(report.code, Some(0), "{}", report.stdout);
    for finding in &report.findings {
        // The user's own plaintext keys are worth a warning (keys_move.rs).
        if finding["check"] != "keys" {
            assert_eq!(finding["status"], "ok", "{finding}");
        }
    }
    assert_eq!(report.status("keys"), "warn", "{}", report.stdout);
    let pid = format!("pid {}", daemon.pid());
    assert!(
        report.message("daemon").contains(&pid),
        "{}",
        report.message("daemon")
    );
    assert!(report.message("token").contains("mode 600, no newline"));
    assert!(report.message("role").starts_with("role dev: "));
    assert!(
        report.message("source").contains("works as arn:aws:"),
        "{}",
        report.message("source")
    );
    assert!(report.message("clock").starts_with("within "));
    assert!(
        report
            .message("shell")
            .contains("takes role dev from the daemon")
    );
    let calls = proxy.calls();
    assert_eq!(calls.len(), 1, "one STS call: {calls:?}");
    assert_eq!(calls[0].action, "GetCallerIdentity");
}

#[tokio::test]
async fn default_keys_that_shadow_the_container_variables_are_named_by_file_and_line() {
    let (_proxy, daemon) = start().await;
    let home = users_home();
    // Pointed at the daemon by hand, the way every guide says, with the
    // user's own keys still in ~/.aws/credentials.
    let pointed = [
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            daemon.url("/role/dev"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            daemon.token_path.display().to_string(),
        ),
    ];
    let report = doctor(&daemon, home.path(), &pointed, &[]).await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    assert_eq!(report.status("shell"), "fail");
    let file_line = format!("{}:2", home.path().join(".aws/credentials").display());
    assert!(
        report.message("shell").contains(&file_line),
        "{}",
        report.message("shell")
    );
    assert!(report.message("shell").contains("not as role dev"));
    let next = report.get("shell")["next"].as_str().unwrap_or_default();
    assert!(next.contains(r#"eval "$(assumed env dev)""#), "{next}");
    assert!(next.contains("remove line 2 of"), "{next}");

    // AWS_PROFILE naming a profile with a credential_process: that line.
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-west-2\n\n[profile work]\ncredential_process = /bin/keys\n",
    )
    .expect("write");
    let mut with_profile = pointed.to_vec();
    with_profile.push(("AWS_PROFILE", "work".into()));
    let report = doctor(&daemon, home.path(), &with_profile, &[]).await;
    assert_eq!(report.status("shell"), "fail");
    let file_line = format!(
        "credential_process at {}:5",
        home.path().join(".aws/config").display()
    );
    assert!(
        report.message("shell").contains(&file_line),
        "{}",
        report.message("shell")
    );
    assert!(report.message("shell").contains("chosen by AWS_PROFILE"));
}

#[tokio::test]
async fn a_daemon_that_is_down_fails_with_what_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"127.0.0.1:{}\"]\ntoken_file = \"{}\"\n\n{ROLES}",
            free_port(),
            dir.path().join("run/token").display()
        ),
    )
    .expect("write");
    let home = users_home();
    let report = doctor_in(
        r#"exec "$ASSUMED" "$@""#,
        home.path(),
        &config,
        &dir.path().join("xdg-run"),
        &[],
        &[],
    )
    .await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    assert_eq!(report.status("config"), "ok");
    assert_eq!(report.status("daemon"), "fail");
    assert!(
        report
            .message("daemon")
            .contains("no daemon answers at 127.0.0.1:")
    );
    assert!(
        report.get("daemon")["next"]
            .as_str()
            .unwrap_or_default()
            .contains("assumed serve")
    );
    assert_eq!(report.status("token"), "fail");
}

#[tokio::test]
async fn a_token_file_with_a_newline_or_open_to_others_fails() {
    let (_proxy, daemon) = start().await;
    let home = users_home();
    let token = daemon.token();
    std::fs::write(&daemon.token_path, format!("{token}\n")).expect("write");
    let report = doctor(&daemon, home.path(), &[], &[]).await;
    assert_eq!(report.code, Some(1));
    assert_eq!(report.status("token"), "fail");
    assert!(
        report.message("token").contains("ends in a newline"),
        "{}",
        report.message("token")
    );

    std::fs::write(&daemon.token_path, &token).expect("write");
    std::fs::set_permissions(&daemon.token_path, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let report = doctor(&daemon, home.path(), &[], &[]).await;
    assert_eq!(report.status("token"), "fail");
    assert!(
        report.message("token").contains("mode 644"),
        "{}",
        report.message("token")
    );
    let next = report.get("token")["next"].as_str().unwrap_or_default();
    assert_eq!(next, format!("chmod 600 {}", daemon.token_path.display()));

    std::fs::set_permissions(&daemon.token_path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let report = doctor(&daemon, home.path(), &[], &[]).await;
    assert_eq!(report.status("token"), "ok");
    assert_eq!(report.status("daemon"), "ok");
}

#[tokio::test]
async fn an_invalid_config_is_reported_with_file_line_and_column() {
    let (_proxy, daemon) = start().await;
    let home = users_home();
    std::fs::write(&daemon.config_path, "[server]\nlisten = 5\n").expect("write");
    let report = doctor(&daemon, home.path(), &[], &[]).await;
    assert_eq!(report.code, Some(1));
    assert_eq!(report.status("config"), "fail");
    let at = format!("{}:2:", daemon.config_path.display());
    assert!(
        report.message("config").contains(&at),
        "{}",
        report.message("config")
    );
}

#[tokio::test]
async fn failing_source_credentials_fail_the_source_check() {
    let (proxy, daemon) = start().await;
    let home = users_home();
    proxy.set_fault(Some(Fault::AccessDenied));
    let report = doctor(&daemon, home.path(), &[], &["dev"]).await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    assert_eq!(report.status("source"), "fail");
    assert!(
        report.message("source").contains("does not work")
            && report.message("source").contains("AccessDenied"),
        "{}",
        report.message("source")
    );
    assert!(
        report
            .message("source")
            .contains("the daemon's environment")
    );
    assert_eq!(proxy.count("GetCallerIdentity"), 1);
}
