//! Talking to STS: the daemon's own source credentials (through aws-config,
//! so every source it knows works: env, static, SSO, credential_process, web
//! identity), then `AssumeRole` with every per-role parameter.
//!
//! A role's credentials are cached by `crate::cache`, which calls
//! [`Fetcher::fetch`] and decides when; what this module caches is what
//! signs for them: source credentials, per source (`sources.rs`), MFA
//! sessions, per device (`mfa.rs`), and aws-config's loaded profiles.
//!
//! * `source.rs` — where the credentials that sign an AssumeRole come from,
//!   and what to tell the user when they cannot be had;
//! * `sources.rs` — those credentials shared and cached per source, with a
//!   deadline and backoff;
//! * `process.rs` — `credential_process`, run with a deadline and killed after it;
//! * `shell.rs` — how both it and `mfa_process` are run: `sh -c`, a deadline,
//!   the process group killed, stderr to the log;
//! * `assume.rs` — the STS calls themselves;
//! * `mfa.rs` — MFA codes (from `assumed mfa` or `mfa_process`) and the
//!   MFA session per device they open; `mfa_process.rs` runs the command,
//!   `mfa_store.rs` keeps sessions across restarts;
//! * `endpoint.rs` — where a role's STS calls go, and which setting said so;
//! * `check.rs` — `assumed doctor`'s check of the source and the clock;
//! * `describe.rs` — a failed STS call in one sentence: the endpoint it
//!   went to and what failed there;
//! * `origin.rs` — whether a role's session is one AssumeRole or a chain;
//! * `sso_session.rs` — when an SSO session ends, for the reminder;
//! * `stored_keys.rs` — long-term keys from the keyring (`[source] keys`,
//!   `source_keys`), held in memory, and what a locked keyring does;
//! * `keys_session.rs` — `credential-process --keys`: a GetSessionToken
//!   session of stored keys, cached, never the keys themselves.

mod assume;
mod check;
mod describe;
pub mod endpoint;
mod keys_session;
mod mfa;
mod mfa_process;
pub mod mfa_store;
mod origin;
mod process;
mod shell;
mod source;
mod sources;
mod sso_session;
mod stored_keys;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::OnceCell;

pub use check::{Identity, SourceReport};
pub use mfa::MfaUse;
pub use origin::Origin;
pub use stored_keys::{KeyStatus, KeyringStatus, ReadReport};

use crate::arn;
use crate::attention::Attention;
use crate::cache::{FetchError, FetchFuture, Fetcher, Permanence, RoleSpec};
use crate::config::{Deadlines, SourceConfig};
use crate::credentials::{Issued, Secret};
use crate::profiles::AwsProfiles;

/// STS refuses role-chained sessions longer than an hour.
pub const CHAINED_SESSION_LIMIT: Duration = Duration::from_secs(3600);

/// Region used when neither the config nor the environment names one: STS's
/// global endpoint lives there.
pub const FALLBACK_REGION: &str = "us-east-1";

pub struct Sts {
    /// `[source]`, swapped whole by a reload (`set_source`).
    source: RwLock<Arc<SourceConfig>>,
    /// aws-config is loaded once per profile (`None` is the default chain)
    /// and reused: it caches its own SSO tokens. Each profile loads on its
    /// own, so one slow load (IMDS region lookups, say) holds up no other
    /// profile and no reload.
    loaded: Mutex<HashMap<Option<String>, Arc<OnceCell<SdkConfig>>>>,
    /// Source credentials, one per source, shared by the roles that use it.
    sources: sources::SourceCache,
    /// `~/.aws/config` as last read, for static keys and for messages.
    profiles: RwLock<Arc<AwsProfiles>>,
    mfa: Mutex<mfa::MfaGrants>,
    /// Who tells the person at the desk when a role needs them.
    attention: Arc<Attention>,
    /// Stored keys, read from the keyring into memory.
    keys: Arc<stored_keys::StoredKeys>,
    /// `credential-process --keys` sessions, per stored keys name.
    keys_sessions: Mutex<HashMap<String, Issued>>,
}

impl Sts {
    pub fn new(source: SourceConfig) -> Self {
        let attention = Attention::new(false);
        Sts {
            keys: stored_keys::StoredKeys::new(source.keyring.clone(), attention.clone()),
            keys_sessions: Mutex::new(HashMap::new()),
            source: RwLock::new(Arc::new(source)),
            loaded: Mutex::new(HashMap::new()),
            sources: sources::SourceCache::default(),
            profiles: RwLock::new(Arc::new(AwsProfiles::default())),
            mfa: Mutex::new(mfa::MfaGrants::default()),
            attention,
        }
    }

    /// Notifications (on failure and ahead of a session's end) go through `attention`.
    pub fn with_attention(mut self, attention: Arc<Attention>) -> Self {
        self.keys = stored_keys::StoredKeys::new(self.source().keyring.clone(), attention.clone());
        self.attention = attention;
        self
    }

    pub fn attention(&self) -> &Attention {
        &self.attention
    }

    /// A (re)read `~/.aws/config`: loaded profiles and their source
    /// credentials are forgotten so they are read again as they are now.
    pub async fn set_profiles(&self, profiles: Arc<AwsProfiles>) {
        *self.profiles.write() = profiles;
        self.loaded.lock().clear();
        self.sources.clear();
    }

    /// A reload's `[source]`, for every fetch that starts from now on.
    /// What was built from the old one is forgotten: aws-config as loaded
    /// per profile (region, timeouts) and the source credentials (their
    /// deadlines). MFA sessions are forgotten too when the STS endpoint
    /// changed: another STS opened them. Returns how many went.
    pub fn set_source(&self, source: SourceConfig) -> usize {
        let old = std::mem::replace(&mut *self.source.write(), Arc::new(source));
        self.loaded.lock().clear();
        self.sources.clear();
        self.keys_sessions.lock().clear();
        let mut forgotten = 0;
        if old.sts_endpoint != self.source().sts_endpoint {
            forgotten = self.forget_mfa().unwrap_or_else(|error| {
                tracing::warn!("{error}");
                0
            });
        }
        self.move_mfa_store(&old);
        forgotten
    }

    /// `[source]` as it is now.
    fn source(&self) -> Arc<SourceConfig> {
        self.source.read().clone()
    }

    fn deadlines(&self) -> Deadlines {
        self.source.read().deadlines
    }

    fn profiles(&self) -> Arc<AwsProfiles> {
        self.profiles.read().clone()
    }

    /// The profile whose credentials sign for `role` (`None`: the default
    /// chain, or stored keys).
    fn source_profile(&self, role: &RoleSpec) -> Option<String> {
        if role.config.source_keys.is_some() {
            return None;
        }
        role.config
            .source_profile
            .clone()
            .or_else(|| self.source().profile.clone())
    }

    async fn sdk_config(&self, profile: Option<&str>) -> SdkConfig {
        let key = profile.map(str::to_owned);
        let cell = self.loaded.lock().entry(key).or_default().clone();
        cell.get_or_init(|| async {
            let deadlines = self.deadlines();
            // What aws-config's own providers (SSO token refresh, web
            // identity, IMDS) wait for; each source also has an overall deadline.
            let timeouts = TimeoutConfig::builder()
                .connect_timeout(deadlines.connect)
                .read_timeout(deadlines.read)
                .operation_timeout(deadlines.source)
                .build();
            let mut loader =
                aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
            if let Some(profile) = profile {
                loader = loader.profile_name(profile);
            }
            if let Some(region) = &self.source().region {
                loader = loader.region(Region::new(region.clone()));
            }
            loader.load().await
        })
        .await
        .clone()
    }

    /// The STS client that assumes `role`, signed by `signer`. Its endpoint
    /// is [`endpoint::resolve`]'s; its region, the profile's other settings
    /// (FIPS, dual-stack) come from the profile whose settings count, as in
    /// the AWS CLI.
    async fn client(&self, role: &RoleSpec, signer: Option<Credentials>) -> aws_sdk_sts::Client {
        let settings_from = role
            .config
            .imported
            .as_ref()
            .map(|i| i.profile.clone())
            .or_else(|| self.source_profile(role));
        let sdk = self.sdk_config(settings_from.as_deref()).await;
        let endpoint = self.endpoint(role);
        let region = self.region(role);
        let mut builder = self.client_builder(&sdk, region.as_deref(), signer);
        // Always set, `None` too: aws-config read one profile's endpoint
        // settings into `sdk`, and only `resolve` knows which ones count.
        builder.set_endpoint_url(endpoint.url);
        aws_sdk_sts::Client::from_conf(builder.build())
    }

    /// Where `role`'s STS calls go, and which setting said so.
    pub fn endpoint(&self, role: &RoleSpec) -> endpoint::Resolved {
        endpoint::resolve(
            role,
            &self.source(),
            &self.profiles(),
            &endpoint::process_env,
        )
    }

    /// The region `role`'s STS client uses, when the config, environment or
    /// profiles name one.
    fn region(&self, role: &RoleSpec) -> Option<String> {
        endpoint::region(
            role,
            &self.source(),
            &self.profiles(),
            &endpoint::process_env,
        )
    }

    /// The endpoint `role`'s calls go to, as a URL, and the setting it came
    /// from, in words: for `assumed status`, `doctor` and error messages.
    pub async fn endpoint_named(&self, role: &RoleSpec) -> (String, String) {
        let endpoint = self.endpoint(role);
        let region = match self.region(role) {
            Some(region) => region,
            // What aws-config found (IMDS), if it has loaded already.
            None => self
                .loaded_region(role)
                .unwrap_or_else(|| FALLBACK_REGION.to_owned()),
        };
        (endpoint.url_in(&region).await, endpoint.from_text())
    }

    /// The region of the aws-config already loaded for `role`, if any.
    fn loaded_region(&self, role: &RoleSpec) -> Option<String> {
        let key = role
            .config
            .imported
            .as_ref()
            .map(|i| i.profile.clone())
            .or_else(|| self.source_profile(role));
        let cell = self.loaded.lock().get(&key).cloned()?;
        Some(cell.get()?.region()?.to_string())
    }

    /// STS client settings from `sdk`, in `region` (else the profile's),
    /// signed by `signer` when given (a source, an upstream role or an MFA
    /// session).
    fn client_builder(
        &self,
        sdk: &SdkConfig,
        region: Option<&str>,
        signer: Option<Credentials>,
    ) -> aws_sdk_sts::config::Builder {
        let region = region
            .map(|r| Region::new(r.to_owned()))
            .or_else(|| sdk.region().cloned())
            .unwrap_or_else(|| Region::new(FALLBACK_REGION));
        let deadlines = self.deadlines();
        // Every wait on STS is bounded: a dead connection after a network
        // change must end in an error (and a retry), never in a hang.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(deadlines.connect)
            .read_timeout(deadlines.read)
            .operation_attempt_timeout(deadlines.connect + deadlines.read)
            .operation_timeout(deadlines.sts)
            .build();
        let mut builder = aws_sdk_sts::config::Builder::from(sdk)
            .region(region)
            .timeout_config(timeouts);
        if let Some(signer) = signer {
            builder = builder.credentials_provider(signer);
        }
        builder
    }

    async fn fetch_role(
        &self,
        role: &RoleSpec,
        upstream: Option<&Issued>,
    ) -> Result<Issued, FetchError> {
        let imported = role.config.imported.as_ref();
        if let Some(token_file) = imported.and_then(|i| i.web_identity_token_file.as_ref()) {
            return self.assume_role_with_web_identity(role, token_file).await;
        }
        match (&role.config.role_arn, &role.config.profile) {
            (Some(_), _) => self.assume_role(role, upstream).await,
            (None, Some(profile)) => self.profile_credentials(role, profile).await,
            (None, None) => Err(FetchError::permanent(
                "NotARole",
                format!("role {} has neither role_arn nor profile", role.name),
            )),
        }
    }
}

impl Fetcher for Sts {
    fn fetch<'a>(&'a self, role: &'a RoleSpec, upstream: Option<&'a Issued>) -> FetchFuture<'a> {
        Box::pin(async move {
            let fetched = self.fetch_role(role, upstream).await;
            match &fetched {
                Ok(_) => self.watch_sso_session(role),
                // Told once for the keyring, not once per role.
                Err(error) if error.code == stored_keys::LOCKED_CODE => {}
                Err(error) if error.permanence == Permanence::NeedsUser => {
                    self.attention.must_act(&role.name, &error.message);
                }
                Err(_) => {}
            }
            fetched
        })
    }

    fn forget_failures(&self) {
        self.sources.forget_failures();
    }

    fn person_acted_since(&self, role: &RoleSpec, failed_at: std::time::SystemTime) -> bool {
        if let sources::SourceKey::Keys(name) = self.source_key(role) {
            // The keyring was unlocked, or `keys add` stored them.
            return self.keys.available_since(&name, failed_at);
        }
        self.sso_login_since(role, failed_at)
    }
}

/// Credentials a session of ours signs with (an upstream role, an MFA session).
fn signing(issued: &Issued) -> Credentials {
    Credentials::new(
        issued.access_key_id.clone(),
        issued.secret_access_key.expose(),
        Some(issued.session_token.expose().to_owned()),
        Some(issued.expiration),
        "assumed",
    )
}

/// The session length to ask for: as configured, but never more than STS
/// grants a chained session.
fn session_duration(role: &RoleSpec) -> Option<Duration> {
    let wanted = role.config.duration?;
    if role.config.via.is_some() {
        Some(wanted.min(CHAINED_SESSION_LIMIT))
    } else {
        Some(wanted)
    }
}

fn record_call<E>(role: &str, operation: &'static str, started: Instant, error: Option<&E>) {
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

/// Sorts an STS failure into what the cache needs to know: may it retry soon,
/// or is this an answer (AccessDenied, a malformed ARN) that retrying cannot
/// change. The message is one sentence naming the endpoint `call` went to
/// (`describe.rs`); the SDK's full error goes to a debug line only.
fn classify<E>(
    role: &str,
    call: &describe::Call,
    error: SdkError<E, aws_sdk_sts::config::http::HttpResponse>,
) -> FetchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    call.log_full(role, &error);
    if let SdkError::ServiceError(context) = &error {
        let status = context.raw().status().as_u16();
        let code = context.err().code().unwrap_or("Unknown").to_owned();
        let message = context.err().message().unwrap_or_default();
        let retryable = describe::retried(status, &code);
        let text = call.service_error(status, &code, message);
        return if retryable {
            FetchError::transient(code, text)
        } else {
            FetchError::permanent(code, text)
        };
    }
    // Timeouts and network failures: not an answer from STS, worth retrying.
    FetchError::transient("StsUnavailable", call.no_answer(&error))
}

fn empty_answer() -> FetchError {
    FetchError::transient("EmptyResponse", "STS answered without credentials")
}

/// STS's credentials as the cache holds them. The account comes from the
/// assumed-role ARN STS returned, else from the role's own ARN.
fn issued(
    creds: Option<&aws_sdk_sts::types::Credentials>,
    role_arn: &str,
    assumed_role_arn: &str,
) -> Result<Issued, FetchError> {
    let creds = creds.ok_or_else(empty_answer)?;
    let expiration = SystemTime::try_from(*creds.expiration()).map_err(|_| {
        FetchError::transient("BadExpiration", "STS answered an unusable Expiration")
    })?;
    let account_id = arn::account(assumed_role_arn)
        .or_else(|| arn::account(role_arn))
        .unwrap_or_default()
        .to_owned();
    Ok(Issued {
        access_key_id: creds.access_key_id().to_owned(),
        secret_access_key: Secret::new(creds.secret_access_key()),
        session_token: Secret::new(creds.session_token()),
        expiration,
        role_arn: role_arn.to_owned(),
        account_id,
    })
}
