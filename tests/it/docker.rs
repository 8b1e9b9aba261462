//! The container image and the example compose stack under a real Docker
//! engine (docs/docker-compose.md, "What is tested").
//!
//! No registry is reachable here, so the base images are made offline
//! (tests/docker/base-images.sh) and passed to the Dockerfile as build
//! arguments, with the binary `cargo test` built (see `engine.rs`). The stack
//! is examples/compose/docker-compose.yml as it is, given the image names and
//! `AWS_ENDPOINT_URL_STS`, plus tests/docker/sts.yml: moto as the stack's
//! STS, in a container on the stack's network. Nothing leaves the engine's
//! networks and loopback.
//!
//! `scripts/test` installs Docker and compose and starts dockerd when no
//! engine answers. In CI a missing engine fails these tests; elsewhere they
//! say why they did not run and pass.

mod engine;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::harness::run_with_timeout;
use engine::{Engine, GID, IMAGE, PROJECT_PREFIX, UID, repo_path, stdout_of};

/// What the apps must get: role `dev` of the example, named after `USER`.
const ASSUMED_DEV: &str = "arn:aws:sts::111111111111:assumed-role/dev/alice";
const STS_IN_STACK: &str = "http://sts:5000";
const UP: Duration = Duration::from_secs(300);
const CLIENT: Duration = Duration::from_secs(120);

/// The final stage, as built from the Dockerfile: no shell anywhere in it,
/// the configured uid as its user, and the token volume's mount point 0700
/// and the daemon's.
#[tokio::test]
async fn image_has_no_shell_and_runs_as_the_configured_uid() {
    let Some(engine) = Engine::connect().await else {
        return;
    };
    let base = engine.base_images().await;
    engine.build_image(&base).await;
    let user = engine
        .ok(&["image", "inspect", "--format", "{{.Config.User}}", IMAGE])
        .await;
    assert_eq!(user.trim(), format!("{UID}:{GID}"));

    let container = engine.ok(&["create", IMAGE]).await;
    let container = container.trim();
    let dir = tempfile::tempdir().expect("temp dir");
    let tar = dir.path().join("image.tar");
    engine
        .ok(&["export", "--output", &tar.to_string_lossy(), container])
        .await;
    engine.ok(&["rm", container]).await;
    let listing = stdout_of(
        "tar -tvf",
        run_with_timeout(
            Command::new("tar")
                .arg("--numeric-owner")
                .arg("-tvf")
                .arg(&tar),
            CLIENT,
        )
        .await,
    );
    let mut shells = Vec::new();
    for line in listing.lines() {
        let path = line.split_whitespace().nth(5).unwrap_or_default();
        let name = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if ["sh", "bash", "dash", "ash", "zsh", "busybox"].contains(&name) {
            shells.push(line);
        }
    }
    assert!(shells.is_empty(), "the final stage has a shell: {shells:?}");
    assert!(
        listing.contains("usr/local/bin/assumed"),
        "no binary in the image:\n{listing}"
    );
    let token_dir = listing
        .lines()
        .find(|line| line.trim_end().ends_with(" run/assumed/"))
        .unwrap_or_else(|| panic!("no /run/assumed in the image:\n{listing}"));
    assert!(
        token_dir.starts_with(&format!("drwx------ {UID}/{GID} ")),
        "/run/assumed must be 0700 and the daemon's: {token_dir}"
    );

    // And Docker cannot start one either.
    let sh = run_with_timeout(
        engine.docker().args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            IMAGE,
            "-c",
            "true",
        ]),
        CLIENT,
    )
    .await;
    assert!(!sh.status.success(), "/bin/sh ran in the image: {sh:?}");
    assert!(
        String::from_utf8_lossy(&sh.stderr).contains("no such file or directory"),
        "{}",
        String::from_utf8_lossy(&sh.stderr)
    );
}

/// The example stack with real SDKs in real containers: the daemon
/// (non-root, read-only, no capabilities) turns healthy against the stack's
/// STS, the apps start after it and get the role three ways, a container
/// without the token volume is refused until `trust_subnet` lets it in, and
/// `down -v` leaves nothing behind.
#[tokio::test]
async fn example_stack_serves_sdks_in_containers() {
    let Some(engine) = Engine::connect().await else {
        return;
    };
    let base = engine.base_images().await;
    engine.build_image(&base).await;
    let stack = Stack::up(&engine, &base).await;

    // The daemon: healthy, as the build's uid with no capabilities, read-only.
    let daemon = stack.container("assumed").await;
    let state = engine.inspect(&daemon).await;
    assert_eq!(state["State"]["Health"]["Status"], "healthy", "{state:#}");
    assert_eq!(state["HostConfig"]["ReadonlyRootfs"], true);
    assert_eq!(state["HostConfig"]["CapDrop"], serde_json::json!(["ALL"]));
    let pid = state["State"]["Pid"].as_u64().expect("daemon pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), vec![UID.to_string(); 4], "{status}");
    assert_eq!(field("Gid:"), vec![GID.to_string(); 4], "{status}");
    assert_eq!(field("CapEff:"), vec!["0000000000000000"], "{status}");

    // The apps started only once the daemon was healthy (service_healthy).
    let first_healthy = state["State"]["Health"]["Log"]
        .as_array()
        .and_then(|log| log.iter().find(|check| check["ExitCode"] == 0))
        .and_then(|check| check["End"].as_str())
        .map(docker_time)
        .expect("a passing health check");
    for service in ["app", "app-full-uri", "app-imds"] {
        let app = engine.inspect(&stack.container(service).await).await;
        let started = docker_time(app["State"]["StartedAt"].as_str().expect("StartedAt"));
        assert!(
            started > first_healthy,
            "{service} started at {started:?}, before the daemon was healthy at {first_healthy:?}"
        );
    }

    // Each app service runs the AWS CLI (botocore) once: RELATIVE_URI and
    // FULL_URI with the token file, and IMDSv2.
    for service in ["app", "app-full-uri", "app-imds"] {
        let container = stack.container(service).await;
        let code = engine.ok(&["wait", &container]).await;
        let logs = engine.logs(&container).await;
        assert_eq!(code.trim(), "0", "{service}: {logs}");
        let identity: Value = serde_json::from_str(&logs)
            .unwrap_or_else(|e| panic!("{service} printed no JSON ({e}): {logs}"));
        assert_eq!(identity["Arn"], ASSUMED_DEV, "{service}");
    }

    // boto3 in the same services, where it can say which provider it used.
    for (service, method) in [
        ("app", "container-role"),
        ("app-full-uri", "container-role"),
        ("app-imds", "iam-role"),
    ] {
        let out = stack.python(service, &[], BOTO3_WHOAMI).await;
        assert!(out.status.success(), "{service}: {out:?}");
        let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(printed["arn"], ASSUMED_DEV, "{service}");
        assert_eq!(printed["method"], method, "{service}");
    }

    // No token volume (app-imds has none): the daemon refuses the container.
    let no_token = [
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/role/dev"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let refused = stack.python("app-imds", &no_token, REFUSED).await;
    let printed: Value = serde_json::from_slice(&refused.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {refused:?}"));
    assert_eq!(printed["token_file"], false, "{printed}");
    assert_eq!(printed["status"], 401, "{printed}");
    assert_eq!(printed["code"], "MissingToken", "{printed}");
    assert!(
        printed["sdk_error"]
            .as_str()
            .is_some_and(|e| e.contains("MissingToken")),
        "{printed}"
    );
    // Nor does the Docker host get in without it.
    let (host_status, _) = http_get_from_host("/role/dev").await;
    assert_eq!(host_status, 401);

    // trust_subnet, as assumed.toml documents it, reloaded with SIGHUP: the
    // same token-less container now gets the role, the host still does not.
    stack.enable_trust_subnet(&daemon).await;
    let out = stack.python("app-imds", &no_token, BOTO3_WHOAMI).await;
    assert!(
        out.status.success(),
        "token-less boto3 with trust_subnet: {out:?}"
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["arn"], ASSUMED_DEV);
    let (host_status, _) = http_get_from_host("/role/dev").await;
    assert_eq!(
        host_status, 401,
        "the host (169.254.170.1) is outside trust_subnet"
    );

    stack.down().await;
}

/// Where no engine answers, CI fails with the engine's own error (here: no
/// daemon at that socket) instead of skipping.
#[tokio::test]
async fn a_missing_engine_fails_in_ci_with_its_own_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = format!("unix://{}/no-dockerd.sock", dir.path().display());
    let mut docker = Command::new(engine::docker_cli());
    docker.env("DOCKER_HOST", &socket);
    let why = match engine::server_version(&mut docker).await {
        Ok(version) => panic!("an engine {version} answered at {socket}"),
        Err(why) if why.starts_with("cannot run docker") => {
            // No docker CLI: scripts/test installs it; in CI this is a failure.
            engine::no_engine(&why, "", std::env::var_os("CI").is_some());
            return;
        }
        Err(why) => why,
    };
    assert!(why.contains("Cannot connect to the Docker daemon"), "{why}");
    let failure = std::panic::catch_unwind(|| engine::no_engine(&why, "", true))
        .expect_err("no engine in CI must fail the test");
    let message = failure
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("which CI must provide") && message.contains(&socket),
        "{message}"
    );
}

/// A plain `docker build .` keeps the documented bases, and nothing in the
/// Dockerfile needs a registry before they are resolved: the structural
/// checker (tests/compose/check_compose.py) says so, and catches the opposite.
#[tokio::test]
async fn dockerfile_keeps_the_documented_bases_and_no_syntax_line() {
    let dockerfile = repo_path("Dockerfile");
    let check = |path: String| async move {
        run_with_timeout(
            Command::new(crate::harness::python())
                .arg(repo_path("tests/compose/check_compose.py"))
                .arg(repo_path("examples/compose/docker-compose.yml"))
                .args(["--dockerfile", &path]),
            CLIENT,
        )
        .await
    };
    let good = check(dockerfile.clone()).await;
    assert!(good.status.success(), "{good:?}");

    let original = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    let dir = tempfile::tempdir().expect("temp dir");
    for (broken, expected) in [
        (
            format!("# syntax=docker/dockerfile:1\n{original}"),
            "syntax",
        ),
        (
            original.replacen(
                "ARG RUNTIME_IMAGE=gcr.io/distroless/",
                "ARG RUNTIME_IMAGE=debian#",
                1,
            ),
            "RUNTIME_IMAGE",
        ),
        (
            original.replacen("ARG BINARY=build", "ARG BINARY=prebuilt", 1),
            "BINARY",
        ),
    ] {
        assert_ne!(broken, original);
        let path = dir.path().join("Dockerfile");
        std::fs::write(&path, broken).expect("write");
        let output = check(path.to_string_lossy().into_owned()).await;
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{expected}: {text}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

/// boto3's caller and the credential provider it used, as JSON.
const BOTO3_WHOAMI: &str = r#"
import json, boto3
session = boto3.Session()
method = session.get_credentials().method
arn = session.client("sts").get_caller_identity()["Arn"]
print(json.dumps({"arn": arn, "method": method}))
"#;

/// The daemon's answer to a token-less request, and boto3's error.
const REFUSED: &str = r#"
import json, os, urllib.request, urllib.error, boto3
result = {"token_file": os.path.exists("/run/assumed/token")}
try:
    urllib.request.urlopen("http://169.254.170.2/role/dev", timeout=10)
    result["status"] = 200
except urllib.error.HTTPError as e:
    result["status"] = e.code
    result["code"] = json.loads(e.read())["code"]
try:
    boto3.client("sts").get_caller_identity()
    result["sdk_error"] = None
except Exception as e:
    result["sdk_error"] = str(e)
print(json.dumps(result))
"#;

/// A GET from the Docker host to the daemon's address on the stack's bridge,
/// where the host is the gateway 169.254.170.1.
async fn http_get_from_host(path: &str) -> (u16, String) {
    let url = format!("http://169.254.170.2{path}");
    let reply = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} from the host: {e}"));
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap_or_default())
}

impl Engine {
    async fn inspect(&self, container: &str) -> Value {
        let json = self.ok(&["inspect", container]).await;
        let mut all: Value = serde_json::from_str(&json).expect("docker inspect JSON");
        all[0].take()
    }

    async fn logs(&self, container: &str) -> String {
        let output = run_with_timeout(self.docker().args(["logs", container]), CLIENT).await;
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }
}

/// The example stack, up under a project of its own. Taken down with `-v`
/// when dropped, also when a test fails half way.
struct Stack<'e> {
    engine: &'e Engine,
    project: String,
    /// A copy of examples/compose (compose file, assumed.toml, .env), so the
    /// test can turn on trust_subnet in its assumed.toml.
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    down: bool,
}

impl<'e> Stack<'e> {
    async fn up(engine: &'e Engine, base: &engine::BaseImages) -> Stack<'e> {
        let dir = tempfile::tempdir().expect("temp dir");
        let compose_dir = dir.path().join("compose");
        std::fs::create_dir(&compose_dir).expect("mkdir");
        for file in ["docker-compose.yml", "assumed.toml", ".env"] {
            std::fs::copy(
                repo_path(&format!("examples/compose/{file}")),
                compose_dir.join(file),
            )
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
        // The HOME whose ~/.aws the daemon reads: source keys moto accepts.
        let aws = dir.path().join("home/.aws");
        std::fs::create_dir_all(&aws).expect("mkdir");
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIASOURCEEXAMPLE\naws_secret_access_key = source-secret\n",
        )
        .expect("credentials");
        // The daemon runs as UID, not as the owner of these files.
        for path in [dir.path().to_owned(), dir.path().join("home"), aws.clone()] {
            set_mode(&path, 0o755);
        }
        set_mode(&aws.join("credentials"), 0o644);

        let env = vec![
            (
                "HOME",
                dir.path().join("home").to_string_lossy().into_owned(),
            ),
            ("USER", "alice".to_owned()),
            ("ASSUMED_IMAGE", IMAGE.to_owned()),
            ("AWS_CLI_IMAGE", base.app.clone()),
            ("AWS_ENDPOINT_URL_STS", STS_IN_STACK.to_owned()),
        ];
        let stack = Stack {
            engine,
            project: format!("{PROJECT_PREFIX}{}", std::process::id()),
            dir,
            env,
            down: false,
        };
        let output =
            run_with_timeout(stack.compose().args(["up", "--detach", "--no-build"]), UP).await;
        if !output.status.success() {
            let daemon_logs = match stack.container_or_none("assumed").await {
                Some(id) => engine.logs(&id).await,
                None => String::new(),
            };
            panic!(
                "compose up failed:\n{}{}\n--- daemon log ---\n{daemon_logs}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        stack
    }

    fn compose_file(&self) -> PathBuf {
        self.dir.path().join("compose/docker-compose.yml")
    }

    /// The compose CLI on this project, with the test's variables only.
    fn compose(&self) -> Command {
        Command::from(self.compose_std())
    }

    fn compose_std(&self) -> std::process::Command {
        let mut cmd = self.engine.compose_command();
        for name in [
            "COMPOSE_FILE",
            "COMPOSE_PROJECT_NAME",
            "ASSUMED_UID",
            "ASSUMED_GID",
        ] {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--project-name").arg(&self.project);
        cmd.arg("--file").arg(self.compose_file());
        cmd.arg("--file").arg(repo_path("tests/docker/sts.yml"));
        cmd
    }

    /// The container of `service` (not of a `run`), running or exited. Asked
    /// of the engine by compose's labels: `compose ps` lists exited ones in
    /// docker-compose 1.x only.
    async fn container_or_none(&self, service: &str) -> Option<String> {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let service = format!("label=com.docker.compose.service={service}");
        let output = run_with_timeout(
            self.engine.docker().args([
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &project,
                "--filter",
                &service,
                "--filter",
                "label=com.docker.compose.oneoff=False",
            ]),
            CLIENT,
        )
        .await;
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success() && !id.is_empty()).then_some(id)
    }

    async fn container(&self, service: &str) -> String {
        self.container_or_none(service)
            .await
            .unwrap_or_else(|| panic!("no container for {service}"))
    }

    /// `compose run` of `service` (its volumes, network and environment, plus
    /// `env`) with python3 running `script`; returns the finished process.
    async fn python(
        &self,
        service: &str,
        env: &[(&str, &str)],
        script: &str,
    ) -> std::process::Output {
        let mut cmd = self.compose();
        cmd.args(["run", "--rm", "--no-deps", "-T", "--entrypoint", "python3"]);
        for (name, value) in env {
            cmd.arg("-e").arg(format!("{name}={value}"));
        }
        cmd.args([service, "-c", script]);
        run_with_timeout(&mut cmd, CLIENT).await
    }

    /// Uncomments `trust_subnet` in the stack's assumed.toml (written in
    /// place: the container sees the file through a bind mount), sends the
    /// daemon SIGHUP and waits for it to log the reload.
    async fn enable_trust_subnet(&self, daemon: &str) {
        let config = self.dir.path().join("compose/assumed.toml");
        let text = std::fs::read_to_string(&config).expect("assumed.toml");
        let enabled = text.replacen("# trust_subnet = ", "trust_subnet = ", 1);
        assert_ne!(
            text, enabled,
            "the example's assumed.toml has a commented trust_subnet"
        );
        let reloads = |log: &str| log.matches("reloaded the config").count();
        let before = reloads(&self.engine.logs(daemon).await);
        rewrite_in_place(&config, &enabled);
        self.engine.ok(&["kill", "--signal", "HUP", daemon]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.engine.logs(daemon).await;
            if reloads(&log) > before {
                assert!(log.contains("trust_subnet"), "{log}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reload after SIGHUP:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `down -v`, then nothing of the project is left: no container, no
    /// network, no volume.
    async fn down(mut self) {
        let output = run_with_timeout(self.compose().args(["down", "--volumes"]), UP).await;
        stdout_of("compose down -v", output);
        self.down = true;
        let label = format!("label=com.docker.compose.project={}", self.project);
        for list in [
            vec!["ps", "--all", "--quiet", "--filter", &label],
            vec!["network", "ls", "--quiet", "--filter", &label],
            vec!["volume", "ls", "--quiet", "--filter", &label],
        ] {
            let left = self.engine.ok(&list).await;
            assert_eq!(left.trim(), "", "left behind by down -v ({list:?})");
        }
        for (what, name) in [("network", "aws"), ("volume", "assumed-token")] {
            let name = format!("{}_{name}", self.project);
            let inspect =
                run_with_timeout(self.engine.docker().args([what, "inspect", &name]), CLIENT).await;
            assert!(!inspect.status.success(), "{what} {name} is left behind");
        }
    }
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        // A failed test: take the stack down anyway, so the next run's
        // subnet is free (the next run also sweeps what this misses).
        let _ = self
            .compose_std()
            .args(["down", "--volumes", "--timeout", "1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A time in `docker inspect` (RFC 3339 in UTC, with up to 9 digits of
/// fraction and trailing zeros dropped) as (date and time, fraction).
fn docker_time(text: &str) -> (String, f64) {
    let utc = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or_else(|| panic!("not a UTC time: {text}"));
    let (seconds, fraction) = utc.split_once('.').unwrap_or((utc, "0"));
    let fraction: f64 = format!("0.{fraction}")
        .parse()
        .unwrap_or_else(|e| panic!("time {text}: {e}"));
    (seconds.to_owned(), fraction)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Writes `text` into the existing file (same inode), which a single-file
/// bind mount keeps showing; a rename would leave the container the old one.
fn rewrite_in_place(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The .deb on a clean Debian 12 (the offline base image): `apt install` of
/// the file, the program and its files where they belong, then `apt remove`
/// leaves none of them behind.
#[tokio::test]
async fn the_deb_installs_with_apt_and_removes_cleanly() {
    let Some(engine) = Engine::connect().await else {
        return;
    };
    let base = engine.base_images().await;
    let dir = tempfile::tempdir().expect("dir");
    let deb = crate::package::build_deb(dir.path()).await;
    let file = deb.file_name().and_then(|n| n.to_str()).expect("name");
    let expected: Vec<String> = crate::package::EXPECTED
        .iter()
        .map(|p| format!("/{p}"))
        .collect();
    let script = format!(
        r#"set -eu
apt-get install -y --no-install-recommends /pkg/{file} >/tmp/apt.log 2>&1 || {{ cat /tmp/apt.log; exit 1; }}
assumed --version
assumed check --config /usr/share/doc/assumed/examples/config.toml
for f in {expected}; do test -f "$f" || {{ echo "missing $f"; exit 1; }}; done
command -v assumed
dpkg -L assumed >/tmp/files
apt-get remove -y assumed >/tmp/apt.log 2>&1 || {{ cat /tmp/apt.log; exit 1; }}
while read -r f; do
  if [ -e "$f" ] && [ ! -d "$f" ]; then echo "left behind: $f"; fi
done </tmp/files
dpkg-query -W -f='${{Status}}\n' assumed 2>/dev/null || echo "not known to dpkg"
"#,
        expected = expected.join(" ")
    );
    let mount = format!("{}:/pkg:ro", dir.path().display());
    let out = engine
        .ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mount,
            "--entrypoint",
            "sh",
            &base.app,
            "-c",
            &script,
        ])
        .await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("assumed {}", env!("CARGO_PKG_VERSION")).as_str()),
        "{out}"
    );
    assert!(lines.contains(&"/usr/bin/assumed"), "{out}");
    assert!(!out.contains("left behind"), "{out}");
    let status = lines.last().copied().unwrap_or_default();
    assert!(
        status == "not known to dpkg" || status.starts_with("unknown ok not-installed"),
        "after apt remove, dpkg says {status:?}:\n{out}"
    );
}
