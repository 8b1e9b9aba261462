//! Keys at rest: long-term keys left in plain text in the shared
//! credentials file (each named by file:line, with the command that moves
//! it into the keyring), and the keyring itself: which backend, and whether
//! it can be read without an unlock.

use std::collections::HashMap;
use std::fs;

use super::Finding;
use crate::aws_files::Selection;
use crate::config::Config;
use crate::keys::{self, KeyringError, LockState};
use crate::keys_cmd::plaintext;

/// One warning per profile of the user's credentials file that holds
/// long-term keys (a key id and secret without a session token).
pub fn plaintext_keys(shell: &HashMap<String, String>) -> Vec<Finding> {
    let env = |name: &str| shell.get(name).cloned();
    let path = Selection::users_own(&env).credentials_path;
    let shown = path.display();
    let Ok(text) = fs::read(&path) else {
        return vec![Finding::ok(
            "keys",
            format!("no credentials file at {shown}"),
        )];
    };
    let text = zeroize::Zeroizing::new(text);
    let found: Vec<Finding> = plaintext::scan(&text)
        .into_iter()
        .filter(plaintext::ProfileKeys::is_long_term)
        .map(|keys| {
            let profile = &keys.profile;
            Finding::warn(
                "keys",
                format!(
                    "{shown}:{}: profile [{profile}] holds long-term keys in plain text, \
                     readable by every program you run and copied by every backup",
                    keys.line()
                ),
                format!("assumed keys import --profile {profile} --remove-plaintext"),
            )
        })
        .collect();
    if found.is_empty() {
        vec![Finding::ok(
            "keys",
            format!("no long-term keys in plain text in {shown}"),
        )]
    } else {
        found
    }
}

/// The keyring `[source]` names (or the platform's) and its lock state.
/// Only a problem when `[source] keys` needs it.
pub fn keyring(config: &Config) -> Finding {
    let settings = &config.source.keyring;
    let backend = settings.backend;
    let needed = config.source.keys.is_some();
    let state = keys::open(settings).and_then(|keyring| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| KeyringError::Failed {
                backend,
                reason: e.to_string(),
            })?
            .block_on(keyring.lock_state())
    });
    match state {
        Ok(LockState::Unlocked) => Finding::ok("keyring", format!("{backend}: unlocked")),
        Ok(LockState::Locked) => Finding::warn(
            "keyring",
            format!("{backend}: locked; stored keys cannot be read until it is unlocked"),
            "unlock it (log in to the desktop session, or open your keyring manager), then: assumed keys list",
        ),
        Err(KeyringError::Locked { what_to_do, .. }) => Finding::warn(
            "keyring",
            format!("{backend}: locked; stored keys cannot be read until it is unlocked"),
            what_to_do,
        ),
        Err(error) if needed => Finding::fail(
            "keyring",
            format!("{error}; [source] keys needs it"),
            "choose a keyring that works here: [source] keyring = \"file\" (see docs/keys.md)",
        ),
        Err(error) => Finding::ok(
            "keyring",
            format!("{error} (needed only for stored keys: assumed keys add)"),
        ),
    }
}
