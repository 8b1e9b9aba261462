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

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::shell::{Ended, Shell};
use crate::credentials::Secret;

/// Why no code came. The text is for the client's 503 and the log: it
/// names what happened, never what the process printed on stdout.
#[derive(Debug, PartialEq, Eq)]
pub struct ProcessFailure(pub String);

/// Runs `command` for `role` and returns the code it printed. The command
/// itself is not logged: it may carry a password manager's session key.
pub async fn run(role: &str, command: &str, deadline: Duration) -> Result<Secret, ProcessFailure> {
    let shell = Shell {
        command,
        without_terminal: true,
        kill_leftovers: true,
    };
    let run = shell
        .run(deadline, first_line)
        .await
        .map_err(|error| ProcessFailure(format!("mfa_process could not be started: {error}")))?;
    if !run.stderr.is_empty() {
        tracing::info!(role, "mfa_process stderr: {}", run.stderr);
    }
    let line = match run.ended {
        Ended::Succeeded(line) => line,
        Ended::Failed(status) => {
            return Err(ProcessFailure(format!(
                "mfa_process exited with {status} (its stderr is in the daemon's log)"
            )));
        }
        Ended::TimedOut => {
            return Err(ProcessFailure(format!(
                "mfa_process did not print a code within {}; it was stopped",
                humantime::format_duration(deadline)
            )));
        }
        Ended::Lost(error) => {
            return Err(ProcessFailure(format!(
                "mfa_process could not be waited for: {error}"
            )));
        }
    };
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
    use crate::sts::shell::Leftover;

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
        let leftover = Leftover::new();
        let started = std::time::Instant::now();
        let error = run("test", &leftover.command(), Duration::from_millis(300))
            .await
            .expect_err("times out");
        assert!(error.0.contains("within 300ms"), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            !leftover.outlived().await,
            "the process's child outlived the deadline"
        );
    }
}
