//! STS and IAM clients signed by one stored key (or a session from it),
//! for `keys import` (who the keys belong to) and `keys rotate`.
//!
//! STS goes where the daemon's would for a role without its own settings
//! (`[source] sts_endpoint`, then the SDKs' order: `sts/endpoint.rs`). IAM
//! goes where an SDK would send it: `AWS_ENDPOINT_URL_IAM`, then
//! `AWS_ENDPOINT_URL`, then the profile's `services`/`endpoint_url`, else
//! IAM's own endpoint; `[source] sts_endpoint` is STS's alone.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::cache::RoleSpec;
use crate::config::{Config, Deadlines, RoleConfig};
use crate::keys::StoredKey;
use crate::sts::{FALLBACK_REGION, endpoint};

pub struct Aws {
    sdk: SdkConfig,
    region: String,
    sts_endpoint: Option<String>,
    /// Where STS calls go, for messages.
    pub sts_shown: String,
    deadlines: Deadlines,
}

impl Aws {
    pub async fn for_config(config: &Config) -> Aws {
        let profiles = crate::profiles::load().await;
        let role = RoleSpec {
            name: "keys".into(),
            config: RoleConfig::default(),
        };
        let env = &endpoint::process_env;
        let resolved = endpoint::resolve(&role, &config.source, &profiles, env);
        let region = endpoint::region(&role, &config.source, &profiles, env)
            .unwrap_or_else(|| FALLBACK_REGION.to_owned());
        let sts_shown = resolved.url_in(&region).await;
        let deadlines = config.source.deadlines;
        // The region is given, so loading reads files and the environment
        // only (endpoint settings), never the instance metadata service.
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .no_credentials()
            .load()
            .await;
        Aws {
            sdk,
            region,
            sts_endpoint: resolved.url,
            sts_shown,
            deadlines,
        }
    }

    fn timeouts(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.deadlines.connect)
            .read_timeout(self.deadlines.read)
            .operation_attempt_timeout(self.deadlines.connect + self.deadlines.read)
            .operation_timeout(self.deadlines.sts)
            .build()
    }

    pub fn sts(&self, signer: Credentials) -> aws_sdk_sts::Client {
        let mut builder = aws_sdk_sts::config::Builder::from(&self.sdk)
            .region(Region::new(self.region.clone()))
            .timeout_config(self.timeouts())
            .credentials_provider(signer);
        builder.set_endpoint_url(self.sts_endpoint.clone());
        aws_sdk_sts::Client::from_conf(builder.build())
    }

    pub fn iam(&self, signer: Credentials) -> aws_sdk_iam::Client {
        let builder = aws_sdk_iam::config::Builder::from(&self.sdk)
            .region(Region::new(self.region.clone()))
            .timeout_config(self.timeouts())
            .credentials_provider(signer);
        aws_sdk_iam::Client::from_conf(builder.build())
    }

    /// Where IAM calls go, for messages: the variables that name it, else
    /// IAM's own endpoint (or the profile's, which aws-config applies).
    pub fn iam_shown() -> String {
        ["AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|name| endpoint::process_env(name))
            .unwrap_or_else(|| "IAM's endpoint".to_owned())
    }

    /// The ARN `signer` belongs to (GetCallerIdentity).
    pub async fn whoami(&self, signer: Credentials) -> Result<String, String> {
        let answer = self
            .sts(signer)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| said("GetCallerIdentity", &self.sts_shown, &e))?;
        answer
            .arn()
            .map(str::to_owned)
            .ok_or_else(|| format!("STS at {} answered without an ARN", self.sts_shown))
    }

    /// Like [`Aws::whoami`], retried until `limit`: a key IAM just created
    /// takes a few seconds to work everywhere (eventual consistency).
    pub async fn whoami_within(
        &self,
        signer: Credentials,
        limit: Duration,
    ) -> Result<String, String> {
        let until = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(500);
        loop {
            match self.whoami(signer.clone()).await {
                Ok(arn) => return Ok(arn),
                Err(error) if tokio::time::Instant::now() + pause > until => return Err(error),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
            }
        }
    }
}

/// A stored key as SDK credentials.
pub fn credentials(key: &StoredKey) -> Credentials {
    Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.as_str(),
        None,
        None,
        "assumed-keys",
    )
}

/// A failed call in one sentence: the operation, where it went, and what
/// AWS said (its code and message; never a request's content).
pub fn said<E, R>(operation: &str, endpoint: &str, error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{operation} at {endpoint}: {code}: {message}"),
        (Some(code), None) => format!("{operation} at {endpoint}: {code}"),
        _ => format!(
            "{operation} at {endpoint} failed: {}",
            DisplayErrorContext(error)
        ),
    }
}

/// The code AWS answered with, if it answered.
pub fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.code()
}

/// The IAM user name in an IAM user's ARN (`arn:aws:iam::1:user/path/NAME`).
pub fn user_name(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    let path = resource.strip_prefix("user/")?;
    path.rsplit('/').next().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_user_arns_only() {
        assert_eq!(
            user_name("arn:aws:iam::123456789012:user/alice"),
            Some("alice")
        );
        assert_eq!(
            user_name("arn:aws-cn:iam::123456789012:user/team/ops/bob"),
            Some("bob")
        );
        assert_eq!(user_name("arn:aws:iam::123456789012:root"), None);
        assert_eq!(
            user_name("arn:aws:sts::123456789012:assumed-role/dev/alice"),
            None
        );
    }
}
