//! Ask before prod: a `confirm` role goes only to programs the person
//! allowed. The desktop is a stand-in `notify-send` first on the daemon's
//! PATH, which records each prompt and answers as the test says (Allow,
//! Deny, or nothing: it waits until the daemon closes it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::harness::netns::{self, Netns, veth};
use crate::harness::{Daemon, Options, StsProxy, python, run, run_ok};

const PROD: &str = r#"
[roles.prod]
role_arn = "arn:aws:iam::222222222222:role/prod"
confirm = true
"#;

/// A stand-in desktop: `notify-send` that writes its arguments (one per
/// line) to `prompts/<pid>` and prints what `answer` holds, or, for
/// `wait`, waits to be closed.
struct Desktop {
    dir: tempfile::TempDir,
}

impl Desktop {
    fn new(answer: &str) -> Desktop {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("prompts")).expect("prompts");
        let desktop = Desktop { dir };
        desktop.answer(answer);
        let script = format!(
            "#!/bin/sh\n\
             printf '%s\\n' \"$@\" > '{prompts}/'$$\n\
             answer=$(cat '{answer}')\n\
             if [ \"$answer\" = wait ]; then exec sleep 600; fi\n\
             echo \"$answer\"\n",
            prompts = desktop.dir.path().join("prompts").display(),
            answer = desktop.dir.path().join("answer").display(),
        );
        let bin = desktop.bin();
        std::fs::create_dir(&bin).expect("bin");
        std::fs::write(bin.join("notify-send"), script).expect("stand-in");
        std::fs::set_permissions(
            bin.join("notify-send"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        desktop
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn answer(&self, answer: &str) {
        std::fs::write(self.dir.path().join("answer"), answer).expect("answer");
    }

    /// Every prompt shown so far: its arguments.
    fn prompts(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.path().join("prompts"))
            .expect("prompts")
            .map(|entry| std::fs::read_to_string(entry.expect("entry").path()).expect("prompt"))
            .collect()
    }

    /// A daemon serving `roles`, asking on this desktop.
    async fn daemon(&self, proxy: &StsProxy, roles: &str) -> Daemon {
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let options = Options::new(&proxy.url(), roles)
            .server("notify = true")
            .env("PATH", &path);
        Daemon::start_with(options).await
    }
}

/// `curl` for `role` with the daemon's token, retrying 503s as an SDK
/// does; the last status and body.
fn curl(daemon: &Daemon, role: &str, retries: u32) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-s", "-w", "\n%{http_code}", "--retry"])
        .arg(retries.to_string())
        .args(["--retry-delay", "1", "-H"])
        .arg(format!("Authorization: {}", daemon.token()))
        .arg(daemon.url(&format!("/role/{role}")));
    command
}

/// The last answer's body and status, of what `curl` printed: with
/// `--retry`, every attempt's body, one after the other, then the status.
fn answer_of(output: &Output) -> (String, u16) {
    let (mut bodies, status) = answers_of(output);
    let last = bodies.pop().expect("a body");
    (last.to_string(), status)
}

/// Every attempt's body, and the last status.
fn answers_of(output: &Output) -> (Vec<serde_json::Value>, u16) {
    let text = String::from_utf8_lossy(&output.stdout);
    let (bodies, status) = text.rsplit_once('\n').expect("a status line");
    let bodies = serde_json::Deserializer::from_str(bodies)
        .into_iter::<serde_json::Value>()
        .map(|body| body.unwrap_or_else(|e| panic!("not JSON ({e}): {bodies}")))
        .collect();
    (bodies, status.trim().parse().expect("a status"))
}

fn status_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("status JSON")
}

async fn status(daemon: &Daemon) -> serde_json::Value {
    status_json(&run_ok(daemon.cli().args(["status", "--json"])).await)
}

/// Waits until the daemon has a question pending; its status.
async fn question_pending(daemon: &Daemon) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(daemon).await;
        if status["approvals"]["pending"]
            .as_array()
            .is_some_and(|pending| !pending.is_empty())
        {
            return status;
        }
        assert!(Instant::now() < deadline, "no question: {}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The executable `python3` runs (past venv links and version shims).
async fn real_python() -> PathBuf {
    let output = run_ok(tokio::process::Command::new(python()).args([
        "-c",
        "import os, sys; print(os.path.realpath(sys.executable))",
    ]))
    .await;
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

#[tokio::test]
async fn boto3_is_served_after_allow_and_again_without_asking() {
    let proxy = StsProxy::start().await;
    let desktop = Desktop::new("allow");
    let daemon = desktop.daemon(&proxy, PROD).await;

    let first = daemon.boto3_whoami("prod", 1).await;
    assert!(
        first["arn"]
            .as_str()
            .is_some_and(|arn| arn.contains(":assumed-role/prod/")),
        "{first}"
    );
    let prompts = desktop.prompts();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let python_exe = real_python().await;
    assert!(
        prompts[0].contains(&format!(
            "{} (pid",
            python_exe.file_name().unwrap().to_string_lossy()
        )) && prompts[0].contains(&python_exe.display().to_string()),
        "the prompt names the python executable: {}",
        prompts[0]
    );
    assert!(
        prompts[0].contains("role prod (account 222222222222)"),
        "{}",
        prompts[0]
    );
    assert!(prompts[0].contains("whoami.py"), "{}", prompts[0]);
    assert!(
        prompts[0].contains("--action=allow=Allow"),
        "{}",
        prompts[0]
    );

    // The same program again, in a new process: served, not asked.
    daemon.boto3_whoami("prod", 1).await;
    assert_eq!(desktop.prompts().len(), 1);

    let decided = &status(&daemon).await["approvals"]["decided"];
    assert_eq!(decided[0]["decision"], "allow", "{decided}");
    assert_eq!(decided[0]["by"], "desktop", "{decided}");
    assert_eq!(decided[0]["exe"], python_exe.display().to_string());
    let log = daemon.log();
    assert!(
        log.lines().any(|line| line.contains("decision")
            && line.contains("allow")
            && line.contains("desktop")),
        "{log}"
    );
}

#[tokio::test]
async fn a_denial_is_403_at_once_and_a_retry_loop_prompts_once() {
    let proxy = StsProxy::start().await;
    let desktop = Desktop::new("deny");
    let daemon = desktop.daemon(&proxy, PROD).await;

    let script = r#"
import json, sys, urllib.request, urllib.error
url, token = sys.argv[1], sys.argv[2]
for _ in range(50):
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        with urllib.request.urlopen(request) as answer:
            print(answer.status, answer.read().decode())
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode())
"#;
    let output = run_ok(
        tokio::process::Command::new(python())
            .args(["-c", script])
            .arg(daemon.url("/role/prod"))
            .arg(daemon.token()),
    )
    .await;
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 50);
    for line in &lines {
        let (status, body) = line.split_once(' ').expect("status and body");
        assert_eq!(status, "403", "{line}");
        let error: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(error["code"], "NotApproved", "{line}");
        assert!(
            !body.contains("AccessKeyId") && !body.contains("ASIA"),
            "{line}"
        );
    }
    assert!(lines[0].contains("denied"), "{}", lines[0]);
    assert_eq!(desktop.prompts().len(), 1, "one prompt for the whole loop");
    assert_eq!(proxy.count("AssumeRole"), 0, "nothing was fetched for it");
}

#[tokio::test]
async fn an_unanswered_question_lapses_to_403_and_its_retries_are_told_so() {
    let proxy = StsProxy::start().await;
    let desktop = Desktop::new("wait");
    let roles = format!("{PROD}confirm_timeout = \"3s\"\n");
    let daemon = desktop.daemon(&proxy, &roles).await;

    // A one-shot curl, retrying 503s as SDKs do: 403 once the question lapses.
    let started = Instant::now();
    let lapsed = run(&mut curl(&daemon, "prod", 30)).await;
    let (attempts, _) = answers_of(&lapsed);
    let (body, code) = answer_of(&lapsed);
    assert_eq!(code, 403, "{body}");
    // Until then each attempt was held, then told to retry, with how to answer.
    let (last, retried) = attempts.split_last().expect("attempts");
    assert_eq!(last["code"], "NotApproved");
    assert!(!retried.is_empty(), "{attempts:?}");
    for pending in retried {
        assert_eq!(pending["code"], "ApprovalPending", "{pending}");
        assert!(
            pending["message"]
                .as_str()
                .is_some_and(|m| m.contains("assumed approve 1")),
            "{pending}"
        );
    }
    assert!(
        body.contains("NotApproved") && body.contains("confirm_timeout"),
        "{body}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before confirm_timeout"
    );
    let prompts = desktop.prompts();
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert!(
        prompts[0].contains("curl (pid"),
        "the prompt names curl: {}",
        prompts[0]
    );

    // The retries right after the lapse are told so, not asked about again.
    let (body, code) = answer_of(&run(&mut curl(&daemon, "prod", 0)).await);
    assert_eq!(code, 403, "{body}");
    assert_eq!(desktop.prompts().len(), 1);
}

#[tokio::test]
async fn assumed_approve_lets_a_waiting_one_shot_curl_through() {
    let proxy = StsProxy::start().await;
    let desktop = Desktop::new("wait");
    let daemon = desktop.daemon(&proxy, PROD).await;

    let mut waiting = curl(&daemon, "prod", 60);
    let waiting = tokio::spawn(async move { run(&mut waiting).await });
    let asked = question_pending(&daemon).await;
    let question = &asked["approvals"]["pending"][0];
    assert_eq!(question["role"], "prod");
    assert_eq!(
        question["exe"],
        std::fs::canonicalize("/usr/bin/curl")
            .unwrap()
            .display()
            .to_string()
    );
    assert!(
        !question["cmdline"]
            .as_str()
            .unwrap_or("")
            .contains(&daemon.token()),
        "the token is redacted: {question}"
    );
    let listed = run_ok(daemon.cli().arg("status")).await;
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("Waiting for you"), "{listed}");

    let approved = run_ok(daemon.cli().arg("approve")).await;
    let said = String::from_utf8_lossy(&approved.stdout);
    assert!(
        said.contains("allowed curl") && said.contains("role prod for 8h"),
        "{said}"
    );

    let (body, code) = answer_of(&waiting.await.expect("joined"));
    assert_eq!(code, 200, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).expect("credentials");
    assert!(served["AccessKeyId"].is_string(), "{body}");

    // The desktop prompt still open for it was closed.
    let prompts = std::fs::read_dir(desktop.dir.path().join("prompts"))
        .expect("prompts")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>();
    assert_eq!(prompts.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{}", prompts[0])).exists() {
        assert!(Instant::now() < deadline, "the prompt was left open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decided = &status(&daemon).await["approvals"]["decided"][0];
    assert_eq!(decided["by"], "cli", "{decided}");

    // A second approve has nothing to answer.
    let nothing = run(daemon.cli().arg("approve")).await;
    assert!(!nothing.status.success());
    assert!(
        String::from_utf8_lossy(&nothing.stderr).contains("no question is waiting"),
        "{nothing:?}"
    );
}

#[tokio::test]
async fn a_client_in_another_network_namespace_is_refused() {
    let Some(daemon_ns) = netns::or_skip(Netns::create(), "confirm netns test") else {
        return;
    };
    let client_ns = Netns::create().expect("a second namespace");
    veth(&daemon_ns, "d0", &client_ns, "c0").expect("veth");
    daemon_ns
        .ip(&["addr", "add", "10.77.0.1/24", "dev", "d0"])
        .expect("addr");
    client_ns
        .ip(&["addr", "add", "10.77.0.2/24", "dev", "c0"])
        .expect("addr");

    let proxy = StsProxy::start_in(&daemon_ns).await;
    let desktop = Desktop::new("allow");
    let path = format!(
        "{}:{}",
        desktop.bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut options = Options::new(&proxy.url(), PROD)
        .server("notify = true\nexpose = true")
        .env("PATH", &path);
    options.extra_listen = Some("10.77.0.1:80".into());
    options.netns = Some(daemon_ns.name().to_owned());
    let daemon = Daemon::start_with(options).await;

    let address = "10.77.0.1:80".parse().expect("address");
    let (code, body) = netns::http_get(
        client_ns.name(),
        address,
        "/role/prod",
        &[("Authorization", &daemon.token())],
    )
    .await
    .expect("an answer");
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("NotApproved") && body.contains("cannot be identified"),
        "{body}"
    );
    assert!(
        desktop.prompts().is_empty(),
        "nobody is asked about a stranger"
    );
    assert_eq!(proxy.count("AssumeRole"), 0);
}
