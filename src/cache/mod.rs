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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};

use crate::config::RoleConfig;
use crate::credentials::{Credentials, Issued, format_expiration};

/// Never serve credentials closer to expiry than this (shorter for very
/// short sessions, see [`Timing::floor`]): a client would sign with them
/// and be refused mid-request.
const EXPIRY_FLOOR: Duration = Duration::from_secs(60);
/// How long a permanent refusal (AccessDenied, a malformed ARN) is remembered.
const PERMANENT_FAILURE_HOLD: Duration = Duration::from_secs(30);
/// How long "a person must act" is first remembered before looking again;
/// it doubles with each failure in a row, up to [`BACKOFF_CAP`], so a source
/// that keeps failing (a credential_process that prompts and exits) is not
/// run every few seconds for as long as requests come.
const NEEDS_USER_HOLD: Duration = Duration::from_secs(5);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The shortest wait between background retries of a warm role whose
/// credentials are about to reach the floor.
const LAST_CHANCE_RETRY: Duration = Duration::from_secs(1);
/// The longest a driver sleeps before looking at the wall clock again. Its
/// timer runs on the monotonic clock, which stands still while a laptop is
/// suspended; expiry is a wall-clock fact. Waking this often bounds how late
/// a refresh runs after a resume.
const WALL_CLOCK_NAP: Duration = Duration::from_secs(30);

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

/// What a caller gets instead of credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheError {
    UnknownRole,
    Unavailable(FetchError),
}

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
    fn margin(&self, lifetime: Duration) -> Duration {
        self.refresh_before
            .min(lifetime / 2)
            .max(self.floor(lifetime) * 2)
    }

    fn floor(&self, lifetime: Duration) -> Duration {
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
    fn following_tokio() -> Self {
        let skew: &'static TestSkew = Box::leak(Box::default());
        Clock {
            anchor: Some((SystemTime::now(), tokio::time::Instant::now(), skew)),
        }
    }

    /// Moves the wall clock, not tokio's: what a suspended laptop sees on resume.
    #[cfg(test)]
    fn jump(&self, by: Duration) {
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

    fn until(&self, at: SystemTime) -> Duration {
        at.duration_since(self.now()).unwrap_or(Duration::ZERO)
    }
}

/// Credentials in a slot, with the two instants that govern them.
#[derive(Clone, Debug)]
struct Held {
    creds: Arc<Credentials>,
    /// From here on a refresh is due (background; callers still get these).
    refresh_at: SystemTime,
    /// From here on these are not served at all.
    unusable_at: SystemTime,
}

impl Held {
    fn new(creds: Credentials, timing: &Timing) -> Self {
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

    fn usable(&self, now: SystemTime) -> bool {
        now < self.unusable_at
    }
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

#[derive(Debug, Default)]
struct Record {
    last_refresh: Option<SystemTime>,
    last_error: Option<FetchError>,
    consecutive_failures: u32,
    /// No new fetch before this (set after a failure).
    retry_at: Option<SystemTime>,
    /// When the last failure happened.
    failed_at: Option<SystemTime>,
    /// When the driver should next refresh.
    next_refresh: Option<SystemTime>,
}

struct Slot {
    spec: RoleSpec,
    held: RwLock<Option<Held>>,
    record: Mutex<Record>,
    /// Set while a fetch runs: whoever sets it fetches, everyone else waits
    /// on `done`. The heart of single flight.
    in_flight: AtomicBool,
    /// Woken, all at once, when a fetch ends.
    done: Notify,
    /// Counts finished fetch attempts, so a caller that waited can tell that
    /// somebody else's attempt ended and adopt its outcome.
    attempts: AtomicU64,
    last_used: Mutex<SystemTime>,
    wake: Notify,
    closed: AtomicBool,
    _live: Live,
}

impl Slot {
    fn new(spec: RoleSpec, now: SystemTime) -> Self {
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

    fn held(&self) -> Option<Held> {
        self.held.read().clone()
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock()
    }

    fn touch(&self, now: SystemTime) {
        *self.last_used.lock() = now;
    }

    fn idle_since(&self) -> SystemTime {
        *self.last_used.lock()
    }

    /// The error a caller gets while fetches are held back, if they are.
    fn holding_back(&self, now: SystemTime) -> Option<FetchError> {
        let record = self.record();
        match (record.retry_at, &record.last_error) {
            (Some(retry_at), Some(error)) if now < retry_at => Some(error.clone()),
            _ => None,
        }
    }

    /// What a caller who waited on someone else's attempt gets.
    fn outcome(&self, now: SystemTime) -> Result<Arc<Credentials>, FetchError> {
        match self.held() {
            Some(held) if held.usable(now) => Ok(held.creds),
            _ => Err(self.record().last_error.clone().unwrap_or_else(|| {
                FetchError::transient("Unavailable", "credentials are not available yet")
            })),
        }
    }

    fn schedule(&self, at: Option<SystemTime>) {
        self.record().next_refresh = at;
        self.wake.notify_one();
    }

    /// Takes the refresh the driver slept towards, unless somebody set a new
    /// one meanwhile: that one stands, and the driver sleeps towards it.
    fn take_due(&self, slept_towards: Option<SystemTime>) -> bool {
        let mut record = self.record();
        if record.next_refresh != slept_towards {
            return false;
        }
        record.next_refresh = None;
        true
    }
}

/// What a fetch attempt ends in, for whoever waited on it.
type Outcome = Result<Arc<Credentials>, FetchError>;

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
        tokio::spawn(drive(self.clone(), slot.clone()));
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

    fn timing(&self) -> Timing {
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

    /// The held credentials while they may be served (kicking a refresh
    /// once one is due), counted as a hit.
    fn hit(&self, slot: &Slot, now: SystemTime) -> Option<Arc<Credentials>> {
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
    async fn join_or_start(
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
    async fn attempt_elsewhere(&self, slot: Arc<Slot>, seen: u64) -> Outcome {
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
    fn person_acted(&self, slot: &Slot, error: &FetchError) -> bool {
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
                detail = error.detail.as_deref().unwrap_or(""),
                "could not fetch credentials: {}",
                error.message
            );
            retry_at
        };
        slot.schedule(servable_for.map(|_| retry_at));
        error
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

/// A role's background task: sleeps until the next refresh is due, refreshes
/// if the role is still in use, and goes back to sleep.
async fn drive(cache: Cache, slot: Arc<Slot>) {
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
async fn sleep_until(clock: Clock, at: Option<SystemTime>) {
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

/// Ends a fetch however it ends (even if the future is dropped mid-way):
/// clears `in_flight` and wakes every waiter, who then adopt the outcome or,
/// if there was none, start the next attempt.
struct Flight<'a>(&'a Slot);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.store(false, Ordering::Release);
        self.0.done.notify_waiters();
    }
}

/// How a request was answered: from memory (`hit`), after waiting on a
/// fetch (`wait`), or refused during backoff (`held_back`).
#[derive(Clone, Copy)]
enum Lookup {
    Hit,
    Wait,
    HeldBack,
}

/// `assumed_cache_lookups_total`, one handle per result, registered once by
/// `register_metrics` (when the server installs its recorder): a lookup then
/// costs an atomic add, not a labelled key. Without a recorder, nothing.
static LOOKUPS: OnceLock<[metrics::Counter; 3]> = OnceLock::new();

pub fn register_metrics() {
    LOOKUPS.get_or_init(|| {
        ["hit", "wait", "held_back"]
            .map(|result| metrics::counter!("assumed_cache_lookups_total", "result" => result))
    });
}

fn count_lookup(result: Lookup) {
    if let Some(counters) = LOOKUPS.get() {
        counters[result as usize].increment(1);
    }
}

fn close(slot: &Slot) {
    slot.closed.store(true, Ordering::Release);
    slot.wake.notify_one();
}

/// Counts live instances of something in a gauge (slots, driver tasks), so a
/// leak shows on `/metrics` and in tests as a number that keeps growing.
struct Live(&'static str);

impl Live {
    fn new(gauge: &'static str) -> Self {
        metrics::gauge!(gauge).increment(1.0);
        Live(gauge)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
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

#[cfg(test)]
mod tests;
