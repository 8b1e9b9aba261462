//! MFA without a person at the keyboard: `mfa_process` run by the daemon,
//! one MFA session per device, sessions that survive a restart, and the
//! desktop notification when a person must act.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::daemon::SOURCE_KEY_ID;
use crate::harness::{Daemon, Options, StsProxy, run, run_ok};

const DEVICE: &str = "arn:aws:iam::111111111111:mfa/alice";

/// An executable shell script at `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn role(name: &str, serial: &str, process: Option<&str>) -> String {
    let process = process
        .map(|p| format!("mfa_process = '{p}'\n"))
        .unwrap_or_default();
    format!(
        "[roles.{name}]\nrole_arn = \"arn:aws:iam::111111111111:role/{name}\"\nmfa_serial = \"{serial}\"\n{process}\n"
    )
}

#[tokio::test]
async fn mfa_process_gives_the_code_once_for_every_role_on_the_device() {
    let proxy = StsProxy::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let runs = dir.path().join("runs");
    let process = script(
        dir.path(),
        "code",
        &format!(
            "echo run >> {}\necho 'touch your key' >&2\necho 246810",
            runs.display()
        ),
    );
    let process = process.display().to_string();
    let roles = role("dev", DEVICE, Some(&process)) + &role("ops", DEVICE, Some(&process));
    let daemon = Daemon::start(&proxy.url(), &roles).await;

    let (dev, ops) = tokio::join!(daemon.get("/role/dev"), daemon.get("/role/ops"));
    assert_eq!(dev.status, 200, "{}\n{}", dev.body, daemon.log());
    assert_eq!(ops.status, 200, "{}", ops.body);
    assert_eq!(
        lines(&runs).len(),
        1,
        "one run for the device, not one per role"
    );
    let calls = proxy.calls();
    let sessions: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "GetSessionToken")
        .collect();
    assert_eq!(sessions.len(), 1, "{calls:?}");
    assert_eq!(sessions[0].params["SerialNumber"], DEVICE);
    assert_eq!(sessions[0].params["TokenCode"], "246810");
    let assumes: Vec<_> = calls.iter().filter(|c| c.action == "AssumeRole").collect();
    assert_eq!(assumes.len(), 2);
    for assume in assumes {
        assert_ne!(
            assume.access_key_id.as_deref(),
            Some(SOURCE_KEY_ID),
            "signed by the MFA session"
        );
    }
    let log = daemon.log();
    assert!(log.contains("mfa_process stderr: touch your key"), "{log}");
    assert!(!log.contains("246810"), "the code never reaches the log");
    // No `assumed mfa` was needed: the role is simply warm.
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["roles"][0]["state"], "warm");
}

#[tokio::test]
async fn a_failing_garbled_or_hung_mfa_process_is_a_503_that_says_why() {
    let proxy = StsProxy::start().await;
    let roles = role(
        "fails",
        "arn:aws:iam::111111111111:mfa/fails",
        Some("echo locked >&2; exit 2"),
    ) + &role(
        "garbled",
        "arn:aws:iam::111111111111:mfa/garbled",
        Some("echo not-a-code"),
    ) + &role(
        "hangs",
        "arn:aws:iam::111111111111:mfa/hangs",
        Some("sleep 30"),
    );
    let options = Options::new(&proxy.url(), &roles).source("mfa_process_timeout = \"1s\"");
    let daemon = Daemon::start_with(options).await;
    for (name, reason) in [
        ("fails", "exited with exit status: 2"),
        ("garbled", "printed no six-digit code"),
        ("hangs", "did not print a code within 1s"),
    ] {
        let started = Instant::now();
        let answer = daemon.get(&format!("/role/{name}")).await;
        assert_eq!(answer.status, 503, "{name}: {}", answer.body);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
        let message = answer.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(reason), "{name}: {message}");
        assert!(
            message.contains(&format!("run: assumed mfa {name} <code>")),
            "{message}"
        );
        assert_eq!(answer.json()["code"], "MfaProcessFailed");
    }
    assert!(daemon.log().contains("mfa_process stderr: locked"));
    assert!(proxy.calls().is_empty(), "no code, no STS call");
    // Nothing is wedged: a code by hand serves the role at once.
    run_ok(daemon.cli().args(["mfa", "hangs", "135790"])).await;
    assert_eq!(daemon.get("/role/hangs").await.status, 200);
}

const MFA_ROLE: &str = r#"
[roles.secure]
role_arn = "arn:aws:iam::111111111111:role/secure"
mfa_serial = "arn:aws:iam::111111111111:mfa/alice"
"#;

/// A daemon that was given a code, then stopped with SIGTERM: its runtime
/// directory (which holds the kept MFA session) and the key the session signs with.
async fn daemon_with_a_session_then_stopped(proxy: &StsProxy) -> (Daemon, String) {
    let mut first = Daemon::start(&proxy.url(), MFA_ROLE).await;
    run_ok(first.cli().args(["mfa", "secure", "123456"])).await;
    let signer = proxy
        .first("AssumeRole")
        .and_then(|c| c.access_key_id)
        .expect("AssumeRole signed");
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit().await, Some(0));
    (first, signer)
}

fn session_file(daemon: &Daemon) -> PathBuf {
    daemon.dir.path().join("xdg-run/assumed/mfa-sessions.json")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_mfa_session_survives_a_restart_and_can_be_forgotten() {
    let proxy = StsProxy::start().await;
    let (first, signer) = daemon_with_a_session_then_stopped(&proxy).await;
    let file = session_file(&first);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("dir")), 0o700);
    assert!(
        !std::fs::read_to_string(&file)
            .expect("file")
            .contains("source-secret"),
        "the file holds the session, not the source keys"
    );

    let runtime_dir = first.dir.path().join("xdg-run");
    let options = Options::new(&proxy.url(), MFA_ROLE)
        .env("XDG_RUNTIME_DIR", &runtime_dir.display().to_string());
    let second = Daemon::start_with(options).await;
    let answer = second.get("/role/secure").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, second.log());
    assert_eq!(
        proxy.count("GetSessionToken"),
        1,
        "no new code, no new session"
    );
    let assumes: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.action == "AssumeRole")
        .collect();
    assert_eq!(assumes.len(), 2);
    assert_eq!(assumes[1].access_key_id.as_deref(), Some(signer.as_str()));
    assert!(second.log().contains("MFA sessions restored"));

    let forget = run_ok(second.cli().args(["mfa", "--forget"])).await;
    assert!(
        String::from_utf8_lossy(&forget.stdout).contains("1 MFA session(s) forgotten"),
        "{}",
        String::from_utf8_lossy(&forget.stdout)
    );
    assert!(!file.exists(), "forgotten on disk too");
}

#[tokio::test]
async fn a_session_file_others_can_read_is_refused_with_a_warning() {
    let proxy = StsProxy::start().await;
    let (first, _) = daemon_with_a_session_then_stopped(&proxy).await;
    let file = session_file(&first);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let runtime_dir = first.dir.path().join("xdg-run");
    let options = Options::new(&proxy.url(), MFA_ROLE)
        .env("XDG_RUNTIME_DIR", &runtime_dir.display().to_string());
    let second = Daemon::start_with(options).await;
    let answer = second.get("/role/secure").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body.contains("run: assumed mfa secure <code>"));
    let log = second.log();
    assert!(
        log.contains("not using the kept MFA sessions") && log.contains("mode 644"),
        "{log}"
    );
    assert!(log.contains("WARN"), "{log}");
    assert_eq!(proxy.count("GetSessionToken"), 1);
}

#[tokio::test]
async fn a_person_is_notified_once_per_role_naming_the_command() {
    let proxy = StsProxy::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let notifications = dir.path().join("notifications");
    script(
        &bin,
        "notify-send",
        &format!("printf '%s\\n' \"$*\" >> {}", notifications.display()),
    );
    let runs = dir.path().join("runs");
    let failing = script(
        dir.path(),
        "locked",
        &format!("echo run >> {}\nexit 1", runs.display()),
    );
    let roles = role("secure", DEVICE, None)
        + &role(
            "yubi",
            "arn:aws:iam::111111111111:mfa/yubi",
            Some(&failing.display().to_string()),
        )
        + &role("last", "arn:aws:iam::111111111111:mfa/last", None);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let options = Options::new(&proxy.url(), &roles)
        .server("notify = true")
        .env("PATH", &path);
    let daemon = Daemon::start_with(options).await;

    // Requests keep failing until the daemon has tried yubi twice (the
    // hold after a needs-a-person failure is short): each try could notify.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&runs).len() < 2 {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        assert_eq!(daemon.get("/role/secure").await.status, 503);
        assert_eq!(daemon.get("/role/yubi").await.status, 503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(daemon.get("/role/secure").await.status, 503);
    // Once this is answered, yubi's last run has ended and was decided on.
    assert_eq!(daemon.get("/role/yubi").await.status, 503);
    // notify-send runs on a thread of its own. A first notification for a
    // role asked only now comes after any of the others the daemon sent.
    assert_eq!(daemon.get("/role/last").await.status, 503);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines(&notifications)
        .iter()
        .any(|l| l.contains("role last"))
    {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen: Vec<_> = lines(&notifications)
        .into_iter()
        .filter(|l| !l.contains("role last"))
        .collect();
    assert_eq!(seen.len(), 2, "one per role, not one per request: {seen:?}");
    let secure: Vec<_> = seen.iter().filter(|l| l.contains("role secure")).collect();
    assert_eq!(secure.len(), 1, "{seen:?}");
    assert!(secure[0].starts_with("--app-name assumed --"), "{seen:?}");
    assert!(
        secure[0].contains("run: assumed mfa secure <code>"),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("role yubi") && l.contains("mfa_process exited")),
        "{seen:?}"
    );
}
