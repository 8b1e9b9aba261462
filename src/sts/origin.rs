//! How a role's credentials come to be: one AssumeRole signed by credentials
//! that are not a role session, a chain of role sessions, or a profile's own
//! credentials. The console federation endpoint cares: it takes
//! `SessionDuration` only for the first kind (`assumed console --duration`).
//!
//! Decided from the config and `~/.aws/config`, the same facts the fetch
//! path acts on, so the answer needs no credentials and no STS call.

use super::Sts;
use crate::cache::RoleSpec;
use crate::profiles::SourceKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// One AssumeRole (or AssumeRoleWithWebIdentity) signed by long-lived
    /// keys, an MFA session, the environment, or an instance/task role.
    AssumeRole,
    /// Assumed with another role's session; `reason` says which, for messages.
    RoleChain { reason: String },
    /// A profile's own temporary credentials (IAM Identity Center,
    /// credential_process): the daemon assumes nothing.
    Profile { profile: String },
}

impl Origin {
    /// The lowercase word the admin API uses.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::AssumeRole => "assume-role",
            Origin::RoleChain { .. } => "role-chain",
            Origin::Profile { .. } => "profile",
        }
    }

    /// Why these credentials are what they are, in a sentence about `role`.
    pub fn explanation(&self, role: &str) -> String {
        match self {
            Origin::AssumeRole => format!("role {role} is assumed with one AssumeRole"),
            Origin::RoleChain { reason } => reason.clone(),
            Origin::Profile { profile } => format!(
                "role {role} serves profile {profile}'s own credentials; assumed makes no AssumeRole for it"
            ),
        }
    }
}

impl Sts {
    pub fn origin(&self, role: &RoleSpec) -> Origin {
        let config = &role.config;
        let name = &role.name;
        let imported = config.imported.as_ref();
        if imported.is_some_and(|i| i.web_identity_token_file.is_some()) {
            return Origin::AssumeRole;
        }
        if config.role_arn.is_none() {
            if let Some(profile) = &config.profile {
                return Origin::Profile {
                    profile: profile.clone(),
                };
            }
        }
        if let Some(via) = &config.via {
            let reason = match imported {
                Some(_) => format!(
                    "role {name} is chained: its source_profile {via} is itself a role, and {name} is assumed with {via}'s session"
                ),
                None => format!(
                    "role {name} is chained: it is assumed with the session of role {via} (via = \"{via}\")"
                ),
            };
            return Origin::RoleChain { reason };
        }
        if imported.is_some_and(|i| i.credential_source.is_some()) {
            // The environment, or an instance/task role: AWS does not count
            // the latter as role chaining.
            return Origin::AssumeRole;
        }
        let Some(profile) = self.source_profile(role) else {
            return Origin::AssumeRole;
        };
        let profile = profile.as_str();
        let profiles = self.profiles();
        if profiles.static_keys(profile).is_some() {
            return Origin::AssumeRole;
        }
        if profiles.assumes_role(profile) {
            return Origin::RoleChain {
                reason: format!(
                    "role {name} is chained: its source profile {profile} assumes a role itself, and {name} is assumed with that session"
                ),
            };
        }
        if let SourceKind::Sso { .. } = profiles.source_kind(profile) {
            return Origin::RoleChain {
                reason: format!(
                    "role {name} is chained: its source profile {profile} gives IAM Identity Center role credentials, and {name} is assumed with them"
                ),
            };
        }
        Origin::AssumeRole
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{ImportedProfile, RoleConfig, SourceConfig};
    use crate::profiles::AwsProfiles;

    const AWS_CONFIG: &str = "\
[profile keys]
aws_access_key_id = AKIAEXAMPLE
aws_secret_access_key = secret

[profile hop]
role_arn = arn:aws:iam::111111111111:role/hop
source_profile = keys

[profile sso]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = Admin

[profile process]
credential_process = /bin/false
";

    async fn sts(source_profile: Option<&str>) -> Sts {
        let sts = Sts::new(SourceConfig {
            profile: source_profile.map(str::to_owned),
            ..SourceConfig::default()
        });
        let profiles = AwsProfiles::from_config_text(AWS_CONFIG).await;
        sts.set_profiles(Arc::new(profiles)).await;
        sts
    }

    fn role(config: RoleConfig) -> RoleSpec {
        RoleSpec {
            name: "dev".into(),
            config: RoleConfig {
                role_arn: config
                    .role_arn
                    .or(Some("arn:aws:iam::222222222222:role/dev".into()))
                    .filter(|_| config.profile.is_none()),
                ..config
            },
        }
    }

    #[tokio::test]
    async fn a_role_signed_by_keys_or_a_process_is_one_assume_role() {
        let plain = role(RoleConfig::default());
        assert_eq!(sts(None).await.origin(&plain), Origin::AssumeRole);
        assert_eq!(sts(Some("keys")).await.origin(&plain), Origin::AssumeRole);
        assert_eq!(
            sts(Some("process")).await.origin(&plain),
            Origin::AssumeRole
        );
    }

    #[tokio::test]
    async fn via_and_role_or_sso_source_profiles_are_chains() {
        let sts = sts(None).await;
        let via = role(RoleConfig {
            via: Some("hub".into()),
            ..RoleConfig::default()
        });
        let origin = sts.origin(&via);
        assert_eq!(origin.kind(), "role-chain");
        assert!(
            origin.explanation("dev").contains("via = \"hub\""),
            "{origin:?}"
        );

        let imported = role(RoleConfig {
            via: Some("hop".into()),
            imported: Some(ImportedProfile::default()),
            ..RoleConfig::default()
        });
        assert!(
            sts.origin(&imported)
                .explanation("dev")
                .contains("source_profile hop is itself a role")
        );

        for source in ["hop", "sso"] {
            let sourced = role(RoleConfig {
                source_profile: Some(source.into()),
                ..RoleConfig::default()
            });
            let origin = sts.origin(&sourced);
            assert_eq!(origin.kind(), "role-chain", "{source}");
            assert!(origin.explanation("dev").contains(source));
        }
    }

    #[tokio::test]
    async fn a_profile_role_is_the_profiles_own_credentials() {
        let sso = role(RoleConfig {
            profile: Some("sso".into()),
            ..RoleConfig::default()
        });
        assert_eq!(
            sts(None).await.origin(&sso),
            Origin::Profile {
                profile: "sso".into()
            }
        );
    }
}
