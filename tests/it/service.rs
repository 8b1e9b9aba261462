//! Running as a service: unit files, socket activation, readiness, reload,
//! drain, status and MFA.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::harness::{Daemon, Options, StsProxy, daemon::binary, free_port, python, run, run_ok};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

/// A NOTIFY_SOCKET of our own, to see what the daemon tells systemd.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Reads messages until one has the line `wanted`; returns all lines seen.
    fn wait_for(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = self
                .socket
                .recv(&mut buffer)
                .unwrap_or_else(|e| panic!("no {wanted} (saw {seen:?}): {e}"));
            let message = String::from_utf8_lossy(&buffer[..n]).to_string();
            let found = message.lines().any(|line| line == wanted);
            seen.extend(message.lines().map(str::to_owned));
            if found {
                return seen;
            }
        }
    }
}

fn user_dirs(home: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".into(), home.display().to_string()),
        (
            "XDG_CONFIG_HOME".into(),
            home.join(".config").display().to_string(),
        ),
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
    ]
}

#[tokio::test]
async fn installed_systemd_units_verify_and_reinstall_is_careful() {
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("assumed.toml");
    std::fs::write(&config, DEV).expect("config");
    let install = |extra: &[&str]| {
        let mut command = Command::new(binary());
        command
            .args(["install", "--systemd", "--config"])
            .arg(&config)
            .args(extra)
            .env_clear()
            .envs(user_dirs(home.path()));
        command
    };
    let units = home.path().join(".config/systemd/user");

    let dry = run(&mut install(&["--dry-run"])).await;
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("Type=notify"));
    assert!(!units.exists(), "--dry-run writes nothing");

    let first = run_ok(&mut install(&[])).await;
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("systemctl --user enable --now assumed.socket"),
        "{stdout}"
    );
    let service = std::fs::read_to_string(units.join("assumed.service")).expect("service");
    assert!(service.contains(&format!(
        "ExecStart={} serve --config {}",
        binary(),
        config.display()
    )));
    for directive in [
        "Type=notify",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RuntimeDirectory=assumed",
    ] {
        assert!(service.contains(directive), "{directive}");
    }

    crate::harness::assert_units_verify(&units).await;

    let again = run(&mut install(&[])).await;
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"));
    std::fs::write(
        units.join("assumed.service"),
        service.replace("RestartSec=2", "RestartSec=9"),
    )
    .expect("edit");
    let refused = run(&mut install(&[])).await;
    assert!(
        !refused.status.success(),
        "a changed unit is not overwritten"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let forced = run(&mut install(&["--force"])).await;
    assert!(forced.status.success());
    assert_eq!(
        std::fs::read_to_string(units.join("assumed.service")).expect("service"),
        service
    );
}

#[tokio::test]
async fn the_launchd_plist_parses_and_names_binary_and_config() {
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("assumed.toml");
    std::fs::write(&config, DEV).expect("config");
    let output = run(Command::new(binary())
        .args(["install", "--launchd", "--config"])
        .arg(&config)
        .env_clear()
        .envs(user_dirs(home.path())))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("launchctl bootstrap gui/"));
    let plist = home.path().join("Library/LaunchAgents/dev.assumed.plist");
    let repo_plist = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/assumed.plist");
    let script = "import json, plistlib, sys\nprint(json.dumps([plistlib.load(open(p, 'rb')) for p in sys.argv[1:]]))";
    let parsed = run(Command::new(python())
        .args(["-c", script])
        .arg(&plist)
        .arg(repo_plist))
    .await;
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&parsed.stdout).expect("json");
    let installed = &parsed[0];
    assert_eq!(installed["Label"], "dev.assumed");
    assert_eq!(
        installed["ProgramArguments"],
        serde_json::json!([binary(), "serve", "--config", config.display().to_string()])
    );
    assert_eq!(installed["KeepAlive"], true);
    assert!(
        installed["StandardErrorPath"]
            .as_str()
            .is_some_and(|p| p.ends_with("Library/Logs/assumed.log"))
    );
    assert_eq!(
        parsed[1]["Label"], "dev.assumed",
        "the repo's plist parses too"
    );
}

#[tokio::test]
async fn socket_activation_serves_on_the_passed_socket() {
    let proxy = StsProxy::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (passed_port, config_port) = (free_port(), free_port());
    let token = dir.path().join("run/token");
    let options = Options::new(&proxy.url(), DEV);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, options.config_text(config_port, &token)).expect("config");
    let mut activator = Command::new("systemd-socket-activate");
    activator
        .arg(format!("--listen=127.0.0.1:{passed_port}"))
        .args([
            "-E",
            "AWS_ACCESS_KEY_ID=AKIASOURCEEXAMPLE",
            "-E",
            "AWS_SECRET_ACCESS_KEY=source-secret",
        ])
        .arg(format!("--setenv=HOME={}", dir.path().display()))
        .arg(format!(
            "--setenv=AWS_CONFIG_FILE={}",
            dir.path().join("none").display()
        ))
        .arg(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
        .kill_on_drop(true);
    let _activator = activator.spawn().expect("systemd-socket-activate");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{passed_port}");
    // The activator listens at once; the first connection starts the daemon,
    // which answers it once it has taken over the socket.
    let mut health = None;
    for _ in 0..100 {
        match client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
        {
            Ok(response) => {
                health = Some(response.status().as_u16());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        health,
        Some(200),
        "{}",
        std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
    let secret = std::fs::read_to_string(&token).expect("token written");
    let creds = client
        .get(format!("{base}/role/dev"))
        .header("authorization", secret)
        .send()
        .await
        .expect("credentials");
    assert_eq!(creds.status(), 200);
    let unused = std::net::TcpStream::connect(("127.0.0.1", config_port));
    assert!(
        unused.is_err(),
        "listen is not bound when sockets are passed"
    );
}

#[tokio::test]
async fn readiness_and_stopping_are_reported_and_sigterm_exits_0() {
    let notify = NotifySocket::new();
    let proxy = StsProxy::start().await;
    let options =
        Options::new(&proxy.url(), DEV).env("NOTIFY_SOCKET", &notify.path.display().to_string());
    let mut daemon = Daemon::start_with(options).await;
    let ready = notify.wait_for("READY=1");
    assert!(
        ready.iter().any(|line| line.starts_with("STATUS=1 roles")),
        "{ready:?}"
    );
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    daemon.signal(libc::SIGTERM);
    notify.wait_for("STOPPING=1");
    assert_eq!(daemon.wait_exit().await, Some(0));
}

#[tokio::test]
async fn sighup_reloads_roles_and_a_broken_config_keeps_the_old_one() {
    let notify = NotifySocket::new();
    let proxy = StsProxy::start().await;
    let options =
        Options::new(&proxy.url(), DEV).env("NOTIFY_SOCKET", &notify.path.display().to_string());
    let daemon = Daemon::start_with(options).await;
    notify.wait_for("READY=1");
    let warm = daemon.get("/role/dev").await.json();
    assert_eq!(daemon.get("/role/ops").await.status, 404);

    let mut with_ops = Options::new(
        &proxy.url(),
        &format!("{DEV}\n[roles.ops]\nrole_arn = \"arn:aws:iam::222222222222:role/ops\"\n"),
    );
    with_ops.server = String::new();
    std::fs::write(
        &daemon.config_path,
        with_ops.config_text(daemon.port, &daemon.token_path),
    )
    .expect("config");
    daemon.signal(libc::SIGHUP);
    let reload = notify.wait_for("READY=1");
    assert!(
        reload.iter().any(|line| line == "RELOADING=1"),
        "{reload:?}"
    );
    assert_eq!(
        daemon.get("/role/ops").await.status,
        200,
        "a new role is served after SIGHUP"
    );
    let after = daemon.get("/role/dev").await.json();
    assert_eq!(
        after["AccessKeyId"], warm["AccessKeyId"],
        "an unchanged role keeps its warm credentials"
    );

    std::fs::write(&daemon.config_path, "[roles.dev\nrole_arn = 'broken'\n").expect("config");
    daemon.signal(libc::SIGHUP);
    notify.wait_for("READY=1");
    let calls = proxy.count("AssumeRole");
    let dev = daemon.get("/role/dev").await;
    assert_eq!(dev.status, 200, "the old config keeps serving");
    assert_eq!(dev.json()["AccessKeyId"], warm["AccessKeyId"]);
    assert_eq!(daemon.get("/role/ops").await.status, 200);
    assert_eq!(proxy.count("AssumeRole"), calls, "no new STS call");
    assert!(daemon.log().contains("reload refused"), "{}", daemon.log());
    assert!(
        daemon.log().contains("config.toml:1:"),
        "the log names the line"
    );
}

#[tokio::test]
async fn assumed_reload_applies_removals_and_reports_errors() {
    let proxy = StsProxy::start().await;
    let roles = format!("{DEV}\n[roles.ops]\nrole_arn = \"arn:aws:iam::222222222222:role/ops\"\n");
    let daemon = Daemon::start(&proxy.url(), &roles).await;
    assert_eq!(daemon.get("/role/ops").await.status, 200);
    let only_dev = Options::new(&proxy.url(), DEV);
    std::fs::write(
        &daemon.config_path,
        only_dev.config_text(daemon.port, &daemon.token_path),
    )
    .expect("config");
    assert!(daemon.reload().await.contains("ops removed"));
    assert_eq!(daemon.get("/role/ops").await.status, 404);

    std::fs::write(&daemon.config_path, "[server]\nbogus = 1\n").expect("config");
    let refused = run(daemon.cli().arg("reload")).await;
    assert!(!refused.status.success());
    // The daemon's refusal (the CLI finds it without reading the config) names the line.
    assert!(String::from_utf8_lossy(&refused.stderr).contains("config.toml:2:1"));
}

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    let proxy = StsProxy::start().await;
    let mut daemon = Daemon::start(&proxy.url(), DEV).await;
    proxy.hold();
    let url = daemon.url("/role/dev");
    let token = daemon.token();
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("authorization", token)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(
        proxy
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "the request is in flight"
    );
    daemon.signal(libc::SIGTERM);
    // STS answers only once the daemon is draining.
    daemon
        .wait_for_log("shutting down: finishing requests in flight")
        .await;
    assert!(!slow.is_finished(), "the request is still held");
    proxy.release();
    assert_eq!(
        slow.await.expect("task").expect("answered"),
        200,
        "the in-flight request finished"
    );
    assert_eq!(daemon.wait_exit().await, Some(0));
}

#[tokio::test]
async fn status_lists_roles_with_their_state() {
    let proxy = StsProxy::start().await;
    let roles = format!("{DEV}\n[roles.ops]\nrole_arn = \"arn:aws:iam::222222222222:role/ops\"\n");
    let daemon = Daemon::start(&proxy.url(), &roles).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    let table = run_ok(daemon.cli().arg("status")).await;
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ROLE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("dev") && l.contains("warm")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ops") && l.contains("cold")),
        "{table}"
    );
    let json = run(daemon.cli().args(["status", "--json"])).await;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(json["roles"][0]["name"], "dev");
    assert!(
        json["roles"][0]["expires_in_seconds"]
            .as_u64()
            .is_some_and(|s| s > 3000)
    );
    // Without the token the admin endpoints say nothing.
    assert_eq!(daemon.get_with("/admin/status", &[]).await.status, 401);
}

const MFA_ROLE: &str = r#"
[roles.secure]
role_arn = "arn:aws:iam::111111111111:role/secure"
mfa_serial = "arn:aws:iam::111111111111:mfa/alice"
"#;

#[tokio::test]
async fn mfa_with_long_lived_keys_opens_a_session_that_signs_the_role() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), MFA_ROLE).await;
    let waiting = daemon.get("/role/secure").await;
    assert_eq!(waiting.status, 503);
    assert!(
        waiting.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("run: assumed mfa secure <code>")),
        "{}",
        waiting.body
    );
    assert_eq!(proxy.calls().len(), 0, "no STS call without a code");
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["roles"][0]["state"], "needs-mfa");

    let mfa = run_ok(daemon.cli().args(["mfa", "secure", "123456"])).await;
    assert!(String::from_utf8_lossy(&mfa.stdout).contains("MFA session"));
    let calls = proxy.calls();
    assert_eq!(calls[0].action, "GetSessionToken");
    assert_eq!(
        calls[0].params["SerialNumber"],
        "arn:aws:iam::111111111111:mfa/alice"
    );
    assert_eq!(calls[0].params["TokenCode"], "123456");
    assert_eq!(calls[1].action, "AssumeRole");
    assert_ne!(
        calls[1].access_key_id.as_deref(),
        Some(crate::harness::daemon::SOURCE_KEY_ID),
        "the role is assumed with the MFA session, not the bare keys"
    );
    assert_eq!(daemon.get("/role/secure").await.status, 200);
}

#[tokio::test]
async fn mfa_with_temporary_source_credentials_goes_into_assume_role() {
    let proxy = StsProxy::start().await;
    let options = Options::new(&proxy.url(), MFA_ROLE).env("AWS_SESSION_TOKEN", "source-session");
    let daemon = Daemon::start_with(options).await;
    assert_eq!(daemon.get("/role/secure").await.status, 503);
    let bad = run(daemon.cli().args(["mfa", "secure", "12ab"])).await;
    assert!(!bad.status.success(), "not six digits");
    run_ok(daemon.cli().args(["mfa", "secure", "654321"])).await;
    let assume = proxy.first("AssumeRole").expect("AssumeRole");
    assert_eq!(
        assume.params["SerialNumber"],
        "arn:aws:iam::111111111111:mfa/alice"
    );
    assert_eq!(assume.params["TokenCode"], "654321");
    assert_eq!(proxy.count("GetSessionToken"), 0);
    assert_eq!(daemon.get("/role/secure").await.status, 200);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let proxy = StsProxy::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        Options::new(&proxy.url(), DEV).config_text(port, &dir.path().join("run/token")),
    )
    .expect("config");
    let mut child = Command::new(binary())
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&config)
        .env_clear()
        .envs(crate::harness::daemon::base_env(dir.path()))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a log line")
        .expect("read")
        .expect("line");
    let json: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        json["level"].is_string() && json["fields"].is_object(),
        "{json}"
    );
}
