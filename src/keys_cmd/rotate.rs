//! `assumed keys rotate NAME`: a new access key for the IAM user whose keys
//! are stored under NAME, stored, seen to work, then the old one deleted.
//!
//! Each step is recorded in the key's own keyring item before or after the
//! call it guards ([`Rotation`]), so a rotation stopped anywhere (killed,
//! offline, the keyring locked) is finished by running it again, and the
//! key in use always works:
//!
//! 1. `Creating { existing }`: the user's key ids, written before
//!    CreateAccessKey. A key that appears beside them was made by a run
//!    that died before it could store the secret; IAM never shows a secret
//!    again, so that key is deleted and another created.
//! 2. `Created { new key }`: written as soon as CreateAccessKey answers.
//!    The old key is still the one in use.
//! 3. `Retiring { old id }`: the new key is in use (checked with
//!    GetCallerIdentity, retried while IAM propagates it); the old key is
//!    still to be deleted (a deleted one, NoSuchEntity, counts as done).
//! 4. No rotation: done; the running daemon is told.

use std::time::Duration;

use aws_credential_types::Credentials;
use zeroize::Zeroizing;

use super::aws::{self, Aws};
use super::import::write_checked;
use crate::config::Config;
use crate::keys::{Keyring, Rotation, StoredKey, last4};

/// How long a new key may take to work (IAM is eventually consistent;
/// seconds in practice).
const PROPAGATION_LIMIT: Duration = Duration::from_secs(60);
/// How long the old key's deletion is retried (aws-vault allows 20 s).
const DELETE_LIMIT: Duration = Duration::from_secs(30);

/// How to sign the IAM calls.
pub struct Mfa {
    /// The MFA device whose code the IAM user's policy asks for.
    pub serial: Option<String>,
}

pub async fn rotate(
    config: &Config,
    keyring: &Keyring,
    name: &str,
    mfa: &Mfa,
) -> Result<(), String> {
    let mut key = keyring
        .read(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no keys named {name:?} are stored (assumed keys list)"))?;
    let aws = Aws::for_config(config).await;
    let arn = aws.whoami(aws::credentials(&key)).await.map_err(|e| {
        format!(
            "the stored key …{} does not work: {e}",
            last4(&key.access_key_id)
        )
    })?;
    let user = aws::user_name(&arn)
        .ok_or_else(|| format!("{name:?} holds the keys of {arn}, not of an IAM user: only an IAM user's keys rotate"))?
        .to_owned();
    let signer = signer(&aws, &key, mfa).await?;
    let iam = aws.iam(signer);
    let iam_shown = &Aws::iam_shown();

    if matches!(key.rotation, None | Some(Rotation::Creating { .. })) {
        key = create(&iam, iam_shown, keyring, key, &user).await?;
    }
    if let Some(Rotation::Created {
        access_key_id,
        secret_access_key,
    }) = key.rotation.clone()
    {
        let new_key = StoredKey {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            rotation: None,
            ..key.clone()
        };
        println!("waiting until the new key …{} works", last4(&access_key_id));
        let new_arn = aws
            .whoami_within(aws::credentials(&new_key), PROPAGATION_LIMIT)
            .await
            .map_err(|e| {
                format!(
                    "the new key …{} does not work yet ({e}); the old one is still in use. \
                     Run `assumed keys rotate {name}` again to finish",
                    last4(&access_key_id)
                )
            })?;
        if new_arn != arn {
            return Err(format!(
                "the new key belongs to {new_arn}, not {arn}; the old key is still in use"
            ));
        }
        let old = key.access_key_id.clone();
        key = StoredKey {
            user_arn: Some(new_arn),
            rotation: Some(Rotation::Retiring {
                old_access_key_id: old,
            }),
            ..new_key
        };
        write_checked(keyring, &key).await?;
        println!(
            "the new key …{} is stored and in use",
            last4(&access_key_id)
        );
    }
    if let Some(Rotation::Retiring { old_access_key_id }) = key.rotation.clone() {
        delete_old(&iam, iam_shown, &user, &old_access_key_id).await?;
        key.rotation = None;
        write_checked(keyring, &key).await?;
        println!("deleted the old key …{}", last4(&old_access_key_id));
    }
    Ok(())
}

/// The credentials the IAM calls are signed with: the stored key, or with
/// an MFA device, a session from it (GetSessionToken with a code asked on
/// the terminal), for policies that allow managing one's keys only with MFA.
async fn signer(aws: &Aws, key: &StoredKey, mfa: &Mfa) -> Result<Credentials, String> {
    let Some(serial) = &mfa.serial else {
        return Ok(aws::credentials(key));
    };
    let code = mfa_code(serial)?;
    let answer = aws
        .sts(aws::credentials(key))
        .get_session_token()
        .serial_number(serial)
        .token_code(code.as_str())
        .duration_seconds(900)
        .send()
        .await
        .map_err(|e| aws::said("GetSessionToken", &aws.sts_shown, &e))?;
    let session = answer
        .credentials()
        .ok_or("GetSessionToken answered without credentials")?;
    Ok(Credentials::new(
        session.access_key_id(),
        session.secret_access_key(),
        Some(session.session_token().to_owned()),
        None,
        "assumed-keys-mfa",
    ))
}

/// A one-time code: asked on the terminal, else the first line of
/// standard input (a script, `mfa_process`'s output piped in).
fn mfa_code(serial: &str) -> Result<Zeroizing<String>, String> {
    use std::io::{BufRead, IsTerminal};
    let code = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("MFA code for {serial}: "))
            .map_err(|e| format!("could not read the MFA code for {serial}: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("could not read the MFA code for {serial}: {e}"))?;
        line
    };
    let code = Zeroizing::new(code.trim().to_owned());
    if code.is_empty() {
        return Err(format!(
            "an MFA code for {serial} is needed: run on a terminal, or give it on standard input"
        ));
    }
    Ok(code)
}

/// Steps 1 and 2: a new key created and stored beside the old one.
async fn create(
    iam: &aws_sdk_iam::Client,
    shown: &str,
    keyring: &Keyring,
    mut key: StoredKey,
    user: &str,
) -> Result<StoredKey, String> {
    let listed = iam
        .list_access_keys()
        .user_name(user)
        .send()
        .await
        .map_err(|e| aws::said("ListAccessKeys", shown, &e))?;
    let ids: Vec<String> = listed
        .access_key_metadata()
        .iter()
        .filter_map(|k| k.access_key_id().map(str::to_owned))
        .collect();
    if let Some(Rotation::Creating { existing }) = &key.rotation {
        // Made by a run that died before storing its secret: unusable.
        for orphan in ids.iter().filter(|id| !existing.contains(id)) {
            if *orphan == key.access_key_id {
                continue;
            }
            println!(
                "deleting key …{}: an earlier `keys rotate` created it and was stopped before it could store it",
                last4(orphan)
            );
            delete(iam, shown, user, orphan).await?;
        }
    } else {
        let others: Vec<&String> = ids.iter().filter(|id| **id != key.access_key_id).collect();
        if ids.len() >= 2 {
            let listed: Vec<String> = others.iter().map(|id| id.to_string()).collect();
            return Err(format!(
                "IAM user {user} already has two access keys (…{} stored here, and {}): \
                 IAM allows two. If that other key is unused, delete it \
                 (aws iam delete-access-key --user-name {user} --access-key-id ID), then rotate again",
                last4(&key.access_key_id),
                listed.join(", ")
            ));
        }
        key.rotation = Some(Rotation::Creating {
            existing: ids.clone(),
        });
        write_checked(keyring, &key).await?;
    }
    let created = iam
        .create_access_key()
        .user_name(user)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{}; the old key is still in use, run `assumed keys rotate {}` again",
                aws::said("CreateAccessKey", shown, &e),
                key.name
            )
        })?;
    let Some(new) = created.access_key() else {
        return Err("CreateAccessKey answered without a key".into());
    };
    key.rotation = Some(Rotation::Created {
        access_key_id: new.access_key_id().to_owned(),
        secret_access_key: Zeroizing::new(new.secret_access_key().to_owned()),
    });
    write_checked(keyring, &key).await?;
    println!("created the new key …{}", last4(new.access_key_id()));
    Ok(key)
}

/// Step 3: the old key deleted, retried while IAM catches up; already gone
/// counts as deleted.
async fn delete_old(
    iam: &aws_sdk_iam::Client,
    shown: &str,
    user: &str,
    id: &str,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + DELETE_LIMIT;
    loop {
        match delete(iam, shown, user, id).await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= until => {
                return Err(format!(
                    "{error}; the new key is in use and stored, the old one …{} still exists: \
                     run the rotation again to delete it",
                    last4(id)
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

async fn delete(
    iam: &aws_sdk_iam::Client,
    shown: &str,
    user: &str,
    id: &str,
) -> Result<(), String> {
    match iam
        .delete_access_key()
        .user_name(user)
        .access_key_id(id)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if aws::code(&e) == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(aws::said("DeleteAccessKey", shown, &e)),
    }
}
