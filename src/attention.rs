//! Telling the person at the desk when only they can fix something: an MFA
//! code with no `mfa_process`, an expired SSO or `aws login` session, a
//! failing `credential_process`. Without this nobody sees the daemon's 503
//! until a program fails.
//!
//! Two kinds of desktop notification (through [`crate::notify`]):
//! * **now**: a role needs a person ([`Attention::must_act`]), at most once
//!   per role per [`QUIET_PERIOD`], however many requests fail meanwhile;
//! * **ahead of time**: [`LEAD`] before an MFA or SSO session ends while
//!   roles that use it are in use ([`Attention::session_started`]), so the
//!   session can be renewed before anything fails.
//!
//! Times here are tokio's, so the rules run on a paused clock in tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::notify::Notification;

/// At most one "needs you" notification per role in this period.
pub const QUIET_PERIOD: Duration = Duration::from_secs(10 * 60);
/// How long before a session ends the reminder comes.
pub const LEAD: Duration = Duration::from_secs(10 * 60);

type Sink = Box<dyn Fn(Notification) + Send + Sync>;
type InUse = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How a session is renewed, for the reminder's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renew {
    /// `assumed mfa ROLE <code>`, for one of the roles in use.
    MfaCode,
    /// A command that renews it whichever role asks (`aws sso login …`).
    Command(String),
}

struct Watched {
    /// What the session is, for the text ("the MFA session of …").
    label: String,
    renew: Renew,
    ends: SystemTime,
    /// Roles that have used it since the daemon started (or it was opened).
    roles: BTreeSet<String>,
    reminder: Option<JoinHandle<()>>,
}

pub struct Attention {
    enabled: AtomicBool,
    sink: Sink,
    last_told: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Watched>>,
    in_use: RwLock<Option<InUse>>,
}

impl Attention {
    /// Desktop notifications, when `enabled`.
    pub fn new(enabled: bool) -> Arc<Self> {
        Self::with_sink(enabled, Box::new(crate::notify::send))
    }

    /// Notifications go to `sink` (tests record them).
    pub fn with_sink(enabled: bool, sink: Sink) -> Arc<Self> {
        Arc::new(Attention {
            enabled: AtomicBool::new(enabled),
            sink,
            last_told: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            in_use: RwLock::new(None),
        })
    }

    /// `[server] notify` after a reload.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Release);
    }

    /// How to tell whether a role is in use (it holds credentials that are
    /// being kept warm); until this is set, every role counts as in use.
    pub fn set_in_use(&self, in_use: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.in_use.write() = Some(Arc::new(in_use));
    }

    fn in_use(&self, role: &str) -> bool {
        let check = self.in_use.read().clone();
        check.is_none_or(|check| check(role))
    }

    fn send(&self, notification: Notification) {
        if self.enabled.load(Ordering::Acquire) {
            (self.sink)(notification);
        } else {
            tracing::debug!(title = %notification.title, "desktop notifications are off");
        }
    }

    /// `role` cannot be served until a person acts; `message` says what to run.
    pub fn must_act(&self, role: &str, message: &str) {
        let now = Instant::now();
        {
            let mut last = self.last_told.lock();
            if last
                .get(role)
                .is_some_and(|told| now.duration_since(*told) < QUIET_PERIOD)
            {
                return;
            }
            last.insert(role.to_owned(), now);
        }
        self.send(Notification::new(
            format!("assumed: role {role} needs you"),
            message,
        ));
    }

    /// The keyring that holds stored keys is locked: roles signed by them
    /// wait for it. Once per [`QUIET_PERIOD`], whichever roles are waiting.
    pub fn keyring_locked(&self, message: &str) {
        let now = Instant::now();
        {
            let mut last = self.last_told.lock();
            // Not a role name: those are made of URL-safe characters.
            let key = " keyring";
            if last
                .get(key)
                .is_some_and(|told| now.duration_since(*told) < QUIET_PERIOD)
            {
                return;
            }
            last.insert(key.to_owned(), now);
        }
        self.send(Notification::new("assumed: the keyring is locked", message));
    }

    /// A session (MFA, SSO) that ends at `ends`: remind [`LEAD`] before, if
    /// roles that use it are in use then. Replaces what was known under `key`
    /// (telling it again with the same end changes nothing).
    pub fn session_started(
        self: &Arc<Self>,
        key: &str,
        label: String,
        renew: Renew,
        ends: SystemTime,
    ) {
        if self
            .sessions
            .lock()
            .get(key)
            .is_some_and(|watched| watched.ends == ends)
        {
            return;
        }
        let left = ends.duration_since(SystemTime::now()).unwrap_or_default();
        let end = Instant::now() + left;
        let at = Instant::now() + left.saturating_sub(LEAD);
        let this = Arc::downgrade(self);
        let owned_key = key.to_owned();
        let reminder = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(attention) = this.upgrade() {
                attention.remind(&owned_key, end);
            }
        });
        let mut sessions = self.sessions.lock();
        let roles = sessions
            .remove(key)
            .map(|old| {
                if let Some(task) = old.reminder {
                    task.abort();
                }
                old.roles
            })
            .unwrap_or_default();
        sessions.insert(
            key.to_owned(),
            Watched {
                label,
                renew,
                ends,
                roles,
                reminder: Some(reminder),
            },
        );
    }

    /// `role` used the session under `key` (it signed the role's AssumeRole).
    pub fn session_used(&self, key: &str, role: &str) {
        if let Some(watched) = self.sessions.lock().get_mut(key) {
            if !watched.roles.contains(role) {
                watched.roles.insert(role.to_owned());
            }
        }
    }

    /// The session under `key` is gone (forgotten): no reminder.
    pub fn session_ended(&self, key: &str) {
        if let Some(task) = self
            .sessions
            .lock()
            .remove(key)
            .and_then(|watched| watched.reminder)
        {
            task.abort();
        }
    }

    fn remind(&self, key: &str, end: Instant) {
        let (label, renew, roles) = {
            let sessions = self.sessions.lock();
            let Some(watched) = sessions.get(key) else {
                return;
            };
            (
                watched.label.clone(),
                watched.renew.clone(),
                watched.roles.clone(),
            )
        };
        let in_use: Vec<String> = roles.into_iter().filter(|r| self.in_use(r)).collect();
        let Some(first) = in_use.first() else {
            tracing::debug!(session = %label, "ends soon; none of its roles is in use");
            return;
        };
        let command = match renew {
            Renew::MfaCode => format!("assumed mfa {first} <code>"),
            Renew::Command(command) => command,
        };
        let minutes = end
            .saturating_duration_since(Instant::now())
            .as_secs()
            .div_ceil(60);
        let body = format!(
            "{label} ends in {minutes} min (roles {}); to renew it, run: {command}",
            in_use.join(", ")
        );
        tracing::info!(session = %label, "ends in {minutes} min; reminded the user");
        self.send(Notification::new("assumed: a session ends soon", body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(enabled: bool) -> (Arc<Attention>, Arc<Mutex<Vec<Notification>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let attention = Attention::with_sink(enabled, Box::new(move |n| sink.lock().push(n)));
        (attention, seen)
    }

    fn count(seen: &Mutex<Vec<Notification>>) -> usize {
        seen.lock().len()
    }

    #[tokio::test(start_paused = true)]
    async fn one_notice_per_role_per_quiet_period() {
        let (attention, seen) = recording(true);
        for _ in 0..20 {
            attention.must_act("dev", "run: assumed mfa dev <code>");
        }
        attention.must_act("ops", "run: aws sso login --profile ops");
        assert_eq!(count(&seen), 2);
        {
            let seen = seen.lock();
            assert_eq!(seen[0].title, "assumed: role dev needs you");
            assert!(seen[0].body.contains("assumed mfa dev <code>"));
        }
        tokio::time::advance(QUIET_PERIOD - Duration::from_secs(1)).await;
        attention.must_act("dev", "again");
        assert_eq!(count(&seen), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        attention.must_act("dev", "again");
        assert_eq!(count(&seen), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn off_means_silent() {
        let (attention, seen) = recording(false);
        attention.must_act("dev", "x");
        assert_eq!(count(&seen), 0);
        attention.set_enabled(true);
        attention.must_act("ops", "x");
        assert_eq!(count(&seen), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reminder_comes_ten_minutes_before_the_session_ends_if_its_roles_are_in_use() {
        let (attention, seen) = recording(true);
        let in_use = Arc::new(AtomicBool::new(true));
        let flag = in_use.clone();
        attention.set_in_use(move |role| role == "dev" && flag.load(Ordering::SeqCst));
        let ends = SystemTime::now() + Duration::from_secs(3600);
        attention.session_started(
            "mfa-a",
            "the MFA session of arn:aws:iam::111111111111:mfa/alice".into(),
            Renew::MfaCode,
            ends,
        );
        attention.session_used("mfa-a", "dev");
        attention.session_used("mfa-a", "idle");
        // Fifty minutes in: nothing yet.
        tokio::time::sleep(Duration::from_secs(49 * 60)).await;
        assert_eq!(count(&seen), 0);
        // Ten minutes before the end (the paused clock jumps there).
        tokio::time::sleep(Duration::from_secs(2 * 60)).await;
        assert_eq!(count(&seen), 1);
        let notice = seen.lock()[0].clone();
        assert!(
            notice.body.contains("run: assumed mfa dev <code>"),
            "{notice:?}"
        );
        assert!(
            notice.body.contains("ends in 10 min (roles dev)"),
            "{notice:?}"
        );

        // A session whose roles went idle reminds nobody.
        in_use.store(false, Ordering::SeqCst);
        attention.session_started(
            "sso-x",
            "the SSO session x".into(),
            Renew::Command("aws sso login --sso-session x".into()),
            SystemTime::now() + Duration::from_secs(1200),
        );
        attention.session_used("sso-x", "dev");
        tokio::time::sleep(Duration::from_secs(1200)).await;
        assert_eq!(count(&seen), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewed_or_forgotten_session_cancels_the_old_reminder() {
        let (attention, seen) = recording(true);
        let soon = SystemTime::now() + Duration::from_secs(15 * 60);
        attention.session_started("k", "s".into(), Renew::MfaCode, soon);
        attention.session_used("k", "dev");
        // Renewed before the reminder: the new end counts, the roles stay.
        attention.session_started(
            "k",
            "s".into(),
            Renew::MfaCode,
            SystemTime::now() + Duration::from_secs(3600),
        );
        tokio::time::sleep(Duration::from_secs(30 * 60)).await;
        assert_eq!(count(&seen), 0);
        tokio::time::sleep(Duration::from_secs(25 * 60)).await;
        assert_eq!(count(&seen), 1, "the renewed session's reminder, for dev");
        attention.session_started("gone", "g".into(), Renew::MfaCode, soon);
        attention.session_used("gone", "dev");
        attention.session_ended("gone");
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(count(&seen), 1);
    }
}
