//! What the admin endpoints need from whatever signs for the roles: where a
//! role's credentials come from, a check of the source, and MFA codes. The
//! daemon implements it with `Sts`; the server asks through this trait and
//! never names STS itself (credentials themselves come from the cache).

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use crate::cache::{FetchError, RoleSpec};
use crate::credentials::Issued;

/// A boxed future, so the trait can sit behind `dyn`.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait Upstream: Send + Sync {
    /// How `role`'s credentials are obtained (`assumed console` needs it).
    fn origin(&self, role: &RoleSpec) -> Origin;

    /// Where `role`'s STS calls go (`assumed status`, `doctor`).
    fn sts_endpoint<'a>(&'a self, role: &'a RoleSpec) -> Pending<'a, StsEndpoint>;

    /// One GetCallerIdentity with the source that signs for `role` (the
    /// root of its `via` chain), or `[source]` for `None`.
    fn check_source<'a>(&'a self, role: Option<&'a RoleSpec>) -> Pending<'a, SourceCheck>;

    /// Hands a six-digit code to `role`'s MFA device.
    fn provide_mfa<'a>(
        &'a self,
        role: &'a RoleSpec,
        code: &'a str,
    ) -> Pending<'a, Result<MfaUse, FetchError>>;

    /// Drops every MFA session and pending code; how many sessions went.
    fn forget_mfa(&self) -> Result<usize, String>;

    /// The keyring of stored keys as `assumed status` shows it (backend,
    /// `unlocked`/`locked`/`unavailable`, each key loaded or not, never a
    /// secret); `None` when no stored keys are in use.
    fn keyring_status(&self) -> Option<serde_json::Value>;

    /// Reads the stored keys again (`keys add`/`rotate` told the daemon);
    /// `roles` are the roles served now, to name those on changed keys.
    fn reload_keys<'a>(&'a self, roles: Vec<RoleSpec>) -> Pending<'a, KeysReloaded>;

    /// A short session of the stored keys `name` (GetSessionToken, with MFA
    /// where a role on them has `mfa_serial`), for `credential-process --keys`.
    fn keys_session<'a>(
        &'a self,
        name: &'a str,
        roles: Vec<RoleSpec>,
    ) -> Pending<'a, Result<Issued, FetchError>>;
}

/// What reading the stored keys again found.
pub struct KeysReloaded {
    /// One sentence: what was read, what was not and why.
    pub message: String,
    /// Whether the keyring could not be read (locked, unavailable).
    pub trouble: bool,
    /// Roles whose keys changed: fetched again with the new ones.
    pub refetch: Vec<String>,
}

/// How a role's credentials are obtained, in the words `console` shows.
pub struct Origin {
    pub kind: &'static str,
    pub explanation: String,
}

/// A role's STS endpoint: the URL its calls go to and, in the user's
/// words, the setting that chose it (`AWS_ENDPOINT_URL_STS`, `endpoint_url
/// of profile default`, …).
#[derive(Clone, Debug, serde::Serialize)]
pub struct StsEndpoint {
    pub url: String,
    pub from: String,
}

/// What checking a source found.
pub struct SourceCheck {
    /// Where the credentials come from, in the user's words.
    pub source: String,
    pub outcome: Result<Identity, FetchError>,
    /// STS's clock minus ours (whole seconds).
    pub clock_skew_seconds: Option<i64>,
}

/// Who the source's credentials belong to; never a secret.
pub struct Identity {
    pub arn: String,
    pub expires: Option<SystemTime>,
}

/// What an MFA code was used for.
pub enum MfaUse {
    /// An MFA session until this time.
    Session { until: SystemTime },
    /// The code goes into the next AssumeRole.
    OneTimeCode,
}
