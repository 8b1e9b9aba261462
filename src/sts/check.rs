//! `assumed doctor`'s question to the daemon: do the credentials that sign
//! a role's AssumeRole work, and is this machine's clock in step with STS?
//! One `GetCallerIdentity`, signed by the source, answers both (its `Date`).

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sdk_sts::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sts::error::BoxError;
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat as Format};
use parking_lot::Mutex;

use super::describe::Call;
use super::sources::{Freshness, SourceKey};
use super::{Sts, classify};
use crate::cache::{FetchError, RoleSpec};
use crate::config::CredentialSource;
use crate::profiles::SourceKind;

/// What the check found. Holds no secret.
#[derive(Debug)]
pub struct SourceReport {
    /// Where the credentials come from, in the user's words.
    pub source: String,
    pub outcome: Result<Identity, FetchError>,
    /// STS's clock minus ours, from the answer's `Date` (whole seconds).
    pub clock_skew_seconds: Option<i64>,
}

#[derive(Debug)]
pub struct Identity {
    pub arn: String,
    pub expires: Option<SystemTime>,
}

impl Sts {
    /// Checks the source that signs for `role` (the root of its `via` chain;
    /// `None`: `[source]`). Makes exactly one STS call, and none when the
    /// source cannot give credentials at all.
    pub async fn check_source(&self, role: Option<&RoleSpec>) -> SourceReport {
        let unnamed = RoleSpec {
            name: "(source)".into(),
            config: Default::default(),
        };
        let role = role.unwrap_or(&unnamed);
        let source = self.describe_source(role);
        let credentials = match &role.config.profile {
            Some(profile) if role.config.role_arn.is_none() => {
                self.profile_source_credentials(role, profile, Freshness::Cached)
                    .await
            }
            _ => self.source_credentials(role).await,
        };
        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(error) => {
                return SourceReport {
                    source,
                    outcome: Err(error),
                    clock_skew_seconds: None,
                };
            }
        };
        let expires = credentials.expiry();
        let date = ServerDate::default();
        let call = Call::new("GetCallerIdentity", self.deadlines());
        let answer = self
            .client(role, Some(credentials))
            .await
            .get_caller_identity()
            .customize()
            .interceptor(date.clone())
            .interceptor(call.watch())
            .send()
            .await;
        let outcome = match answer {
            Ok(identity) => Ok(Identity {
                arn: identity.arn().unwrap_or_default().to_owned(),
                expires,
            }),
            Err(error) => Err(classify(&role.name, &call, error)),
        };
        SourceReport {
            source,
            outcome,
            clock_skew_seconds: date.skew_seconds(SystemTime::now()),
        }
    }

    /// Whose keys `credentials` are: one `GetCallerIdentity` signed by them,
    /// at the STS a role without settings of its own reaches (`[source]
    /// sts_endpoint` and region, else the environment and profiles, as
    /// [`super::endpoint::resolve`] finds them). For `assumed keys add`,
    /// which must not store keys STS refuses. The ARN on success.
    pub async fn caller_identity(&self, credentials: Credentials) -> Result<String, FetchError> {
        let role = RoleSpec {
            name: "(keys)".into(),
            config: Default::default(),
        };
        let call = Call::new("GetCallerIdentity", self.deadlines());
        let answer = self
            .client(&role, Some(credentials))
            .await
            .get_caller_identity()
            .customize()
            .interceptor(call.watch())
            .send()
            .await;
        match answer {
            Ok(identity) => Ok(identity.arn().unwrap_or_default().to_owned()),
            Err(error) => Err(classify(&role.name, &call, error)),
        }
    }

    fn describe_source(&self, role: &RoleSpec) -> String {
        if let (None, Some(profile)) = (&role.config.role_arn, &role.config.profile) {
            return format!("profile {profile} ({})", self.kind_of(profile));
        }
        if let SourceKey::Keys(name) = self.source_key(role) {
            return format!("stored keys {name} ({} keyring)", self.keys.backend());
        }
        let credential_source = role
            .config
            .imported
            .as_ref()
            .and_then(|i| i.credential_source);
        match (credential_source, self.source_profile(role)) {
            (Some(CredentialSource::Environment), _) => {
                "credential_source = Environment (the daemon's AWS_ACCESS_KEY_ID…)".into()
            }
            (Some(CredentialSource::Ec2InstanceMetadata), _) => {
                "credential_source = Ec2InstanceMetadata".into()
            }
            (Some(CredentialSource::EcsContainer), _) => "credential_source = EcsContainer".into(),
            (None, Some(profile)) => format!("profile {profile} ({})", self.kind_of(&profile)),
            (None, None) if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() => {
                "the daemon's environment (AWS_ACCESS_KEY_ID…)".into()
            }
            (None, None) => format!(
                "the default chain: profile default ({})",
                self.kind_of("default")
            ),
        }
    }

    fn kind_of(&self, profile: &str) -> &'static str {
        match self.profiles().source_kind(profile) {
            SourceKind::Sso { .. } => "SSO",
            SourceKind::CredentialProcess => "credential_process",
            SourceKind::Login { .. } => "aws login",
            SourceKind::WebIdentity { .. } => "web identity",
            SourceKind::StaticKeys => "static keys",
            SourceKind::Other => "aws-config",
        }
    }
}

/// Keeps the `Date` header of STS's answer, whatever the answer was.
#[derive(Clone, Debug, Default)]
struct ServerDate(Arc<Mutex<Option<String>>>);

impl ServerDate {
    fn skew_seconds(&self, now: SystemTime) -> Option<i64> {
        let text = self.0.lock().clone()?;
        let server = DateTime::from_str(&text, Format::HttpDate).ok()?;
        let now = DateTime::from(now);
        Some(server.secs() - now.secs())
    }
}

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            *self.0.lock() = Some(date.to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn skew_is_sts_time_minus_ours() {
        let date = ServerDate::default();
        assert_eq!(date.skew_seconds(SystemTime::now()), None);
        *date.0.lock() = Some("Sun, 06 Nov 1994 08:49:37 GMT".into());
        let ours = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 90);
        assert_eq!(date.skew_seconds(ours), Some(90));
    }
}
