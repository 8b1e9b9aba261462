//! The Secret Service backend (to be written).

use super::{Backend, BackendKind, KeyInfo, KeyringError, LockState, StoredKey};

pub struct SecretService {}

impl SecretService {
    pub fn open() -> Result<Self, KeyringError> {
        Err(KeyringError::Unavailable {
            backend: BackendKind::SecretService,
            reason: "not written yet".into(),
        })
    }
}

impl Backend for SecretService {
    fn kind(&self) -> BackendKind {
        BackendKind::SecretService
    }
    fn lock_state(&self) -> Result<LockState, KeyringError> {
        Ok(LockState::Locked)
    }
    fn unlock(&self) -> Result<(), KeyringError> {
        Ok(())
    }
    fn read(&self, _name: &str) -> Result<Option<StoredKey>, KeyringError> {
        Ok(None)
    }
    fn write(&self, _key: &StoredKey) -> Result<(), KeyringError> {
        Ok(())
    }
    fn delete(&self, _name: &str) -> Result<bool, KeyringError> {
        Ok(false)
    }
    fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        Ok(Vec::new())
    }
}
