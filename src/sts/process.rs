//! A profile's `credential_process`, run by the daemon itself rather than by
//! aws-config, whose runner has no deadline and leaves the process behind
//! when its future is dropped. Here the process gets a deadline, is killed
//! with everything it started when the deadline passes (or the fetch is
//! abandoned), and its stderr (a prompt, a reason) goes to the log. Its
//! stdout carries secrets and never goes anywhere but the parser.
//!
//! The command runs as the AWS CLI and aws-config run it on Unix: `sh -c`.

use std::process::Stdio;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};
use tokio::io::{AsyncRead, AsyncReadExt};

/// At most this much of stderr is kept for the log.
const STDERR_LIMIT: usize = 4096;
/// After a kill, how long to wait for the pipes to close.
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct ProcessProvider {
    profile: String,
    command: String,
    deadline: Duration,
}

impl ProcessProvider {
    pub fn new(profile: &str, command: &str, deadline: Duration) -> Self {
        ProcessProvider {
            profile: profile.to_owned(),
            command: command.to_owned(),
            deadline,
        }
    }

    async fn run(&self) -> Result<Credentials, CredentialsError> {
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", &self.command])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a kill reaches whatever it started.
            .process_group(0);
        let mut child = command.spawn().map_err(|error| {
            CredentialsError::provider_error(format!("cannot start credential_process: {error}"))
        })?;
        let mut group = KillGroup(child.id());
        let stdout = tokio::spawn(read_all(child.stdout.take(), usize::MAX));
        let stderr = tokio::spawn(read_all(child.stderr.take(), STDERR_LIMIT));
        let status = tokio::time::timeout(self.deadline, child.wait()).await;
        if matches!(status, Ok(Ok(_))) {
            group.0 = None; // it ended by itself; leave what it left running
        } else {
            drop(group); // kill it, and everything it started
        }
        let stderr = tokio::time::timeout(DRAIN_AFTER_KILL, stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        if !stderr.is_empty() {
            tracing::info!(profile = %self.profile, "credential_process stderr: {stderr}");
        }
        let status = match status {
            Err(_) => {
                tracing::warn!(
                    profile = %self.profile,
                    "credential_process did not finish within {}; killed it",
                    humantime::format_duration(self.deadline)
                );
                return Err(CredentialsError::provider_timed_out(self.deadline));
            }
            Ok(Err(error)) => {
                return Err(CredentialsError::provider_error(format!(
                    "credential_process could not be waited for: {error}"
                )));
            }
            Ok(Ok(status)) => status,
        };
        if !status.success() {
            return Err(CredentialsError::provider_error(format!(
                "credential_process exited with {status}; stderr: {stderr}"
            )));
        }
        let stdout = tokio::time::timeout(DRAIN_AFTER_KILL, stdout)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        parse(&stdout).map_err(CredentialsError::provider_error)
    }
}

impl ProvideCredentials for ProcessProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.run())
    }
}

/// Kills a process group when dropped: on the deadline, and when the fetch
/// that started it is abandoned (the cache's own deadline, a reload).
pub(super) struct KillGroup(pub(super) Option<u32>);

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

pub(super) async fn read_all(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let _ = pipe.take(limit).read_to_end(&mut out).await;
    }
    out
}

/// The credential_process output format (Version 1). Only field names and
/// positions ever reach an error message: the values are secrets.
fn parse(stdout: &[u8]) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        version: u8,
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        expiration: Option<String>,
        account_id: Option<String>,
    }
    let output: Output = serde_json::from_slice(stdout).map_err(|error| {
        format!(
            "credential_process output is not its JSON format (Version 1 with AccessKeyId and SecretAccessKey), at line {} column {}",
            error.line(),
            error.column()
        )
    })?;
    if output.version != 1 {
        return Err(format!(
            "credential_process output has Version {}; only 1 is known",
            output.version
        ));
    }
    let mut builder = Credentials::builder()
        .access_key_id(output.access_key_id)
        .secret_access_key(output.secret_access_key)
        .provider_name("credential_process");
    builder.set_session_token(output.session_token);
    if let Some(expiration) = output.expiration {
        let expiry = DateTime::from_str(&expiration, DateTimeFormat::DateTime)
            .ok()
            .and_then(|at| SystemTime::try_from(at).ok())
            .ok_or_else(|| {
                "credential_process output has an Expiration that is not an RFC 3339 time"
                    .to_owned()
            })?;
        builder.set_expiry(Some(expiry));
    }
    if let Some(account) = output.account_id {
        builder = builder.account_id(account);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(command: &str, deadline: Duration) -> ProcessProvider {
        ProcessProvider::new("test", command, deadline)
    }

    #[tokio::test]
    async fn reads_the_json_a_process_prints() {
        let json = r#"{"Version":1,"AccessKeyId":"AKIDX","SecretAccessKey":"s","SessionToken":"t","Expiration":"2099-01-01T00:00:00Z"}"#;
        let creds = provider(&format!("echo '{json}'"), Duration::from_secs(10))
            .provide_credentials()
            .await
            .expect("credentials");
        assert_eq!(creds.access_key_id(), "AKIDX");
        assert_eq!(creds.session_token(), Some("t"));
        assert!(creds.expiry().is_some());
    }

    #[tokio::test]
    async fn a_process_past_its_deadline_is_killed_with_its_children() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // The grandchild `sleep` is what must die: sh alone is the easy part.
        let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let started = std::time::Instant::now();
        let error = provider(&command, Duration::from_millis(300))
            .provide_credentials()
            .await
            .expect_err("times out");
        assert!(matches!(error, CredentialsError::ProviderTimedOut(_)));
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // Reaped by init once killed; give the kernel a moment to deliver it.
        let mut alive = true;
        for _ in 0..50 {
            // SAFETY: signal 0 only asks whether the process exists.
            alive = unsafe { libc::kill(pid, 0) } == 0
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|stat| !stat.contains(") Z "));
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the process's child {pid} outlived the deadline");
    }

    #[tokio::test]
    async fn a_failure_says_why_without_the_output() {
        let error = provider(
            "echo '{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"SECRETVALUE\"}'; echo 'touch the key' >&2; exit 3",
            Duration::from_secs(10),
        )
        .provide_credentials()
        .await
        .expect_err("fails");
        let text = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&error));
        assert!(text.contains("touch the key"), "{text}");
        assert!(!text.contains("SECRETVALUE"), "{text}");

        let error = provider(
            "echo '{\"Version\":1,\"AccessKeyId\":\"SECRETVALUE\"'",
            Duration::from_secs(10),
        )
        .provide_credentials()
        .await
        .expect_err("bad output");
        let text = format!("{}", aws_sdk_sts::error::DisplayErrorContext(&error));
        assert!(!text.contains("SECRETVALUE"), "{text}");
    }
}
