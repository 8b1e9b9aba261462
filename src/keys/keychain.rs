//! The macOS login Keychain: one generic password per key, service
//! `assumed`, account = the key's name, data = `record::encode` (the same
//! bytes every backend stores). Reading an item this program wrote asks
//! nothing; a locked Keychain is unlocked by macOS's own dialog
//! ([`Backend::unlock`]).

use security_framework::base::Error;
use security_framework::item::{ItemClass, ItemSearchOptions, Limit};
use security_framework::os::macos::keychain::SecKeychain;
use security_framework::passwords;
use zeroize::Zeroizing;

use super::{Backend, BackendKind, KeyInfo, KeyringError, LockState, StoredKey, record};

/// The items' service: what Keychain Access shows as "Where".
pub const SERVICE: &str = "assumed";

// OSStatus codes (Security/SecBase.h).
const ERR_SEC_ITEM_NOT_FOUND: i32 = -25300;
const ERR_SEC_INTERACTION_NOT_ALLOWED: i32 = -25308;
const ERR_SEC_USER_CANCELED: i32 = -128;
const ERR_SEC_AUTH_FAILED: i32 = -25293;

pub struct Keychain {}

impl Keychain {
    pub fn open() -> Result<Self, KeyringError> {
        Ok(Keychain {})
    }
}

fn error(what: &str, error: Error) -> KeyringError {
    match error.code() {
        ERR_SEC_INTERACTION_NOT_ALLOWED | ERR_SEC_USER_CANCELED | ERR_SEC_AUTH_FAILED => {
            KeyringError::Locked {
                backend: BackendKind::Keychain,
                what_to_do: "unlock the login keychain (Keychain Access, or log in again) \
                             and allow assumed to use it"
                    .into(),
            }
        }
        code => KeyringError::Failed {
            backend: BackendKind::Keychain,
            reason: format!(
                "{what}: {} (OSStatus {code})",
                error.message().unwrap_or_default()
            ),
        },
    }
}

/// The names of every item of ours (attributes only, no secret).
fn names() -> Result<Vec<String>, KeyringError> {
    let found = ItemSearchOptions::new()
        .class(ItemClass::generic_password())
        .service(SERVICE)
        .load_attributes(true)
        .limit(Limit::All)
        .search();
    let results = match found {
        Ok(results) => results,
        Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => return Ok(Vec::new()),
        Err(e) => return Err(error("listing the keys", e)),
    };
    let mut names: Vec<String> = results
        .iter()
        .filter_map(|result| result.simplify_dict()?.remove("acct"))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

impl Backend for Keychain {
    fn kind(&self) -> BackendKind {
        BackendKind::Keychain
    }

    /// Reads one item with the Keychain's dialogs turned off: a locked
    /// keychain answers "interaction not allowed" instead of asking.
    fn lock_state(&self) -> Result<LockState, KeyringError> {
        let Some(name) = names()?.into_iter().next() else {
            return Ok(LockState::Unlocked);
        };
        let _quiet = SecKeychain::disable_user_interaction()
            .map_err(|e| error("turning off the Keychain's dialogs", e))?;
        match passwords::get_generic_password(SERVICE, &name) {
            Ok(data) => {
                drop(Zeroizing::new(data));
                Ok(LockState::Unlocked)
            }
            Err(e) if e.code() == ERR_SEC_INTERACTION_NOT_ALLOWED => Ok(LockState::Locked),
            Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(LockState::Unlocked),
            Err(e) => Err(error("reading a key", e)),
        }
    }

    /// macOS's own unlock dialog for the login keychain.
    fn unlock(&self) -> Result<(), KeyringError> {
        let mut keychain =
            SecKeychain::default().map_err(|e| error("opening the login keychain", e))?;
        keychain
            .unlock(None)
            .map_err(|e| error("unlocking the login keychain", e))
    }

    fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError> {
        match passwords::get_generic_password(SERVICE, name) {
            Ok(data) => {
                let data = Zeroizing::new(data);
                record::decode(name, &data)
                    .map(Some)
                    .map_err(|reason| KeyringError::Failed {
                        backend: BackendKind::Keychain,
                        reason: format!("the key {name:?}: {reason}"),
                    })
            }
            Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(None),
            Err(e) => Err(error("reading a key", e)),
        }
    }

    fn write(&self, key: &StoredKey) -> Result<(), KeyringError> {
        passwords::set_generic_password(SERVICE, &key.name, &record::encode(key))
            .map_err(|e| error("storing the key", e))
    }

    fn delete(&self, name: &str) -> Result<bool, KeyringError> {
        match passwords::delete_generic_password(SERVICE, name) {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ERR_SEC_ITEM_NOT_FOUND => Ok(false),
            Err(e) => Err(error("deleting the key", e)),
        }
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        let mut keys = Vec::new();
        for name in names()? {
            if let Some(key) = self.read(&name)? {
                keys.push(key.info(BackendKind::Keychain));
            }
        }
        Ok(keys)
    }
}
