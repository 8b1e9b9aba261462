//! The freedesktop Secret Service (GNOME Keyring, KWallet, KeePassXC) over
//! the D-Bus session bus, through the `secret-service` crate.
//!
//! Each key is one item in the default collection (the "login" keyring),
//! labelled `assumed: NAME`, with the attributes [`APPLICATION`] and
//! [`KEY_NAME`] that find exactly our items, and `record::encode` as its
//! secret. The secret crosses the bus encrypted (the DH session), since any
//! process of the user may listen on the session bus.
//!
//! Every call opens its own connection on a small runtime of its own: the
//! backend is called from a blocking thread (see `Keyring`), a keyring that
//! was restarted or appeared since is found, and a connection is never
//! shared with a call that timed out. Each D-Bus call has a time limit, so a
//! thread that `Keyring` gave up on still ends.

use std::collections::HashMap;
use std::time::Duration;

use secret_service::{Collection, EncryptionType, Error as SsError, Item};
use zeroize::Zeroizing;

use super::{
    Backend, BackendKind, KeyInfo, KeyringError, LockState, StoredKey, UNLOCK_PROMPT_DEADLINE,
    record,
};

/// The attribute every item of ours has, with the value `assumed`.
pub const APPLICATION: &str = "application";
pub const APPLICATION_VALUE: &str = "assumed";
/// The attribute holding the key's name.
pub const KEY_NAME: &str = "assumed-key";

/// How long one D-Bus call may take before it is an error. Below
/// `KEYRING_DEADLINE`, so the reason is this one, not a bare timeout.
const CALL_LIMIT: Duration = Duration::from_secs(4);

const KIND: BackendKind = BackendKind::SecretService;

/// What to do about a locked collection, in the person's words.
const UNLOCK_ADVICE: &str = "unlock the login keyring: log in to the desktop session, \
     unlock \"Login\" in \"Passwords and Keys\", or run `assumed keys list` in the \
     desktop session to be asked for its password";

pub struct SecretService {
    /// The bus to find the Secret Service on; `None`: the session bus
    /// (`DBUS_SESSION_BUS_ADDRESS`), as for every other desktop program.
    bus: Option<String>,
}

impl SecretService {
    /// Nothing is contacted yet: a missing or locked keyring shows at the
    /// first call.
    pub fn open() -> Result<Self, KeyringError> {
        Ok(SecretService { bus: None })
    }

    /// The Secret Service on the bus at `address` rather than the session
    /// bus.
    pub fn on_bus(address: &str) -> Self {
        SecretService {
            bus: Some(address.to_owned()),
        }
    }
}

/// The item label: what Seahorse or KWallet show.
pub fn label(name: &str) -> String {
    format!("assumed: {name}")
}

fn attributes(name: &str) -> HashMap<&str, &str> {
    HashMap::from([(APPLICATION, APPLICATION_VALUE), (KEY_NAME, name)])
}

impl Backend for SecretService {
    fn kind(&self) -> BackendKind {
        KIND
    }

    fn lock_state(&self) -> Result<LockState, KeyringError> {
        with_collection(&self.bus, CALL_LIMIT, async |collection| {
            // A property read: the Secret Service never prompts for it.
            Ok(match collection.is_locked().await? {
                true => LockState::Locked,
                false => LockState::Unlocked,
            })
        })
    }

    fn unlock(&self) -> Result<(), KeyringError> {
        with_collection(&self.bus, UNLOCK_PROMPT_DEADLINE, async |collection| {
            if collection.is_locked().await? {
                // The service's own prompt; returns when it is answered.
                collection.unlock().await?;
            }
            Ok(())
        })
    }

    fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError> {
        with_unlocked(&self.bus, async |collection| {
            let items = collection.search_items(attributes(name)).await?;
            match items.first() {
                None => Ok(None),
                Some(item) => decode(name, item).await.map(Some),
            }
        })
    }

    fn write(&self, key: &StoredKey) -> Result<(), KeyringError> {
        let secret = record::encode(key);
        with_unlocked(&self.bus, async |collection| {
            // `replace`: an item with the same attributes is overwritten, so
            // a name is one item however often it is written.
            collection
                .create_item(
                    &label(&key.name),
                    attributes(&key.name),
                    &secret,
                    true,
                    "application/json",
                )
                .await?;
            Ok(())
        })
    }

    fn delete(&self, name: &str) -> Result<bool, KeyringError> {
        with_unlocked(&self.bus, async |collection| {
            let items = collection.search_items(attributes(name)).await?;
            for item in &items {
                item.delete().await?;
            }
            Ok(!items.is_empty())
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        with_unlocked(&self.bus, async |collection| {
            let ours = HashMap::from([(APPLICATION, APPLICATION_VALUE)]);
            let mut keys = Vec::new();
            for item in collection.search_items(ours).await? {
                let item_attributes = item.get_attributes().await?;
                let Some(name) = item_attributes.get(KEY_NAME) else {
                    continue; // ours by application, but not a key
                };
                keys.push(decode(name, &item).await?.info(KIND));
            }
            keys.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(keys)
        })
    }
}

/// The key in `item`; the secret bytes are wiped once decoded.
async fn decode(name: &str, item: &Item<'_>) -> Result<StoredKey, Failure> {
    let bytes = Zeroizing::new(item.get_secret().await?);
    record::decode(name, &bytes).map_err(|reason| {
        Failure::Keyring(KeyringError::Failed {
            backend: KIND,
            reason: format!(
                "the item \"{}\": {reason}; `assumed keys remove {name}` deletes it",
                label(name)
            ),
        })
    })
}

/// An error inside a call: the crate's, or one of ours already in words.
enum Failure {
    Service(SsError),
    Keyring(KeyringError),
}

impl From<SsError> for Failure {
    fn from(error: SsError) -> Self {
        Failure::Service(error)
    }
}

/// `work` on the default collection once it is unlocked; a locked one is
/// `Locked` (never a prompt: the caller decides whether to ask).
fn with_unlocked<T>(
    bus: &Option<String>,
    work: impl AsyncFnOnce(&Collection<'_>) -> Result<T, Failure>,
) -> Result<T, KeyringError> {
    with_collection(bus, CALL_LIMIT, async |collection| {
        if collection.is_locked().await? {
            return Err(Failure::Service(SsError::Locked));
        }
        work(collection).await
    })
}

/// Connects to the session bus, opens an encrypted session with the Secret
/// Service and runs `work` on its default collection, all within `limit`.
fn with_collection<T>(
    bus: &Option<String>,
    limit: Duration,
    work: impl AsyncFnOnce(&Collection<'_>) -> Result<T, Failure>,
) -> Result<T, KeyringError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KeyringError::Failed {
            backend: KIND,
            reason: format!("cannot start the D-Bus client: {e}"),
        })?;
    let outcome = runtime.block_on(async {
        tokio::time::timeout(limit, async {
            let builder = match bus {
                Some(address) => zbus::connection::Builder::address(address.as_str()),
                None => zbus::connection::Builder::session(),
            };
            let connection = builder
                .map_err(|_| Failure::Keyring(no_session_bus()))?
                .method_timeout(CALL_LIMIT)
                .build()
                .await
                .map_err(|_| Failure::Keyring(no_session_bus()))?;
            let service = secret_service::SecretService::connect_with_existing(
                EncryptionType::Dh,
                connection,
            )
            .await?;
            let collection = service.get_default_collection().await?;
            work(&collection).await
        })
        .await
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Failure::Keyring(error))) => Err(error),
        Ok(Err(Failure::Service(error))) => Err(map_error(error)),
        Err(_) => Err(KeyringError::Timeout {
            backend: KIND,
            after: limit,
        }),
    }
}

fn no_session_bus() -> KeyringError {
    KeyringError::Unavailable {
        backend: KIND,
        reason: "no D-Bus session bus to reach it on (DBUS_SESSION_BUS_ADDRESS is unset \
                 or nothing listens there); on a headless machine use `--keyring file`"
            .into(),
    }
}

/// The crate's error as one sentence that says what to do. Its messages
/// never carry a secret (they are D-Bus errors and states).
fn map_error(error: SsError) -> KeyringError {
    let locked = || KeyringError::Locked {
        backend: KIND,
        what_to_do: UNLOCK_ADVICE.into(),
    };
    match error {
        SsError::Locked => locked(),
        SsError::Prompt => KeyringError::Locked {
            backend: KIND,
            what_to_do: "its unlock prompt was dismissed or could not be shown (it needs a \
                         desktop session); unlock \"Login\" by logging in to the desktop or \
                         in \"Passwords and Keys\""
                .into(),
        },
        SsError::Unavailable => no_service(),
        SsError::NoResult => KeyringError::Unavailable {
            backend: KIND,
            reason: "the Secret Service has no default keyring; create one (e.g. \"Login\" in \
                     \"Passwords and Keys\") and make it the default"
                .into(),
        },
        other => {
            let text = other.to_string();
            if text.contains("ServiceUnknown") || text.contains("NameHasNoOwner") {
                no_service()
            } else if text.contains("IsLocked") {
                locked()
            } else {
                KeyringError::Failed {
                    backend: KIND,
                    reason: text,
                }
            }
        }
    }
}

fn no_service() -> KeyringError {
    KeyringError::Unavailable {
        backend: KIND,
        reason: "nothing answers for org.freedesktop.secrets on the session bus (start \
                 gnome-keyring, KWallet or KeePassXC with its Secret Service on, or use \
                 `--keyring file`)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_collection_says_what_to_do() {
        let error = map_error(SsError::Locked);
        assert!(matches!(error, KeyringError::Locked { .. }));
        assert!(
            error.to_string().contains("unlock the login keyring"),
            "{error}"
        );
        assert!(matches!(
            map_error(SsError::Unavailable),
            KeyringError::Unavailable { .. }
        ));
    }

    #[test]
    fn no_session_bus_is_unavailable_not_a_hang() {
        // A bus address where nothing listens: the connection fails at once.
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("unix:path={}", dir.path().join("none").display());
        let backend = SecretService::on_bus(&address);
        assert_eq!(backend.lock_state(), Err(no_session_bus()));
    }
}
