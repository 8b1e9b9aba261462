//! Long-term IAM keys at rest: kept in the operating system's keyring (or an
//! encrypted file), never in a plaintext file, and read by the daemon into
//! memory only.
//!
//! * `mod.rs` — what is stored (`StoredKey`), what may be shown of it
//!   (`KeyInfo`), the `Backend` port each keyring implements, and `Keyring`:
//!   a backend behind a deadline, so a keyring that hangs (a locked
//!   collection whose prompt nobody answers, a D-Bus peer that is gone)
//!   becomes an error, never a hung command or daemon;
//! * `record.rs` — the bytes a backend stores for one key;
//! * `secret_service.rs` — Linux: the freedesktop Secret Service (GNOME
//!   Keyring, KWallet, KeePassXC) through the `secret-service` crate;
//! * `keychain.rs` — macOS: the login Keychain through `security-framework`;
//! * `file.rs` — everywhere: one file encrypted with a passphrase (age:
//!   scrypt, ChaCha20-Poly1305), for headless servers, WSL and containers;
//! * `hardening.rs` — the daemon's memory kept from the user's other
//!   processes (non-dumpable), once the keys are in it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod file;
pub mod hardening;
#[cfg(target_os = "macos")]
pub mod keychain;
pub mod record;
#[cfg(target_os = "linux")]
pub mod secret_service;

/// Where the keys live, from `[source]` (`keyring`, `keyring_file`,
/// `keyring_passphrase_file`) or a command's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringSettings {
    pub backend: BackendKind,
    /// The file backend's file (default: `keys.age` in the user's data dir).
    pub file: Option<PathBuf>,
    /// The file backend's passphrase, read from this file; else systemd's
    /// `$CREDENTIALS_DIRECTORY/assumed-keyring`, else a prompt on a terminal.
    pub passphrase_file: Option<PathBuf>,
}

impl Default for KeyringSettings {
    fn default() -> Self {
        KeyringSettings {
            backend: BackendKind::platform_default(),
            file: None,
            passphrase_file: None,
        }
    }
}

/// Opens the keyring `settings` name. Nothing is read yet: a locked or
/// absent keyring shows at the first call, under its deadline.
pub fn open(settings: &KeyringSettings) -> Result<Keyring, KeyringError> {
    let backend: Arc<dyn Backend> = match settings.backend {
        BackendKind::File => Arc::new(file::FileBackend::open(settings)?),
        #[cfg(target_os = "linux")]
        BackendKind::SecretService => Arc::new(secret_service::SecretService::open()?),
        #[cfg(target_os = "macos")]
        BackendKind::Keychain => Arc::new(keychain::Keychain::open()?),
        #[allow(unreachable_patterns)]
        other => {
            return Err(KeyringError::Unavailable {
                backend: other,
                reason: format!("there is no {other} keyring on this platform"),
            });
        }
    };
    Ok(Keyring::new(backend))
}

/// How long one keyring call may take before it is an error. A prompt the
/// person must answer (an unlock) has its own, longer deadline.
pub const KEYRING_DEADLINE: Duration = Duration::from_secs(5);
/// The file keyring does not wait on anyone: its calls are scrypt (half a
/// second of a core on a quiet machine, several on a busy small one) and a
/// local file. The deadline only stops a file system that hangs (a dead
/// network mount), so it leaves room for a loaded machine.
pub const FILE_KEYRING_DEADLINE: Duration = Duration::from_secs(30);
pub const UNLOCK_PROMPT_DEADLINE: Duration = Duration::from_secs(120);

/// Which keyring holds the keys. The default is the platform's
/// ([`BackendKind::platform_default`]) and never changes by itself: a
/// keyring that cannot be reached is an error naming it, not a reason to
/// try another (aws-vault #213).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    SecretService,
    Keychain,
    File,
}

impl BackendKind {
    pub fn platform_default() -> Self {
        if cfg!(target_os = "macos") {
            BackendKind::Keychain
        } else {
            BackendKind::SecretService
        }
    }

    /// As `[source] keyring` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::SecretService => "secret-service",
            BackendKind::Keychain => "keychain",
            BackendKind::File => "file",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "secret-service" => Some(BackendKind::SecretService),
            "keychain" => Some(BackendKind::Keychain),
            "file" => Some(BackendKind::File),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One IAM user's long-term keys, as stored under `name`. The secret is
/// wiped from memory when this is dropped, and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// The IAM user's ARN, from GetCallerIdentity when the key was added
    /// (`None` with `--no-check`).
    pub user_arn: Option<String>,
    pub added_at: SystemTime,
    /// A `keys rotate` under way (`None` otherwise): what a re-run needs to
    /// finish it. The key above is the one in use until the rotation says
    /// otherwise.
    pub rotation: Option<Rotation>,
}

/// The step a key rotation reached, stored in the same keyring item as the
/// key (one atomic write per step), so a rotation killed at any point is
/// finished by running it again. See docs/keys.md, "Rotation".
#[derive(Clone, PartialEq, Eq)]
pub enum Rotation {
    /// CreateAccessKey is about to be called: the IAM user's key ids before
    /// it. A key not among them after an interruption was created by this
    /// rotation and its secret never stored: it can only be deleted.
    Creating { existing: Vec<String> },
    /// The new key, created and stored, not yet seen to work; the key in
    /// use is still the old one.
    Created {
        access_key_id: String,
        secret_access_key: Zeroizing<String>,
    },
    /// The new key is the key in use; the old one is still to be deleted.
    Retiring { old_access_key_id: String },
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rotation::Creating { existing } => f
                .debug_struct("Creating")
                .field("existing", existing)
                .finish(),
            Rotation::Created { access_key_id, .. } => f
                .debug_struct("Created")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .finish(),
            Rotation::Retiring { old_access_key_id } => f
                .debug_struct("Retiring")
                .field("old_access_key_id", old_access_key_id)
                .finish(),
        }
    }
}

impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredKey")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("user_arn", &self.user_arn)
            .field("added_at", &self.added_at)
            .field("rotation", &self.rotation)
            .finish()
    }
}

impl StoredKey {
    /// What `keys list` and `doctor` may show.
    pub fn info(&self, backend: BackendKind) -> KeyInfo {
        KeyInfo {
            name: self.name.clone(),
            key_id_last4: last4(&self.access_key_id),
            user_arn: self.user_arn.clone(),
            added_at: self.added_at,
            backend,
        }
    }
}

/// A stored key without its secret: what may be listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub key_id_last4: String,
    pub user_arn: Option<String>,
    pub added_at: SystemTime,
    pub backend: BackendKind,
}

/// The last four characters of an access key id: enough to tell keys apart,
/// as the IAM console shows them.
pub fn last4(access_key_id: &str) -> String {
    let chars: Vec<char> = access_key_id.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Whether the keyring can be read without asking the person first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    Unlocked,
    Locked,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    /// The keyring holds the keys but must be unlocked first; `what_to_do`
    /// says how, in the person's words.
    #[error("the {backend} keyring is locked: {what_to_do}")]
    Locked {
        backend: BackendKind,
        what_to_do: String,
    },
    /// No such keyring here (no Secret Service on the session bus, no
    /// keyring file yet, not built for this platform).
    #[error("the {backend} keyring is not available: {reason}")]
    Unavailable {
        backend: BackendKind,
        reason: String,
    },
    #[error("the {backend} keyring did not answer within {}", humantime::format_duration(*.after))]
    Timeout {
        backend: BackendKind,
        after: Duration,
    },
    /// The file backend's passphrase does not open the file.
    #[error("wrong passphrase for the keyring file {path}")]
    WrongPassphrase { path: String },
    /// Anything else the backend said, as one sentence.
    #[error("the {backend} keyring failed: {reason}")]
    Failed {
        backend: BackendKind,
        reason: String,
    },
}

/// One keyring. Implementations block (D-Bus round trips, file I/O, a KDF);
/// [`Keyring`] runs them off the async workers and under a deadline.
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;
    /// Whether reading needs an unlock first. Never prompts.
    fn lock_state(&self) -> Result<LockState, KeyringError>;
    /// Asks the person through the keyring's own unlock prompt (the Secret
    /// Service's prompt, the Keychain's dialog); returns once it is unlocked
    /// or the person dismissed it (`Locked`).
    fn unlock(&self) -> Result<(), KeyringError>;
    fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError>;
    /// Stores `key` under `key.name`, replacing what was there.
    fn write(&self, key: &StoredKey) -> Result<(), KeyringError>;
    /// Whether there was a key by that name.
    fn delete(&self, name: &str) -> Result<bool, KeyringError>;
    /// Every key this program stored, without secrets, by name.
    fn list(&self) -> Result<Vec<KeyInfo>, KeyringError>;
}

/// A backend behind deadlines: every call ends within [`KEYRING_DEADLINE`]
/// ([`FILE_KEYRING_DEADLINE`] for the file; an unlock within
/// [`UNLOCK_PROMPT_DEADLINE`]), as a `Timeout` if the
/// keyring does not answer. A timed-out call's thread is left to finish on
/// its own; nothing waits for it.
#[derive(Clone)]
pub struct Keyring {
    backend: Arc<dyn Backend>,
    deadline: Duration,
}

impl Keyring {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let deadline = match backend.kind() {
            BackendKind::File => FILE_KEYRING_DEADLINE,
            _ => KEYRING_DEADLINE,
        };
        Keyring { backend, deadline }
    }

    /// For tests of the deadline itself.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn kind(&self) -> BackendKind {
        self.backend.kind()
    }

    pub async fn lock_state(&self) -> Result<LockState, KeyringError> {
        self.call(self.deadline, |b| b.lock_state()).await
    }

    pub async fn unlock(&self) -> Result<(), KeyringError> {
        self.call(UNLOCK_PROMPT_DEADLINE, |b| b.unlock()).await
    }

    pub async fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError> {
        let name = name.to_owned();
        self.call(self.deadline, move |b| b.read(&name)).await
    }

    pub async fn write(&self, key: StoredKey) -> Result<(), KeyringError> {
        self.call(self.deadline, move |b| b.write(&key)).await
    }

    pub async fn delete(&self, name: &str) -> Result<bool, KeyringError> {
        let name = name.to_owned();
        self.call(self.deadline, move |b| b.delete(&name)).await
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        self.call(self.deadline, |b| b.list()).await
    }

    async fn call<T, F>(&self, deadline: Duration, work: F) -> Result<T, KeyringError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<T, KeyringError> + Send + 'static,
    {
        let backend = self.backend.clone();
        let kind = backend.kind();
        let task = tokio::task::spawn_blocking(move || work(backend.as_ref()));
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(KeyringError::Failed {
                backend: kind,
                reason: format!("the keyring call ended abnormally: {join}"),
            }),
            Err(_) => Err(KeyringError::Timeout {
                backend: kind,
                after: deadline,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last4_of_short_and_long_ids() {
        assert_eq!(last4("AKIAIOSFODNN7EXAMPLE"), "MPLE");
        assert_eq!(last4("AK"), "AK");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = StoredKey {
            name: "me".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            user_arn: None,
            added_at: SystemTime::UNIX_EPOCH,
            rotation: Some(Rotation::Created {
                access_key_id: "AKIANEW".into(),
                secret_access_key: Zeroizing::new("wJalrNEW".into()),
            }),
        };
        assert!(!format!("{key:?}").contains("wJalr"));
    }

    struct Hangs;
    impl Backend for Hangs {
        fn kind(&self) -> BackendKind {
            BackendKind::SecretService
        }
        fn lock_state(&self) -> Result<LockState, KeyringError> {
            std::thread::sleep(Duration::from_secs(2));
            Ok(LockState::Unlocked)
        }
        fn unlock(&self) -> Result<(), KeyringError> {
            Ok(())
        }
        fn read(&self, _: &str) -> Result<Option<StoredKey>, KeyringError> {
            Ok(None)
        }
        fn write(&self, _: &StoredKey) -> Result<(), KeyringError> {
            Ok(())
        }
        fn delete(&self, _: &str) -> Result<bool, KeyringError> {
            Ok(false)
        }
        fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_keyring_that_does_not_answer_is_a_timeout() {
        let keyring = Keyring::new(Arc::new(Hangs)).with_deadline(Duration::from_millis(50));
        assert_eq!(
            keyring.lock_state().await,
            Err(KeyringError::Timeout {
                backend: BackendKind::SecretService,
                after: Duration::from_millis(50)
            })
        );
    }
}
