//! `assumed keys add NAME`: an IAM user's access key pair into the keyring,
//! after STS said whose it is (`GetCallerIdentity`), unless `--no-check`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials;

use super::input::{self, KeyPair};
use super::{KeyringFlags, unlocked_keyring};
use crate::config::Config;
use crate::keys::{KeyringError, StoredKey, last4};
use crate::sts::Sts;

pub async fn run(
    config: &Config,
    flags: &KeyringFlags,
    name: &str,
    from_stdin: bool,
    check: bool,
) -> Result<ExitCode, String> {
    valid_name(name)?;
    // The keyring first: a locked or missing one is found (and unlocked)
    // before the person types a secret, and before STS is asked.
    let keyring = unlocked_keyring(config, flags).await?;
    let pair = input::read_pair(from_stdin)?;
    let user_arn = match check {
        true => Some(whose(config, &pair).await?),
        false => None,
    };
    // An item there that cannot be read (not a record of ours) is replaced
    // too: adding again is how it is repaired.
    let replaced = match keyring.read(name).await {
        Ok(found) => found.is_some(),
        Err(KeyringError::Failed { .. }) => true,
        Err(error) => return Err(error.to_string()),
    };
    let key = StoredKey {
        name: name.to_owned(),
        access_key_id: pair.access_key_id,
        secret_access_key: pair.secret_access_key,
        user_arn,
        added_at: SystemTime::now(),
        rotation: None,
    };
    let summary = format!(
        "{} (key …{}{})",
        key.name,
        last4(&key.access_key_id),
        key.user_arn
            .as_deref()
            .map(|arn| format!(", {arn}"))
            .unwrap_or_else(|| ", not checked".into())
    );
    keyring.write(key).await.map_err(|e| e.to_string())?;
    let verb = if replaced { "Replaced" } else { "Stored" };
    println!("{verb} {summary} in the {} keyring.", keyring.kind());
    Ok(ExitCode::SUCCESS)
}

/// The ARN STS says the pair belongs to; an error (nothing stored) if STS
/// refuses it or cannot be reached.
async fn whose(config: &Config, pair: &KeyPair) -> Result<String, String> {
    let sts = Sts::new(config.source.clone());
    sts.set_profiles(Arc::new(crate::profiles::load().await))
        .await;
    let credentials = Credentials::new(
        pair.access_key_id.clone(),
        pair.secret_access_key.as_str(),
        None,
        None,
        "assumed keys add",
    );
    sts.caller_identity(credentials).await.map_err(|error| {
        format!(
            "nothing was stored: checking the keys with GetCallerIdentity failed: {} \
             (--no-check stores them without asking STS)",
            error.message
        )
    })
}

/// Names are what `[source] keys` and `--keys` say: short, and safe in a
/// TOML string, a D-Bus attribute and a file.
fn valid_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{name:?} cannot name keys: use up to 64 letters, digits and . _ @ + -"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("work").is_ok());
        assert!(valid_name("me@corp.example-1").is_ok());
        assert!(valid_name("").is_err());
        assert!(valid_name("a b").is_err());
        assert!(valid_name("a/b").is_err());
    }
}
