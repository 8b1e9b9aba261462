//! The credentials that sign an AssumeRole: a profile's (static keys, SSO,
//! credential_process … through aws-config), the environment, IMDS or the
//! container endpoint (`credential_source`). When they cannot be had, the
//! error says exactly what the user must do; raw details go to the log only.

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::profile::ProfileFileCredentialsProvider;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use super::Sts;
use super::process::ProcessProvider;
use super::sources::{Freshness, Source, SourceError, SourceKey};
use super::stored_keys::{LOCKED_CODE, POLL, Unavailable};
use crate::arn;
use crate::cache::{FetchError, RoleSpec};
use crate::config::CredentialSource;
use crate::credentials::{Issued, Secret};
use crate::profiles::SourceKind;

impl Sts {
    /// The credentials that sign `role`'s AssumeRole: its source's, shared
    /// with every other role on that source and cached until near expiry.
    pub(super) async fn source_credentials(
        &self,
        role: &RoleSpec,
    ) -> Result<Credentials, FetchError> {
        let key = self.source_key(role);
        if let SourceKey::Keys(name) = &key {
            // In memory already: nothing to run, cache or wait for.
            return self
                .keys
                .credentials(name)
                .map_err(|why| explain_keys(&role.name, name, why));
        }
        let source = self.source_for(role, &key).await?;
        source
            .credentials(Freshness::Cached)
            .await
            .map_err(|error| self.explain(role, &key, &error))
    }

    /// Which source signs for `role`: what roles that share credentials
    /// (and an MFA device) have in common. A role's own source
    /// (`credential_source`, `source_keys`, `source_profile`) before
    /// `[source]`'s (`keys`, else `profile`), else the default chain.
    pub(super) fn source_key(&self, role: &RoleSpec) -> SourceKey {
        let credential_source = role
            .config
            .imported
            .as_ref()
            .and_then(|i| i.credential_source);
        match credential_source {
            Some(CredentialSource::Environment) => SourceKey::Environment,
            Some(CredentialSource::Ec2InstanceMetadata) => SourceKey::Ec2InstanceMetadata,
            Some(CredentialSource::EcsContainer) => SourceKey::EcsContainer,
            None => {
                let source = self.source();
                let config = &role.config;
                match (&config.source_keys, &config.source_profile, &source.keys) {
                    (Some(keys), _, _) => SourceKey::Keys(keys.clone()),
                    (None, None, Some(keys)) => SourceKey::Keys(keys.clone()),
                    _ => match self.source_profile(role) {
                        Some(profile) => SourceKey::Profile(profile),
                        None => SourceKey::DefaultChain,
                    },
                }
            }
        }
    }

    /// The shared source for `key`, made on first use.
    async fn source_for(
        &self,
        role: &RoleSpec,
        key: &SourceKey,
    ) -> Result<Arc<Source>, FetchError> {
        if let Some(source) = self.sources.get(key) {
            return Ok(source);
        }
        let deadlines = self.deadlines();
        let made = match key {
            SourceKey::Environment => {
                SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new())
            }
            SourceKey::Ec2InstanceMetadata => {
                SharedCredentialsProvider::new(ImdsCredentialsProvider::builder().build())
            }
            SourceKey::EcsContainer => {
                SharedCredentialsProvider::new(EcsCredentialsProvider::builder().build())
            }
            SourceKey::Profile(profile) => self.profile_provider(profile),
            SourceKey::Keys(name) => {
                // `source_credentials` answers these from memory.
                return Err(FetchError::permanent(
                    "InternalError",
                    format!("stored keys {name} are not a provider"),
                ));
            }
            SourceKey::DefaultChain => self
                .sdk_config(None)
                .await
                .credentials_provider()
                .ok_or_else(|| no_source(role, None))?,
        };
        let deadline = match key {
            // The process has its own deadline, after which it is killed
            // and its stderr logged; this one only backs that up.
            SourceKey::Profile(profile)
                if self.profiles().credential_process(profile).is_some() =>
            {
                deadlines.process + Duration::from_secs(3)
            }
            _ => deadlines.source,
        };
        Ok(self.sources.source(key, || (made, deadline)))
    }

    /// A named profile's own credentials: keys written in the profile itself
    /// (also how a profile can be its own source_profile), its
    /// credential_process run by us (with a deadline), else aws-config's
    /// profile provider (SSO, web identity…). Not aws-config's default chain
    /// with a profile name: that chain looks at environment variables
    /// first, and the daemon's environment is not the profile.
    fn profile_provider(&self, profile: &str) -> SharedCredentialsProvider {
        let profiles = self.profiles();
        if let Some(keys) = profiles.static_keys(profile) {
            return SharedCredentialsProvider::new(keys);
        }
        if let Some(command) = profiles.credential_process(profile) {
            return SharedCredentialsProvider::new(ProcessProvider::new(
                profile,
                command,
                self.deadlines().process,
            ));
        }
        SharedCredentialsProvider::new(
            ProfileFileCredentialsProvider::builder()
                .profile_name(profile)
                .build(),
        )
    }

    /// A profile's own credentials through its shared source.
    pub(super) async fn profile_source_credentials(
        &self,
        role: &RoleSpec,
        profile: &str,
        freshness: Freshness,
    ) -> Result<Credentials, FetchError> {
        let key = SourceKey::Profile(profile.to_owned());
        self.source_for(role, &key)
            .await?
            .credentials(freshness)
            .await
            .map_err(|error| self.explain(role, &key, &error))
    }

    /// A role that is a profile's own temporary credentials (SSO role
    /// credentials, credential_process with an Expiration).
    pub(super) async fn profile_credentials(
        &self,
        role: &RoleSpec,
        profile: &str,
    ) -> Result<Issued, FetchError> {
        let creds = self
            .profile_source_credentials(role, profile, Freshness::Renewed)
            .await?;
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
            .or_else(|| arn::account(&role_arn).map(str::to_owned))
            .unwrap_or_default();
        Ok(Issued {
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token().unwrap_or_default()),
            expiration,
            role_arn,
            account_id,
        })
    }

    /// Whether an SSO login (or an `aws login`) happened since `failed_at` for
    /// the profile behind `role` (a token file in `~/.aws/sso/cache`, or
    /// `~/.aws/login/cache`, newer than the failure); if
    /// so, its source's remembered failure is dropped too.
    pub(super) fn sso_login_since(&self, role: &RoleSpec, failed_at: SystemTime) -> bool {
        let profile = match (&role.config.profile, role.config.role_arn.is_some()) {
            (Some(profile), false) => Some(profile.clone()),
            _ => self.source_profile(role),
        };
        let profile = profile.as_deref().unwrap_or("default");
        let home = std::env::var_os("HOME");
        let cache = match self.profiles().source_kind(profile) {
            SourceKind::Sso { .. } => home.map(|home| Path::new(&home).join(".aws/sso/cache")),
            // `aws login` writes its own cache, where aws-config's provider reads it.
            SourceKind::Login { .. } => std::env::var_os("AWS_LOGIN_CACHE_DIRECTORY")
                .map(Into::into)
                .or_else(|| home.map(|home| Path::new(&home).join(".aws/login/cache"))),
            _ => return false,
        };
        let newest = cache
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.metadata().ok()?.modified().ok())
            .max();
        let logged_in = newest.is_some_and(|at| at > failed_at);
        if logged_in {
            let key = match role
                .config
                .imported
                .as_ref()
                .and_then(|i| i.credential_source)
            {
                Some(_) => return false,
                None => SourceKey::Profile(profile.to_owned()),
            };
            self.sources.forget_failure(&key);
        }
        logged_in
    }

    /// What to tell the user when a source cannot give credentials.
    fn explain(&self, role: &RoleSpec, key: &SourceKey, error: &SourceError) -> FetchError {
        let detail = error.detail.clone();
        if error.timed_out {
            // Past its deadline: transient, so backoff applies and the role
            // recovers by itself once the source answers again.
            return FetchError::transient(
                "SourceTimeout",
                format!(
                    "role {}: {key} gave no source credentials in time; retrying with backoff (see the daemon's log)",
                    role.name
                ),
            )
            .with_detail(detail);
        }
        let profile = match key {
            SourceKey::Profile(profile) => profile.as_str(),
            // The default chain's profile is "default".
            SourceKey::DefaultChain => "default",
            other => {
                return FetchError::transient(
                    "SourceCredentialsUnavailable",
                    format!(
                        "role {}: {other} gave no source credentials; see the daemon's log",
                        role.name
                    ),
                )
                .with_detail(detail);
            }
        };
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
                    "the credential_process of profile {profile} (the source of role {}) {}; the daemon's log has its output",
                    role.name,
                    error.reason.as_deref().unwrap_or("failed")
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

/// What to tell a client whose role's stored keys cannot sign: what is
/// wrong and what to do, never "credentials missing" (aws-vault #513).
pub(super) fn explain_keys(role: &str, name: &str, why: Unavailable) -> FetchError {
    match why {
        Unavailable::Locked {
            backend,
            what_to_do,
        } => FetchError::needs_user(
            LOCKED_CODE,
            format!(
                "role {role} is signed by the stored keys {name}, and the {backend} keyring that holds them is locked: {what_to_do}; the role recovers by itself once it is unlocked (check with: assumed keys list)"
            ),
        ),
        Unavailable::Keyring(error) => FetchError::needs_user(
            "KeyringUnavailable",
            format!(
                "role {role} is signed by the stored keys {name}, which could not be read: {error}; the daemon tries again every {}s (check with: assumed keys list)",
                POLL.as_secs()
            ),
        ),
        Unavailable::NotStored { backend } => FetchError::needs_user(
            "StoredKeysNotFound",
            format!(
                "role {role} is signed by the stored keys {name}, and the {backend} keyring has none by that name; store them with: assumed keys add {name}"
            ),
        ),
        Unavailable::NotRead => FetchError::transient(
            "StoredKeysNotRead",
            format!(
                "role {role} is signed by the stored keys {name}, which the daemon has not read yet; try again in a moment"
            ),
        ),
    }
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
