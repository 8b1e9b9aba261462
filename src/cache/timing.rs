//! The timing rules: when held credentials are refreshed and when they stop
//! being served (`Timing`), the wall clock they are read against (`Clock`),
//! and how long a failure holds fetches back (`backoff`).

#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::fetch::Permanence;

/// Never serve credentials closer to expiry than this (shorter for very
/// short sessions, see [`Timing::floor`]): a client would sign with them
/// and be refused mid-request.
pub(super) const EXPIRY_FLOOR: Duration = Duration::from_secs(60);
/// How long a permanent refusal (AccessDenied, a malformed ARN) is remembered.
pub(super) const PERMANENT_FAILURE_HOLD: Duration = Duration::from_secs(30);
/// How long "a person must act" is first remembered before looking again;
/// it doubles with each failure in a row, up to [`BACKOFF_CAP`], so a source
/// that keeps failing (a credential_process that prompts and exits) is not
/// run every few seconds for as long as requests come.
pub(super) const NEEDS_USER_HOLD: Duration = Duration::from_secs(5);
pub(super) const BACKOFF_BASE: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The shortest wait between background retries of a warm role whose
/// credentials are about to reach the floor.
pub(super) const LAST_CHANCE_RETRY: Duration = Duration::from_secs(1);
/// The longest a driver sleeps before looking at the wall clock again. Its
/// timer runs on the monotonic clock, which stands still while a laptop is
/// suspended; expiry is a wall-clock fact. Waking this often bounds how late
/// a refresh runs after a resume.
pub(super) const WALL_CLOCK_NAP: Duration = Duration::from_secs(30);

/// When to refresh and when to stop serving, derived from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub refresh_before: Duration,
    pub idle_timeout: Duration,
    /// The longest one fetch (source, upstream role, STS) may take before it
    /// ends as a transient failure.
    pub fetch_timeout: Duration,
}

impl Timing {
    /// Refresh this long before expiry: `refresh_before`, but at most half the
    /// session, so a short-session STS is not called on every request; and
    /// at least twice the floor, so the background refresh always has time
    /// to run before the credentials stop being served.
    pub(super) fn margin(&self, lifetime: Duration) -> Duration {
        self.refresh_before
            .min(lifetime / 2)
            .max(self.floor(lifetime) * 2)
    }

    pub(super) fn floor(&self, lifetime: Duration) -> Duration {
        EXPIRY_FLOOR.min(lifetime / 4)
    }
}

/// Wall-clock time. Expiry is a wall-clock fact (a laptop that slept for two
/// hours holds expired credentials, whatever a monotonic clock says), so the
/// cache reads it here; tests swap in a clock that follows tokio's paused time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    #[cfg(test)]
    anchor: Option<(SystemTime, tokio::time::Instant, &'static TestSkew)>,
}

/// How far a test's wall clock has jumped ahead of tokio's (a suspend).
#[cfg(test)]
#[derive(Debug, Default)]
struct TestSkew(AtomicU64);

impl Clock {
    pub fn system() -> Self {
        Clock {
            #[cfg(test)]
            anchor: None,
        }
    }

    #[cfg(test)]
    pub(super) fn following_tokio() -> Self {
        let skew: &'static TestSkew = Box::leak(Box::default());
        Clock {
            anchor: Some((SystemTime::now(), tokio::time::Instant::now(), skew)),
        }
    }

    /// Moves the wall clock, not tokio's: what a suspended laptop sees on resume.
    #[cfg(test)]
    pub(super) fn jump(&self, by: Duration) {
        if let Some((_, _, skew)) = self.anchor {
            skew.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    pub fn now(&self) -> SystemTime {
        #[cfg(test)]
        if let Some((wall, instant, skew)) = self.anchor {
            let skew = Duration::from_millis(skew.0.load(Ordering::SeqCst));
            return wall + instant.elapsed() + skew;
        }
        SystemTime::now()
    }

    pub(super) fn until(&self, at: SystemTime) -> Duration {
        at.duration_since(self.now()).unwrap_or(Duration::ZERO)
    }
}

/// How long to hold back after `failures` failures in a row.
pub fn backoff(permanence: Permanence, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    match permanence {
        Permanence::Permanent => PERMANENT_FAILURE_HOLD,
        Permanence::NeedsUser => NEEDS_USER_HOLD
            .saturating_mul(1 << exponent)
            .min(BACKOFF_CAP),
        Permanence::Transient => {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
            // "Equal jitter": between half and all of the ceiling.
            ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
        }
    }
}
