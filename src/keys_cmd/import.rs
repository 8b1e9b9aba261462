//! `assumed keys import`: long-term keys moved into the keyring from where
//! they were: a profile of the shared credentials file (and, with
//! `--remove-plaintext`, out of it), or aws-vault's keyring.
//!
//! The keyring write is read back and compared before anything is taken
//! out of the file: the file changes only once the keys are known to be
//! stored.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::aws::{self, Aws};
use super::aws_vault;
use super::plaintext;
use crate::aws_files::Selection;
use crate::config::Config;
use crate::keys::{self, Keyring, KeyringSettings, StoredKey, last4};

/// How long the check of who the keys belong to may take before the keys
/// are stored without the IAM user's ARN (an offline machine still moves in).
const WHOAMI_LIMIT: Duration = Duration::from_secs(10);

/// The credentials file an SDK started here would read
/// (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`).
pub fn credentials_path() -> PathBuf {
    let env = |name: &str| std::env::var(name).ok();
    Selection::users_own(&env).credentials_path
}

/// `keys import [--profile P] [--remove-plaintext]`.
pub async fn from_credentials_file(
    config: &Config,
    settings: &KeyringSettings,
    profile: &str,
    remove_plaintext: bool,
) -> Result<(), String> {
    let path = credentials_path();
    let shown = path.display().to_string();
    let text = Zeroizing::new(fs::read(&path).map_err(|e| format!("cannot read {shown}: {e}"))?);
    let found = plaintext::long_term_keys(&text, profile, &path)?;
    // Only once there is something to store.
    let keyring = &keys::open(settings).map_err(|e| e.to_string())?;
    let key = StoredKey {
        name: profile.to_owned(),
        access_key_id: found.access_key_id.clone(),
        secret_access_key: found.secret_access_key.clone(),
        user_arn: None,
        added_at: SystemTime::now(),
        rotation: None,
    };
    let stored = store(config, keyring, key).await?;
    let kind = keyring.kind();
    println!(
        "stored the keys of profile [{profile}] (key …{}) in the {kind} keyring as {profile:?}{}",
        last4(&found.access_key_id),
        stored
            .user_arn
            .map(|a| format!(", IAM user {a}"))
            .unwrap_or_default()
    );
    if !remove_plaintext {
        let numbers: Vec<String> = found.lines.iter().map(|l| l.number.to_string()).collect();
        println!(
            "they are still in plain text in {shown} (lines {}); to take them out:\n  \
             assumed keys import --profile {profile} --remove-plaintext",
            numbers.join(", ")
        );
        return Ok(());
    }
    // Through a link (a dotfile manager's) to the file it names.
    let real = plaintext::real_path(&path).map_err(|e| format!("cannot resolve {shown}: {e}"))?;
    let rewritten = plaintext::without(&text, &found.lines);
    plaintext::replace(&real, &text, &rewritten)
        .map_err(|e| format!("the keys are stored, but {shown} was not rewritten: {e}"))?;
    let numbers: Vec<String> = found.lines.iter().map(|l| l.number.to_string()).collect();
    println!(
        "removed {} line(s) from {shown} (lines {}); nothing else in it changed",
        found.lines.len(),
        numbers.join(", ")
    );
    println!(
        "programs that read profile [{profile}]'s keys from that file now get them from the daemon: \
         set [source] keys = {profile:?} in the config, and for other tools \
         credential_process = assumed credential-process --keys {profile} in [profile {profile}] of ~/.aws/config"
    );
    Ok(())
}

/// `keys import --from aws-vault [PROFILE…]`.
pub async fn from_aws_vault(
    config: &Config,
    settings: &KeyringSettings,
    profiles: &[String],
) -> Result<(), String> {
    let vault = aws_vault::locate()?;
    // The keyring calls and the system's prompts (an unlock; on macOS one
    // per item too), bounded as every keyring call is.
    let limit = keys::KEYRING_DEADLINE + keys::UNLOCK_PROMPT_DEADLINE;
    let found = tokio::time::timeout(limit, aws_vault::read(&vault, profiles))
        .await
        .map_err(|_| {
            format!(
                "{vault} did not answer within {}s (a prompt nobody answered?): \
                 run this again and answer it, or name fewer profiles",
                limit.as_secs()
            )
        })??;
    let mut problems = found.problems;
    if found.keys.is_empty() && problems.is_empty() {
        return Err(format!("{vault} holds no long-term keys"));
    }
    let keyring = &keys::open(settings).map_err(|e| e.to_string())?;
    let kind = keyring.kind();
    for vault_key in found.keys {
        let profile = vault_key.profile.clone();
        let key = StoredKey {
            name: vault_key.profile,
            access_key_id: vault_key.access_key_id,
            secret_access_key: vault_key.secret_access_key,
            user_arn: None,
            added_at: SystemTime::now(),
            rotation: None,
        };
        let id = key.access_key_id.clone();
        match store(config, keyring, key).await {
            Ok(_) => println!(
                "copied aws-vault's keys for {profile:?} (key …{}) into the {kind} keyring",
                last4(&id)
            ),
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        println!(
            "aws-vault's items are left as they were; remove them with `aws-vault remove PROFILE` once the daemon uses these"
        );
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Stores `key` under its name and reads it back. The same key already
/// there is fine (a re-run); another key by that name is not replaced.
async fn store(
    config: &Config,
    keyring: &Keyring,
    mut key: StoredKey,
) -> Result<StoredKey, String> {
    let name = key.name.clone();
    match keyring.read(&name).await.map_err(|e| e.to_string())? {
        Some(there) if there.access_key_id == key.access_key_id => {
            if there.secret_access_key != key.secret_access_key {
                return Err(format!(
                    "{name:?} is already stored with key …{} and another secret: \
                     remove it first (assumed keys remove {name}) if this one is right",
                    last4(&there.access_key_id)
                ));
            }
            return Ok(there);
        }
        Some(there) => {
            return Err(format!(
                "keys named {name:?} are already stored (key …{}, not …{}): \
                 remove them first (assumed keys remove {name}) or rotate them (assumed keys rotate {name})",
                last4(&there.access_key_id),
                last4(&key.access_key_id)
            ));
        }
        None => {}
    }
    let aws = Aws::for_config(config).await;
    match tokio::time::timeout(WHOAMI_LIMIT, aws.whoami(aws::credentials(&key))).await {
        Ok(Ok(arn)) => key.user_arn = Some(arn),
        Ok(Err(problem)) => eprintln!(
            "assumed: could not tell whose keys these are ({problem}); storing them anyway"
        ),
        Err(_) => eprintln!(
            "assumed: STS at {} did not answer within {}s; storing the keys without their IAM user",
            aws.sts_shown,
            WHOAMI_LIMIT.as_secs()
        ),
    }
    write_checked(keyring, &key).await?;
    Ok(key)
}

/// Writes `key` and reads it back: the same key id and secret, or an error.
pub async fn write_checked(keyring: &Keyring, key: &StoredKey) -> Result<(), String> {
    let name = &key.name;
    keyring
        .write(key.clone())
        .await
        .map_err(|e| format!("storing {name:?}: {e}"))?;
    match keyring.read(name).await {
        Ok(Some(back))
            if back.access_key_id == key.access_key_id
                && back.secret_access_key == key.secret_access_key
                && back.rotation == key.rotation =>
        {
            Ok(())
        }
        Ok(_) => Err(format!(
            "the {} keyring did not give back what was stored under {name:?}",
            keyring.kind()
        )),
        Err(e) => Err(format!("reading {name:?} back: {e}")),
    }
}
