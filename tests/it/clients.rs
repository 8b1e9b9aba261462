//! "Who took the credentials": `status` names the processes behind each
//! role's recent requests, the log has one line per (role, process), and the
//! list stays bounded. Clients in other namespaces: compose.rs.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::harness::{Daemon, Options, StsProxy, python, run, run_with_timeout};

const ROLES: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"

[roles.prod]
role_arn = "arn:aws:iam::222222222222:role/prod"
"#;
const NEW_PROCESS: &str = "a new process took credentials";

fn took_role() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/took_role.py").to_owned()
}

/// `role`'s `clients` in `status --json`, from the CLI itself.
async fn clients(daemon: &Daemon, role: &str) -> Vec<serde_json::Value> {
    let output = run(daemon.cli().args(["status", "--json"])).await;
    assert!(
        output.status.success(),
        "status --json: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let roles = status["roles"].as_array().expect("roles");
    let entry = roles
        .iter()
        .find(|entry| entry["name"] == role)
        .unwrap_or_else(|| panic!("no role {role} in {status}"));
    entry["clients"].as_array().expect("clients").clone()
}

/// Waits (bounded) until `pid` is among `role`'s clients, and returns its entry.
async fn named(daemon: &Daemon, role: &str, pid: u32) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(client) = clients(daemon, role)
            .await
            .into_iter()
            .find(|client| client["pid"] == pid)
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never appeared among {role}'s clients:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log lines announcing `pid` as a new client of `role`.
fn announcements(daemon: &Daemon, role: &str, pid: u32) -> usize {
    daemon
        .log()
        .lines()
        .filter(|line| {
            line.contains(NEW_PROCESS)
                && line.contains(&format!("role={role} "))
                && line.contains(&format!("pid={pid} "))
        })
        .count()
}

/// `status` named the client's executable and command line as expected.
fn assert_program(client: &serde_json::Value, exe: &str, cmdline: &str) {
    let has = |field: &str, part: &str| client[field].as_str().is_some_and(|v| v.contains(part));
    assert!(has("exe", exe), "exe should name {exe}: {client}");
    assert!(
        has("cmdline", cmdline),
        "cmdline should name {cmdline}: {client}"
    );
}

#[tokio::test]
async fn status_names_the_python_client_and_the_aws_cli_that_took_roles() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), ROLES)).await;
    let token_file = daemon.token_path.display().to_string();

    // A Python client: three requests for dev, each on its own connection.
    let output = run(Command::new(python()).args([
        &took_role(),
        &daemon.port.to_string(),
        &token_file,
        "dev",
        "3",
    ]))
    .await;
    assert!(
        output.status.success(),
        "python client: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    let python_pid: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the client prints its pid");
    let client = named(&daemon, "dev", python_pid).await;
    assert_program(&client, "python", "took_role.py");
    assert_eq!(client["requests"], 3, "{client}");
    assert_eq!(client["address"], "127.0.0.1");
    // SAFETY: geteuid has no preconditions.
    assert_eq!(client["uid"], unsafe { libc::geteuid() });
    assert_eq!(
        announcements(&daemon, "dev", python_pid),
        1,
        "one line per (role, process), not per request:\n{}",
        daemon.log()
    );

    // The AWS CLI (a Python program: its executable is the interpreter, its
    // command line names aws), for prod. Its STS call is held until the test
    // has found it, so the process is still there to be found.
    assert_eq!(daemon.get("/role/prod").await.status, 200, "prod is warm");
    proxy.hold();
    let mut cli = daemon.cli();
    cli.args(["exec", "prod", "--", "/usr/bin/aws"])
        .args(["sts", "get-caller-identity", "--output", "json"])
        .arg("--endpoint-url")
        .arg(proxy.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cli.spawn().expect("start the AWS CLI");
    let cli_pid = child.id().expect("pid");
    let client = named(&daemon, "prod", cli_pid).await;
    proxy.release();
    let finished = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the AWS CLI finishes")
        .expect("wait");
    assert!(
        finished.status.success(),
        "aws: {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert_program(&client, "python", "/usr/bin/aws sts get-caller-identity");
    assert_eq!(announcements(&daemon, "prod", cli_pid), 1);
    assert_eq!(announcements(&daemon, "dev", cli_pid), 0);
    assert!(
        clients(&daemon, "dev")
            .await
            .iter()
            .all(|client| client["pid"] != cli_pid),
        "the CLI took prod, not dev"
    );

    // The table names both.
    let table = run(daemon.cli().arg("status")).await;
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(&python_pid.to_string()) && text.contains(&cli_pid.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn two_hundred_short_lived_clients_leave_sixteen_entries() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), ROLES)).await;
    let token_file = daemon.token_path.display().to_string();
    // Each child takes dev once and exits once it has been named.
    let output = run_with_timeout(
        Command::new(python()).args([
            &took_role(),
            &daemon.port.to_string(),
            &token_file,
            "dev",
            "1",
            "--fork",
            "200",
        ]),
        Duration::from_secs(180),
    )
    .await;
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    let dev = clients(&daemon, "dev").await;
    assert_eq!(dev.len(), 16, "{dev:#?}");
    assert!(
        dev.iter()
            .all(|client| client["pid"].is_u64() && client["requests"] == 1),
        "{dev:#?}"
    );
    let mut pids: Vec<u64> = dev.iter().filter_map(|c| c["pid"].as_u64()).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 16, "sixteen distinct processes");
    assert_eq!(
        daemon.log().matches(NEW_PROCESS).count(),
        200,
        "one line per new process"
    );
    assert!(clients(&daemon, "prod").await.is_empty());
}

#[tokio::test]
async fn notify_on_use_notifies_once_per_new_process() {
    let proxy = StsProxy::start().await;
    // A stand-in notify-send that records its arguments.
    let bin = tempfile::tempdir().expect("dir");
    let record = bin.path().join("notifications");
    let fake = bin.path().join("notify-send");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s|' \"$@\" >> '{}'\necho >> '{}'\n",
            record.display(),
            record.display()
        ),
    )
    .expect("fake notifier");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let roles = ROLES.replace("role/prod\"\n", "role/prod\"\nnotify_on_use = true\n");
    let daemon = Daemon::start_with(Options::new(&proxy.url(), &roles).env("PATH", &path)).await;
    let token_file = daemon.token_path.display().to_string();
    for role in ["dev", "prod"] {
        let output = run(Command::new(python()).args([
            &took_role(),
            &daemon.port.to_string(),
            &token_file,
            role,
            "2",
        ]))
        .await;
        assert!(output.status.success(), "{}", daemon.log());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        if !text.is_empty() {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no notification:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1, "prod only, once: {lines:?}");
    assert!(lines[0].contains("assumed: prod"), "{lines:?}");
    assert!(lines[0].contains("python"), "{lines:?}");
    // Notifications go with the one announcement per new (role, process).
    assert_eq!(
        daemon.log().matches(NEW_PROCESS).count(),
        2,
        "{}",
        daemon.log()
    );
}

/// A Python one-liner that reads the role once and exits.
const PYTHON_ONE_SHOT: &str = "import sys, urllib.request as u; \
    u.urlopen(u.Request(sys.argv[1], headers={'Authorization': open(sys.argv[2]).read()})).read()";

/// Which one-shot client a run uses.
#[derive(Clone, Copy, Debug)]
enum OneShot {
    /// `curl -H "Authorization: $(cat token)" URL`, exec'd by the shell so
    /// its pid is the one we started (and the token is on its command line).
    Curl,
    /// [`PYTHON_ONE_SHOT`].
    Python,
}

/// Runs one client that makes one request for `dev` and exits as soon as it
/// has the answer; returns its pid.
async fn one_shot(daemon: &Daemon, client: OneShot) -> u32 {
    let url = daemon.url("/role/dev");
    let token_file = daemon.token_path.display().to_string();
    let mut command = match client {
        OneShot::Curl => {
            let mut command = Command::new("sh");
            command.args([
                "-c",
                r#"exec curl -sSf -o /dev/null -H "Authorization: $(cat "$1")" "$2""#,
                "sh",
                &token_file,
                &url,
            ]);
            command
        }
        OneShot::Python => {
            let mut command = Command::new(python());
            command.args(["-c", PYTHON_ONE_SHOT, &url, &token_file]);
            command
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("start the one-shot client");
    let pid = child.id().expect("pid");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the one-shot client finishes")
        .expect("wait");
    assert!(
        output.status.success(),
        "{client:?}: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    pid
}

/// `runs` one-shot clients, curl and Python in turn, each checked in
/// `status --json` once it has exited: every one must be named with its pid,
/// uid, executable and command line. Returns the misses.
async fn one_shots_named(daemon: &Daemon, runs: usize) -> Vec<String> {
    let mut misses = Vec::new();
    for run in 0..runs {
        let client = if run % 2 == 0 {
            OneShot::Curl
        } else {
            OneShot::Python
        };
        let pid = one_shot(daemon, client).await;
        // Named before its answer went out; the short retry is for a loaded
        // machine where the wait ran out and the name came a little later.
        let deadline = Instant::now() + Duration::from_secs(2);
        let entry = loop {
            let listed = clients(daemon, "dev").await;
            if let Some(entry) = listed.iter().find(|entry| entry["pid"] == pid) {
                break Some(entry.clone());
            }
            if Instant::now() > deadline {
                misses.push(format!("{client:?} pid {pid} not named: {listed:#?}"));
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(entry) = entry else {
            continue;
        };
        // SAFETY: geteuid has no preconditions.
        assert_eq!(entry["uid"], unsafe { libc::geteuid() }, "{entry}");
        assert_eq!(entry["requests"], 1, "{entry}");
        match client {
            OneShot::Curl => {
                assert_program(
                    &entry,
                    "curl",
                    "curl -sSf -o /dev/null -H Authorization: <redacted> http://127.0.0.1:",
                );
                assert!(
                    !entry["cmdline"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(&daemon.token()),
                    "{entry}"
                );
            }
            OneShot::Python => assert_program(&entry, "python", "urllib.request"),
        }
    }
    misses
}

#[tokio::test]
async fn clients_that_take_a_role_once_and_exit_are_named() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), ROLES)).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200, "dev is warm");
    let misses = one_shots_named(&daemon, 30).await;
    assert!(misses.is_empty(), "{misses:#?}\n{}", daemon.log());
}

#[tokio::test]
async fn clients_that_take_a_role_once_and_exit_are_named_on_a_busy_machine() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), ROLES)).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200, "dev is warm");
    // One busy loop per core, at the daemon's priority, each ending by
    // itself after two minutes should the test die before killing it.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut loops: Vec<_> = (0..cores)
        .map(|_| {
            Command::new(python())
                .args([
                    "-c",
                    "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end: pass",
                ])
                .kill_on_drop(true)
                .spawn()
                .expect("start a busy loop")
        })
        .collect();
    let misses = one_shots_named(&daemon, 30).await;
    for busy in &mut loops {
        let _ = busy.kill().await;
    }
    assert!(misses.is_empty(), "{misses:#?}\n{}", daemon.log());
}
