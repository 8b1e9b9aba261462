//! The real `assumed` binary, started on a free loopback port with a config
//! written into a private temporary HOME, and ready once `/healthz` answers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// The source credentials the daemon signs with; moto accepts any.
pub const SOURCE_KEY_ID: &str = "AKIASOURCEEXAMPLE";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const REGION: &str = "us-east-1";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_assumed")
}

/// How to start a daemon: `[roles]` and extra `[server]` lines of TOML.
pub struct Options {
    pub roles: String,
    pub server: String,
    /// Extra `[source]` lines.
    pub source: String,
    /// `[source] sts_endpoint`; empty: none.
    pub sts_endpoint: String,
    pub rust_log: String,
    /// A second `listen` address besides the loopback port the harness picks.
    pub extra_listen: Option<String>,
    /// Extra environment for the daemon (NOTIFY_SOCKET, AWS_SESSION_TOKEN…).
    pub env: Vec<(String, String)>,
    /// `~/.aws/config` and `~/.aws/credentials` contents for the daemon's HOME.
    pub aws_config: String,
    pub aws_credentials: String,
    /// Start with no config file at all (defaults: 127.0.0.1:9911, runtime-dir token).
    pub zero_config: bool,
    /// Run inside this network namespace (see `netns.rs`). Readiness is then
    /// checked from inside it; `url`, `get` and `cli` do not reach such a daemon.
    pub netns: Option<String>,
    /// A whole config file instead of the one made from the fields above
    /// (`assumed init`'s): `@PORT@` and `@TOKEN_FILE@` in it are replaced by
    /// the port and token file the harness chose.
    pub config_file: Option<String>,
}

impl Options {
    pub fn new(sts_endpoint: &str, roles: &str) -> Self {
        Options {
            roles: roles.to_owned(),
            server: String::new(),
            source: String::new(),
            sts_endpoint: sts_endpoint.to_owned(),
            rust_log: "info".into(),
            extra_listen: None,
            env: Vec::new(),
            aws_config: String::new(),
            aws_credentials: String::new(),
            zero_config: false,
            netns: None,
            config_file: None,
        }
    }

    pub fn server(mut self, lines: &str) -> Self {
        self.server = lines.to_owned();
        self
    }

    pub fn source(mut self, lines: &str) -> Self {
        self.source = lines.to_owned();
        self
    }

    pub fn aws_files(mut self, config: &str, credentials: &str) -> Self {
        self.aws_config = config.to_owned();
        self.aws_credentials = credentials.to_owned();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The config file this daemon runs with.
    pub fn config_text(&self, port: u16, token_path: &Path) -> String {
        if let Some(text) = &self.config_file {
            return text
                .replace("@PORT@", &port.to_string())
                .replace("@TOKEN_FILE@", &token_path.display().to_string());
        }
        let extra = self
            .extra_listen
            .as_ref()
            .map(|address| format!(", \"{address}\""))
            .unwrap_or_default();
        // An empty `sts_endpoint` writes none: the daemon then finds STS as
        // the SDKs would (environment, profiles).
        let sts_endpoint = match self.sts_endpoint.as_str() {
            "" => String::new(),
            url => format!("sts_endpoint = \"{url}\"\n"),
        };
        format!(
            "[server]\nlisten = [\"127.0.0.1:{port}\"{extra}]\ntoken_file = \"{}\"\n{}\n\n\
             [source]\nregion = \"{REGION}\"\n{sts_endpoint}{}\n\n{}\n",
            token_path.display(),
            self.server,
            self.source,
            self.roles
        )
    }
}

pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub config_path: PathBuf,
    pub token_path: PathBuf,
    log_path: PathBuf,
    sts_endpoint: String,
    netns: Option<String>,
}

impl Daemon {
    pub async fn start(sts_endpoint: &str, roles: &str) -> Daemon {
        Self::start_with(Options::new(sts_endpoint, roles)).await
    }

    pub async fn start_with(options: Options) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("aws-config"), &options.aws_config).expect("aws config");
        std::fs::write(dir.path().join("aws-credentials"), &options.aws_credentials)
            .expect("aws credentials");
        let config_path = dir.path().join("config.toml");
        let (port, token_path) = if options.zero_config {
            (9911, dir.path().join("xdg-run/assumed/token"))
        } else {
            (super::free_port(), dir.path().join("run/token"))
        };
        if !options.zero_config {
            std::fs::write(&config_path, options.config_text(port, &token_path))
                .expect("write config");
        }
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = match &options.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, binary()]);
                command
            }
            None => Command::new(binary()),
        };
        command.arg("serve");
        if !options.zero_config {
            command.arg("--config").arg(&config_path);
        }
        command
            .env_clear()
            .envs(base_env(dir.path()))
            .env("AWS_ACCESS_KEY_ID", SOURCE_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", "source-secret")
            .env("RUST_LOG", &options.rust_log)
            .envs(options.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command.spawn().expect("start assumed serve");
        let mut daemon = Daemon {
            child,
            dir,
            port,
            config_path,
            token_path,
            log_path,
            sts_endpoint: options.sts_endpoint,
            netns: options.netns,
        };
        daemon.wait_ready().await;
        daemon
    }

    /// `/healthz` answering 200 is the daemon's readiness signal.
    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "assumed exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let healthy = match &self.netns {
                None => client
                    .get(self.url("/healthz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200),
                Some(netns) => {
                    let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
                    super::netns::http_get(netns, address, "/healthz", &[])
                        .await
                        .is_ok_and(|(status, _)| status == 200)
                }
            };
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "assumed was not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until at least `n` connections to the daemon are open and the
    /// daemon has read everything sent on them (the kernel's receive queue
    /// is empty): with requests written in full first (`raw_send`), every
    /// one of them is then inside the daemon. False if not within `timeout`.
    pub async fn wait_requests_read(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if read_connections(self.port) >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until the daemon has logged `line`: its signal that
    /// a reload is applied, a shutdown begun, …
    pub async fn wait_for_log(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(line) {
            assert!(
                Instant::now() < deadline,
                "no {line:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_path).expect("token file")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// GET with the token; returns status, content type and body.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[("authorization", &self.token())])
            .await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = reqwest::Client::new().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("request to assumed");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("body");
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// The environment a client gets from `assumed env ROLE`, plus what it
    /// needs to reach moto (region, endpoint) and nothing from the test's own.
    pub fn client_env(&self, role: &str) -> Vec<(String, String)> {
        let mut env = base_env(self.dir.path());
        env.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            self.url(&format!("/role/{role}")),
        ));
        env.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
            self.token_path.display().to_string(),
        ));
        env.push(("AWS_ENDPOINT_URL_STS".into(), self.sts_endpoint.clone()));
        env
    }

    /// Runs boto3 (tests/clients/whoami.py) against `role` through the
    /// container endpoint, making `calls` STS calls; its JSON answer
    /// (`arn`, `method`). Panics with boto3's and the daemon's output if it fails.
    pub async fn boto3_whoami(&self, role: &str, calls: u32) -> serde_json::Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/whoami.py");
        let output = super::run(
            Command::new(super::python())
                .arg(script)
                .arg(calls.to_string())
                .env_clear()
                .envs(self.client_env(role)),
        )
        .await;
        assert!(
            output.status.success(),
            "boto3 failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        serde_json::from_slice(&output.stdout).expect("whoami JSON")
    }

    /// `assumed reload`, which must succeed; what it printed.
    pub async fn reload(&self) -> String {
        let output = super::run(self.cli().arg("reload")).await;
        assert!(
            output.status.success(),
            "assumed reload: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The `assumed` binary with this daemon's config, for CLI commands.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(binary());
        if self.config_path.exists() {
            command.arg("--config").arg(&self.config_path);
        }
        command
            .env_clear()
            .envs(base_env(self.dir.path()))
            .env("AWS_ENDPOINT_URL_STS", &self.sts_endpoint);
        command
    }

    /// The sum of a metric's samples whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").await.body;
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(series, _)| {
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                metric == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("daemon is running")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let sent = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(sent, 0, "kill({signal})");
    }

    /// Waits (bounded) for the daemon to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the daemon exits within 30 s")
            .expect("wait");
        status.code()
    }
}

/// Established IPv4 connections whose local port is `port` (the daemon's
/// side) with nothing left unread, from `/proc/net/tcp`.
fn read_connections(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) =
                (fields.get(1), fields.get(3), fields.get(4))
            else {
                return false;
            };
            // 01: ESTABLISHED; queues are `tx:rx` in hex.
            local.ends_with(&local_port) && *state == "01" && queues.ends_with(":00000000")
        })
        .count()
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A clean environment: PATH, a private HOME, no AWS settings from outside.
pub fn base_env(home: &Path) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_default();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), home.display().to_string()),
        (
            "XDG_RUNTIME_DIR".into(),
            home.join("xdg-run").display().to_string(),
        ),
        (
            "AWS_CONFIG_FILE".into(),
            home.join("aws-config").display().to_string(),
        ),
        (
            "AWS_SHARED_CREDENTIALS_FILE".into(),
            home.join("aws-credentials").display().to_string(),
        ),
        ("AWS_DEFAULT_REGION".into(), REGION.into()),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}
