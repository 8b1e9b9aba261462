//! Source credentials, shared: one [`Source`] per source identity (a
//! profile, the default chain, a `credential_source`), used by every role
//! that signs with it. A source's credentials are kept until shortly before
//! their own expiry (long-lived keys until the next reload), fetched by one
//! caller at a time with a deadline, and a failure is remembered with backoff
//! so that N roles on a failing source do not run it N times, nor every few
//! seconds.
//!
//! This is the unit anything else that stands in front of STS builds on (an
//! MFA session per device, say): a key, a provider, and the rules above.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use parking_lot::Mutex;

use super::process::ProcessFailed;
use crate::cache::{Permanence, backoff};
use crate::error_chain::{causes, readable};

/// Cached source credentials are used while they have at least this much
/// life left (a quarter of their lifetime, for short ones).
const SOURCE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Which source: what makes two roles share one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// aws-config's default chain (no profile named anywhere).
    DefaultChain,
    /// A named profile of `~/.aws/config`.
    Profile(String),
    /// `credential_source = Environment`.
    Environment,
    /// `credential_source = Ec2InstanceMetadata`.
    Ec2InstanceMetadata,
    /// `credential_source = EcsContainer`.
    EcsContainer,
    /// Keys stored under this name (`[source] keys`, `source_keys`), held
    /// in memory by `stored_keys.rs` rather than run as a provider here.
    Keys(String),
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::DefaultChain => f.write_str("the default credential chain"),
            SourceKey::Profile(name) => write!(f, "profile {name}"),
            SourceKey::Environment => f.write_str("the environment"),
            SourceKey::Ec2InstanceMetadata => f.write_str("EC2 instance metadata"),
            SourceKey::EcsContainer => f.write_str("the container credentials endpoint"),
            SourceKey::Keys(name) => write!(f, "stored keys {name}"),
        }
    }
}

/// Whether a caller may have what is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Anything with life left: credentials that only sign an STS call.
    Cached,
    /// A set obtained after the caller asked (or shared with another caller
    /// who asked at the same time): a role that *is* the source's
    /// credentials, refreshing ahead of their expiry.
    Renewed,
}

/// Why a source gave nothing. `detail` is for the log (the provider's
/// readable causes: paths, a service's words), never for clients; `reason`
/// is what a `credential_process` run did, which clients may see.
#[derive(Clone, Debug)]
pub struct SourceError {
    pub detail: String,
    pub reason: Option<String>,
    pub timed_out: bool,
}

/// Every source the daemon has used since the last reload.
#[derive(Default)]
pub struct SourceCache {
    sources: Mutex<HashMap<SourceKey, Arc<Source>>>,
}

impl SourceCache {
    /// The source for `key`, made by `make` (its provider and deadline) the
    /// first time it is asked for.
    pub fn source(
        &self,
        key: &SourceKey,
        make: impl FnOnce() -> (SharedCredentialsProvider, Duration),
    ) -> Arc<Source> {
        let mut sources = self.sources.lock();
        if let Some(source) = sources.get(key) {
            return source.clone();
        }
        let (provider, deadline) = make();
        let source = Arc::new(Source::new(key.clone(), provider, deadline));
        sources.insert(key.clone(), source.clone());
        source
    }

    /// Whether `key` already has its source (and so needs no provider made).
    pub fn get(&self, key: &SourceKey) -> Option<Arc<Source>> {
        self.sources.lock().get(key).cloned()
    }

    /// Forgets every source (a reload: profiles may have changed). Fetches
    /// under way finish on the sources they started with.
    pub fn clear(&self) {
        self.sources.lock().clear();
    }

    /// A person fixed this source (an SSO login): try it again.
    pub fn forget_failure(&self, key: &SourceKey) {
        if let Some(source) = self.sources.lock().get(key) {
            *source.failure.lock() = None;
        }
    }

    /// A person acted (logged in, touched a key): try every source again.
    pub fn forget_failures(&self) {
        for source in self.sources.lock().values() {
            *source.failure.lock() = None;
        }
    }
}

pub struct Source {
    key: SourceKey,
    provider: SharedCredentialsProvider,
    deadline: Duration,
    /// Held while the provider runs: one run per source at a time, and
    /// whoever waited on it gets its outcome.
    obtained: tokio::sync::Mutex<Option<Obtained>>,
    failure: Mutex<Option<Failure>>,
    /// Counts provider runs that returned credentials.
    renewals: AtomicU64,
}

struct Obtained {
    creds: Credentials,
    at: SystemTime,
    renewal: u64,
}

struct Failure {
    error: SourceError,
    in_a_row: u32,
    retry_at: SystemTime,
}

impl Source {
    fn new(key: SourceKey, provider: SharedCredentialsProvider, deadline: Duration) -> Self {
        Source {
            key,
            provider,
            deadline,
            obtained: tokio::sync::Mutex::new(None),
            failure: Mutex::new(None),
            renewals: AtomicU64::new(0),
        }
    }

    /// The source's credentials: cached ones when `freshness` allows, else
    /// the outcome of one provider run, bounded by the source's deadline.
    pub async fn credentials(&self, freshness: Freshness) -> Result<Credentials, SourceError> {
        let asked = self.renewals.load(Ordering::Acquire);
        if let Some(error) = self.holding_back() {
            return Err(error);
        }
        let mut obtained = self.obtained.lock().await;
        if let Some(held) = obtained.as_ref() {
            let reusable = match freshness {
                Freshness::Cached => good_for_a_while(held, SystemTime::now()),
                Freshness::Renewed => held.renewal > asked,
            };
            if reusable {
                return Ok(held.creds.clone());
            }
        }
        // Somebody's run failed while this caller waited: that is the answer.
        if let Some(error) = self.holding_back() {
            return Err(error);
        }
        let outcome = match tokio::time::timeout(self.deadline, self.provider_run()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SourceError {
                reason: None,
                detail: format!(
                    "{} gave no credentials within {}",
                    self.key,
                    humantime::format_duration(self.deadline)
                ),
                timed_out: true,
            }),
        };
        match outcome {
            Ok(creds) => {
                let renewal = self.renewals.fetch_add(1, Ordering::AcqRel) + 1;
                *self.failure.lock() = None;
                *obtained = Some(Obtained {
                    creds: creds.clone(),
                    at: SystemTime::now(),
                    renewal,
                });
                tracing::debug!(source = %self.key, "obtained source credentials");
                Ok(creds)
            }
            Err(error) => {
                *obtained = None;
                let mut failure = self.failure.lock();
                let in_a_row = failure.as_ref().map_or(0, |f| f.in_a_row) + 1;
                let wait = backoff(Permanence::NeedsUser, in_a_row);
                tracing::warn!(
                    source = %self.key,
                    retry_in_s = wait.as_secs(),
                    detail = %error.detail,
                    "source credentials failed"
                );
                *failure = Some(Failure {
                    error: error.clone(),
                    in_a_row,
                    retry_at: SystemTime::now() + wait,
                });
                Err(error)
            }
        }
    }

    async fn provider_run(&self) -> Result<Credentials, SourceError> {
        use aws_credential_types::provider::ProvideCredentials;
        self.provider.provide_credentials().await.map_err(|error| {
            // Every cause, readable, for the log. Not the SDK's Debug dump
            // (`DisplayErrorContext`): a provider's error can hold a raw
            // answer, and a 200 that failed to parse carries keys.
            SourceError {
                detail: readable(&error),
                reason: causes(&error)
                    .find_map(|cause| cause.downcast_ref::<ProcessFailed>())
                    .map(|failed| failed.reason.clone()),
                timed_out: matches!(
                    error,
                    aws_credential_types::provider::error::CredentialsError::ProviderTimedOut(_)
                ),
            }
        })
    }

    fn holding_back(&self) -> Option<SourceError> {
        let failure = self.failure.lock();
        let failure = failure.as_ref()?;
        (SystemTime::now() < failure.retry_at).then(|| failure.error.clone())
    }
}

/// Whether cached credentials may still sign: never-expiring ones always;
/// others while more than the margin is left.
fn good_for_a_while(held: &Obtained, now: SystemTime) -> bool {
    let Some(expiry) = held.creds.expiry() else {
        return true;
    };
    let lifetime = expiry.duration_since(held.at).unwrap_or_default();
    let margin = SOURCE_MARGIN.min(lifetime / 4);
    expiry
        .duration_since(now)
        .is_ok_and(|left| left > margin && !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError};
    use std::sync::atomic::AtomicUsize;

    /// Counts runs; hands out credentials living `lifetime`, or fails.
    #[derive(Debug)]
    struct Counting {
        runs: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
        fail: bool,
        pause: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            provider::future::ProvideCredentials::new(async move {
                let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(self.pause).await;
                if self.fail {
                    return Err(CredentialsError::provider_error("no"));
                }
                Ok(Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    None,
                    self.lifetime.map(|l| SystemTime::now() + l),
                    "test",
                ))
            })
        }
    }

    fn source(
        lifetime: Option<Duration>,
        fail: bool,
        pause: Duration,
    ) -> (Arc<Source>, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            runs: runs.clone(),
            lifetime,
            fail,
            pause,
        };
        let cache = SourceCache::default();
        let source = cache.source(&SourceKey::Profile("p".into()), || {
            (
                SharedCredentialsProvider::new(provider),
                Duration::from_millis(200),
            )
        });
        (source, runs)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_later_ones_the_cached_set() {
        let (source, runs) = source(
            Some(Duration::from_secs(3600)),
            false,
            Duration::from_millis(50),
        );
        let callers = (0..20).map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.credentials(Freshness::Cached).await })
        });
        for caller in callers.collect::<Vec<_>>() {
            assert_eq!(caller.await.unwrap().unwrap().access_key_id(), "AKID1");
        }
        assert_eq!(
            source
                .credentials(Freshness::Cached)
                .await
                .unwrap()
                .access_key_id(),
            "AKID1"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // A renewal runs the provider again.
        assert_eq!(
            source
                .credentials(Freshness::Renewed)
                .await
                .unwrap()
                .access_key_id(),
            "AKID2"
        );
    }

    #[tokio::test]
    async fn credentials_near_their_expiry_are_fetched_again() {
        let (source, runs) = source(Some(Duration::from_secs(60)), false, Duration::ZERO);
        source.credentials(Freshness::Cached).await.unwrap();
        source.credentials(Freshness::Cached).await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "45 s of margin left: reused"
        );
        let (source, runs) = source_expiring_now();
        source.credentials(Freshness::Cached).await.unwrap();
        source.credentials(Freshness::Cached).await.unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "no life left: fetched again"
        );
    }

    fn source_expiring_now() -> (Arc<Source>, Arc<AtomicUsize>) {
        source(Some(Duration::ZERO), false, Duration::ZERO)
    }

    #[tokio::test]
    async fn a_failing_source_is_held_back_not_run_per_caller() {
        let (source, runs) = source(None, true, Duration::ZERO);
        for _ in 0..10 {
            assert!(source.credentials(Freshness::Cached).await.is_err());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "backoff holds the failure");
        let cache = SourceCache::default();
        let key = SourceKey::Environment;
        let held = cache.source(&key, || {
            (
                SharedCredentialsProvider::new(Credentials::new("AKID", "s", None, None, "t")),
                Duration::from_secs(1),
            )
        });
        *held.failure.lock() = Some(Failure {
            error: SourceError {
                detail: "x".into(),
                reason: None,
                timed_out: false,
            },
            in_a_row: 1,
            retry_at: SystemTime::now() + Duration::from_secs(60),
        });
        assert!(held.credentials(Freshness::Cached).await.is_err());
        cache.forget_failures();
        assert!(
            held.credentials(Freshness::Cached).await.is_ok(),
            "a person acted"
        );
    }

    #[tokio::test]
    async fn a_source_past_its_deadline_fails_as_timed_out() {
        let (source, _) = source(None, false, Duration::from_secs(5));
        let error = source
            .credentials(Freshness::Cached)
            .await
            .expect_err("deadline");
        assert!(error.timed_out);
    }
}
