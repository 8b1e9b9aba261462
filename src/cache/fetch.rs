//! The port the cache fetches through (`Fetcher`, which `sts` implements)
//! and how a fetch fails: `FetchError`, sorted by whether it may go away by
//! itself (`Permanence`), which decides how long the cache holds back.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use super::RoleSpec;
use crate::credentials::Issued;

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permanence {
    /// Throttling, 5xx, network: retried with exponential backoff.
    Transient,
    /// STS said no (AccessDenied, invalid parameters): held for a while.
    Permanent,
    /// A person must act first (an MFA code, an SSO login). No STS call is
    /// made for these, so they are held only briefly: the fix should take
    /// effect at once.
    NeedsUser,
}

/// Why credentials could not be had. `message` is shown to clients: it must
/// say what to do and must never carry a secret. `detail` goes to the log
/// only (a credential_process's stderr, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    pub permanence: Permanence,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
}

impl FetchError {
    pub fn new(
        permanence: Permanence,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FetchError {
            permanence,
            code: code.into(),
            message: message.into(),
            detail: None,
        }
    }

    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Permanence::Transient, code, message)
    }

    /// A fetch whose task ended without an outcome (it panicked or was
    /// cancelled): transient, so backoff and a retry follow as for any failure.
    pub fn lost() -> Self {
        Self::transient("InternalError", "the credential fetch failed unexpectedly")
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Permanence::Permanent, code, message)
    }

    pub fn needs_user(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Permanence::NeedsUser, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Issued, FetchError>> + Send + 'a>>;

/// Where fresh credentials come from (STS in the daemon, a fake in tests).
pub trait Fetcher: Send + Sync + 'static {
    /// `upstream` is the session of the role named by `via`, for chaining.
    fn fetch<'a>(&'a self, role: &'a RoleSpec, upstream: Option<&'a Issued>) -> FetchFuture<'a>;

    /// A person just acted (an MFA code, a login): failures the fetcher
    /// remembers on its own (a source's backoff) are stale.
    fn forget_failures(&self) {}

    /// Whether what a person had to do for `role` visibly happened since
    /// `failed_at` (an SSO login wrote a new token): then the hold on a
    /// needs-a-person failure is stale, and the fetcher has forgotten its own.
    fn person_acted_since(&self, _role: &RoleSpec, _failed_at: SystemTime) -> bool {
        false
    }
}
