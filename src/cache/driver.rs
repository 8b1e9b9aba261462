//! A role's driver: the background task that wakes when a refresh is due,
//! on timers that re-read the wall clock (a suspended laptop).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Cache;
use super::counting::Live;
use super::slot::Slot;
use super::timing::{Clock, WALL_CLOCK_NAP};

/// A role's background task: sleeps until the next refresh is due, refreshes
/// if the role is still in use, and goes back to sleep.
pub(super) async fn drive(cache: Cache, slot: Arc<Slot>) {
    let _live = Live::new("assumed_cache_drivers");
    let clock = cache.shared.clock;
    loop {
        // Checked before sleeping, and after every wake-up: `close` wakes the
        // driver, and a slot with nothing scheduled would otherwise sleep for
        // ever, holding the slot, its credentials and the cache.
        if slot.closed.load(Ordering::Acquire) {
            return;
        }
        let next = slot.record().next_refresh;
        tokio::select! {
            _ = slot.wake.notified() => continue,
            _ = sleep_until(clock, next) => {}
        }
        if slot.closed.load(Ordering::Acquire) {
            return;
        }
        if !slot.take_due(next) {
            continue;
        }
        let now = clock.now();
        if slot.held().is_some_and(|held| now < held.refresh_at) {
            continue; // somebody refreshed already
        }
        let idle_for = now.duration_since(slot.idle_since()).unwrap_or_default();
        if idle_for >= cache.timing().idle_timeout {
            tracing::debug!(role = %slot.spec.name, "idle; not refreshing until asked again");
            continue;
        }
        let seen = slot.attempts.load(Ordering::Acquire);
        let _ = cache.attempt_elsewhere(slot.clone(), seen).await;
    }
}

/// Sleeps until the wall clock reaches `at`, in naps of at most
/// [`WALL_CLOCK_NAP`], so a suspend (which stops the monotonic clock the
/// timer runs on) delays this by one nap at most.
pub(super) async fn sleep_until(clock: Clock, at: Option<SystemTime>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    loop {
        let left = clock.until(at);
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(WALL_CLOCK_NAP)).await;
    }
}
