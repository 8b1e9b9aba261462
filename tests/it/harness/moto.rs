//! A real STS for tests: `moto_server` on loopback, one per test process, or
//! the shared one that scripts/test starts (`ASSUMED_TEST_MOTO_URL`).

use super::free_port;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Set by scripts/test to share one moto_server between all test binaries.
pub const MOTO_URL_ENV: &str = "ASSUMED_TEST_MOTO_URL";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LINES: usize = 50;

static MOTO_URL: OnceCell<String> = OnceCell::const_new();

/// Base URL (`http://127.0.0.1:PORT`, no trailing slash) of a running, warmed
/// moto_server. Uses `$ASSUMED_TEST_MOTO_URL` if set; otherwise starts
/// `moto_server` once for this test process (it is killed when the process
/// exits). Panics if moto does not answer within 30 s.
pub async fn moto_url() -> String {
    MOTO_URL
        .get_or_init(|| async {
            match std::env::var(MOTO_URL_ENV) {
                Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
                _ => start().await,
            }
        })
        .await
        .clone()
}

/// A SigV4 `Authorization` header for `access_key_id`. moto does not check
/// signatures, but it routes a request by the service in the credential scope:
/// without `/sts/` in it, a POST to `/` is taken for S3.
pub fn fake_sigv4(access_key_id: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/20250101/us-east-1/sts/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

async fn start() -> String {
    let mut failures = Vec::new();
    // The port from free_port() can be taken before moto binds it: try a few.
    for _ in 0..3 {
        let url = format!("http://127.0.0.1:{}", free_port());
        let moto = Moto::spawn(&url);
        match moto.wait_until_answering(&url).await {
            Ok(()) => {
                warm_up(&url).await;
                return url;
            }
            Err(why) => {
                moto.kill();
                failures.push(why);
            }
        }
    }
    panic!(
        "moto_server did not start (is `moto[server]` installed? scripts/test installs it):\n{}",
        failures.join("\n")
    )
}

/// moto loads its backends on the first request, which takes seconds; do it
/// here so that tests timing the daemon do not time moto's start.
async fn warm_up(url: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{url}/"))
        .header("Authorization", fake_sigv4("AKIDWARMUP"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("Action=GetCallerIdentity&Version=2011-06-15")
        .timeout(READY_TIMEOUT)
        .send()
        .await
        .unwrap_or_else(|e| panic!("warming moto at {url}: {e}"));
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    assert!(
        status.is_success() && body.contains("GetCallerIdentityResponse"),
        "moto at {url} answered the warm-up GetCallerIdentity with {status}: {body}"
    );
}

/// A moto_server child process, its exit status once it has exited, and the
/// last lines it logged (for panic messages).
struct Moto {
    pid: u32,
    exited: Arc<Mutex<Option<ExitStatus>>>,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Moto {
    fn spawn(url: &str) -> Moto {
        let port = url.rsplit(':').next().expect("url has a port").to_owned();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_this_process(&mut cmd);
        let exited = Arc::new(Mutex::new(None));
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let (exited2, log2) = (exited.clone(), log.clone());
        // PR_SET_PDEATHSIG fires when the *thread* that forked the child ends,
        // not the process. Test threads end after each test, so fork from a
        // thread that waits for moto and so lives as long as moto does.
        std::thread::Builder::new()
            .name("moto-keeper".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => return pid_tx.send(Err(e)).expect("spawn() waits for the pid"),
                };
                pid_tx
                    .send(Ok(child.id()))
                    .expect("spawn() waits for the pid");
                let stderr = child.stderr.take().expect("stderr is piped");
                // Drain moto's log (it logs every request) so it never blocks on a full pipe.
                std::thread::spawn(move || keep_tail(stderr, &log2));
                let status = child.wait().expect("wait for moto_server");
                *exited2.lock().expect("exit status lock") = Some(status);
            })
            .expect("start the moto-keeper thread");
        let pid = pid_rx
            .recv()
            .expect("moto-keeper reports the pid")
            .unwrap_or_else(|e| {
                panic!("cannot run moto_server ({e}); install it with: python3 -m pip install 'moto[server]'")
            });
        Moto { pid, exited, log }
    }

    /// Polls moto's HTTP port (its only readiness signal) until it answers.
    async fn wait_until_answering(&self, url: &str) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = client
                .get(format!("{url}/"))
                .timeout(Duration::from_secs(2));
            if probe.send().await.is_ok() {
                return Ok(());
            }
            if let Some(status) = *self.exited.lock().expect("exit status lock") {
                return Err(format!(
                    "moto_server on {url} exited ({status}):\n{}",
                    self.tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto_server on {url} did not answer within {READY_TIMEOUT:?}:\n{}",
                    self.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&self) {
        if self.exited.lock().expect("exit status lock").is_none() {
            // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    fn tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn keep_tail(stderr: std::process::ChildStderr, log: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let mut log = log.lock().expect("log lock");
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }
}

/// Makes the kernel kill the child when this test process exits, however it
/// exits (panic, abort, Ctrl-C): otherwise moto would outlive every run.
#[cfg(target_os = "linux")]
fn die_with_this_process(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // If the parent died before prctl, no signal will ever come.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// No PDEATHSIG outside Linux: there a leftover moto dies with scripts/test's trap.
#[cfg(not(target_os = "linux"))]
fn die_with_this_process(_cmd: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn moto_url_is_shared_and_answers_sts() {
        let url = moto_url().await;
        assert_eq!(url, moto_url().await, "one moto per test process");
        let answer = reqwest::Client::new()
            .post(format!("{url}/"))
            .header("Authorization", fake_sigv4("AKIDMOTOTEST"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("Action=GetSessionToken&Version=2011-06-15")
            .send()
            .await
            .expect("moto answers");
        assert_eq!(answer.status(), 200);
        let body = answer.text().await.expect("body");
        assert!(body.contains("<GetSessionTokenResult>"), "{body}");
    }
}
