//! `assumed keys remove NAME [--yes]`: deletes stored keys, after asking
//! (on a terminal) unless `--yes`. The key itself stays valid in IAM.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use super::{KeyringFlags, unlocked_keyring};
use crate::config::Config;
use crate::keys::last4;

pub async fn run(
    config: &Config,
    flags: &KeyringFlags,
    name: &str,
    yes: bool,
) -> Result<ExitCode, String> {
    let keyring = unlocked_keyring(config, flags).await?;
    let Some(key) = keyring.read(name).await.map_err(|e| e.to_string())? else {
        return Err(format!(
            "no keys are stored as {name} in the {} keyring (`assumed keys list` shows them)",
            keyring.kind()
        ));
    };
    let what = format!(
        "{name} (key …{}{}) from the {} keyring",
        last4(&key.access_key_id),
        key.user_arn
            .as_deref()
            .map(|arn| format!(", {arn}"))
            .unwrap_or_default(),
        keyring.kind()
    );
    drop(key);
    if !yes && !confirmed(&format!("Remove {what}?"))? {
        eprintln!("Nothing removed.");
        return Ok(ExitCode::FAILURE);
    }
    keyring.delete(name).await.map_err(|e| e.to_string())?;
    println!("Removed {what}.");
    eprintln!(
        "The key itself still works in AWS: deactivate or delete it in IAM if nothing needs it."
    );
    Ok(ExitCode::SUCCESS)
}

/// Asks a yes/no question on the terminal; without one there is nobody to
/// ask, and the answer must come as `--yes`.
fn confirmed(question: &str) -> Result<bool, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "{question} There is no terminal to ask on: add --yes to remove without asking"
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
