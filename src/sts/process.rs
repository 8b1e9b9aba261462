//! A profile's `credential_process`, run by the daemon itself rather than by
//! aws-config, whose runner has no deadline and leaves the process behind
//! when its future is dropped. Here it runs through `shell.rs`: a deadline,
//! killed with everything it started when the deadline passes (or the fetch
//! is abandoned), stderr to the log. Its stdout carries secrets and never
//! goes anywhere but the parser.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};

use super::shell::{Ended, Shell, read_all};

/// Why a run gave no credentials, in words safe to show a client: never
/// its output (stdout carries secrets; stderr goes to the log).
#[derive(Debug)]
pub struct ProcessFailed {
    /// What happened, after "the credential_process of profile P": "exited
    /// with exit status: 1", "printed output that is not …".
    pub reason: String,
}

impl std::fmt::Display for ProcessFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "credential_process {}", self.reason)
    }
}

impl std::error::Error for ProcessFailed {}

fn failed(reason: impl Into<String>) -> CredentialsError {
    CredentialsError::provider_error(ProcessFailed {
        reason: reason.into(),
    })
}

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
        let shell = Shell {
            command: &self.command,
            without_terminal: false,
            kill_leftovers: false,
        };
        let run = shell
            .run(self.deadline, |pipe| read_all(pipe, usize::MAX))
            .await
            .map_err(|error| failed(format!("could not be started ({error})")))?;
        let stderr = run.stderr;
        if !stderr.is_empty() {
            tracing::info!(profile = %self.profile, "credential_process stderr: {stderr}");
        }
        match run.ended {
            Ended::Succeeded(stdout) => parse(&stdout).map_err(failed),
            // Its stderr is logged above, and stays out of the error, which
            // clients see.
            Ended::Failed(status) => Err(failed(format!("exited with {status}"))),
            Ended::TimedOut => {
                tracing::warn!(
                    profile = %self.profile,
                    "credential_process did not finish within {}; killed it",
                    humantime::format_duration(self.deadline)
                );
                Err(CredentialsError::provider_timed_out(self.deadline))
            }
            Ended::Lost(error) => Err(failed(format!("could not be waited for ({error})"))),
        }
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

/// The credential_process output format (Version 1). Only field names and
/// positions ever reach an error message: the values are secrets. An error
/// is what the process did ("printed …").
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
            "printed output that is not its JSON format (Version 1 with AccessKeyId and SecretAccessKey): bad at line {} column {}",
            error.line(),
            error.column()
        )
    })?;
    if output.version != 1 {
        return Err(format!(
            "printed Version {}; only 1 is known",
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
            .ok_or_else(|| "printed an Expiration that is not an RFC 3339 time".to_owned())?;
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
    use crate::sts::shell::Leftover;

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
        let leftover = Leftover::new();
        let started = std::time::Instant::now();
        let error = provider(&leftover.command(), Duration::from_millis(300))
            .provide_credentials()
            .await
            .expect_err("times out");
        assert!(matches!(error, CredentialsError::ProviderTimedOut(_)));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            !leftover.outlived().await,
            "the process's child outlived the deadline"
        );
    }

    /// How a failing run's error reads.
    async fn failure(command: &str) -> String {
        let error = provider(command, Duration::from_secs(10))
            .provide_credentials()
            .await
            .expect_err("fails");
        crate::error_chain::readable(&error)
    }

    #[tokio::test]
    async fn a_failure_says_why_without_the_output() {
        let text = failure(
            "echo '{\"Version\":1,\"AccessKeyId\":\"AKID\",\"SecretAccessKey\":\"SECRETVALUE\"}'; echo 'touch the key' >&2; exit 3",
        )
        .await;
        assert_eq!(text, "credential_process exited with exit status: 3");
        assert!(!text.contains("SECRETVALUE"), "{text}");

        let text = failure("echo '{\"Version\":1,\"AccessKeyId\":\"SECRETVALUE\"'").await;
        assert!(!text.contains("SECRETVALUE"), "{text}");
    }
}
