//! `mfa_process`: a command that prints an MFA code (a YubiKey's `ykman
//! oath accounts code`, a password manager's `op item get --otp`), run by the
//! daemon itself when a role needs a code.
//!
//! It runs as `credential_process` does on Unix, with `sh -c`, but with no
//! terminal at all: stdin is closed and it starts a session of its own
//! (`setsid`), so a program that would prompt fails at once instead of
//! waiting for a person who is not there. It has a deadline; past it the
//! whole session is killed. The first line of stdout is the code and must be
//! six digits; stderr (a "touch your key" hint, a reason) goes to the log,
//! never to a client.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::process::{KillGroup, read_all};

use crate::credentials::Secret;

/// At most this much of stderr is kept for the log.
const STDERR_LIMIT: usize = 4096;
/// After the process ends or is killed, how long to wait for its pipes.
const DRAIN: Duration = Duration::from_secs(1);

/// Why no code came. The text is for the client's 503 and the log: it
/// names what happened, never what the process printed on stdout.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcessFailure(pub String);

/// Runs `command` for `role` and returns the code it printed. The command
/// itself is not logged: it may carry a password manager's session key.
pub async fn run(role: &str, command: &str, deadline: Duration) -> Result<Secret, ProcessFailure> {
    let mut child = tokio::process::Command::new("sh");
    child
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
    // A new session has no controlling terminal (so /dev/tty cannot be
    // opened) and is its own process group, which the kill below reaches.
    unsafe {
        child.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = child
        .spawn()
        .map_err(|error| ProcessFailure(format!("mfa_process could not be started: {error}")))?;
    let group = KillGroup(child.id());
    let stdout = tokio::spawn(first_line(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take(), STDERR_LIMIT));
    let status = tokio::time::timeout(deadline, child.wait()).await;
    // Ended or not, nothing it started may outlive the run (a `sleep` it
    // left behind would hold the pipes open): the group is killed either way.
    drop(group);
    let stderr = tokio::time::timeout(DRAIN, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
    if !stderr.is_empty() {
        tracing::info!(role, "mfa_process stderr: {stderr}");
    }
    let status = match status {
        Err(_) => {
            return Err(ProcessFailure(format!(
                "mfa_process did not print a code within {}; it was stopped",
                humantime::format_duration(deadline)
            )));
        }
        Ok(Err(error)) => {
            return Err(ProcessFailure(format!(
                "mfa_process could not be waited for: {error}"
            )));
        }
        Ok(Ok(status)) => status,
    };
    if !status.success() {
        return Err(ProcessFailure(format!(
            "mfa_process exited with {status} (its stderr is in the daemon's log)"
        )));
    }
    let line = tokio::time::timeout(DRAIN, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let code = line.trim();
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
        Ok(Secret::new(code))
    } else {
        Err(ProcessFailure(
            "mfa_process printed no six-digit code on its first line".into(),
        ))
    }
}

/// The first line of a pipe (at most 256 bytes of it); the rest is read and dropped
/// so the process never blocks on a full pipe.
async fn first_line(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let _ = (&mut reader).take(256).read_until(b'\n', &mut line).await;
    let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
    String::from_utf8(line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn code(command: &str) -> Result<String, ProcessFailure> {
        run("test", command, Duration::from_secs(10))
            .await
            .map(|code| code.expose().to_owned())
    }

    #[tokio::test]
    async fn the_first_line_is_the_code() {
        assert_eq!(
            code("printf '123456\\nmore\\n'; echo hint >&2").await,
            Ok("123456".into())
        );
        assert_eq!(code("echo '  654321  '").await, Ok("654321".into()));
    }

    #[tokio::test]
    async fn anything_but_six_digits_is_refused_without_echoing_it() {
        for command in [
            "echo 12345",
            "echo 1234567",
            "echo abcdef",
            "true",
            "echo; echo 123456",
        ] {
            let error = code(command).await.expect_err(command);
            assert!(
                error.0.contains("no six-digit code"),
                "{command}: {error:?}"
            );
            assert!(!error.0.contains("12345"), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_failing_process_says_how_it_ended() {
        let error = code("echo 123456; echo locked >&2; exit 3")
            .await
            .expect_err("fails");
        assert!(error.0.contains("exit status: 3"), "{error:?}");
        assert!(!error.0.contains("123456"), "{error:?}");
    }

    #[tokio::test]
    async fn there_is_no_terminal_and_no_stdin() {
        assert_eq!(
            code(
                "if [ -t 0 ] || (: </dev/tty) 2>/dev/null; then echo 111111; else echo 222222; fi"
            )
            .await,
            Ok("222222".into())
        );
        // A read from the closed stdin ends at once rather than waiting.
        assert_eq!(code("read x; echo 333333").await, Ok("333333".into()));
    }

    #[tokio::test]
    async fn a_hung_process_is_killed_with_its_children_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = std::time::Instant::now();
        let error = run("test", &command, Duration::from_millis(300))
            .await
            .expect_err("times out");
        assert!(error.0.contains("within 300ms"), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let mut alive = true;
        for _ in 0..100 {
            alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the process's child {pid} outlived the deadline");
    }
}
