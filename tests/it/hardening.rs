//! The daemon's memory kept from the user's other processes (issue 25,
//! "Memory"; src/keys/hardening.rs): started as an unprivileged user, the
//! daemon cannot be ptrace-attached by a process of that same user, and its
//! /proc files (environ, where the source secret is) belong to root, while
//! an ordinary process of that user next to it can be attached and read.

use std::path::Path;

use crate::harness::daemon::{SOURCE_KEY_ID, base_env, binary};
use crate::harness::{Options, StsProxy, free_port, python, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;
/// `nobody` on Debian.
const NOBODY: u32 = 65534;

fn chown_all(path: &Path) {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read dir") {
            chown_all(&entry.expect("entry").path());
        }
    }
}

/// As nobody: whether it can run `program` (a checkout under /root, as in
/// some CI images, is not reachable by other users).
async fn nobody_can_run(program: &str) -> bool {
    let mut command = tokio::process::Command::new("setpriv");
    command.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]);
    run(command.args(["test", "-x", program]))
        .await
        .status
        .success()
}

#[tokio::test]
async fn the_daemon_cannot_be_traced_or_read_by_its_own_user() {
    if !crate::users::can_switch_users() {
        return;
    }
    let proxy = StsProxy::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("config.toml");
    let options = Options::new(&proxy.url(), DEV);
    std::fs::write(
        &config,
        options.config_text(port, &dir.path().join("run/token")),
    )
    .expect("config");
    std::fs::write(dir.path().join("aws-config"), "").expect("aws config");
    std::fs::write(dir.path().join("aws-credentials"), "").expect("aws credentials");
    let script = dir.path().join("ptrace_daemon.py");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/ptrace_daemon.py"
        ),
        &script,
    )
    .expect("script");
    let assumed = if nobody_can_run(binary()).await {
        binary().to_owned()
    } else {
        let copy = dir.path().join("assumed");
        std::fs::copy(binary(), &copy).expect("copy the binary");
        copy.display().to_string()
    };
    chown_all(dir.path());
    // Debian's python: a pyenv shim under /root is not nobody's to run.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_owned()
    } else {
        python()
    };
    let log = dir.path().join("daemon.log");

    let mut command = tokio::process::Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(python)
        .arg(&script)
        .arg(&assumed)
        .arg(&config)
        .arg(port.to_string())
        .arg(&log)
        .env_clear()
        .envs(base_env(dir.path()))
        .env("AWS_ACCESS_KEY_ID", SOURCE_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "source-secret")
        .env("RUST_LOG", "debug");
    let output = run(&mut command).await;
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        output.status.success(),
        "{}\n--- daemon log ---\n{daemon_log}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let nobody = serde_json::json!(NOBODY);
    assert_eq!(seen["me"], nobody, "{seen}");

    // What the same user may do to an ordinary process of its own…
    let control = &seen["control"];
    assert_eq!(control["uid"], nobody, "{seen}");
    assert_eq!(control["attach"], "ok", "ptrace works here at all: {seen}");
    assert_eq!(control["environ"], "readable", "{seen}");
    assert_eq!(control["status_owner"], nobody, "{seen}");

    // …it may not do to the daemon.
    let daemon = &seen["daemon"];
    assert_eq!(daemon["uid"], nobody, "the daemon runs as nobody: {seen}");
    assert_eq!(daemon["attach"], "EPERM", "{seen}");
    assert_eq!(
        daemon["environ"], "EACCES",
        "the source secret in its environment is out of reach: {seen}"
    );
    assert_eq!(
        daemon["status_owner"], 0,
        "a non-dumpable process's /proc/PID/status (and every file beside it) belongs to root: {seen}"
    );
    assert!(
        daemon_log.contains("not dumpable"),
        "the daemon says so at debug: {daemon_log}"
    );
    assert!(!daemon_log.contains("source-secret"), "{daemon_log}");
}
