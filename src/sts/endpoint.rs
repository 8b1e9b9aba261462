//! Where a role's STS calls go, and which setting said so: one answer, used
//! by the client that assumes the role, by `assumed status` and (through it)
//! by `assumed doctor`, and by error messages that name the endpoint tried.
//!
//! Strongest first:
//!
//! 1. the role's own `sts_endpoint` (`[roles.NAME]`);
//! 2. `[source] sts_endpoint`;
//! 3. `AWS_ENDPOINT_URL_STS`, 4. `AWS_ENDPOINT_URL` (the daemon's environment);
//! 5. the `sts` entry of the `[services NAME]` section the profile names,
//!    6. the profile's `endpoint_url`;
//! 7. `sts_regional_endpoints = legacy` of an imported profile: the global
//!    endpoint; else the SDK's regional endpoint.
//!
//! 3–6 are the SDKs' own order (botocore's `ConfiguredEndpointProvider`,
//! aws-config's service-specific `EnvConfigValue`: environment before the
//! file, service-specific before global), and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`
//! (else the profile's `ignore_configured_endpoint_urls`) set to true skips
//! all four, as it does there; 1–2 are explicit configuration of the
//! daemon, which the SDKs also let win over everything.
//!
//! "The profile": the SDKs read the profile the user selected, for every
//! hop of a chain. The daemon has no selected profile, so it reads the role's
//! own (an imported role's profile; for a `[roles]` entry the one whose
//! credentials sign: `source_profile`, `[source] profile`, `AWS_PROFILE`,
//! `default`), and when that one says nothing about endpoints, the profile
//! its `source_profile` names, and so on: `[default] endpoint_url` (LocalStack)
//! then reaches a role that `source_profile = default` imports, where the
//! AWS CLI would take the role's profile alone. docs/aws-config.md has the table.

use std::fmt;

use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};

use crate::cache::RoleSpec;
use crate::config::SourceConfig;
use crate::profiles::{AwsProfiles, EndpointSettings, parse_bool};

/// What `sts_regional_endpoints = legacy` means.
pub const GLOBAL_STS_ENDPOINT: &str = "https://sts.amazonaws.com";

pub const ENV_STS: &str = "AWS_ENDPOINT_URL_STS";
pub const ENV_GLOBAL: &str = "AWS_ENDPOINT_URL";
pub const ENV_IGNORE: &str = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";

/// A role's STS endpoint as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The URL the STS client is given; `None`: the SDK's own endpoint for
    /// the region (see [`Resolved::url_in`]).
    pub url: Option<String>,
    pub from: Setting,
    /// Set when configured endpoints were skipped, and by what.
    pub ignored_by: Option<String>,
}

/// The setting an endpoint came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `[roles.NAME] sts_endpoint`.
    Role(String),
    /// `[source] sts_endpoint`.
    Source,
    /// `AWS_ENDPOINT_URL_STS`.
    EnvSts,
    /// `AWS_ENDPOINT_URL`.
    EnvGlobal,
    /// `services = SECTION` in `profile`, and its `sts` entry.
    Services { profile: String, section: String },
    /// `endpoint_url` in `profile`.
    Profile(String),
    /// `sts_regional_endpoints = legacy` in `profile`.
    LegacyGlobal(String),
    /// Nothing configured: the SDK's regional endpoint.
    Default,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Setting::Role(name) => write!(f, "[roles.{name}] sts_endpoint"),
            Setting::Source => f.write_str("[source] sts_endpoint"),
            Setting::EnvSts => f.write_str(ENV_STS),
            Setting::EnvGlobal => f.write_str(ENV_GLOBAL),
            Setting::Services { profile, section } => write!(
                f,
                "the sts endpoint_url of [services {section}] (profile {profile})"
            ),
            Setting::Profile(profile) => write!(f, "endpoint_url of profile {profile}"),
            Setting::LegacyGlobal(profile) => {
                write!(f, "sts_regional_endpoints = legacy of profile {profile}")
            }
            Setting::Default => f.write_str("the SDK's regional endpoint"),
        }
    }
}

impl Resolved {
    /// Where the answer came from, in the user's words, with what was ignored.
    pub fn from_text(&self) -> String {
        match &self.ignored_by {
            Some(by) => format!("{} ({by} ignores configured endpoints)", self.from),
            None => self.from.to_string(),
        }
    }

    /// The URL the calls go to when the client's region is `region`.
    pub async fn url_in(&self, region: &str) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => default_url(region).await,
        }
    }
}

/// The daemon's own environment, as the SDKs read it (an empty value is unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// Where `role`'s STS calls go; `env` is the daemon's environment.
pub fn resolve(
    role: &RoleSpec,
    source: &SourceConfig,
    profiles: &AwsProfiles,
    env: &dyn Fn(&str) -> Option<String>,
) -> Resolved {
    let configured = |url: &str, from| Resolved {
        url: Some(url.to_owned()),
        from,
        ignored_by: None,
    };
    if let Some(url) = &role.config.sts_endpoint {
        return configured(url, Setting::Role(role.name.clone()));
    }
    if let Some(url) = &source.sts_endpoint {
        return configured(url, Setting::Source);
    }
    let chain = profile_chain(role, source, profiles, env);
    let (profile, settings) = chain
        .iter()
        .map(|name| (name.as_str(), profiles.endpoint_settings(name)))
        .find(|(_, settings)| !settings.is_empty())
        .unwrap_or(("", EndpointSettings::default()));
    let ignored_by = match env(ENV_IGNORE).as_deref().and_then(parse_bool) {
        Some(true) => Some(format!("{ENV_IGNORE}=true")),
        Some(false) => None,
        None => (settings.ignore_configured == Some(true))
            .then(|| format!("ignore_configured_endpoint_urls of profile {profile}")),
    };
    if ignored_by.is_none() {
        if let Some(url) = env(ENV_STS) {
            return configured(&url, Setting::EnvSts);
        }
        if let Some(url) = env(ENV_GLOBAL) {
            return configured(&url, Setting::EnvGlobal);
        }
        if let Some((section, url)) = settings.services {
            let from = Setting::Services {
                profile: profile.to_owned(),
                section,
            };
            return configured(&url, from);
        }
        if let Some(url) = settings.endpoint_url {
            return configured(&url, Setting::Profile(profile.to_owned()));
        }
    }
    let legacy = role
        .config
        .imported
        .as_ref()
        .filter(|i| i.legacy_global_sts);
    let (url, from) = match legacy {
        Some(imported) => (
            Some(GLOBAL_STS_ENDPOINT.to_owned()),
            Setting::LegacyGlobal(imported.profile.clone()),
        ),
        None => (None, Setting::Default),
    };
    Resolved {
        url,
        from,
        ignored_by,
    }
}

/// The region `role`'s STS client is in when the daemon's config, its
/// environment or the profiles name one (as aws-config orders them); `None`:
/// whatever aws-config finds beyond (IMDS), else `us-east-1`.
pub fn region(
    role: &RoleSpec,
    source: &SourceConfig,
    profiles: &AwsProfiles,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if let Setting::LegacyGlobal(_) = resolve(role, source, profiles, env).from {
        // The global endpoint signs in us-east-1.
        return Some(super::FALLBACK_REGION.to_owned());
    }
    role.config
        .region
        .clone()
        .or_else(|| source.region.clone())
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .or_else(|| {
            profile_chain(role, source, profiles, env)
                .iter()
                .find_map(|name| profiles.region(name).map(str::to_owned))
        })
}

/// The profiles whose endpoint settings count for `role`, first the one
/// read first: the role's own profile, or the one that signs for it, then
/// each `source_profile` in turn (a loop ends the walk).
fn profile_chain(
    role: &RoleSpec,
    source: &SourceConfig,
    profiles: &AwsProfiles,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let config = &role.config;
    let start = match &config.imported {
        Some(imported) => imported.profile.clone(),
        None => config
            .profile
            .clone()
            .filter(|_| config.role_arn.is_none())
            .or_else(|| config.source_profile.clone())
            .or_else(|| source.profile.clone())
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned()),
    };
    let mut chain = vec![start];
    while let Some(next) = chain.last().and_then(|last| profiles.source_profile(last)) {
        if chain.iter().any(|seen| seen == next) {
            break;
        }
        chain.push(next.to_owned());
    }
    chain
}

/// The SDK's own STS endpoint for `region` (its endpoint rules, so other
/// partitions come out right).
pub async fn default_url(region: &str) -> String {
    let params = Params::builder()
        .region(region.to_owned())
        .use_fips(false)
        .use_dual_stack(false)
        .use_global_endpoint(false)
        .build();
    let resolved = match params {
        Ok(params) => DefaultResolver::new().resolve_endpoint(&params).await.ok(),
        Err(_) => None,
    };
    resolved
        .map(|endpoint| endpoint.url().to_owned())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{ImportedProfile, RoleConfig};

    const AWS_CONFIG: &str = "\
[default]
region = eu-west-1
endpoint_url = http://default.local:4566

[profile served]
services = local
aws_access_key_id = AKIAEXAMPLE
aws_secret_access_key = secret

[services local]
sts =
  endpoint_url = http://services.local:4566
s3 =
  endpoint_url = http://s3.local:4566

[profile imported]
role_arn = arn:aws:iam::111111111111:role/imported
source_profile = default

[profile own]
role_arn = arn:aws:iam::111111111111:role/own
source_profile = default
endpoint_url = http://own.local:4566

[profile chained]
role_arn = arn:aws:iam::111111111111:role/chained
source_profile = imported

[profile ignoring]
role_arn = arn:aws:iam::111111111111:role/ignoring
source_profile = default
ignore_configured_endpoint_urls = true

[profile bare]
aws_access_key_id = AKIAEXAMPLE
aws_secret_access_key = secret

[profile legacy]
role_arn = arn:aws:iam::111111111111:role/legacy
source_profile = bare
sts_regional_endpoints = legacy
";

    fn toml_role(source_profile: Option<&str>, own: Option<&str>) -> RoleSpec {
        RoleSpec {
            name: "dev".into(),
            config: RoleConfig {
                role_arn: Some("arn:aws:iam::111111111111:role/dev".into()),
                source_profile: source_profile.map(str::to_owned),
                sts_endpoint: own.map(str::to_owned),
                ..RoleConfig::default()
            },
        }
    }

    async fn imported(name: &str) -> RoleSpec {
        let profiles = AwsProfiles::from_config_text(AWS_CONFIG).await;
        let mut roles = profiles.roles();
        let config = roles.remove(name).expect("imported");
        RoleSpec {
            name: name.into(),
            config,
        }
    }

    async fn resolved(
        role: &RoleSpec,
        source: &SourceConfig,
        env: &[(&str, &str)],
    ) -> (Option<String>, String) {
        let profiles = AwsProfiles::from_config_text(AWS_CONFIG).await;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = |name: &str| env.get(name).cloned();
        let answer = resolve(role, source, &profiles, &lookup);
        (answer.url.clone(), answer.from_text())
    }

    /// What a case is called, its role, `[source]` and environment, and the
    /// URL and setting it must resolve to.
    type Case<'a> = (
        &'a str,
        &'a RoleSpec,
        &'a SourceConfig,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a str,
    );

    fn with_endpoint(url: &str) -> SourceConfig {
        SourceConfig {
            sts_endpoint: Some(url.into()),
            ..SourceConfig::default()
        }
    }

    #[tokio::test]
    async fn each_way_of_configuring_it_for_configured_and_imported_roles() {
        let plain = SourceConfig::default();
        let served = SourceConfig {
            profile: Some("served".into()),
            ..SourceConfig::default()
        };
        let sts = [(ENV_STS, "http://env-sts.local")];
        let global = [(ENV_GLOBAL, "http://env.local")];
        let both = [
            (ENV_STS, "http://env-sts.local"),
            (ENV_GLOBAL, "http://env.local"),
        ];
        let ignore = [(ENV_IGNORE, "TRUE"), (ENV_STS, "http://env-sts.local")];
        let toml = toml_role(None, None);
        let toml_own = toml_role(None, Some("http://own-toml.local"));
        let imported_role = imported("imported").await;
        let own_profile = imported("own").await;
        let chained = imported("chained").await;
        let ignoring = imported("ignoring").await;
        let legacy = imported("legacy").await;
        let at_source = with_endpoint("http://source.local");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("toml: [default] endpoint_url", &toml, &plain, &[], Some("http://default.local:4566"), "endpoint_url of profile default"),
            ("imported: its source profile's endpoint_url", &imported_role, &plain, &[], Some("http://default.local:4566"), "endpoint_url of profile default"),
            ("chained: the walk goes on to default", &chained, &plain, &[], Some("http://default.local:4566"), "endpoint_url of profile default"),
            ("imported: its own endpoint_url first", &own_profile, &plain, &[], Some("http://own.local:4566"), "endpoint_url of profile own"),
            ("toml: services section of [source] profile", &toml, &served, &[], Some("http://services.local:4566"), "[services local] (profile served)"),
            ("toml: AWS_ENDPOINT_URL beats the profile", &toml, &plain, &global, Some("http://env.local"), "AWS_ENDPOINT_URL"),
            ("imported: AWS_ENDPOINT_URL beats the profile", &own_profile, &plain, &global, Some("http://env.local"), "AWS_ENDPOINT_URL"),
            ("toml: AWS_ENDPOINT_URL beats a services section", &toml, &served, &global, Some("http://env.local"), "AWS_ENDPOINT_URL"),
            ("toml: AWS_ENDPOINT_URL_STS beats AWS_ENDPOINT_URL", &toml, &plain, &both, Some("http://env-sts.local"), "AWS_ENDPOINT_URL_STS"),
            ("imported: AWS_ENDPOINT_URL_STS", &imported_role, &plain, &sts, Some("http://env-sts.local"), "AWS_ENDPOINT_URL_STS"),
            ("toml: ignore (env) skips env and profile", &toml, &plain, &ignore, None, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true ignores"),
            ("imported: ignore (env)", &imported_role, &plain, &ignore, None, "regional endpoint (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true"),
            ("imported: ignore (profile)", &ignoring, &plain, &[], None, "ignore_configured_endpoint_urls of profile ignoring"),
            ("toml: [source] sts_endpoint wins over env", &toml, &at_source, &both, Some("http://source.local"), "[source] sts_endpoint"),
            ("imported: [source] sts_endpoint wins", &own_profile, &at_source, &both, Some("http://source.local"), "[source] sts_endpoint"),
            ("toml: the role's own wins over [source]", &toml_own, &at_source, &both, Some("http://own-toml.local"), "[roles.dev] sts_endpoint"),
            ("imported: legacy is the global endpoint", &legacy, &plain, &[], Some(GLOBAL_STS_ENDPOINT), "sts_regional_endpoints = legacy"),
            ("imported: a configured one beats legacy", &legacy, &plain, &sts, Some("http://env-sts.local"), "AWS_ENDPOINT_URL_STS"),
        ];
        for (case, role, source, env, url, from) in cases {
            let (got_url, got_from) = resolved(role, source, env).await;
            assert_eq!(got_url.as_deref(), url, "{case}");
            assert!(got_from.contains(from), "{case}: {got_from:?}");
        }
    }

    #[tokio::test]
    async fn the_region_and_the_default_url_follow_the_same_profiles() {
        let profiles = AwsProfiles::from_config_text(AWS_CONFIG).await;
        let none = |_: &str| None;
        let role = imported("imported").await;
        let source = SourceConfig::default();
        assert_eq!(
            region(&role, &source, &profiles, &none).as_deref(),
            Some("eu-west-1"),
            "from [default], the source profile"
        );
        assert_eq!(
            default_url("eu-west-1").await,
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            default_url("cn-north-1").await,
            "https://sts.cn-north-1.amazonaws.com.cn"
        );
        let legacy = imported("legacy").await;
        assert_eq!(
            region(&legacy, &source, &profiles, &none).as_deref(),
            Some("us-east-1")
        );
    }

    #[test]
    fn a_source_profile_loop_ends_the_walk() {
        let role = RoleSpec {
            name: "loop".into(),
            config: RoleConfig {
                role_arn: Some("arn:aws:iam::111111111111:role/a".into()),
                imported: Some(ImportedProfile {
                    profile: "a".into(),
                    ..ImportedProfile::default()
                }),
                ..RoleConfig::default()
            },
        };
        let profiles = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(AwsProfiles::from_config_text(
                "[profile a]\nsource_profile = b\n[profile b]\nsource_profile = a\n",
            ));
        let none = |_: &str| None;
        let chain = profile_chain(&role, &SourceConfig::default(), &profiles, &none);
        assert_eq!(chain, vec!["a".to_owned(), "b".to_owned()]);
        let answer = resolve(&role, &SourceConfig::default(), &profiles, &none);
        assert_eq!(answer.from, Setting::Default);
    }
}
