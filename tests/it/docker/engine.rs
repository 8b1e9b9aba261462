//! The Docker engine the image and stack tests drive through its CLIs: which
//! `docker` and compose to run, one test at a time per machine, leftovers of
//! killed runs swept, the offline base images, and the project's image.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::harness::daemon::binary;
use crate::harness::run_with_timeout;

/// Compose projects of these tests are named `{PROJECT_PREFIX}{pid}`.
pub const PROJECT_PREFIX: &str = "assumed-test-docker-";
/// The image the tests build from the Dockerfile, and the uid it runs as.
pub const IMAGE: &str = "assumed-test/daemon:test";
pub const UID: u32 = 4242;
pub const GID: u32 = 4243;

const SHORT: Duration = Duration::from_secs(120);
/// debootstrap and PyPI on the first run of a machine (about 2 minutes here).
const BASE_IMAGES: Duration = Duration::from_secs(40 * 60);

pub struct Engine {
    /// The docker CLI ([`docker_cli`]).
    pub docker: String,
    /// `docker-compose` (Debian's 1.x), else the `docker compose` plugin.
    pub compose: Vec<String>,
    /// Held while a test uses the engine: the example stack's fixed subnet
    /// allows one stack per engine, and the base images are made once.
    _lock: File,
}

impl Engine {
    /// The engine, or `None` with a notice where none answers outside CI. In
    /// CI (`CI` set) a missing engine fails the test with the engine's own
    /// error, and dockerd's log when `scripts/test` tried to start it.
    pub async fn connect() -> Option<Engine> {
        let docker = docker_cli();
        if let Err(why) = server_version(&mut Command::new(&docker)).await {
            let in_ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty());
            no_engine(&why, &dockerd_log(), in_ci);
            return None;
        }
        let compose = if which("docker-compose") {
            vec!["docker-compose".to_owned()]
        } else {
            vec![docker.clone(), "compose".to_owned()]
        };
        let lock = lock_machine_wide();
        let engine = Engine {
            docker,
            compose,
            _lock: lock,
        };
        engine.sweep_stale_projects().await;
        Some(engine)
    }

    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.docker);
        // BuildKit: cache mounts in the Dockerfile, and only the stages needed.
        cmd.env("DOCKER_BUILDKIT", "1");
        cmd
    }

    /// `docker …`, which must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = run_with_timeout(self.docker().args(args), SHORT).await;
        stdout_of(&format!("docker {}", args.join(" ")), output)
    }

    pub fn compose_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..]);
        cmd
    }

    /// Removes containers, networks and volumes of earlier runs of these
    /// tests that were killed before `down`: the lock says none is in use.
    async fn sweep_stale_projects(&self) {
        // Containers and networks are named by ID, volumes by name: a
        // template field a kind lacks fails only once such an object exists.
        let by_id = "{{.ID}} {{.Label \"com.docker.compose.project\"}}";
        let by_name = "{{.Name}} {{.Label \"com.docker.compose.project\"}}";
        let kinds: [(&[&str], &[&str]); 3] = [
            (&["ps", "-a", "--format", by_id], &["rm", "-f", "-v"]),
            (&["network", "ls", "--format", by_id], &["network", "rm"]),
            (
                &["volume", "ls", "--format", by_name],
                &["volume", "rm", "-f"],
            ),
        ];
        for (list, remove) in kinds {
            let listed = self.ok(list).await;
            let stale = listed
                .lines()
                .filter_map(|line| line.split_once(' '))
                .filter(|(_, project)| project.starts_with(PROJECT_PREFIX))
                .map(|(id, _)| id);
            let args: Vec<&str> = remove.iter().copied().chain(stale).collect();
            if args.len() > remove.len() {
                self.ok(&args).await;
            }
        }
    }

    /// The base images from tests/docker/base-images.sh: made offline on a
    /// machine's first run, found in the engine afterwards.
    pub async fn base_images(&self) -> BaseImages {
        let output = run_with_timeout(
            Command::new(repo_path("tests/docker/base-images.sh")).env("DOCKER", &self.docker),
            BASE_IMAGES,
        )
        .await;
        let printed = stdout_of("tests/docker/base-images.sh", output);
        let find = |key: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .unwrap_or_else(|| panic!("base-images.sh printed no {key}: {printed}"))
                .to_owned()
        };
        BaseImages {
            app: find("app="),
            runtime: find("runtime="),
        }
    }

    /// Builds the Dockerfile into [`IMAGE`] for [`UID`]:[`GID`], with the
    /// local base images and, instead of compiling in a Rust image (which no
    /// registry here can give), the debug binary `cargo test` already built:
    /// the Dockerfile's `prebuilt` stage. Without its debug info it is about
    /// 50 MB instead of 230, which keeps the build context and layers small.
    /// The final stage is the one users get.
    pub async fn build_image(&self, base: &BaseImages) {
        let context = tempfile::tempdir().expect("temp dir");
        let stripped = context.path().join("assumed");
        let strip = run_with_timeout(
            Command::new("strip")
                .args(["--strip-debug", "-o"])
                .arg(&stripped)
                .arg(binary()),
            SHORT,
        )
        .await;
        stdout_of("strip", strip);
        let args = [
            format!("BUILD_IMAGE={}", base.app),
            format!("RUNTIME_IMAGE={}", base.runtime),
            "BINARY=prebuilt".to_owned(),
            "PREBUILT=assumed".to_owned(),
            format!("UID={UID}"),
            format!("GID={GID}"),
        ];
        let mut build = self.docker();
        build.args(["build", "--file", &repo_path("Dockerfile"), "--tag", IMAGE]);
        for arg in &args {
            build.args(["--build-arg", arg]);
        }
        build.arg(context.path());
        let previous = self.image_id(IMAGE).await;
        let output = run_with_timeout(&mut build, Duration::from_secs(600)).await;
        assert!(
            output.status.success(),
            "docker build failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // Each new binary makes a new image and new cache records: drop the
        // image it replaces, and keep BuildKit's cache to its most recent 2 GB.
        let current = self.image_id(IMAGE).await;
        if let Some(previous) = previous.filter(|id| Some(id) != current.as_ref()) {
            let _ = run_with_timeout(self.docker().args(["image", "rm", &previous]), SHORT).await;
        }
        self.ok(&["builder", "prune", "--force", "--keep-storage", "2GB"])
            .await;
    }

    async fn image_id(&self, image: &str) -> Option<String> {
        let output = run_with_timeout(
            self.docker()
                .args(["image", "inspect", "--format", "{{.Id}}", image]),
            SHORT,
        )
        .await;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// `ASSUMED_TEST_DOCKER`, else Debian's docker CLI (docker.io) when
/// installed: its `docker build` has BuildKit built in, where a newer CLI
/// needs the buildx plugin. Else `docker`.
pub fn docker_cli() -> String {
    std::env::var("ASSUMED_TEST_DOCKER").unwrap_or_else(|_| {
        if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker".into()
        } else {
            "docker".into()
        }
    })
}

/// The engine's version from `docker` (a command with any environment the
/// caller set), or why there is none: the CLI's own error.
pub async fn server_version(docker: &mut Command) -> Result<String, String> {
    let info = docker
        .args(["version", "--format", "{{.Server.Version}}"])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(SHORT, info).await {
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        Ok(Ok(out)) => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Ok(Err(e)) => Err(format!("cannot run docker: {e}")),
        Err(_) => Err(format!("docker version did not answer within {SHORT:?}")),
    }
}

/// No engine: a failure with `why` and dockerd's log in CI, a notice elsewhere.
pub fn no_engine(why: &str, dockerd_log: &str, in_ci: bool) {
    if in_ci {
        panic!("the Docker tests need a Docker engine, which CI must provide: {why}{dockerd_log}");
    }
    eprintln!(
        "NOTICE: Docker tests not run: no Docker engine answers ({why}). \
         scripts/test starts one.{dockerd_log}"
    );
}

/// The end of the log of the dockerd `scripts/test` started, if it did.
fn dockerd_log() -> String {
    std::env::var("ASSUMED_TEST_DOCKERD_LOG")
        .ok()
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|log| {
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "\n--- dockerd log (last lines) ---\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            )
        })
        .unwrap_or_default()
}

pub struct BaseImages {
    /// Debian with python3, the AWS CLI v1, boto3 and moto.
    pub app: String,
    /// The equivalent of gcr.io/distroless/cc-debian12.
    pub runtime: String,
}

pub fn repo_path(relative: &str) -> String {
    format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// The stdout of a command that must have succeeded; panics with its output.
pub fn stdout_of(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// An exclusive lock shared by every test process on this machine, released
/// when the file is closed (also when the process dies).
fn lock_machine_wide() -> File {
    let path: PathBuf = std::env::temp_dir().join("assumed-test-docker.lock");
    let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; it blocks until free.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        locked,
        0,
        "flock {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    file
}
