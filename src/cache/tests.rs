//! The cache's timing rules, run against a fake fetcher on tokio's paused
//! clock: hours of refresh behaviour in milliseconds, deterministically.
//! The paused clock also says when the cache's tasks are done: it moves only
//! when no task can run (see [`until_idle`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::time::{advance, sleep};

use super::timing::{BACKOFF_BASE, BACKOFF_CAP, PERMANENT_FAILURE_HOLD, WALL_CLOCK_NAP};
use super::*;
use crate::config::RoleConfig;
use crate::credentials::{Issued, Secret};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

/// Hands out credentials that live `lifetime`, or queued failures, and counts calls.
struct FakeSts {
    clock: Clock,
    /// Fetches begun, counted before the gate.
    started: AtomicUsize,
    /// Fetches past the gate.
    calls: AtomicUsize,
    lifetime: Mutex<Duration>,
    failures: Mutex<VecDeque<FetchError>>,
    fail_always: Mutex<Option<FetchError>>,
    /// When set, every fetch waits here first (to pile up concurrent callers).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    upstream_keys: Mutex<Vec<Option<String>>>,
}

impl FakeSts {
    fn new(clock: Clock) -> Arc<Self> {
        Arc::new(FakeSts {
            clock,
            started: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            lifetime: Mutex::new(HOUR),
            failures: Mutex::new(VecDeque::new()),
            fail_always: Mutex::new(None),
            gate: Mutex::new(None),
            upstream_keys: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// From now on every fetch waits until the test adds permits to the
    /// returned gate (none: it never passes).
    fn hold(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock() = Some(gate.clone());
        gate
    }

    async fn answer(
        &self,
        role: &RoleSpec,
        upstream: Option<&Issued>,
    ) -> Result<Issued, FetchError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().clone();
        if let Some(gate) = gate {
            let _permit = gate.acquire().await;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.upstream_keys
            .lock()
            .push(upstream.map(|u| u.access_key_id.clone()));
        if let Some(error) = self.failures.lock().pop_front() {
            return Err(error);
        }
        if let Some(error) = self.fail_always.lock().clone() {
            return Err(error);
        }
        Ok(Issued {
            access_key_id: format!("ASIA{}{n}", role.name.to_uppercase()),
            secret_access_key: Secret::new(format!("secret{n}")),
            session_token: Secret::new(format!("token{n}")),
            expiration: self.clock.now() + *self.lifetime.lock(),
            role_arn: format!("arn:aws:iam::111111111111:role/{}", role.name),
            account_id: "111111111111".into(),
        })
    }
}

impl Fetcher for FakeSts {
    fn fetch<'a>(&'a self, role: &'a RoleSpec, upstream: Option<&'a Issued>) -> FetchFuture<'a> {
        Box::pin(self.answer(role, upstream))
    }
}

fn role(name: &str) -> RoleSpec {
    RoleSpec {
        name: name.into(),
        config: RoleConfig {
            role_arn: Some(format!("arn:aws:iam::111111111111:role/{name}")),
            ..RoleConfig::default()
        },
    }
}

/// The daemon's defaults.
fn timing() -> Timing {
    Timing {
        refresh_before: 30 * MINUTE,
        idle_timeout: HOUR,
        fetch_timeout: MINUTE,
    }
}

fn cache_with(roles: Vec<RoleSpec>) -> (Cache, Arc<FakeSts>) {
    cache_timed(roles, timing())
}

fn cache_timed(roles: Vec<RoleSpec>, timing: Timing) -> (Cache, Arc<FakeSts>) {
    let clock = Clock::following_tokio();
    let sts = FakeSts::new(clock);
    let cache = Cache::new(roles, sts.clone(), timing, clock, Handle::current());
    (cache, sts)
}

/// Returns once every task (callers, drivers, fetches) is waiting on
/// something: on the paused clock, time moves to the next timer only when
/// the runtime has no task left to run, so this 1 ms sleep ends exactly
/// then (tokio's auto-advance), moving the clock by 1 ms.
async fn until_idle() {
    sleep(Duration::from_millis(1)).await;
}

/// `n` callers asking for `name` at once, each in its own task.
fn callers(
    cache: &Cache,
    name: &'static str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<Arc<Credentials>, CacheError>>> {
    (0..n)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get(name).await })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn unknown_role_is_reported_as_such() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    assert_eq!(cache.get("prod").await.err(), Some(CacheError::UnknownRole));
    assert_eq!(sts.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_requests_share_one_fetch() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let gate = sts.hold();
    let callers = callers(&cache, "dev", 200);
    until_idle().await;
    assert_eq!(sts.started(), 1, "all 200 wait on one fetch");
    gate.add_permits(1000);
    let mut keys = std::collections::HashSet::new();
    for caller in callers {
        let creds = caller.await.expect("task").expect("credentials");
        keys.insert(creds.issued.access_key_id.clone());
    }
    assert_eq!(sts.calls(), 1);
    assert_eq!(keys.len(), 1, "everyone got the same credentials");
}

/// The caller whose request started the fetch has waited longest: it hears
/// first, before the crowd that joined later is woken (issue 19's cold
/// burst, where it used to be answered last).
#[tokio::test(start_paused = true)]
async fn the_caller_who_started_the_fetch_is_answered_first() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let gate = sts.hold();
    let answered = Arc::new(Mutex::new(Vec::new()));
    let caller = |who: usize| {
        let (cache, answered) = (cache.clone(), answered.clone());
        tokio::spawn(async move {
            let creds = cache.get("dev").await;
            answered.lock().push(who);
            creds
        })
    };
    let starter = caller(0);
    until_idle().await;
    assert_eq!(sts.started(), 1);
    let joiners: Vec<_> = (1..=50).map(caller).collect();
    until_idle().await;
    gate.add_permits(1);
    starter.await.expect("task").expect("credentials");
    for joiner in joiners {
        joiner.await.expect("task").expect("credentials");
    }
    assert_eq!(sts.calls(), 1);
    assert_eq!(answered.lock().first(), Some(&0), "the starter first");
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_failure_too() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.fail_always.lock() = Some(FetchError::transient("Throttling", "slow down"));
    let gate = sts.hold();
    let callers = callers(&cache, "dev", 50);
    until_idle().await;
    assert_eq!(sts.started(), 1, "all 50 wait on one fetch");
    gate.add_permits(1000);
    for caller in callers {
        let error = caller.await.expect("task").expect_err("must fail");
        assert!(matches!(error, CacheError::Unavailable(e) if e.code == "Throttling"));
    }
    assert_eq!(sts.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn warm_role_refreshes_in_the_background_before_expiry() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let first = cache.get("dev").await.expect("credentials");
    // Keep the role in use, as a polling client would.
    for _ in 0..40 {
        sleep(MINUTE).await;
        let creds = cache.get("dev").await.expect("credentials");
        // IMDS clients stretch credentials with under ~25 minutes left, so a
        // healthy cache keeps 30 (the default refresh_before) in hand.
        assert!(
            creds.remaining(cache.shared.clock.now()) >= 30 * MINUTE,
            "a healthy cache never hands out credentials with under 30 minutes left"
        );
    }
    assert!(sts.calls() >= 2, "refreshed at least once in 40 minutes");
    let now = cache.get("dev").await.expect("credentials");
    assert_ne!(now.issued.access_key_id, first.issued.access_key_id);
}

#[tokio::test(start_paused = true)]
async fn callers_do_not_wait_for_a_refresh_while_margin_remains() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let first = cache.get("dev").await.expect("credentials");
    // Hold the next fetch forever: a caller that waited on it would hang.
    let _gate = sts.hold();
    advance(35 * MINUTE).await; // past refresh_at (expiry − 30m − jitter)
    until_idle().await;
    assert_eq!(sts.started(), 2, "the refresh is under way, and held");
    let served = tokio::time::timeout(Duration::from_millis(1), cache.get("dev"))
        .await
        .expect("answered without waiting")
        .expect("credentials");
    assert_eq!(served.issued.access_key_id, first.issued.access_key_id);
}

#[tokio::test(start_paused = true)]
async fn outage_keeps_serving_valid_credentials_and_never_expired_ones() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let first = cache.get("dev").await.expect("credentials");
    *sts.fail_always.lock() = Some(FetchError::transient("InternalFailure", "STS is down"));
    // Through the refresh window the held credentials keep coming.
    for _ in 0..58 {
        sleep(MINUTE).await;
        let creds = cache.get("dev").await.expect("still valid, still served");
        assert_eq!(creds.issued.access_key_id, first.issued.access_key_id);
    }
    let calls_during_outage = sts.calls();
    assert!(calls_during_outage > 2, "kept retrying in the background");
    // Retrying from the refresh point (~30 min left) to the floor (1 min
    // left) with backoff capped at a minute: tens of calls, not thousands.
    assert!(
        calls_during_outage < 70,
        "made {calls_during_outage} calls: backoff must hold"
    );
    // Within the last minute they are no longer handed out.
    sleep(90 * Duration::from_secs(1)).await;
    let error = cache
        .get("dev")
        .await
        .expect_err("expired credentials are never served");
    assert!(matches!(error, CacheError::Unavailable(e) if e.message.contains("STS is down")));
    // STS comes back: the next attempt succeeds.
    *sts.fail_always.lock() = None;
    sleep(BACKOFF_CAP).await;
    let fresh = cache.get("dev").await.expect("recovered");
    assert_ne!(fresh.issued.access_key_id, first.issued.access_key_id);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_remembered_for_a_while() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    sts.failures
        .lock()
        .push_back(FetchError::permanent("AccessDenied", "not allowed"));
    for _ in 0..20 {
        let error = cache.get("dev").await.expect_err("denied");
        assert!(matches!(error, CacheError::Unavailable(e) if e.code == "AccessDenied"));
    }
    assert_eq!(sts.calls(), 1, "a retry loop does not reach STS");
    sleep(PERMANENT_FAILURE_HOLD).await;
    cache.get("dev").await.expect("asked again after the hold");
    assert_eq!(sts.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_exponentially() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.fail_always.lock() = Some(FetchError::transient("Throttling", "slow down"));
    // A client hammering every 100 ms for a minute.
    for _ in 0..600 {
        let _ = cache.get("dev").await;
        sleep(Duration::from_millis(100)).await;
    }
    // 1+2+4+8+16+32 s ceilings (halved at worst by jitter) fit at most ~9 attempts in 60 s.
    assert!(sts.calls() <= 9, "made {} calls", sts.calls());
    assert!(sts.calls() >= 4, "made {} calls", sts.calls());
}

#[tokio::test(start_paused = true)]
async fn idle_roles_stop_refreshing_and_wake_on_demand() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    cache.get("dev").await.expect("credentials");
    sleep(5 * HOUR).await;
    // Used once at t=0, so refreshed for at most the first idle hour.
    let calls_while_idle = sts.calls();
    assert!(
        calls_while_idle <= 3,
        "made {calls_while_idle} calls while idle"
    );
    let creds = cache.get("dev").await.expect("assumed again on demand");
    assert!(creds.remaining(cache.shared.clock.now()) > 30 * MINUTE);
    assert_eq!(sts.calls(), calls_while_idle + 1);
}

#[tokio::test(start_paused = true)]
async fn short_sessions_refresh_at_half_life_not_every_request() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.lifetime.lock() = Duration::from_secs(20 * 60);
    cache.get("dev").await.expect("credentials");
    for _ in 0..100 {
        cache.get("dev").await.expect("credentials");
    }
    assert_eq!(
        sts.calls(),
        1,
        "a 20-minute session is not refreshed on every request"
    );
}

#[tokio::test(start_paused = true)]
async fn prefetch_assumes_without_a_request() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    cache.prefetch("dev");
    until_idle().await;
    assert_eq!(sts.calls(), 1);
    cache.get("dev").await.expect("credentials");
    assert_eq!(sts.calls(), 1, "served from the prefetched credentials");
}

#[tokio::test(start_paused = true)]
async fn chained_roles_are_signed_by_the_upstream_session() {
    let mut downstream = role("prod");
    downstream.config.via = Some("hub".into());
    let (cache, sts) = cache_with(vec![role("hub"), downstream]);
    let creds = cache.get("prod").await.expect("credentials");
    assert!(creds.issued.access_key_id.starts_with("ASIAPROD"));
    let upstream_keys = sts.upstream_keys.lock().clone();
    assert_eq!(upstream_keys.len(), 2);
    assert_eq!(upstream_keys[0], None, "hub is assumed from the source");
    assert_eq!(
        upstream_keys[1].as_deref(),
        Some("ASIAHUB1"),
        "prod is signed by hub"
    );
}

#[tokio::test(start_paused = true)]
async fn status_reports_each_role() {
    let (cache, sts) = cache_with(vec![role("dev"), role("ops")]);
    cache.get("dev").await.expect("credentials");
    sts.failures
        .lock()
        .push_back(FetchError::permanent("AccessDenied", "no"));
    let _ = cache.get("ops").await;
    let status = cache.status();
    assert_eq!(status[0].name, "dev");
    assert_eq!(status[0].state, State::Warm);
    assert!(status[0].expires_in_seconds.is_some_and(|s| s > 3000));
    assert_eq!(status[1].state, State::Failing);
    assert_eq!(status[1].last_error.as_deref(), Some("no"));
}

#[tokio::test(start_paused = true)]
async fn credentials_are_never_replaced_by_ones_that_expire_sooner() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    let first = cache.get("dev").await.expect("credentials");
    // From now on STS grants only 20-minute sessions.
    *sts.lifetime.lock() = 20 * MINUTE;
    sleep(35 * MINUTE).await; // the refresh at ~30 min left got a shorter session
    let served = cache.get("dev").await.expect("credentials");
    assert_eq!(
        sts.calls(),
        2,
        "one refresh attempt, then a wait until a new session would outlive the held one"
    );
    assert_eq!(
        served.issued.access_key_id, first.issued.access_key_id,
        "kept the longer-lived ones"
    );
    // Once the held ones have less life than a new session, the new one wins.
    sleep(15 * MINUTE).await;
    let later = cache.get("dev").await.expect("credentials");
    assert_ne!(later.issued.access_key_id, first.issued.access_key_id);
}

// Regression tests for issue 12: each failed on the code before it.

#[tokio::test(start_paused = true)]
async fn a_fetch_past_its_deadline_fails_transiently_and_the_role_recovers() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    // Upstream accepts and never answers.
    let _gate = sts.hold();
    for waiter in callers(&cache, "dev", 5) {
        match waiter.await.expect("task") {
            Err(CacheError::Unavailable(error)) => {
                assert_eq!(error.permanence, Permanence::Transient);
                assert_eq!(error.code, "UpstreamTimeout");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    let status = cache.status();
    assert_eq!(status[0].state, State::Failing, "not 'refreshing' for ever");
    assert!(status[0].last_error.is_some());
    // Upstream answers again: after the backoff the next caller gets credentials.
    *sts.gate.lock() = None;
    sleep(2 * BACKOFF_BASE).await;
    cache.get("dev").await.expect("recovered by itself");
    assert_eq!(cache.status()[0].state, State::Warm);
}

#[tokio::test(start_paused = true)]
async fn removed_and_changed_roles_leave_no_driver_behind() {
    let (cache, _sts) = cache_with(vec![]);
    for round in 0..100 {
        let roles: Vec<RoleSpec> = (0..100)
            .map(|i| {
                let mut spec = role(&format!("r{i}"));
                spec.config.session_name = Some(format!("round{}", round % 2));
                spec
            })
            .collect();
        cache.replace_roles(roles);
        if round == 0 {
            cache.get("r1").await.expect("one warm role among them");
        }
        until_idle().await;
    }
    cache.replace_roles(vec![]);
    until_idle().await;
    assert_eq!(
        Arc::strong_count(&cache.shared),
        1,
        "every driver of a removed or changed role ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shorter_session_does_not_turn_into_a_call_per_request() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    cache.get("dev").await.expect("credentials");
    *sts.lifetime.lock() = 20 * MINUTE;
    sleep(35 * MINUTE).await; // the refresh got a shorter session, so the held one stays
    until_idle().await;
    let calls = sts.calls();
    for _ in 0..100 {
        cache.get("dev").await.expect("credentials");
        until_idle().await; // let any kicked refresh run
    }
    assert_eq!(sts.calls(), calls, "no STS call per request");
}

#[tokio::test(start_paused = true)]
async fn refresh_before_under_the_floor_still_refreshes_before_the_floor() {
    let timing = Timing {
        refresh_before: Duration::from_secs(10),
        idle_timeout: HOUR,
        fetch_timeout: MINUTE,
    };
    let (cache, sts) = cache_timed(vec![role("dev")], timing);
    cache.get("dev").await.expect("credentials");
    // Keep using it up to 90 s before expiry: a refresh has run by then,
    // before the 60 s floor would make callers wait on STS.
    for _ in 0..58 {
        sleep(MINUTE).await;
        cache.get("dev").await.expect("credentials");
    }
    sleep(Duration::from_secs(30)).await;
    cache.get("dev").await.expect("credentials");
    until_idle().await;
    assert_eq!(sts.calls(), 2, "refreshed ahead of the floor");
    let creds = cache.get("dev").await.expect("credentials");
    assert!(creds.remaining(cache.shared.clock.now()) > 50 * MINUTE);
}

#[tokio::test(start_paused = true)]
async fn credentials_that_arrive_unusable_are_a_failure_with_backoff() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.lifetime.lock() = Duration::ZERO;
    match cache.get("dev").await {
        Err(CacheError::Unavailable(error)) => assert_eq!(error.code, "ExpiringCredentials"),
        other => panic!("expected a failure, got {other:?}"),
    }
    for _ in 0..10 {
        assert!(cache.get("dev").await.is_err());
    }
    assert_eq!(sts.calls(), 1, "held back, not fetched again per request");
}

#[tokio::test(start_paused = true)]
async fn a_schedule_set_while_the_driver_wakes_is_kept() {
    let (cache, _sts) = cache_with(vec![role("dev")]);
    let slot = cache.slot("dev").expect("slot");
    let now = cache.shared.clock.now();
    slot.schedule(Some(now));
    // The driver woke for `now`; before it takes it, a fetch schedules the next refresh.
    let later = now + HOUR;
    slot.schedule(Some(later));
    assert!(!slot.take_due(Some(now)), "the newer schedule is not taken");
    assert_eq!(slot.record().next_refresh, Some(later));
    assert!(slot.take_due(Some(later)));
    assert_eq!(slot.record().next_refresh, None);
}

#[tokio::test(start_paused = true)]
async fn a_role_via_a_changed_role_is_renewed_on_reload() {
    let mut prod = role("prod");
    prod.config.via = Some("hub".into());
    let (cache, sts) = cache_with(vec![role("hub"), prod.clone()]);
    let before = cache.get("prod").await.expect("credentials");
    let mut hub = role("hub");
    hub.config.role_arn = Some("arn:aws:iam::222222222222:role/hub".into());
    let changes = cache.replace_roles(vec![hub, prod]);
    assert_eq!(changes.changed, vec!["hub".to_owned(), "prod".to_owned()]);
    let after = cache.get("prod").await.expect("credentials");
    assert_ne!(after.issued.access_key_id, before.issued.access_key_id);
    let upstream = sts.upstream_keys.lock().last().cloned().flatten();
    assert_eq!(
        upstream.as_deref(),
        Some("ASIAHUB3"),
        "signed by the new hub"
    );
}

#[tokio::test(start_paused = true)]
async fn refreshes_run_on_time_after_a_suspend() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    cache.get("dev").await.expect("credentials");
    until_idle().await;
    // Suspended for 40 minutes: the wall clock moved, the monotonic one did not.
    cache.shared.clock.jump(40 * MINUTE);
    cache.get("dev").await.ok(); // still in use, though within the margin
    sleep(WALL_CLOCK_NAP).await;
    until_idle().await;
    assert_eq!(sts.calls(), 2, "refreshed within one nap of the resume");
}

#[tokio::test(start_paused = true)]
async fn a_source_that_needs_a_person_backs_off_further_each_time() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.fail_always.lock() = Some(FetchError::needs_user(
        "CredentialProcessFailed",
        "the credential_process failed",
    ));
    // A client asking every second for two minutes.
    for _ in 0..120 {
        let _ = cache.get("dev").await;
        sleep(Duration::from_secs(1)).await;
    }
    // 5, 10, 20, 40, 60 s holds: 5 runs in 120 s, not one per 5 s (24).
    assert!(sts.calls() <= 6, "ran the source {} times", sts.calls());
}

#[tokio::test(start_paused = true)]
async fn an_outage_shorter_than_the_margin_costs_clients_nothing() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    *sts.lifetime.lock() = Duration::from_secs(90);
    cache.get("dev").await.expect("credentials");
    // STS fails from the moment the refresh is due (45 s before expiry,
    // 22.5 s before the floor) for 20 s; the backoff would have grown past that.
    *sts.fail_always.lock() = Some(FetchError::transient("InternalFailure", "down"));
    sleep(Duration::from_secs(40)).await;
    for _ in 0..20 {
        sleep(Duration::from_secs(1)).await;
        cache
            .get("dev")
            .await
            .expect("still served during the outage");
    }
    *sts.fail_always.lock() = None;
    for _ in 0..40 {
        sleep(Duration::from_millis(500)).await;
        cache.get("dev").await.expect("served after the outage");
    }
}

#[tokio::test(start_paused = true)]
async fn a_person_acting_ends_a_grown_hold_at_once() {
    struct LoginAware {
        inner: Arc<FakeSts>,
        logged_in: AtomicBool,
    }
    impl Fetcher for LoginAware {
        fn fetch<'a>(
            &'a self,
            role: &'a RoleSpec,
            upstream: Option<&'a Issued>,
        ) -> FetchFuture<'a> {
            self.inner.fetch(role, upstream)
        }
        fn person_acted_since(&self, _role: &RoleSpec, _failed_at: SystemTime) -> bool {
            self.logged_in.load(Ordering::SeqCst)
        }
    }
    let clock = Clock::following_tokio();
    let sts = FakeSts::new(clock);
    let fetcher = Arc::new(LoginAware {
        inner: sts.clone(),
        logged_in: AtomicBool::new(false),
    });
    let cache = Cache::new(
        vec![role("dev")],
        fetcher.clone(),
        timing(),
        clock,
        Handle::current(),
    );
    *sts.fail_always.lock() = Some(FetchError::needs_user("SsoLoginRequired", "log in"));
    for _ in 0..4 {
        let _ = cache.get("dev").await;
        sleep(MINUTE).await;
    }
    let _ = cache.get("dev").await; // the hold is now a minute
    let calls = sts.calls();
    assert!(cache.get("dev").await.is_err());
    assert_eq!(sts.calls(), calls, "held back");
    *sts.fail_always.lock() = None;
    fetcher.logged_in.store(true, Ordering::SeqCst);
    cache
        .get("dev")
        .await
        .expect("picked up at once after the login");
}

/// A reload changed what signs for the role: it is fetched again in the
/// background, the held credentials serving until the new ones arrive.
#[tokio::test(start_paused = true)]
async fn a_refetch_serves_the_held_credentials_until_the_new_ones_arrive() {
    let (cache, sts) = cache_with(vec![role("dev"), role("ops")]);
    let held = cache.get("dev").await.expect("credentials");
    let gate = sts.hold();
    assert!(cache.refetch("dev"));
    assert!(
        !cache.refetch("ops"),
        "nobody asked for ops: nothing to fetch"
    );
    until_idle().await;
    assert_eq!(sts.started(), 2, "dev is fetched again at once");
    let served = tokio::time::timeout(Duration::from_millis(1), cache.get("dev"))
        .await
        .expect("answered without waiting")
        .expect("credentials");
    assert_eq!(served.issued.access_key_id, held.issued.access_key_id);
    gate.add_permits(1);
    until_idle().await;
    let fresh = cache.get("dev").await.expect("credentials");
    assert_ne!(fresh.issued.access_key_id, held.issued.access_key_id);
    assert_eq!(sts.calls(), 2, "ops is still cold");
}

/// A failure under the old settings holds nothing back, and a fetch that
/// was under way when they changed is followed by one under the new ones.
#[tokio::test(start_paused = true)]
async fn a_refetch_ends_a_backoff_and_follows_a_fetch_already_under_way() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    sts.failures
        .lock()
        .push_back(FetchError::permanent("AccessDenied", "old endpoint"));
    cache.get("dev").await.expect_err("denied");
    assert!(cache.refetch("dev"));
    until_idle().await;
    assert_eq!(sts.calls(), 2, "retried at once, not after the hold");
    cache.get("dev").await.expect("served");

    let gate = sts.hold();
    advance(35 * MINUTE).await; // a refresh starts, with the old settings
    until_idle().await;
    assert_eq!(sts.started(), 3);
    assert!(cache.refetch("dev"));
    gate.add_permits(1);
    until_idle().await;
    assert_eq!(sts.started(), 4, "another fetch follows the one under way");
    gate.add_permits(1);
    until_idle().await;
    assert_eq!(sts.calls(), 4);
}

/// A reload's `refresh_before` moves the refresh of what is held, not only
/// of what is fetched next.
#[tokio::test(start_paused = true)]
async fn a_new_refresh_before_applies_to_held_credentials() {
    let (cache, sts) = cache_with(vec![role("dev")]);
    cache.get("dev").await.expect("credentials");
    cache.set_timing(Timing {
        refresh_before: 5 * MINUTE,
        ..timing()
    });
    advance(35 * MINUTE).await; // past the old refresh (30 minutes before expiry)
    cache.get("dev").await.expect("credentials");
    until_idle().await;
    assert_eq!(
        sts.calls(),
        1,
        "the refresh moved to 5 minutes before expiry"
    );
    advance(21 * MINUTE).await;
    until_idle().await;
    assert_eq!(sts.calls(), 2);
}
