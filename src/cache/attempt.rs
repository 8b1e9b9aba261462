//! The slot state machine: a lookup that hits, the one fetch attempt in
//! flight per role and how its waiters join it, and what a success or a
//! failure does to the slot (refresh-ahead, never shorter-lived credentials,
//! backoff that keeps a warm role warm).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::counting::{Lookup, count_lookup};
use super::fetch::{FetchError, Permanence};
use super::slot::{Flight, Held, Outcome, Slot};
use super::timing::{LAST_CHANCE_RETRY, backoff};
use super::{Cache, CacheError};
use crate::credentials::{Credentials, Issued, format_expiration};

impl Cache {
    /// The held credentials while they may be served (kicking a refresh
    /// once one is due), counted as a hit.
    pub(super) fn hit(&self, slot: &Slot, now: SystemTime) -> Option<Arc<Credentials>> {
        let held = slot.held()?;
        if now >= held.refresh_at {
            if !held.usable(now) {
                return None;
            }
            self.kick(slot, now);
        }
        count_lookup(Lookup::Hit);
        Some(held.creds)
    }

    /// Joins the fetch under way, or starts one. Joining needs no task:
    /// the caller waits right here, so a thousand callers cost a thousand
    /// wake-ups, not a thousand spawned tasks. A fetch this caller starts
    /// runs in a task of its own, so that a caller who disconnects does not
    /// cancel the fetch everyone else then waits for.
    pub(super) async fn join_or_start(
        &self,
        slot: Arc<Slot>,
        seen: u64,
    ) -> Result<Arc<Credentials>, CacheError> {
        loop {
            let ended = slot.done.notified();
            if slot.attempts.load(Ordering::Acquire) != seen {
                let outcome = slot.outcome(self.shared.clock.now());
                return outcome.map_err(CacheError::Unavailable);
            }
            if !slot.in_flight.load(Ordering::Acquire) {
                break;
            }
            ended.await;
        }
        self.attempt_elsewhere(slot, seen)
            .await
            .map_err(CacheError::Unavailable)
    }

    /// `attempt` as a task on the attempts' runtime; its outcome, here.
    pub(super) async fn attempt_elsewhere(&self, slot: Arc<Slot>, seen: u64) -> Outcome {
        let (starter, outcome) = oneshot::channel();
        let cache = self.clone();
        self.shared
            .attempts_on
            .spawn(async move { cache.attempt(&slot, seen, starter).await });
        outcome.await.unwrap_or_else(|_| Err(FetchError::lost()))
    }

    /// `get` for a `via` role. Boxed with an explicit `Send` so that the
    /// recursion (get → attempt → fetch → get) has a nameable future type.
    fn get_upstream<'a>(
        &'a self,
        name: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<Credentials>, CacheError>> + Send + 'a>> {
        Box::pin(self.get(name))
    }

    /// Whether a needs-a-person failure was fixed by that person since (an
    /// SSO login): the grown hold would only make them wait for nothing.
    pub(super) fn person_acted(&self, slot: &Slot, error: &FetchError) -> bool {
        if error.permanence != Permanence::NeedsUser {
            return false;
        }
        let Some(failed_at) = slot.record().failed_at else {
            return false;
        };
        self.shared
            .fetcher
            .person_acted_since(&slot.spec, failed_at)
    }

    /// Asks the driver for a refresh now, unless one runs or backoff holds.
    fn kick(&self, slot: &Slot, now: SystemTime) {
        if slot.in_flight.load(Ordering::Acquire) || slot.holding_back(now).is_some() {
            return;
        }
        let due = slot.record().next_refresh.is_some_and(|at| at <= now);
        if !due {
            slot.schedule(Some(now));
        }
    }

    /// One fetch, unless one that ended since `seen` already answered: then
    /// its outcome. The outcome goes to `starter` (the caller who asked for
    /// this attempt) first, then every waiter is woken at once, so the one
    /// who has waited longest is answered first, and a thousand waiters do
    /// not queue behind a lock one by one.
    async fn attempt(&self, slot: &Slot, seen: u64, starter: oneshot::Sender<Outcome>) {
        loop {
            // Registered before looking, so an end in between is not missed.
            let ended = slot.done.notified();
            if slot.attempts.load(Ordering::Acquire) != seen {
                let _ = starter.send(slot.outcome(self.shared.clock.now()));
                return;
            }
            if slot
                .in_flight
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                ended.await;
                continue;
            }
            let _flight = Flight(slot);
            if slot.attempts.load(Ordering::Acquire) != seen {
                let _ = starter.send(slot.outcome(self.shared.clock.now()));
                return;
            }
            let started = self.shared.clock.now();
            let deadline = self.timing().fetch_timeout;
            let result = match tokio::time::timeout(deadline, self.fetch(slot)).await {
                Ok(result) => result,
                Err(_) => Err(FetchError::transient(
                    "UpstreamTimeout",
                    format!(
                        "no answer from upstream within {} (STS or the source credentials); retrying with backoff",
                        humantime::format_duration(deadline)
                    ),
                )),
            };
            let now = self.shared.clock.now();
            let outcome = match result {
                Ok(issued) => self.store(slot, Credentials::new(issued, now), started, now),
                Err(error) => Err(self.fail(slot, error, now)),
            };
            slot.attempts.fetch_add(1, Ordering::AcqRel);
            let _ = starter.send(outcome);
            return; // `_flight` wakes the waiters
        }
    }

    async fn fetch(&self, slot: &Slot) -> Result<Issued, FetchError> {
        let upstream = match &slot.spec.config.via {
            Some(via) => match self.get_upstream(via).await {
                Ok(creds) => Some(creds),
                Err(CacheError::UnknownRole) => {
                    return Err(FetchError::permanent(
                        "UnknownRole",
                        format!("via = {via:?} names no configured role"),
                    ));
                }
                Err(CacheError::Unavailable(error)) => {
                    return Err(FetchError {
                        message: format!("upstream role {via}: {}", error.message),
                        ..error
                    });
                }
            },
            None => None,
        };
        let upstream = upstream.as_ref().map(|creds| &creds.issued);
        self.shared.fetcher.fetch(&slot.spec, upstream).await
    }

    fn store(
        &self,
        slot: &Slot,
        creds: Credentials,
        started: SystemTime,
        now: SystemTime,
    ) -> Result<Arc<Credentials>, FetchError> {
        let mut fresh = Held::new(creds, &self.timing());
        if !fresh.usable(now) {
            // Already inside the floor (a source handing back its own
            // near-expiry credentials, or a clock running ahead): serving them
            // would fail the client, and forgetting would fetch on every request.
            let error = FetchError::transient(
                "ExpiringCredentials",
                format!(
                    "upstream handed back credentials that expire at {}, too soon to serve",
                    format_expiration(fresh.creds.expiration())
                ),
            );
            return Err(self.fail(slot, error, now));
        }
        if let Some(current) = slot.held().filter(|held| held.usable(now)) {
            let held_expiry = current.creds.expiration();
            if fresh.creds.expiration() < held_expiry {
                // Swapping in credentials that die sooner would make clients
                // that extend near-expiry credentials fail earlier. Keep ours,
                // and ask again once a session of this length would outlive them.
                let worth_asking = held_expiry - fresh.creds.lifetime() + Duration::from_secs(1);
                let next = worth_asking.min(current.unusable_at);
                tracing::info!(
                    role = %slot.spec.name,
                    "STS granted a shorter session than the one held; keeping the held credentials"
                );
                // The held copy is not due before then either: otherwise every
                // request would wake the driver to ask again at once.
                if let Some(held) = slot.held.write().as_mut() {
                    held.refresh_at = held.refresh_at.max(next.min(held.unusable_at));
                }
                self.record_success(slot, now);
                slot.schedule(Some(next));
                return Ok(current.creds);
            }
        }
        if fresh.refresh_at <= now {
            // Due the moment they arrive (a source that caches its own
            // credentials handed back an old set): ask again halfway to the
            // floor rather than at once, so this cannot become a loop.
            fresh.refresh_at = now + fresh.unusable_at.duration_since(now).unwrap_or_default() / 2;
        }
        tracing::info!(
            role = %slot.spec.name,
            expiration = %format_expiration(fresh.creds.expiration()),
            sts_ms = now.duration_since(started).unwrap_or_default().as_millis() as u64,
            "refreshed credentials"
        );
        metrics::counter!("assumed_refreshes_total", "role" => slot.spec.name.clone()).increment(1);
        let creds = fresh.creds.clone();
        let refresh_at = fresh.refresh_at;
        *slot.held.write() = Some(fresh);
        self.record_success(slot, now);
        slot.schedule(Some(refresh_at));
        Ok(creds)
    }

    fn record_success(&self, slot: &Slot, now: SystemTime) {
        let mut record = slot.record();
        record.last_refresh = Some(now);
        record.last_error = None;
        record.consecutive_failures = 0;
        record.retry_at = None;
    }

    fn fail(&self, slot: &Slot, error: FetchError, now: SystemTime) -> FetchError {
        // Keep a warm role warm: retry in the background while the held
        // credentials are still good, and at least twice more before they
        // reach the floor however long the backoff has grown, so an outage
        // shorter than the credentials' margin costs clients nothing. A cold
        // role waits for its next caller.
        let servable_for = slot
            .held()
            .filter(|held| held.usable(now))
            .and_then(|held| held.unusable_at.duration_since(now).ok());
        let retry_at = {
            let mut record = slot.record();
            record.consecutive_failures += 1;
            let mut wait = backoff(error.permanence, record.consecutive_failures);
            if let Some(left) = servable_for {
                wait = wait.min((left / 2).max(LAST_CHANCE_RETRY));
            }
            let retry_at = now + wait;
            record.retry_at = Some(retry_at);
            record.failed_at = Some(now);
            record.last_error = Some(error.clone());
            tracing::warn!(
                role = %slot.spec.name,
                code = %error.code,
                retry_in_s = wait.as_secs_f32(),
                detail = error.detail.as_deref(), // left out when there is none
                "could not fetch credentials: {}",
                error.message
            );
            retry_at
        };
        slot.schedule(servable_for.map(|_| retry_at));
        error
    }
}
