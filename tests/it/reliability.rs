//! Never wedged, never wasteful: an STS that hangs or cuts connections, a
//! credential_process that hangs, fails or is shared by many roles, and many
//! reloads; each ends with the daemon serving again by itself and holding
//! nothing it no longer needs.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, Options, Stall, StsProxy, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

/// Short deadlines, so a hang turns into an error within seconds.
const QUICK: &str = "connect_timeout = \"1s\"\nread_timeout = \"1s\"\nsts_timeout = \"2s\"\n";

/// Polls `path` until it answers 200, for at most `limit`.
async fn served_within(daemon: &Daemon, path: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if daemon.get(path).await.status == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn role_status(daemon: &Daemon, role: &str) -> serde_json::Value {
    let output = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("status JSON");
    status["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["name"] == role).cloned())
        .unwrap_or_else(|| panic!("role {role} in {status}"))
}

#[tokio::test]
async fn a_hung_sts_ends_in_a_transient_failure_and_the_role_recovers() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), DEV).source(QUICK)).await;
    // Accepts the connection and never answers: a dead network.
    proxy.set_stall(Some(Stall::Hang));
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer.json()["code"],
        "StsUnavailable",
        "STS's deadline ended the call, not the request's: {}",
        answer.body
    );
    let status = role_status(&daemon, "dev").await;
    assert_eq!(status["state"], "failing", "{status}");
    assert!(status["last_error"].is_string(), "{status}");

    // Cut connections mid-answer: also a transient failure, never a 200.
    proxy.set_stall(Some(Stall::Drop));
    let before = proxy.count("AssumeRole");
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.count("AssumeRole") == before && Instant::now() < deadline {
        let answer = daemon.get("/role/dev").await;
        assert_eq!(answer.status, 503, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        proxy.count("AssumeRole") > before,
        "retried after the backoff"
    );

    // STS answers again: the role comes back by itself.
    proxy.set_stall(None);
    assert!(
        served_within(&daemon, "/role/dev", Duration::from_secs(60)).await,
        "the role recovered once STS answered\n{}",
        daemon.log()
    );
    assert_eq!(role_status(&daemon, "dev").await["state"], "warm");
}

/// A credential_process that counts its runs in `runs` (one line each).
fn counting_process(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("process.sh");
    let runs = dir.join("runs");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho run >> {}\n{body}\n", runs.display()),
    )
    .expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

fn runs(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn roles_on(source: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[roles.r{i}]\nrole_arn = \"arn:aws:iam::111111111111:role/r{i}\"\nsource_profile = \"{source}\"\n"
            )
        })
        .collect()
}

#[tokio::test]
async fn roles_on_one_credential_process_source_run_it_once() {
    let proxy = StsProxy::start().await;
    let scripts = tempfile::tempdir().expect("dir");
    let process = counting_process(
        scripts.path(),
        r#"expires=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
echo "{\"Version\":1,\"AccessKeyId\":\"AKIACOUNTED\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"t\",\"Expiration\":\"$expires\"}""#,
    );
    let aws_config = format!("[profile counted]\ncredential_process = {process}\n");
    let options = Options::new(&proxy.url(), &roles_on("counted", 3))
        .aws_files(&aws_config, "")
        .server("import_profiles = false");
    let daemon = Daemon::start_with(options).await;
    let requests = (0..3).map(|i| {
        let url = daemon.url(&format!("/role/r{i}"));
        let token = daemon.token();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            client
                .get(url)
                .header("authorization", token)
                .send()
                .await
                .map(|answer| answer.status().as_u16())
        })
    });
    for request in requests.collect::<Vec<_>>() {
        assert_eq!(request.await.expect("task").expect("answer"), 200);
    }
    // Each role's refresh later signs with the same cached source credentials.
    for i in 0..3 {
        assert_eq!(daemon.get(&format!("/role/r{i}")).await.status, 200);
    }
    assert_eq!(proxy.count("AssumeRole"), 3);
    assert!(
        proxy
            .calls()
            .iter()
            .all(|call| call.access_key_id.as_deref() == Some("AKIACOUNTED"))
    );
    assert_eq!(runs(scripts.path()), 1, "one run for three roles");
}

#[tokio::test]
async fn a_failing_credential_process_backs_off_instead_of_running_every_few_seconds() {
    let proxy = StsProxy::start().await;
    let scripts = tempfile::tempdir().expect("dir");
    let process = counting_process(scripts.path(), "echo 'touch your key' >&2\nexit 1");
    let aws_config = format!("[profile locked]\ncredential_process = {process}\n");
    let options = Options::new(&proxy.url(), &roles_on("locked", 2))
        .aws_files(&aws_config, "")
        .server("import_profiles = false");
    let daemon = Daemon::start_with(options).await;
    // Two roles polled every 200 ms for 13 s: holds of 5 s then 10 s allow
    // two runs; the old fixed 5 s hold per role allowed six.
    let deadline = Instant::now() + Duration::from_secs(13);
    while Instant::now() < deadline {
        for role in ["/role/r0", "/role/r1"] {
            assert_eq!(daemon.get(role).await.status, 503);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = runs(scripts.path());
    assert!((1..=2).contains(&runs), "ran {runs} times");
    assert!(daemon.log().contains("touch your key"), "stderr is logged");
}

#[tokio::test]
async fn a_hung_credential_process_is_killed_and_the_role_recovers() {
    let proxy = StsProxy::start().await;
    let scripts = tempfile::tempdir().expect("dir");
    let unlocked = scripts.path().join("unlocked");
    let process = counting_process(
        scripts.path(),
        &format!(
            "if [ ! -e {unlocked} ]; then echo 'waiting for a touch' >&2; exec sleep 300; fi\n\
             echo '{{\"Version\":1,\"AccessKeyId\":\"AKIAUNLOCKED\",\"SecretAccessKey\":\"s\"}}'",
            unlocked = unlocked.display()
        ),
    );
    let aws_config = format!("[profile touch]\ncredential_process = {process}\n");
    let options = Options::new(&proxy.url(), &roles_on("touch", 1))
        .aws_files(&aws_config, "")
        .server("import_profiles = false")
        .source("process_timeout = \"1s\"\n");
    let daemon = Daemon::start_with(options).await;
    let answer = daemon.get("/role/r0").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["code"], "SourceTimeout", "{}", answer.body);
    assert!(
        daemon.log().contains("waiting for a touch"),
        "{}",
        daemon.log()
    );
    std::fs::write(&unlocked, "").expect("unlock");
    assert!(
        served_within(&daemon, "/role/r0", Duration::from_secs(30)).await,
        "the role recovered once the process answered\n{}",
        daemon.log()
    );
}

/// The daemon's config with `roles` instead of the ones it started with.
fn rewrite_roles(daemon: &Daemon, proxy: &StsProxy, roles: &str) {
    let text = Options::new(&proxy.url(), roles).config_text(daemon.port, &daemon.token_path);
    std::fs::write(&daemon.config_path, text).expect("config");
}

#[tokio::test]
async fn a_hundred_reloads_leave_no_slot_or_driver_behind() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    let many: String = (0..100)
        .map(|i| format!("[roles.r{i}]\nrole_arn = \"arn:aws:iam::111111111111:role/r{i}\"\n"))
        .collect();
    for round in 0..100 {
        let roles = if round % 2 == 0 {
            format!("{DEV}{many}")
        } else {
            DEV.to_owned()
        };
        rewrite_roles(&daemon, &proxy, &roles);
        daemon.reload().await;
    }
    // Drivers end when they next run; the gauges settle within moments.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut slots, mut drivers) = (f64::NAN, f64::NAN);
    while Instant::now() < deadline {
        slots = daemon.metric("assumed_cache_slots", &[]).await;
        drivers = daemon.metric("assumed_cache_drivers", &[]).await;
        if slots == 1.0 && drivers == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (slots, drivers),
        (1.0, 1.0),
        "one role left: one slot, one driver"
    );
    let metrics = daemon.get("/metrics").await.body;
    assert!(
        !metrics.contains("role=\"r7\""),
        "removed roles' series are gone"
    );
    assert_eq!(daemon.get("/role/dev").await.status, 200, "dev stayed warm");
    assert_eq!(proxy.count("AssumeRole"), 1);
}
