//! How CLI commands find the running daemon: the address file it writes
//! beside its token in the runtime dir, read without the config (so a broken
//! config hides neither the daemon nor its own answer), passed over when its
//! daemon is gone, and second to a config the user names for another daemon.

use std::path::PathBuf;

use tokio::process::Command;

use crate::harness::daemon::{base_env, binary};
use crate::harness::{Daemon, StsProxy, free_port, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

const OPS: &str = r#"
[roles.ops]
role_arn = "arn:aws:iam::222222222222:role/ops"
"#;

/// A config with a syntax error on line 2 (a table header never closed).
const BROKEN: &str = "[server]\n[roles\n";

fn address_file(daemon: &Daemon) -> PathBuf {
    daemon.dir.path().join("xdg-run/assumed/daemon.json")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The CLI in the daemon's environment, with no `--config`: it can only
/// find the daemon through the runtime dir (the daemon's config is not at
/// the default path).
fn cli_without_config(daemon: &Daemon) -> Command {
    let mut command = Command::new(binary());
    command.env_clear().envs(base_env(daemon.dir.path()));
    command
}

/// The roles `assumed status --json` lists.
async fn roles_in_status(command: &mut Command) -> Vec<String> {
    let output = run(command.args(["status", "--json"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    status["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|role| role["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn reload_with_a_broken_config_gets_the_daemons_refusal_and_the_old_roles_keep_serving() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    std::fs::write(&daemon.config_path, BROKEN).expect("break the config");

    let refused = run(daemon.cli().arg("reload")).await;
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    // The daemon's InvalidConfig answer, not the CLI's own reading of the file.
    assert!(stderr.contains("previous one keeps serving"), "{stderr}");
    let at = format!("{}:2:", daemon.config_path.display());
    let column = stderr
        .split(&at)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|column| column.parse::<u32>().ok());
    assert!(column.is_some(), "file:line:column in {stderr}");

    assert_eq!(daemon.get("/role/dev").await.status, 200, "old roles serve");
    let credentials = run(daemon.cli().args(["credential-process", "dev"])).await;
    assert!(
        credentials.status.success(),
        "{}",
        text(&credentials.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&credentials.stdout).expect("JSON");
    assert_eq!(answer["Version"], 1);
}

#[tokio::test]
async fn doctor_with_a_broken_config_still_finds_the_running_daemon() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    std::fs::write(&daemon.config_path, BROKEN).expect("break the config");

    let output = run(daemon.cli().args(["doctor", "--json"])).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&output.stderr)));
    let finding = |check: &str| {
        report["findings"]
            .as_array()
            .and_then(|all| all.iter().find(|f| f["check"] == check).cloned())
            .unwrap_or_else(|| panic!("no {check} finding in {report}"))
    };
    assert_eq!(finding("config")["status"], "fail", "{report}");
    let found = finding("daemon");
    assert_eq!(found["status"], "ok", "{report}");
    let message = found["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("answering at 127.0.0.1:{}", daemon.port)),
        "{message}"
    );
    assert_eq!(finding("token")["status"], "ok", "{report}");
    assert!(
        report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["check"] == "role" && f["message"].as_str().unwrap_or("").contains("dev")),
        "the daemon's roles are checked: {report}"
    );
}

#[tokio::test]
async fn each_cli_finds_the_daemon_of_its_own_runtime_dir_without_a_config() {
    let proxy = StsProxy::start().await;
    let sts = proxy.url();
    let (dev, ops) = tokio::join!(Daemon::start(&sts, DEV), Daemon::start(&sts, OPS));
    assert_eq!(
        roles_in_status(&mut cli_without_config(&dev)).await,
        ["dev"]
    );
    assert_eq!(
        roles_in_status(&mut cli_without_config(&ops)).await,
        ["ops"]
    );

    // A config named on the command line is the user's choice of daemon:
    // dev's runtime dir, ops's config.
    let mut named = cli_without_config(&dev);
    named.arg("--config").arg(&ops.config_path);
    assert_eq!(roles_in_status(&mut named).await, ["ops"]);
}

#[tokio::test]
async fn a_stale_address_file_is_passed_over_and_a_clean_stop_removes_the_file() {
    let proxy = StsProxy::start().await;
    let mut daemon = Daemon::start(&proxy.url(), DEV).await;
    let path = address_file(&daemon);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("the daemon wrote its address"))
            .expect("JSON");
    assert_eq!(
        written["listen"],
        serde_json::json!([format!("127.0.0.1:{}", daemon.port)])
    );
    assert_eq!(written["pid"], daemon.pid());

    // What a killed daemon leaves: an address nobody answers on, for the
    // same config, and a token file that is gone.
    let stale = serde_json::json!({
        "pid": 1,
        "listen": [format!("127.0.0.1:{}", free_port())],
        "token_file": daemon.dir.path().join("gone/token"),
        "config": std::fs::canonicalize(&daemon.config_path).expect("config path"),
    });
    std::fs::write(&path, stale.to_string()).expect("stale file");
    assert_eq!(roles_in_status(&mut daemon.cli()).await, ["dev"]);
    let reload = run(daemon.cli().arg("reload")).await;
    assert!(reload.status.success(), "{}", text(&reload.stderr));

    // The daemon removes only its own file when it stops.
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit().await, Some(0));
    assert!(path.exists(), "not its file any more: left alone");

    let mut again = Daemon::start(&proxy.url(), DEV).await;
    let path = address_file(&again);
    assert!(path.exists());
    again.signal(libc::SIGTERM);
    assert_eq!(again.wait_exit().await, Some(0));
    assert!(!path.exists(), "its own file is removed at a clean stop");
}

#[tokio::test]
async fn a_killed_daemons_file_does_not_break_the_cli() {
    let proxy = StsProxy::start().await;
    let mut daemon = Daemon::start(&proxy.url(), DEV).await;
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit().await;
    assert!(address_file(&daemon).exists(), "a killed daemon leaves it");

    // Passed over for the defaults, which name the runtime dir's token:
    // not the dead daemon's token file or address.
    let status = run(cli_without_config(&daemon).arg("status")).await;
    assert!(!status.status.success());
    let stderr = text(&status.stderr);
    let default_token = daemon.dir.path().join("xdg-run/assumed/token");
    assert!(
        stderr.contains(&format!(
            "cannot read the token at {}",
            default_token.display()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("127.0.0.1:{}", daemon.port)),
        "{stderr}"
    );
}
