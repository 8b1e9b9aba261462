//! The credential cache: one slot per role, each kept warm by its own small
//! driver task (the shape of mini-redis's `db.rs`: shared state plus a
//! background task that acts on deadlines).
//!
//! Invariants, which the rest of the daemon relies on:
//! * **Single flight.** At most one fetch per role is in progress. Callers
//!   that arrive while it runs wait for *its* outcome, success or failure;
//!   they never start another.
//! * **Refresh ahead.** Credentials are refreshed in the background once
//!   `refresh_at` (expiry − margin − jitter) has passed; until they get
//!   within `floor` of expiry, callers are served the cached copy at once.
//! * **Never expired.** Credentials within `floor` of expiry are not served.
//! * **Backoff.** After a failed fetch no new fetch starts before
//!   `retry_at`; callers get the remembered error instead, so a client retry
//!   loop cannot hammer STS.
//! * **Idle roles sleep.** A role nobody asked for in `idle_timeout` is not
//!   refreshed; the next request wakes it.
//!
//! The files, one job each, importing one way (down this list): `mod.rs`,
//! the API the daemon and the server use (`Cache`, `RoleSpec`, status);
//! `attempt.rs`, the slot state machine behind `get` (hits, single flight,
//! what a success or a failure does); `driver.rs`, each role's background
//! task; `slot.rs`, what a slot holds and remembers; `timing.rs`, the
//! timing rules, the clock and backoff; `fetch.rs`, the `Fetcher` port and
//! its errors; `counting.rs`, the cache's metrics.

mod attempt;
mod counting;
mod driver;
mod fetch;
mod slot;
mod timing;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;
use tokio::runtime::Handle;

pub use counting::register_metrics;
use counting::{Lookup, count_lookup};
pub use fetch::{FetchError, FetchFuture, Fetcher, Permanence};
use slot::{Slot, close};
pub use timing::{Clock, Timing, backoff};

use crate::config::RoleConfig;
use crate::credentials::{Credentials, format_expiration};

/// A role as the cache and the fetcher see it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    pub name: String,
    pub config: RoleConfig,
}

impl RoleSpec {
    pub fn session_name(&self) -> String {
        self.config
            .session_name
            .clone()
            .unwrap_or_else(default_session_name)
    }
}

/// The local user name, cut down to what STS accepts (`[\w+=,.@-]{2,64}`).
pub fn default_session_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let mut name: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.len() < 2 {
        name = "assumed".into();
    }
    name
}

/// What a caller gets instead of credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheError {
    UnknownRole,
    Unavailable(FetchError),
}

/// What a reload changed, by role name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoleChanges {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// A role's state as `assumed status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Cold,
    Warm,
    Refreshing,
    Failing,
    NeedsMfa,
    NeedsLogin,
    /// Its stored keys wait for the keyring to be unlocked.
    KeyringLocked,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RoleStatus {
    pub name: String,
    pub state: State,
    /// `YYYY-MM-DDTHH:MM:SSZ` of the held credentials, if any are usable.
    pub expiration: Option<String>,
    pub expires_in_seconds: Option<u64>,
    pub last_refresh: Option<String>,
    pub last_error: Option<String>,
}

/// Cheap to clone; every clone is the same cache.
#[derive(Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

struct Shared {
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    fetcher: Arc<dyn Fetcher>,
    /// A reload may change it (`Cache::set_timing`).
    timing: RwLock<Timing>,
    clock: Clock,
    /// Where fetch attempts run: the daemon's fetch thread, so that storing
    /// STS's answer and waking the waiters never queue behind a burst of
    /// requests on the workers; in tests, the test's own runtime.
    attempts_on: Handle,
}

impl Cache {
    /// Must be called inside a tokio runtime: every role gets its driver
    /// task. Fetch attempts run on `attempts_on`.
    pub fn new(
        roles: impl IntoIterator<Item = RoleSpec>,
        fetcher: Arc<dyn Fetcher>,
        timing: Timing,
        clock: Clock,
        attempts_on: Handle,
    ) -> Self {
        let cache = Cache {
            shared: Arc::new(Shared {
                slots: RwLock::new(HashMap::new()),
                fetcher,
                timing: RwLock::new(timing),
                clock,
                attempts_on,
            }),
        };
        for spec in roles {
            cache.insert(spec);
        }
        cache
    }

    fn insert(&self, spec: RoleSpec) {
        let slot = self.new_slot(spec);
        if let Some(old) = self
            .shared
            .slots
            .write()
            .insert(slot.spec.name.clone(), slot)
        {
            close(&old);
        }
    }

    fn new_slot(&self, spec: RoleSpec) -> Arc<Slot> {
        let slot = Arc::new(Slot::new(spec, self.shared.clock.now()));
        tokio::spawn(driver::drive(self.clone(), slot.clone()));
        slot
    }

    /// Makes the cache serve exactly `roles` (a config reload): unchanged
    /// roles keep their slot and warm credentials, changed ones start cold,
    /// missing ones are dropped. A role assumed `via` a changed role counts as
    /// changed too: its session was minted from the old upstream. Returns the
    /// names added, changed, removed.
    pub fn replace_roles(&self, roles: Vec<RoleSpec>) -> RoleChanges {
        let mut changes = RoleChanges::default();
        let mut slots = self.shared.slots.write();
        let wanted: HashSet<String> = roles.iter().map(|spec| spec.name.clone()).collect();
        let mut renewed: HashSet<String> = roles
            .iter()
            .filter(|spec| slots.get(&spec.name).is_none_or(|slot| slot.spec != **spec))
            .map(|spec| spec.name.clone())
            .collect();
        loop {
            let downstream: Vec<String> = roles
                .iter()
                .filter(|spec| !renewed.contains(&spec.name))
                .filter(|spec| {
                    spec.config
                        .via
                        .as_ref()
                        .is_some_and(|via| renewed.contains(via) || !wanted.contains(via))
                })
                .map(|spec| spec.name.clone())
                .collect();
            if downstream.is_empty() {
                break;
            }
            renewed.extend(downstream);
        }
        slots.retain(|name, slot| {
            let keep = wanted.contains(name);
            if !keep {
                close(slot);
                changes.removed.push(name.clone());
            }
            keep
        });
        for spec in roles {
            match slots.get(&spec.name) {
                Some(_) if !renewed.contains(&spec.name) => {}
                existing => {
                    let list = if existing.is_some() {
                        &mut changes.changed
                    } else {
                        &mut changes.added
                    };
                    list.push(spec.name.clone());
                    let slot = self.new_slot(spec);
                    if let Some(old) = slots.insert(slot.spec.name.clone(), slot) {
                        close(&old);
                    }
                }
            }
        }
        changes
    }

    pub(super) fn timing(&self) -> Timing {
        *self.shared.timing.read()
    }

    /// A reload's timing: fetches take the new deadline from now on, and
    /// held credentials are due for refresh by the new `refresh_before`
    /// (the floor stays as they were issued with).
    pub fn set_timing(&self, timing: Timing) {
        *self.shared.timing.write() = timing;
        for slot in self.shared.slots.read().values() {
            let due = {
                let mut held = slot.held.write();
                let Some(held) = held.as_mut() else {
                    continue;
                };
                let creds = &held.creds;
                held.refresh_at = creds.expiration() - timing.margin(creds.lifetime());
                held.refresh_at
            };
            // Not before a backoff already set: that still holds.
            let retry_at = slot.record().retry_at;
            slot.schedule(Some(retry_at.map_or(due, |retry_at| due.max(retry_at))));
        }
    }

    /// Fetches `name` again, in the background, because what signs for it
    /// changed (a reload's `[source]`): the credentials it holds keep
    /// serving until new ones arrive, and a failure remembered under the old
    /// settings holds nothing back. A fetch already under way started with
    /// the old settings, so another follows it. Whether the role was in use
    /// (held credentials, had failed, or is prefetched); a role nobody asked
    /// for is left to fetch on first use.
    pub fn refetch(&self, name: &str) -> bool {
        let Some(slot) = self.slot(name) else {
            return false;
        };
        let in_use = {
            let mut record = slot.record();
            let failed = record.last_error.is_some();
            record.retry_at = None;
            record.consecutive_failures = 0;
            failed || slot.held.read().is_some() || slot.spec.config.prefetch
        };
        if !in_use {
            return false;
        }
        // Looked at first: an attempt the driver starts for this refetch
        // must not be taken for one that started before it.
        let running = slot.in_flight.load(Ordering::Acquire);
        let clock = self.shared.clock;
        let make_due = move |slot: &Slot| {
            let now = clock.now();
            if let Some(held) = slot.held.write().as_mut() {
                held.refresh_at = held.refresh_at.min(now);
            }
            slot.schedule(Some(now));
        };
        make_due(&slot);
        if running {
            tokio::spawn(async move {
                loop {
                    let ended = slot.done.notified();
                    if !slot.in_flight.load(Ordering::Acquire) {
                        break;
                    }
                    ended.await;
                }
                make_due(&slot);
            });
        }
        true
    }

    /// Fetches a role now, whatever its backoff says: a person just acted
    /// (gave an MFA code, logged in), so the remembered failure is stale.
    pub async fn refresh_now(&self, name: &str) -> Result<Arc<Credentials>, CacheError> {
        let slot = self.slot(name).ok_or(CacheError::UnknownRole)?;
        slot.touch(self.shared.clock.now());
        slot.record().retry_at = None;
        self.shared.fetcher.forget_failures();
        let seen = slot.attempts.load(Ordering::Acquire);
        self.join_or_start(slot, seen).await
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.shared.slots.read().get(name).cloned()
    }

    /// The configuration of a role, for answers that need no credentials.
    pub fn role(&self, name: &str) -> Option<RoleSpec> {
        self.slot(name).map(|slot| slot.spec.clone())
    }

    pub fn role_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.slots.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// Starts fetching a role now, in the background (`prefetch = true`).
    pub fn prefetch(&self, name: &str) {
        if let Some(slot) = self.slot(name) {
            slot.schedule(Some(self.shared.clock.now()));
        }
    }

    /// Credentials for `name`, from memory whenever they have life left;
    /// otherwise the outcome of the one fetch in flight for that role.
    pub async fn get(&self, name: &str) -> Result<Arc<Credentials>, CacheError> {
        let slot = self.slot(name).ok_or(CacheError::UnknownRole)?;
        let now = self.shared.clock.now();
        slot.touch(now);
        // Read before looking at the held credentials, so an attempt that
        // finishes in between is noticed rather than repeated.
        let seen = slot.attempts.load(Ordering::Acquire);
        if let Some(creds) = self.hit(&slot, now) {
            return Ok(creds);
        }
        if let Some(error) = slot.holding_back(now) {
            if !self.person_acted(&slot, &error) {
                count_lookup(Lookup::HeldBack);
                return Err(CacheError::Unavailable(error));
            }
        }
        count_lookup(Lookup::Wait);
        self.join_or_start(slot, seen).await
    }

    /// `get` when it can answer from memory, without waiting: `None` means
    /// ask `get` (unknown role, nothing usable held, a fetch to wait for),
    /// and nothing was counted. The server's warm path.
    pub fn get_warm(&self, name: &str) -> Option<Arc<Credentials>> {
        let slot = self.slot(name)?;
        let now = self.shared.clock.now();
        slot.touch(now);
        self.hit(&slot, now)
    }

    pub fn status(&self) -> Vec<RoleStatus> {
        let now = self.shared.clock.now();
        let slots: Vec<Arc<Slot>> = self.shared.slots.read().values().cloned().collect();
        let mut statuses: Vec<RoleStatus> = slots
            .iter()
            .map(|slot| {
                let held = slot.held().filter(|held| held.usable(now));
                let record = slot.record();
                let state = if slot.in_flight.load(Ordering::Acquire) {
                    State::Refreshing
                } else if let Some(error) = &record.last_error {
                    match (error.permanence, error.code.as_str()) {
                        (Permanence::NeedsUser, "MfaRequired" | "MfaProcessFailed") => {
                            State::NeedsMfa
                        }
                        (Permanence::NeedsUser, "KeyringLocked") => State::KeyringLocked,
                        (Permanence::NeedsUser, _) => State::NeedsLogin,
                        _ => State::Failing,
                    }
                } else if held.is_some() {
                    State::Warm
                } else {
                    State::Cold
                };
                RoleStatus {
                    name: slot.spec.name.clone(),
                    state,
                    expiration: held
                        .as_ref()
                        .map(|h| format_expiration(h.creds.expiration())),
                    expires_in_seconds: held.as_ref().map(|h| h.creds.remaining(now).as_secs()),
                    last_refresh: record.last_refresh.map(format_expiration),
                    last_error: record.last_error.as_ref().map(|e| e.message.clone()),
                }
            })
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        statuses
    }
}

#[cfg(test)]
mod tests;
