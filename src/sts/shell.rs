//! Runs a command from the user's config the way `credential_process` and
//! `mfa_process` both need it run: `sh -c` (as the AWS CLI and aws-config
//! run `credential_process` on Unix), stdin closed, in a process group of
//! its own that is killed with everything in it at the deadline (or when
//! the fetch that started it is abandoned), and its stderr (a prompt, a
//! reason) kept for the log. Its stdout carries secrets: it goes only to the
//! reader the caller hands in.

use std::future::Future;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::ChildStdout;

/// At most this much of stderr is kept for the log.
const STDERR_LIMIT: usize = 4096;
/// After the process ends or is killed, how long to wait for its pipes.
const DRAIN: Duration = Duration::from_secs(1);

/// How a command is run.
pub(super) struct Shell<'a> {
    pub command: &'a str,
    /// A session of its own (`setsid`) rather than only a process group:
    /// no controlling terminal, so a program that would prompt fails at
    /// once instead of waiting for a person who is not there.
    pub without_terminal: bool,
    /// Kill the group even when the command ends by itself, so nothing it
    /// started outlives the run (a `sleep` left behind would hold the
    /// pipes open); otherwise only a command past its deadline is killed.
    pub kill_leftovers: bool,
}

/// How a run ended.
pub(super) enum Ended<T> {
    /// It exited successfully; what the stdout reader made of its output.
    Succeeded(T),
    /// It exited unsuccessfully.
    Failed(ExitStatus),
    /// It was still running at the deadline, and was killed.
    TimedOut,
    /// It could not be waited for.
    Lost(io::Error),
}

/// A finished run: how it ended, and its stderr, trimmed (for the log).
pub(super) struct Run<T> {
    pub ended: Ended<T>,
    pub stderr: String,
}

impl Shell<'_> {
    /// Runs the command for at most `deadline`; `read_stdout` consumes its
    /// stdout meanwhile (it must read to the end, so the process never
    /// blocks on a full pipe). Fails only when the command cannot start.
    pub async fn run<T, F>(
        &self,
        deadline: Duration,
        read_stdout: impl FnOnce(Option<ChildStdout>) -> F,
    ) -> io::Result<Run<T>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Default + Send + 'static,
    {
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", self.command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if self.without_terminal {
            // SAFETY: setsid(2) is async-signal-safe and touches no memory
            // of ours. A new session has no controlling terminal (so
            // /dev/tty cannot be opened) and is its own process group,
            // which the kill reaches.
            unsafe {
                command.pre_exec(|| {
                    libc::setsid();
                    Ok(())
                });
            }
        } else {
            // Its own process group, so a kill reaches whatever it started.
            command.process_group(0);
        }
        let mut child = command.spawn()?;
        let mut group = KillGroup(child.id());
        let stdout = tokio::spawn(read_stdout(child.stdout.take()));
        let stderr = tokio::spawn(read_all(child.stderr.take(), STDERR_LIMIT));
        let status = tokio::time::timeout(deadline, child.wait()).await;
        if matches!(status, Ok(Ok(_))) && !self.kill_leftovers {
            group.0 = None; // it ended by itself; leave what it left running
        }
        drop(group);
        let stderr = drained(stderr).await;
        let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        let ended = match status {
            Err(_) => Ended::TimedOut,
            Ok(Err(error)) => Ended::Lost(error),
            Ok(Ok(status)) if !status.success() => Ended::Failed(status),
            Ok(Ok(_)) => Ended::Succeeded(drained(stdout).await),
        };
        Ok(Run { ended, stderr })
    }
}

/// What a pipe's reader got, if it finishes within [`DRAIN`].
async fn drained<T: Default>(reader: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(DRAIN, reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Kills a process group when dropped: on the deadline, and when the fetch
/// that started it is abandoned (the cache's own deadline, a reload).
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group;
            // it touches no memory of ours.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// A pipe to its end, keeping at most `limit` bytes.
pub(super) async fn read_all(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let _ = pipe.take(limit).read_to_end(&mut out).await;
    }
    out
}

/// For tests: a command that leaves a `sleep` behind in its process group
/// and waits for it, so a run killed at its deadline must take the `sleep`
/// (not only `sh`) with it.
#[cfg(test)]
pub(super) struct Leftover {
    dir: tempfile::TempDir,
}

#[cfg(test)]
impl Leftover {
    pub fn new() -> Self {
        Leftover {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn command(&self) -> String {
        let pid_file = self.dir.path().join("pid");
        format!("sleep 30 & echo $! > {}; wait", pid_file.display())
    }

    /// Whether the `sleep` is still alive, given the kernel a moment to
    /// deliver the kill (it is reaped by init once killed).
    pub async fn outlived(&self) -> bool {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        for _ in 0..100 {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "));
            if !alive {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}
