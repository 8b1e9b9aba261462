//! Stored keys in memory: the long-term keys `[source] keys` and
//! `source_keys` name, read from the keyring once (at start, at a reload,
//! when `keys add`/`rotate` tell the daemon) and then only read from here,
//! so a request never waits on the keyring.
//!
//! A keyring that cannot be read (locked, gone, silent past its deadline)
//! leaves the keys already held in use and marks the rest as unavailable,
//! with why. While that lasts:
//! * the keyring is asked once, in the background, to unlock through its
//!   own prompt (the Secret Service's dialog, the Keychain's), and the
//!   person is told by a desktop notification why that dialog appeared;
//! * its lock state is looked at every [`POLL`], and the keys are read the
//!   moment it opens: the roles recover without a restart. Polling rather
//!   than the Secret Service's `CollectionChanged` signal, because every
//!   backend has a lock state and none but the Secret Service has a signal
//!   (the Keychain's and the file's would need one each), and one property
//!   read every few seconds, only while something is locked, costs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use parking_lot::Mutex;

use crate::attention::Attention;
use crate::keys::{
    self, BackendKind, Keyring, KeyringError, KeyringSettings, LockState, StoredKey,
};

/// The code a role answers with while its stored keys wait for an unlock.
pub const LOCKED_CODE: &str = "KeyringLocked";

/// How often a locked or unreachable keyring is looked at again.
pub const POLL: Duration = Duration::from_secs(3);

/// Why stored keys cannot sign right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// The keyring holds them but is locked.
    Locked {
        backend: BackendKind,
        what_to_do: String,
    },
    /// The keyring could not be read (absent, silent, failing).
    Keyring(KeyringError),
    /// The keyring was read and has no keys by that name.
    NotStored { backend: BackendKind },
    /// Not read yet (the daemon has not needed them before).
    NotRead,
}

pub struct StoredKeys {
    state: Mutex<Inner>,
    /// One read of the keyring at a time: a reload, a `keys add` and the
    /// watcher do not interleave their answers.
    reading: tokio::sync::Mutex<()>,
    /// The watcher runs.
    watching: AtomicBool,
    /// [`POLL`], shorter in tests.
    poll: Duration,
    attention: Arc<Attention>,
}

#[derive(Default)]
struct Inner {
    settings: KeyringSettings,
    keyring: Option<Keyring>,
    /// Names the roles use, and names asked for by `credential-process --keys`.
    wanted: BTreeSet<String>,
    asked: BTreeSet<String>,
    held: BTreeMap<String, Held>,
    not_stored: BTreeSet<String>,
    /// Why the last read did not get every wanted key.
    trouble: Option<KeyringError>,
    /// Asked the keyring to unlock (and told the person) since the keys
    /// were last read in full: once per lock, however long it lasts.
    asked_unlock: bool,
}

struct Held {
    key: StoredKey,
    /// When these keys became available (read, or read again changed).
    since: SystemTime,
}

/// What one read of the keyring found, for the daemon's reply and log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Names read, by the key id's last four characters.
    pub read: Vec<(String, String)>,
    /// Names whose key is new or differs from the one held before.
    pub changed: Vec<String>,
    pub not_stored: Vec<String>,
    /// Why the keyring could not be read, when it could not.
    pub trouble: Option<String>,
    pub backend: Option<BackendKind>,
}

impl ReadReport {
    /// One sentence: what was read, and what was not.
    pub fn summary(&self) -> String {
        let backend = self
            .backend
            .map_or("keyring".to_owned(), |b| format!("{b} keyring"));
        let mut parts = Vec::new();
        if !self.read.is_empty() {
            let names: Vec<String> = self
                .read
                .iter()
                .map(|(name, last4)| format!("{name} (…{last4})"))
                .collect();
            parts.push(format!(
                "stored keys {} read from the {backend}",
                names.join(", ")
            ));
        }
        if !self.not_stored.is_empty() {
            parts.push(format!(
                "no stored keys named {} in the {backend} (assumed keys add NAME)",
                self.not_stored.join(", ")
            ));
        }
        if let Some(trouble) = &self.trouble {
            parts.push(trouble.clone());
        }
        if parts.is_empty() {
            return "no stored keys are in use".into();
        }
        parts.join("; ")
    }
}

/// The keyring as `assumed status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyringStatus {
    pub backend: BackendKind,
    /// `unlocked`, `locked` or `unavailable` (as of the last look).
    pub state: &'static str,
    /// What is wrong and what to do, when something is.
    pub message: Option<String>,
    pub keys: Vec<KeyStatus>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyStatus {
    pub name: String,
    /// Held in memory, ready to sign.
    pub loaded: bool,
    pub key_id_last4: Option<String>,
}

impl StoredKeys {
    pub fn new(settings: KeyringSettings, attention: Arc<Attention>) -> Arc<Self> {
        Arc::new(StoredKeys {
            state: Mutex::new(Inner {
                settings,
                ..Inner::default()
            }),
            reading: tokio::sync::Mutex::new(()),
            watching: AtomicBool::new(false),
            poll: POLL,
            attention,
        })
    }

    /// With `keyring` already open, looked at every `poll` (tests).
    #[cfg(test)]
    fn with_keyring(keyring: Keyring, poll: Duration, attention: Arc<Attention>) -> Arc<Self> {
        let keys = StoredKeys {
            state: Mutex::new(Inner {
                settings: KeyringSettings::default(),
                keyring: Some(keyring),
                ..Inner::default()
            }),
            reading: tokio::sync::Mutex::new(()),
            watching: AtomicBool::new(false),
            poll,
            attention,
        };
        Arc::new(keys)
    }

    /// The keyring and the names the roles use, as a (re)loaded config
    /// says. Keys no longer wanted are dropped from memory; all of them
    /// when the keyring is another one. Returns whether the keyring changed.
    pub fn configure(&self, settings: &KeyringSettings, wanted: BTreeSet<String>) -> bool {
        let mut state = self.state.lock();
        let changed = state.settings != *settings;
        if changed {
            state.settings = settings.clone();
            state.keyring = None;
            state.held.clear();
            state.not_stored.clear();
            state.trouble = None;
            state.asked_unlock = false;
        }
        let asked = state.asked.clone();
        state.wanted = wanted.union(&asked).cloned().collect();
        let keep = state.wanted.clone();
        state.held.retain(|name, _| keep.contains(name));
        state.not_stored.retain(|name| keep.contains(name));
        changed
    }

    /// Adds `name` to the keys read (a `credential-process --keys` for keys
    /// no role uses); whether it was new.
    pub fn want(&self, name: &str) -> bool {
        let mut state = self.state.lock();
        state.asked.insert(name.to_owned());
        state.wanted.insert(name.to_owned())
    }

    /// The keys `name` names, from memory, as a signer.
    pub fn credentials(&self, name: &str) -> Result<Credentials, Unavailable> {
        let state = self.state.lock();
        if let Some(held) = state.held.get(name) {
            let key = &held.key;
            return Ok(Credentials::new(
                key.access_key_id.clone(),
                key.secret_access_key.as_str(),
                None,
                None,
                "assumed-stored-keys",
            ));
        }
        let backend = state.settings.backend;
        Err(match &state.trouble {
            Some(KeyringError::Locked {
                backend,
                what_to_do,
            }) => Unavailable::Locked {
                backend: *backend,
                what_to_do: what_to_do.clone(),
            },
            Some(other) => Unavailable::Keyring(other.clone()),
            None if state.not_stored.contains(name) => Unavailable::NotStored { backend },
            None => Unavailable::NotRead,
        })
    }

    /// Whether the keys `name` names became available after `at` (the
    /// keyring was unlocked, `keys add` stored them): a role that failed
    /// for want of them may try again at once.
    pub fn available_since(&self, name: &str, at: SystemTime) -> bool {
        self.state
            .lock()
            .held
            .get(name)
            .is_some_and(|held| held.since > at)
    }

    pub fn backend(&self) -> BackendKind {
        self.state.lock().settings.backend
    }

    /// For `assumed status`; `None` when no stored keys are in use.
    pub fn status(&self) -> Option<KeyringStatus> {
        let state = self.state.lock();
        if state.wanted.is_empty() {
            return None;
        }
        let (label, message) = match &state.trouble {
            None => ("unlocked", None),
            Some(error @ KeyringError::Locked { .. }) => (
                "locked",
                Some(format!(
                    "{error}; roles signed by stored keys answer 503 KeyringLocked until it is unlocked, then recover by themselves (check with: assumed keys list)"
                )),
            ),
            Some(error) => (
                "unavailable",
                Some(format!(
                    "{error}; the daemon tries again every {}s (check with: assumed keys list)",
                    POLL.as_secs()
                )),
            ),
        };
        let keys = state
            .wanted
            .iter()
            .map(|name| {
                let held = state.held.get(name);
                KeyStatus {
                    name: name.clone(),
                    loaded: held.is_some(),
                    key_id_last4: held.map(|held| keys::last4(&held.key.access_key_id)),
                }
            })
            .collect();
        Some(KeyringStatus {
            backend: state.settings.backend,
            state: label,
            message,
            keys,
        })
    }

    /// Reads every wanted key from the keyring (under its deadlines). A
    /// keyring that cannot be read changes nothing held; it is asked once
    /// to unlock, and watched until it can be read.
    pub async fn read(self: &Arc<Self>) -> ReadReport {
        let _one_at_a_time = self.reading.lock().await;
        let (settings, wanted, keyring) = {
            let state = self.state.lock();
            (
                state.settings.clone(),
                state.wanted.clone(),
                state.keyring.clone(),
            )
        };
        if wanted.is_empty() {
            self.state.lock().trouble = None;
            return ReadReport::default();
        }
        let mut report = ReadReport {
            backend: Some(settings.backend),
            ..ReadReport::default()
        };
        let outcome = match keyring {
            Some(keyring) => Ok(keyring),
            None => open(&settings).await,
        };
        let keyring = match outcome {
            Ok(keyring) => keyring,
            Err(error) => return self.cannot_read(None, error, report),
        };
        self.state.lock().keyring = Some(keyring.clone());
        match keyring.lock_state().await {
            Ok(LockState::Unlocked) => {}
            Ok(LockState::Locked) => {
                let locked = KeyringError::Locked {
                    backend: keyring.kind(),
                    what_to_do: "unlock it (the daemon asked once through its unlock prompt)"
                        .into(),
                };
                return self.cannot_read(Some(keyring), locked, report);
            }
            Err(error) => return self.cannot_read(Some(keyring), error, report),
        }
        let mut found = Vec::new();
        for name in &wanted {
            match keyring.read(name).await {
                Ok(key) => found.push((name.clone(), key)),
                Err(error) => return self.cannot_read(Some(keyring), error, report),
            }
        }
        let now = SystemTime::now();
        let mut state = self.state.lock();
        if state.settings != settings {
            // A reload changed the keyring meanwhile: its own read follows.
            return report;
        }
        for (name, key) in found {
            match key {
                Some(key) => {
                    report
                        .read
                        .push((name.clone(), keys::last4(&key.access_key_id)));
                    let same = state.held.get(&name).is_some_and(|held| {
                        held.key.access_key_id == key.access_key_id
                            && held.key.secret_access_key == key.secret_access_key
                    });
                    if !same {
                        report.changed.push(name.clone());
                        state.held.insert(name.clone(), Held { key, since: now });
                    }
                    state.not_stored.remove(&name);
                }
                None => {
                    state.held.remove(&name);
                    state.not_stored.insert(name.clone());
                    report.not_stored.push(name);
                }
            }
        }
        state.trouble = None;
        state.asked_unlock = false;
        drop(state);
        tracing::info!("{}", report.summary());
        report
    }

    /// The keyring could not be read: remembered (held keys stay), the
    /// person asked once, and the keyring watched until it can be.
    fn cannot_read(
        self: &Arc<Self>,
        keyring: Option<Keyring>,
        error: KeyringError,
        mut report: ReadReport,
    ) -> ReadReport {
        let locked = matches!(error, KeyringError::Locked { .. });
        let first = {
            let mut state = self.state.lock();
            state.trouble = Some(error.clone());
            // Every key already in memory: nothing waits, nobody is asked.
            let all_held = state
                .wanted
                .iter()
                .all(|name| state.held.contains_key(name));
            !all_held && !std::mem::replace(&mut state.asked_unlock, true)
        };
        report.trouble = Some(match locked {
            true => format!(
                "{error}; roles on stored keys not yet read answer 503 KeyringLocked until then"
            ),
            false => format!("{error}; trying again every {}s", POLL.as_secs()),
        });
        if first {
            tracing::warn!("stored keys: {error}");
            if locked {
                self.attention.keyring_locked(&format!(
                    "{error}. Roles signed by stored keys wait for it; check with: assumed keys list"
                ));
                if let Some(keyring) = keyring {
                    self.ask_to_unlock(keyring);
                }
            }
        }
        self.watch();
        report
    }

    /// The keyring's own unlock prompt, once, off every request path; the
    /// keys are read as soon as it is answered.
    fn ask_to_unlock(self: &Arc<Self>, keyring: Keyring) {
        let keys = self.clone();
        tokio::spawn(async move {
            match keyring.unlock().await {
                Ok(()) => {
                    keys.read().await;
                }
                Err(error) => tracing::info!("the keyring stays locked: {error}"),
            }
        });
    }

    /// Looks at the keyring every [`POLL`] until its keys can be read.
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(poll) = keys.upgrade().map(|keys| keys.poll) else {
                    return;
                };
                tokio::time::sleep(poll).await;
                let Some(keys) = keys.upgrade() else {
                    return;
                };
                if keys.state.lock().trouble.is_none() {
                    keys.watching.store(false, Ordering::Release);
                    return;
                }
                let report = keys.read().await;
                if report.trouble.is_none() {
                    keys.watching.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
}

/// Opens the keyring off the async workers and under its deadline: a
/// Secret Service connects over D-Bus here.
async fn open(settings: &KeyringSettings) -> Result<Keyring, KeyringError> {
    let backend = settings.backend;
    let settings = settings.clone();
    let task = tokio::task::spawn_blocking(move || keys::open(&settings));
    match tokio::time::timeout(keys::KEYRING_DEADLINE, task).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(join)) => Err(KeyringError::Failed {
            backend,
            reason: format!("opening the keyring ended abnormally: {join}"),
        }),
        Err(_) => Err(KeyringError::Timeout {
            backend,
            after: keys::KEYRING_DEADLINE,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Backend, KeyInfo};
    use std::sync::atomic::AtomicUsize;
    use zeroize::Zeroizing;

    /// A keyring in memory that can be locked, counting unlock prompts.
    #[derive(Default)]
    struct Fake {
        keys: Mutex<BTreeMap<String, StoredKey>>,
        locked: AtomicBool,
        prompts: AtomicUsize,
        /// Every call takes this long (a keyring that does not answer).
        hang: Mutex<Duration>,
    }

    impl Fake {
        fn pause(&self) -> Result<(), KeyringError> {
            std::thread::sleep(*self.hang.lock());
            Ok(())
        }
        fn readable(&self) -> Result<(), KeyringError> {
            self.pause()?;
            match self.locked.load(Ordering::SeqCst) {
                true => Err(KeyringError::Locked {
                    backend: BackendKind::SecretService,
                    what_to_do: "unlock it".into(),
                }),
                false => Ok(()),
            }
        }
    }

    impl Backend for Arc<Fake> {
        fn kind(&self) -> BackendKind {
            BackendKind::SecretService
        }
        fn lock_state(&self) -> Result<LockState, KeyringError> {
            self.pause()?;
            Ok(match self.locked.load(Ordering::SeqCst) {
                true => LockState::Locked,
                false => LockState::Unlocked,
            })
        }
        fn unlock(&self) -> Result<(), KeyringError> {
            // The person dismisses the prompt.
            self.prompts.fetch_add(1, Ordering::SeqCst);
            self.readable()
        }
        fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError> {
            self.readable()?;
            Ok(self.keys.lock().get(name).cloned())
        }
        fn write(&self, key: &StoredKey) -> Result<(), KeyringError> {
            self.readable()?;
            self.keys.lock().insert(key.name.clone(), key.clone());
            Ok(())
        }
        fn delete(&self, name: &str) -> Result<bool, KeyringError> {
            Ok(self.keys.lock().remove(name).is_some())
        }
        fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
            Ok(Vec::new())
        }
    }

    fn key(name: &str, id: &str) -> StoredKey {
        StoredKey {
            name: name.into(),
            access_key_id: id.into(),
            secret_access_key: Zeroizing::new(format!("secret-of-{id}")),
            user_arn: None,
            added_at: SystemTime::UNIX_EPOCH,
            rotation: None,
        }
    }

    type Told = Arc<Mutex<Vec<String>>>;

    fn stored(fake: &Arc<Fake>, deadline: Duration) -> (Arc<StoredKeys>, Told) {
        let told: Told = Arc::default();
        let sink = told.clone();
        let attention = Attention::with_sink(
            true,
            Box::new(move |n: crate::notify::Notification| {
                sink.lock().push(format!("{}: {}", n.title, n.body))
            }),
        );
        let keyring = Keyring::new(Arc::new(fake.clone())).with_deadline(deadline);
        let keys = StoredKeys::with_keyring(keyring, Duration::from_millis(50), attention);
        keys.configure(
            &KeyringSettings::default(),
            ["alice".to_owned()].into_iter().collect(),
        );
        (keys, told)
    }

    async fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..200 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what} did not happen within 2s");
    }

    #[tokio::test]
    async fn keys_are_read_once_into_memory_and_sign_from_there() {
        let fake = Arc::new(Fake::default());
        fake.keys
            .lock()
            .insert("alice".into(), key("alice", "AKIAOLD1"));
        let (keys, _) = stored(&fake, Duration::from_secs(5));
        assert_eq!(keys.credentials("alice"), Err(Unavailable::NotRead));
        let report = keys.read().await;
        assert_eq!(report.read, [("alice".to_owned(), "OLD1".to_owned())]);
        assert_eq!(report.changed, ["alice"]);
        // Gone from the keyring: memory still signs, until the next read.
        fake.keys.lock().clear();
        let creds = keys.credentials("alice").expect("in memory");
        assert_eq!(creds.access_key_id(), "AKIAOLD1");
        assert_eq!(creds.session_token(), None, "long-term keys");
        let report = keys.read().await;
        assert_eq!(report.not_stored, ["alice"]);
        assert_eq!(
            keys.credentials("alice"),
            Err(Unavailable::NotStored {
                backend: BackendKind::SecretService
            })
        );
        let status = keys.status().expect("keys in use");
        assert_eq!((status.state, status.keys[0].loaded), ("unlocked", false));
    }

    #[tokio::test]
    async fn a_locked_keyring_is_asked_once_told_once_and_recovers_by_itself() {
        let fake = Arc::new(Fake::default());
        fake.keys
            .lock()
            .insert("alice".into(), key("alice", "AKIAKEY1"));
        fake.locked.store(true, Ordering::SeqCst);
        let (keys, told) = stored(&fake, Duration::from_secs(5));
        let before = SystemTime::now();
        let report = keys.read().await;
        assert!(report.trouble.is_some(), "{report:?}");
        assert!(matches!(
            keys.credentials("alice"),
            Err(Unavailable::Locked { .. })
        ));
        assert_eq!(keys.status().expect("in use").state, "locked");
        // The watcher reads again every poll, and prompts no more.
        eventually("the one unlock prompt", || {
            fake.prompts.load(Ordering::SeqCst) == 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        keys.read().await;
        assert_eq!(fake.prompts.load(Ordering::SeqCst), 1, "asked once");
        assert_eq!(told.lock().len(), 1, "{:?}", told.lock());
        assert!(told.lock()[0].contains("keyring is locked"));
        assert!(!keys.available_since("alice", before));
        // Unlocked from elsewhere (the login screen, seahorse).
        fake.locked.store(false, Ordering::SeqCst);
        eventually("recovery", || keys.credentials("alice").is_ok()).await;
        assert!(keys.available_since("alice", before));
        assert_eq!(keys.status().expect("in use").state, "unlocked");
        // Locked again: the keys already in memory keep signing, unasked.
        fake.locked.store(true, Ordering::SeqCst);
        keys.read().await;
        assert!(keys.credentials("alice").is_ok());
        assert_eq!(fake.prompts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_keyring_that_does_not_answer_is_an_error_within_its_deadline() {
        let fake = Arc::new(Fake::default());
        *fake.hang.lock() = Duration::from_secs(2);
        let (keys, _) = stored(&fake, Duration::from_millis(100));
        let started = std::time::Instant::now();
        let report = keys.read().await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            report
                .trouble
                .as_deref()
                .is_some_and(|t| t.contains("did not answer")),
            "{report:?}"
        );
        assert!(matches!(
            keys.credentials("alice"),
            Err(Unavailable::Keyring(KeyringError::Timeout { .. }))
        ));
        assert_eq!(keys.status().expect("in use").state, "unavailable");
    }

    #[tokio::test]
    async fn keys_no_longer_used_leave_memory() {
        let fake = Arc::new(Fake::default());
        fake.keys
            .lock()
            .insert("alice".into(), key("alice", "AKIAKEY1"));
        let (keys, _) = stored(&fake, Duration::from_secs(5));
        keys.read().await;
        keys.configure(&KeyringSettings::default(), BTreeSet::new());
        assert_eq!(keys.credentials("alice"), Err(Unavailable::NotRead));
        assert!(keys.status().is_none());
    }
}
