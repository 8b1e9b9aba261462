//! The credentials that sign an AssumeRole: a profile's (static keys, SSO,
//! credential_process … through aws-config), the environment, IMDS or the
//! container endpoint (`credential_source`). When they cannot be had, the
//! error says exactly what the user must do; raw details go to the log only.

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::DisplayErrorContext;

use super::{Sts, account_of};
use crate::cache::{FetchError, RoleSpec};
use crate::config::CredentialSource;
use crate::credentials::{Issued, Secret};
use crate::profiles::SourceKind;

impl Sts {
    pub(super) async fn source_credentials(
        &self,
        role: &RoleSpec,
    ) -> Result<Credentials, FetchError> {
        let credential_source = role
            .config
            .imported
            .as_ref()
            .and_then(|i| i.credential_source);
        let provider = match credential_source {
            Some(CredentialSource::Environment) => {
                SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new())
            }
            Some(CredentialSource::Ec2InstanceMetadata) => {
                SharedCredentialsProvider::new(ImdsCredentialsProvider::builder().build())
            }
            Some(CredentialSource::EcsContainer) => {
                SharedCredentialsProvider::new(EcsCredentialsProvider::builder().build())
            }
            None => {
                let profile = self.source_profile(role);
                // Keys written in the profile itself (also how a profile can
                // be its own source_profile).
                if let Some(keys) = profile.and_then(|p| self.profiles().static_keys(p)) {
                    return Ok(keys);
                }
                match profile {
                    Some(profile) => profile_provider(profile),
                    None => self
                        .sdk_config(None)
                        .await
                        .credentials_provider()
                        .ok_or_else(|| no_source(role, None))?,
                }
            }
        };
        let profile = match credential_source {
            Some(_) => None,
            None => self.source_profile(role),
        };
        provider
            .provide_credentials()
            .await
            .map_err(|error| self.explain(role, profile, &error))
    }

    /// A role that is a profile's own temporary credentials (SSO role
    /// credentials, credential_process with an Expiration).
    pub(super) async fn profile_credentials(
        &self,
        role: &RoleSpec,
        profile: &str,
    ) -> Result<Issued, FetchError> {
        let creds = profile_provider(profile)
            .provide_credentials()
            .await
            .map_err(|error| self.explain(role, Some(profile), &error))?;
        let Some(expiration) = creds.expiry() else {
            return Err(FetchError::permanent(
                "NotTemporary",
                format!(
                    "profile {profile} gives long-lived keys; serve it through a role (role_arn) instead"
                ),
            ));
        };
        let role_arn = self.profiles().sso_role_arn(profile).unwrap_or_default();
        let account_id = creds
            .account_id()
            .map(|a| a.as_str().to_owned())
            .or_else(|| account_of(&role_arn).map(str::to_owned))
            .unwrap_or_default();
        Ok(Issued {
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token().unwrap_or_default()),
            expiration,
            assumed_role_arn: role_arn.clone(),
            role_arn,
            account_id,
        })
    }

    /// What to tell the user when a source cannot give credentials.
    pub(super) fn explain(
        &self,
        role: &RoleSpec,
        profile: Option<&str>,
        error: &CredentialsError,
    ) -> FetchError {
        let detail = DisplayErrorContext(error).to_string().trim().to_owned();
        // No profile named: the default chain, whose profile is "default".
        let profile = profile.unwrap_or("default");
        let error = match self.profiles().source_kind(profile) {
            SourceKind::Sso { login } => FetchError::needs_user(
                "SsoLoginRequired",
                format!(
                    "the AWS SSO session behind role {} (profile {profile}) has expired or was never started; run: {login}",
                    role.name
                ),
            ),
            SourceKind::Login { login } => FetchError::needs_user(
                "LoginRequired",
                format!(
                    "the aws login session behind role {} (profile {profile}) has expired or was never started; run: {login}",
                    role.name
                ),
            ),
            SourceKind::CredentialProcess => FetchError::needs_user(
                "CredentialProcessFailed",
                format!(
                    "the credential_process of profile {profile} (the source of role {}) failed; the daemon's log has its output",
                    role.name
                ),
            ),
            SourceKind::WebIdentity { token_file } => FetchError::needs_user(
                "WebIdentityTokenUnavailable",
                format!(
                    "the web identity token file {token_file} of profile {profile} could not be used (role {})",
                    role.name
                ),
            ),
            SourceKind::StaticKeys | SourceKind::Other => FetchError::transient(
                "SourceCredentialsUnavailable",
                format!(
                    "role {}: the credentials of profile {profile} could not be loaded; see the daemon's log",
                    role.name
                ),
            ),
        };
        error.with_detail(detail)
    }
}

/// A named profile's own credentials. Not aws-config's default chain with a
/// profile name: that chain looks at environment variables first, and the
/// daemon's environment is not the profile.
pub(super) fn profile_provider(profile: &str) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(
        ProfileFileCredentialsProvider::builder()
            .profile_name(profile)
            .build(),
    )
}

fn no_source(role: &RoleSpec, profile: Option<&str>) -> FetchError {
    FetchError::permanent(
        "NoSourceCredentials",
        format!(
            "role {}: no source credentials are configured (profile {})",
            role.name,
            profile.unwrap_or("default")
        ),
    )
}
