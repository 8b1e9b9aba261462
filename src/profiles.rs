//! `~/.aws/config` and `~/.aws/credentials`, read by aws-config's own parser
//! (honouring `AWS_CONFIG_FILE` and `AWS_SHARED_CREDENTIALS_FILE`): which
//! profiles are served as roles, and what kind of source a profile is, so a
//! failure can say exactly what the user must do.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use aws_config::profile::ProfileSet;
use aws_runtime::env_config::file::EnvConfigFiles;
use aws_runtime::env_config::property::PropertiesKey;
use aws_types::os_shim_internal::{Env, Fs};

use crate::config::{Config, CredentialSource, ImportedProfile, RoleConfig, validate};
use crate::credentials::Secret;

/// The roles to serve: `[roles]`, plus every `~/.aws/config` profile with a
/// `role_arn` (unless `import_profiles = false`); `[roles]` wins a name clash.
pub fn all_roles(config: &Config, profiles: &AwsProfiles) -> BTreeMap<String, RoleConfig> {
    let mut roles = if config.server.import_profiles {
        profiles.roles()
    } else {
        BTreeMap::new()
    };
    roles.extend(config.roles.clone());
    roles
}

/// What [`all_roles`] is now, for CLI commands (`roles`, `env`, `doctor`…),
/// which run before any runtime exists.
pub fn known_roles(config: &Config) -> BTreeMap<String, RoleConfig> {
    let profiles = AwsProfiles::load_blocking().unwrap_or_else(|problem| {
        eprintln!("assumed: {problem}; showing only [roles]");
        AwsProfiles::default()
    });
    all_roles(config, &profiles)
}

/// Reads `~/.aws/config` (also needed without importing: source profiles'
/// keys and kinds); one that cannot be read imports nothing, loudly.
pub async fn load() -> AwsProfiles {
    AwsProfiles::load().await.unwrap_or_else(|problem| {
        tracing::warn!("{problem}; no profiles imported");
        AwsProfiles::default()
    })
}

#[derive(Debug, Default)]
pub struct AwsProfiles {
    set: Option<ProfileSet>,
}

/// What a source profile is, as far as telling the user what to do goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// IAM Identity Center: `login` is the `aws sso login …` that renews it.
    Sso {
        login: String,
    },
    CredentialProcess,
    /// `aws login` (AWS CLI 2.32+): `login` is the command that renews it.
    Login {
        login: String,
    },
    WebIdentity {
        token_file: String,
    },
    StaticKeys,
    Other,
}

impl AwsProfiles {
    /// Reads the shared config files. Missing files are simply no profiles;
    /// a file that does not parse is reported and imports nothing.
    pub async fn load() -> Result<Self, String> {
        let loaded =
            aws_config::profile::load(&Fs::real(), &Env::real(), &EnvConfigFiles::default(), None)
                .await;
        match loaded {
            Ok(set) => Ok(AwsProfiles { set: Some(set) }),
            Err(error) => Err(format!(
                "cannot read the AWS config files: {}",
                crate::error_chain::readable(&error)
            )),
        }
    }

    /// [`load`](Self::load) for the CLI, which has no runtime of its own.
    pub fn load_blocking() -> Result<Self, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(Self::load())
    }

    /// Profiles parsed from `config` text alone, for unit tests.
    #[cfg(test)]
    pub async fn from_config_text(config: &str) -> Self {
        let fs = Fs::from_slice(&[("/aws-config", config)]);
        let env = Env::from_slice(&[
            ("AWS_CONFIG_FILE", "/aws-config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/none"),
        ]);
        let set = aws_config::profile::load(&fs, &env, &EnvConfigFiles::default(), None)
            .await
            .ok();
        AwsProfiles { set }
    }

    fn get(&self, profile: &str, key: &str) -> Option<&str> {
        self.set
            .as_ref()?
            .get_profile(profile)?
            .get(key)
            .map(str::trim)
            .filter(|value| !value.is_empty())
    }

    /// Whether the files have a profile of that name.
    pub fn has_profile(&self, name: &str) -> bool {
        self.set
            .as_ref()
            .is_some_and(|set| set.get_profile(name).is_some())
    }

    fn names(&self) -> Vec<String> {
        self.set
            .as_ref()
            .map(|set| set.profiles().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Every profile with a `role_arn`, as a role. Profiles whose settings
    /// do not make sense are skipped with a warning: a stray profile in
    /// `~/.aws/config` must not stop the daemon.
    pub fn roles(&self) -> BTreeMap<String, RoleConfig> {
        let mut roles = BTreeMap::new();
        for name in self.names() {
            if self.get(&name, "role_arn").is_none() {
                continue;
            }
            match self.role(&name) {
                Ok(role) => {
                    roles.insert(name, role);
                }
                Err(problem) => {
                    tracing::warn!(profile = %name, "not serving this profile: {problem}")
                }
            }
        }
        drop_broken_chains(&mut roles);
        roles
    }

    fn role(&self, name: &str) -> Result<RoleConfig, String> {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@+=,-".contains(c))
        {
            return Err("its name cannot be used in a URL path".into());
        }
        let mut role = self.assume_role_settings(name)?;
        let mut imported = ImportedProfile {
            profile: name.to_owned(),
            legacy_global_sts: self.get(name, "sts_regional_endpoints") == Some("legacy"),
            ..ImportedProfile::default()
        };
        self.source_of_role(name, &mut role, &mut imported)?;
        role.imported = Some(imported);
        Ok(role)
    }

    /// The profile's AssumeRole settings, each checked as the TOML config
    /// checks it.
    fn assume_role_settings(&self, name: &str) -> Result<RoleConfig, String> {
        let get = |key| self.get(name, key).map(str::to_owned);
        let role_arn = get("role_arn").ok_or("no role_arn")?;
        validate::role_arn(&role_arn)?;
        let mut role = RoleConfig {
            role_arn: Some(role_arn),
            session_name: get("role_session_name"),
            external_id: get("external_id").map(Secret::new),
            mfa_serial: get("mfa_serial"),
            // The convention of the maintained aws-vault fork.
            mfa_process: get("mfa_process"),
            region: get("region"),
            ..RoleConfig::default()
        };
        if let Some(seconds) = get("duration_seconds") {
            let duration = seconds
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("duration_seconds {seconds:?} is not a number"))?;
            validate::session_duration(&duration)?;
            role.duration = Some(duration);
        }
        for (value, check) in [
            (
                role.session_name.as_deref(),
                validate::session_name as fn(&str) -> Result<(), String>,
            ),
            (
                role.external_id.as_ref().map(Secret::expose),
                validate::external_id,
            ),
            (role.mfa_serial.as_deref(), validate::mfa_serial),
            (role.region.as_deref(), validate::region),
        ] {
            if let Some(value) = value {
                check(value)?;
            }
        }
        Ok(role)
    }

    /// What signs the profile's AssumeRole, as the AWS CLI reads it: a web
    /// identity token, a source profile (a role of its own becomes `via`),
    /// or a `credential_source`.
    fn source_of_role(
        &self,
        name: &str,
        role: &mut RoleConfig,
        imported: &mut ImportedProfile,
    ) -> Result<(), String> {
        let get = |key| self.get(name, key).map(str::to_owned);
        match (
            get("source_profile"),
            get("credential_source"),
            get("web_identity_token_file"),
        ) {
            (_, _, Some(token_file)) => {
                imported.web_identity_token_file = Some(PathBuf::from(token_file))
            }
            (Some(_), Some(_), _) => {
                return Err("source_profile and credential_source are mutually exclusive".into());
            }
            (Some(source), None, _)
                if source != name && self.get(&source, "role_arn").is_some() =>
            {
                // The source is itself a role: chain through the cache, so
                // each hop is assumed, cached and refreshed on its own.
                role.via = Some(source);
            }
            (Some(source), None, _) => role.source_profile = Some(source),
            (None, Some(source), _) => {
                imported.credential_source = Some(match source.as_str() {
                    "Environment" => CredentialSource::Environment,
                    "Ec2InstanceMetadata" => CredentialSource::Ec2InstanceMetadata,
                    "EcsContainer" => CredentialSource::EcsContainer,
                    other => return Err(format!("credential_source {other:?} is not supported")),
                })
            }
            (None, None, None) => {
                return Err(
                    "role_arn without source_profile, credential_source or web_identity_token_file"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Whether `profile` assumes a role itself (has a `role_arn`): credentials
    /// signed by it are a role session, so what they assume is role chaining.
    pub fn assumes_role(&self, profile: &str) -> bool {
        self.get(profile, "role_arn").is_some()
    }

    pub fn source_kind(&self, profile: &str) -> SourceKind {
        if let Some(session) = self.get(profile, "sso_session") {
            return SourceKind::Sso {
                login: format!("aws sso login --sso-session {session}"),
            };
        }
        if self.get(profile, "sso_start_url").is_some() {
            return SourceKind::Sso {
                login: format!("aws sso login --profile {profile}"),
            };
        }
        if self.get(profile, "credential_process").is_some() {
            return SourceKind::CredentialProcess;
        }
        if self.get(profile, "login_session").is_some() {
            return SourceKind::Login {
                login: format!("aws login --profile {profile}"),
            };
        }
        if let Some(token_file) = self.get(profile, "web_identity_token_file") {
            return SourceKind::WebIdentity {
                token_file: token_file.to_owned(),
            };
        }
        if self.static_keys(profile).is_some() {
            return SourceKind::StaticKeys;
        }
        SourceKind::Other
    }

    /// For an SSO profile: the name its token's cache file is keyed by (the
    /// sso-session's name, or a legacy profile's start URL) and the command
    /// that renews it.
    pub fn sso_login(&self, profile: &str) -> Option<(String, String)> {
        if let Some(session) = self.get(profile, "sso_session") {
            return Some((
                session.to_owned(),
                format!("aws sso login --sso-session {session}"),
            ));
        }
        let start_url = self.get(profile, "sso_start_url")?;
        Some((
            start_url.to_owned(),
            format!("aws sso login --profile {profile}"),
        ))
    }

    /// `aws_access_key_id`/`aws_secret_access_key` (and a session token) set
    /// directly in the profile, as the AWS CLI reads them for a profile that
    /// is its own `source_profile`.
    pub fn static_keys(&self, profile: &str) -> Option<aws_credential_types::Credentials> {
        let key = self.get(profile, "aws_access_key_id")?;
        let secret = self.get(profile, "aws_secret_access_key")?;
        let token = self.get(profile, "aws_session_token").map(str::to_owned);
        Some(aws_credential_types::Credentials::new(
            key, secret, token, None, "profile",
        ))
    }

    /// The `credential_process` command of a profile whose credentials come
    /// from one (and from nothing aws-config would prefer: SSO, static keys).
    pub fn credential_process(&self, profile: &str) -> Option<&str> {
        match self.source_kind(profile) {
            SourceKind::CredentialProcess => self.get(profile, "credential_process"),
            _ => None,
        }
    }

    /// What `profile` itself says about STS's endpoint (`sts/endpoint.rs`
    /// decides what counts): its `endpoint_url`, the `sts` entry of the
    /// `[services NAME]` section it names, `ignore_configured_endpoint_urls`.
    pub fn endpoint_settings(&self, profile: &str) -> EndpointSettings {
        let services = self.get(profile, "services").and_then(|section| {
            let key = PropertiesKey::builder()
                .section_key("services")
                .section_name(section)
                .property_name("sts")
                .sub_property_name("endpoint_url")
                .build()
                .ok()?;
            let url = self.set.as_ref()?.other_sections().get(&key)?.trim();
            (!url.is_empty()).then(|| (section.to_owned(), url.to_owned()))
        });
        EndpointSettings {
            services,
            endpoint_url: self.get(profile, "endpoint_url").map(str::to_owned),
            ignore_configured: self
                .get(profile, "ignore_configured_endpoint_urls")
                .and_then(parse_bool),
        }
    }

    /// The profile `profile` names as its `source_profile`, if any.
    pub fn source_profile(&self, profile: &str) -> Option<&str> {
        self.get(profile, "source_profile")
    }

    /// The profile's own `region`.
    pub fn region(&self, profile: &str) -> Option<&str> {
        self.get(profile, "region")
    }

    /// The account and role an SSO profile stands for, for `RoleArn` in answers.
    pub fn sso_role_arn(&self, profile: &str) -> Option<String> {
        let account = self.get(profile, "sso_account_id")?;
        let role = self.get(profile, "sso_role_name")?;
        Some(format!("arn:aws:iam::{account}:role/{role}"))
    }
}

/// What one profile says about STS's endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSettings {
    /// `services = NAME` and `[services NAME] sts = endpoint_url = …`: the
    /// section's name and the URL.
    pub services: Option<(String, String)>,
    pub endpoint_url: Option<String>,
    /// `ignore_configured_endpoint_urls`, when set to true or false.
    pub ignore_configured: Option<bool>,
}

impl EndpointSettings {
    /// Whether the profile says anything about endpoints at all.
    pub fn is_empty(&self) -> bool {
        self == &EndpointSettings::default()
    }
}

/// `true`/`false` as the SDKs read them (any case); anything else is unset.
pub fn parse_bool(value: &str) -> Option<bool> {
    if value.trim().eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.trim().eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Skips roles whose `source_profile` chain loops (a → b → a would recurse
/// forever) or leads to a profile that was skipped.
fn drop_broken_chains(roles: &mut BTreeMap<String, RoleConfig>) {
    loop {
        let dangling: Vec<String> = roles
            .iter()
            .filter(|(_, role)| {
                role.via
                    .as_ref()
                    .is_some_and(|via| !roles.contains_key(via))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if dangling.is_empty() {
            break;
        }
        for name in dangling {
            tracing::warn!(profile = %name, "not serving this profile: its source_profile was not imported");
            roles.remove(&name);
        }
    }
    let looping: Vec<String> = roles
        .keys()
        .filter(|start| {
            let mut seen = HashSet::new();
            let mut current = start.as_str();
            while let Some(next) = roles.get(current).and_then(|r| r.via.as_deref()) {
                if !seen.insert(current.to_owned()) {
                    return true;
                }
                current = next;
            }
            false
        })
        .cloned()
        .collect();
    for name in looping {
        tracing::warn!(profile = %name, "not serving this profile: its source_profile chain loops");
        roles.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mfa_process_and_login_session_are_read_from_profiles() {
        let profiles = AwsProfiles::from_config_text(
            "[profile console]\nlogin_session = arn:aws:iam::111111111111:user/alice\n\
             [profile admin]\nrole_arn = arn:aws:iam::111111111111:role/admin\n\
             source_profile = console\nmfa_serial = arn:aws:iam::111111111111:mfa/alice\n\
             mfa_process = ykman oath accounts code --single aws\n",
        )
        .await;
        let roles = profiles.roles();
        assert_eq!(
            roles["admin"].mfa_process.as_deref(),
            Some("ykman oath accounts code --single aws")
        );
        assert_eq!(
            profiles.source_kind("console"),
            SourceKind::Login {
                login: "aws login --profile console".into()
            }
        );
    }
}
