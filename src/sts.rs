//! Talking to STS: the daemon's own source credentials (through aws-config,
//! so every source it knows works: env, static, SSO, credential_process, web
//! identity) and the `AssumeRole` call with every per-role parameter.
//!
//! This module knows nothing about caching; the cache calls [`Sts::fetch`]
//! and decides when.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use tokio::sync::Mutex;

use crate::cache::{FetchError, FetchFuture, Fetcher, Permanence, RoleSpec};
use crate::config::SourceConfig;
use crate::credentials::{Issued, Secret};

/// STS refuses role-chained sessions longer than an hour.
pub const CHAINED_SESSION_LIMIT: Duration = Duration::from_secs(3600);

/// Region used when neither the config nor the environment names one: STS's
/// global endpoint lives there.
pub const FALLBACK_REGION: &str = "us-east-1";

/// MFA sessions last this long unless `[source] mfa_session` says otherwise.
const DEFAULT_MFA_SESSION: Duration = Duration::from_secs(12 * 3600);
/// An MFA session this close to its end is not used to start a role session.
const MFA_SESSION_MARGIN: Duration = Duration::from_secs(5 * 60);

pub struct Sts {
    source: SourceConfig,
    /// aws-config is loaded once per source profile (`None` is the default
    /// chain) and reused: it caches its own credentials and SSO tokens.
    loaded: Mutex<HashMap<Option<String>, SdkConfig>>,
    mfa: std::sync::Mutex<MfaGrants>,
}

/// What `assumed mfa` left for roles with `mfa_serial`.
#[derive(Default)]
struct MfaGrants {
    /// GetSessionToken sessions, per (source profile, MFA serial): one code
    /// unlocks every role behind the same source and device, like aws-vault.
    sessions: HashMap<(Option<String>, String), Issued>,
    /// One-time codes for roles whose source is already temporary: each is
    /// passed to exactly one AssumeRole.
    codes: HashMap<String, Secret>,
}

/// How `assumed mfa` was put to use.
#[derive(Debug, PartialEq, Eq)]
pub enum MfaUse {
    /// An MFA session until this time; the role refreshes from it without codes.
    Session { until: SystemTime },
    /// The code goes into the next AssumeRole.
    OneTimeCode,
}

impl Sts {
    pub fn new(source: SourceConfig) -> Self {
        Sts {
            source,
            loaded: Mutex::new(HashMap::new()),
            mfa: std::sync::Mutex::new(MfaGrants::default()),
        }
    }

    /// Forgets loaded profiles, so a reload sees `~/.aws/config` as it is now.
    pub async fn forget_profiles(&self) {
        self.loaded.lock().await.clear();
    }

    fn source_profile<'a>(&'a self, role: &'a RoleSpec) -> Option<&'a str> {
        role.config
            .source_profile
            .as_deref()
            .or(self.source.profile.as_deref())
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, MfaGrants> {
        self.mfa
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes an MFA code for `role`. With long-lived source keys it opens an
    /// MFA session (GetSessionToken) that later refreshes use without a new
    /// code; otherwise the code is kept for the role's next AssumeRole.
    pub async fn provide_mfa(&self, role: &RoleSpec, code: &str) -> Result<MfaUse, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Err(FetchError::permanent(
                "NoMfaSerial",
                format!("role {} has no mfa_serial; it needs no MFA code", role.name),
            ));
        };
        let profile = self.source_profile(role).map(str::to_owned);
        let long_lived =
            role.config.via.is_none() && self.source_is_long_lived(profile.as_deref()).await;
        if !long_lived {
            self.grants()
                .codes
                .insert(role.name.clone(), Secret::new(code));
            return Ok(MfaUse::OneTimeCode);
        }
        let sdk = self.sdk_config(profile.as_deref()).await;
        let client = self.client_from(&sdk, None, None);
        let duration = self.source.mfa_session.unwrap_or(DEFAULT_MFA_SESSION);
        let started = std::time::Instant::now();
        let sent = client
            .get_session_token()
            .serial_number(&serial)
            .token_code(code)
            .duration_seconds(duration.as_secs() as i32)
            .send()
            .await;
        record_call(&role.name, "GetSessionToken", started, sent.as_ref().err());
        let output = sent.map_err(classify)?;
        let creds = output.credentials().ok_or_else(|| {
            FetchError::transient("EmptyResponse", "STS answered without credentials")
        })?;
        let until = SystemTime::try_from(*creds.expiration()).map_err(|_| {
            FetchError::transient("BadExpiration", "STS answered an unusable Expiration")
        })?;
        let session = Issued {
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token()),
            expiration: until,
            role_arn: String::new(),
            assumed_role_arn: String::new(),
            account_id: String::new(),
        };
        self.grants().sessions.insert((profile, serial), session);
        Ok(MfaUse::Session { until })
    }

    /// Long-lived IAM user keys have no session token.
    async fn source_is_long_lived(&self, profile: Option<&str>) -> bool {
        use aws_credential_types::provider::ProvideCredentials;
        let sdk = self.sdk_config(profile).await;
        let Some(provider) = sdk.credentials_provider() else {
            return false;
        };
        match provider.provide_credentials().await {
            Ok(creds) => creds.session_token().is_none(),
            Err(_) => false,
        }
    }

    /// For a role with `mfa_serial`: the MFA session to sign with, or the
    /// one-time code to send; `MfaRequired` when there is neither.
    fn mfa_for(&self, role: &RoleSpec) -> Result<Option<MfaProof>, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Ok(None);
        };
        let mut grants = self.grants();
        let key = (self.source_profile(role).map(str::to_owned), serial.clone());
        let usable_until = SystemTime::now() + MFA_SESSION_MARGIN;
        if role.config.via.is_none() {
            match grants.sessions.get(&key) {
                Some(session) if session.expiration > usable_until => {
                    return Ok(Some(MfaProof::Session(session.clone())));
                }
                Some(_) => {
                    grants.sessions.remove(&key);
                }
                None => {}
            }
        }
        match grants.codes.remove(&role.name) {
            Some(code) => Ok(Some(MfaProof::Code { serial, code })),
            None => Err(FetchError {
                permanence: Permanence::NeedsUser,
                code: "MfaRequired".into(),
                message: format!(
                    "role {} needs an MFA code; run: assumed mfa {} <code>",
                    role.name, role.name
                ),
            }),
        }
    }

    async fn sdk_config(&self, profile: Option<&str>) -> SdkConfig {
        let key = profile.map(str::to_owned);
        let mut loaded = self.loaded.lock().await;
        if let Some(config) = loaded.get(&key) {
            return config.clone();
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.source.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let config = loader.load().await;
        loaded.insert(key, config.clone());
        config
    }

    async fn client(&self, role: &RoleSpec, signer: Option<&Issued>) -> aws_sdk_sts::Client {
        let sdk = self.sdk_config(self.source_profile(role)).await;
        self.client_from(&sdk, role.config.region.as_deref(), signer)
    }

    /// An STS client for `sdk`'s source, in `region` (else the source's),
    /// signed by `signer` when given (an upstream role or an MFA session).
    fn client_from(
        &self,
        sdk: &SdkConfig,
        region: Option<&str>,
        signer: Option<&Issued>,
    ) -> aws_sdk_sts::Client {
        let region = region
            .map(|r| Region::new(r.to_owned()))
            .or_else(|| sdk.region().cloned())
            .unwrap_or_else(|| Region::new(FALLBACK_REGION));
        let mut builder = aws_sdk_sts::config::Builder::from(sdk).region(region);
        if let Some(endpoint) = &self.source.sts_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(upstream) = signer {
            builder = builder.credentials_provider(aws_credential_types::Credentials::new(
                upstream.access_key_id.clone(),
                upstream.secret_access_key.expose(),
                Some(upstream.session_token.expose().to_owned()),
                Some(upstream.expiration),
                "assumed-via",
            ));
        }
        aws_sdk_sts::Client::from_conf(builder.build())
    }

    async fn assume_role(
        &self,
        role: &RoleSpec,
        upstream: Option<&Issued>,
    ) -> Result<Issued, FetchError> {
        let config = &role.config;
        let Some(role_arn) = config.role_arn.as_deref() else {
            return Err(FetchError::permanent(
                "NotARole",
                format!("role {} has no role_arn", role.name),
            ));
        };
        let mfa = self.mfa_for(role)?;
        let signer = match &mfa {
            Some(MfaProof::Session(session)) => Some(session),
            _ => upstream,
        };
        let client = self.client(role, signer).await;
        let mut request = client
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(role.session_name())
            .set_duration_seconds(session_duration(role).map(|d| d.as_secs() as i32))
            .set_external_id(config.external_id.clone())
            .set_policy(config.policy.clone())
            .set_source_identity(config.source_identity.clone());
        for arn in &config.policy_arns {
            request = request.policy_arns(PolicyDescriptorType::builder().arn(arn).build());
        }
        for (key, value) in &config.tags {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| FetchError::permanent("InvalidTag", format!("tag {key}: {e}")))?;
            request = request.tags(tag);
        }
        for key in &config.transitive_tag_keys {
            request = request.transitive_tag_keys(key);
        }
        if let Some(MfaProof::Code { serial, code }) = &mfa {
            request = request.serial_number(serial).token_code(code.expose());
        }
        let started = std::time::Instant::now();
        let sent = request.send().await;
        record_call(&role.name, "AssumeRole", started, sent.as_ref().err());
        let output = sent.map_err(classify)?;
        let creds = output.credentials().ok_or_else(|| {
            FetchError::transient("EmptyResponse", "STS answered without credentials")
        })?;
        let expiration = SystemTime::try_from(*creds.expiration()).map_err(|_| {
            FetchError::transient("BadExpiration", "STS answered an unusable Expiration")
        })?;
        let assumed_role_arn = output
            .assumed_role_user()
            .map(|user| user.arn().to_owned())
            .unwrap_or_default();
        Ok(Issued {
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Secret::new(creds.session_token()),
            expiration,
            account_id: account_of(&assumed_role_arn)
                .or_else(|| account_of(role_arn))
                .unwrap_or_default()
                .to_owned(),
            role_arn: role_arn.to_owned(),
            assumed_role_arn,
        })
    }
}

/// What proves MFA for one AssumeRole.
enum MfaProof {
    Session(Issued),
    Code { serial: String, code: Secret },
}

impl Fetcher for Sts {
    fn fetch<'a>(&'a self, role: &'a RoleSpec, upstream: Option<&'a Issued>) -> FetchFuture<'a> {
        Box::pin(self.assume_role(role, upstream))
    }
}

fn record_call<E>(
    role: &str,
    operation: &'static str,
    started: std::time::Instant,
    error: Option<&E>,
) {
    let outcome = if error.is_some() { "error" } else { "success" };
    metrics::histogram!("assumed_sts_call_duration_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "assumed_sts_calls_total",
        "role" => role.to_owned(),
        "operation" => operation,
        "outcome" => outcome
    )
    .increment(1);
}

/// The session length to ask for: as configured, but never more than STS
/// grants a chained session.
pub fn session_duration(role: &RoleSpec) -> Option<Duration> {
    let wanted = role.config.duration?;
    if role.config.via.is_some() {
        Some(wanted.min(CHAINED_SESSION_LIMIT))
    } else {
        Some(wanted)
    }
}

/// The account id inside an IAM or STS ARN (`arn:aws:sts::123456789012:…`).
fn account_of(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// Sorts an STS failure into what the cache needs to know: may it retry soon,
/// or is this an answer (AccessDenied, a malformed ARN) that retrying cannot change.
fn classify<E>(error: SdkError<E, aws_sdk_sts::config::http::HttpResponse>) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::ServiceError(context) = &error {
        let status = context.raw().status().as_u16();
        let code = context.err().code().unwrap_or("Unknown").to_owned();
        let message = context.err().message().unwrap_or_default().to_owned();
        let retryable = status >= 500
            || code.contains("Throttl")
            || code == "RequestLimitExceeded"
            || code == "IDPCommunicationError";
        let text = format!("STS {code}: {message}");
        return if retryable {
            FetchError::transient(code, text)
        } else {
            FetchError::permanent(code, text)
        };
    }
    // Timeouts, network failures, and source credentials that could not be
    // loaded: none is an answer from STS, so they are worth retrying.
    FetchError::transient(
        "StsUnavailable",
        format!("could not reach STS: {}", DisplayErrorContext(&error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_comes_from_the_arn() {
        assert_eq!(
            account_of("arn:aws:sts::123456789012:assumed-role/dev/alice"),
            Some("123456789012")
        );
        assert_eq!(account_of("arn:aws:iam::12345:role/x"), None);
        assert_eq!(account_of("nonsense"), None);
    }
}
