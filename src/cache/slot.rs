//! One role's slot: the credentials it holds (`Held`, with the instants that
//! govern them), what it remembers of its fetches (`Record`), and the flags
//! and wake-ups single flight runs on (`Slot`, `Flight`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::Notify;

use super::RoleSpec;
use super::counting::Live;
use super::fetch::FetchError;
use super::timing::Timing;
use crate::credentials::Credentials;

/// Credentials in a slot, with the two instants that govern them.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) creds: Arc<Credentials>,
    /// From here on a refresh is due (background; callers still get these).
    pub(super) refresh_at: SystemTime,
    /// From here on these are not served at all.
    pub(super) unusable_at: SystemTime,
}

impl Held {
    pub(super) fn new(creds: Credentials, timing: &Timing) -> Self {
        let lifetime = creds.lifetime();
        let expiration = creds.expiration();
        let margin = timing.margin(lifetime);
        // Jitter only ever makes the refresh earlier, by up to a tenth of the margin,
        // so many roles issued together do not all refresh in the same instant.
        let jitter = margin.mul_f64(fastrand::f64() / 10.0);
        let refresh_at = expiration - margin - jitter;
        let unusable_at = expiration - timing.floor(lifetime);
        Held {
            creds: Arc::new(creds),
            refresh_at,
            unusable_at,
        }
    }

    pub(super) fn usable(&self, now: SystemTime) -> bool {
        now < self.unusable_at
    }
}

#[derive(Debug, Default)]
pub(super) struct Record {
    pub(super) last_refresh: Option<SystemTime>,
    pub(super) last_error: Option<FetchError>,
    pub(super) consecutive_failures: u32,
    /// No new fetch before this (set after a failure).
    pub(super) retry_at: Option<SystemTime>,
    /// When the last failure happened.
    pub(super) failed_at: Option<SystemTime>,
    /// When the driver should next refresh.
    pub(super) next_refresh: Option<SystemTime>,
}

pub(super) struct Slot {
    pub(super) spec: RoleSpec,
    pub(super) held: RwLock<Option<Held>>,
    pub(super) record: Mutex<Record>,
    /// Set while a fetch runs: whoever sets it fetches, everyone else waits
    /// on `done`. The heart of single flight.
    pub(super) in_flight: AtomicBool,
    /// Woken, all at once, when a fetch ends.
    pub(super) done: Notify,
    /// Counts finished fetch attempts, so a caller that waited can tell that
    /// somebody else's attempt ended and adopt its outcome.
    pub(super) attempts: AtomicU64,
    pub(super) last_used: Mutex<SystemTime>,
    pub(super) wake: Notify,
    pub(super) closed: AtomicBool,
    _live: Live,
}

impl Slot {
    pub(super) fn new(spec: RoleSpec, now: SystemTime) -> Self {
        Slot {
            _live: Live::new("assumed_cache_slots"),
            spec,
            held: RwLock::new(None),
            record: Mutex::new(Record::default()),
            in_flight: AtomicBool::new(false),
            done: Notify::new(),
            attempts: AtomicU64::new(0),
            last_used: Mutex::new(now),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn held(&self) -> Option<Held> {
        self.held.read().clone()
    }

    pub(super) fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock()
    }

    pub(super) fn touch(&self, now: SystemTime) {
        *self.last_used.lock() = now;
    }

    pub(super) fn idle_since(&self) -> SystemTime {
        *self.last_used.lock()
    }

    /// The error a caller gets while fetches are held back, if they are.
    pub(super) fn holding_back(&self, now: SystemTime) -> Option<FetchError> {
        let record = self.record();
        match (record.retry_at, &record.last_error) {
            (Some(retry_at), Some(error)) if now < retry_at => Some(error.clone()),
            _ => None,
        }
    }

    /// What a caller who waited on someone else's attempt gets.
    pub(super) fn outcome(&self, now: SystemTime) -> Result<Arc<Credentials>, FetchError> {
        match self.held() {
            Some(held) if held.usable(now) => Ok(held.creds),
            _ => Err(self.record().last_error.clone().unwrap_or_else(|| {
                FetchError::transient("Unavailable", "credentials are not available yet")
            })),
        }
    }

    pub(super) fn schedule(&self, at: Option<SystemTime>) {
        self.record().next_refresh = at;
        self.wake.notify_one();
    }

    /// Takes the refresh the driver slept towards, unless somebody set a new
    /// one meanwhile: that one stands, and the driver sleeps towards it.
    pub(super) fn take_due(&self, slept_towards: Option<SystemTime>) -> bool {
        let mut record = self.record();
        if record.next_refresh != slept_towards {
            return false;
        }
        record.next_refresh = None;
        true
    }
}

/// What a fetch attempt ends in, for whoever waited on it.
pub(super) type Outcome = Result<Arc<Credentials>, FetchError>;

/// Ends a fetch however it ends (even if the future is dropped mid-way):
/// clears `in_flight` and wakes every waiter, who then adopt the outcome or,
/// if there was none, start the next attempt.
pub(super) struct Flight<'a>(pub(super) &'a Slot);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.store(false, Ordering::Release);
        self.0.done.notify_waiters();
    }
}

pub(super) fn close(slot: &Slot) {
    slot.closed.store(true, Ordering::Release);
    slot.wake.notify_one();
}
