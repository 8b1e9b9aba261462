//! What the admin endpoints need from whatever signs for the roles: where a
//! role's credentials come from, a check of the source, and MFA codes. The
//! daemon implements it with `Sts`; the server asks through this trait and
//! never names STS itself (credentials themselves come from the cache).

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use crate::cache::{FetchError, RoleSpec};

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
