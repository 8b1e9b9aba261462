//! `assumed keys list [--json]`: each stored key without its secret, and
//! which keyring holds them and why that one.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{KeyringFlags, backend_origin, unlocked_keyring};
use crate::config::Config;
use crate::keys::{BackendKind, KeyInfo};

#[derive(Serialize)]
struct Listing {
    keyring: BackendKind,
    /// Why this keyring: `--keyring`, `[source] keyring` or the platform's default.
    keyring_from: &'static str,
    keys: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    name: String,
    key_id_last4: String,
    user_arn: Option<String>,
    backend: BackendKind,
    /// Seconds since the Unix epoch.
    added_at: u64,
    age_seconds: u64,
}

pub async fn run(config: &Config, flags: &KeyringFlags, json: bool) -> Result<ExitCode, String> {
    let keyring = unlocked_keyring(config, flags).await?;
    let keys = keyring.list().await.map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let origin = backend_origin(config, flags);
    if json {
        let listing = Listing {
            keyring: keyring.kind(),
            keyring_from: origin,
            keys: keys.iter().map(|key| entry(key, now)).collect(),
        };
        let text = serde_json::to_string_pretty(&listing).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", table(keyring.kind(), origin, &keys, now));
    }
    Ok(ExitCode::SUCCESS)
}

fn entry(key: &KeyInfo, now: SystemTime) -> Entry {
    Entry {
        name: key.name.clone(),
        key_id_last4: key.key_id_last4.clone(),
        user_arn: key.user_arn.clone(),
        backend: key.backend,
        added_at: seconds_since_epoch(key.added_at),
        age_seconds: age(key, now).as_secs(),
    }
}

fn table(kind: BackendKind, origin: &str, keys: &[KeyInfo], now: SystemTime) -> String {
    let mut out = format!("Keyring: {kind} ({origin})\n");
    if keys.is_empty() {
        out.push_str("No keys stored. `assumed keys add NAME` stores some.\n");
        return out;
    }
    let rows: Vec<[String; 5]> = keys
        .iter()
        .map(|key| {
            [
                key.name.clone(),
                format!("…{}", key.key_id_last4),
                key.user_arn
                    .clone()
                    .unwrap_or_else(|| "(not checked)".into()),
                key.backend.to_string(),
                short_age(age(key, now)),
            ]
        })
        .collect();
    let header = ["NAME", "KEY", "USER", "BACKEND", "AGE"].map(str::to_owned);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn age(key: &KeyInfo, now: SystemTime) -> Duration {
    now.duration_since(key.added_at).unwrap_or_default()
}

fn seconds_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The largest whole unit: `45s`, `12m`, `5h`, `30d`, as the IAM console
/// shows a key's age (what rotation policies count in).
fn short_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(short_age(Duration::from_secs(5)), "5s");
        assert_eq!(short_age(Duration::from_secs(150)), "2m");
        assert_eq!(short_age(Duration::from_secs(7200)), "2h");
        assert_eq!(short_age(Duration::from_secs(90 * 86_400)), "90d");
    }

    #[test]
    fn a_table_with_and_without_keys() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10 * 86_400);
        let empty = table(BackendKind::File, "--keyring", &[], now);
        assert!(
            empty.starts_with("Keyring: file (--keyring)\nNo keys stored."),
            "{empty}"
        );
        let key = KeyInfo {
            name: "work".into(),
            key_id_last4: "MPLE".into(),
            user_arn: Some("arn:aws:iam::123456789012:user/alice".into()),
            added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(86_400),
            backend: BackendKind::SecretService,
        };
        let text = table(
            BackendKind::SecretService,
            "this platform's default",
            &[key],
            now,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "KEY", "USER", "BACKEND", "AGE"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "work",
                "…MPLE",
                "arn:aws:iam::123456789012:user/alice",
                "secret-service",
                "9d"
            ]
        );
    }
}
