//! The bytes a backend stores for one key: a small JSON object, versioned,
//! so every backend (and a later version of this program) reads the same
//! thing. The key's name is the backend's item name, not part of the record.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::StoredKey;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    v: u32,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_arn: Option<&'a str>,
    /// Seconds since the Unix epoch.
    added_at: u64,
}

/// `key` as stored; wiped when dropped.
pub fn encode(key: &StoredKey) -> Zeroizing<Vec<u8>> {
    let record = Record {
        v: 1,
        access_key_id: &key.access_key_id,
        secret_access_key: &key.secret_access_key,
        user_arn: key.user_arn.as_deref(),
        added_at: key
            .added_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    };
    Zeroizing::new(serde_json::to_vec(&record).unwrap_or_default())
}

/// The key stored under `name` from `bytes`; `None` if they are not a
/// record of ours (the reason, without the bytes, is the error).
pub fn decode(name: &str, bytes: &[u8]) -> Result<StoredKey, String> {
    let record: Record<'_> = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a stored key ({})", e.classify_text()))?;
    if record.v != 1 {
        return Err(format!(
            "stored by a newer version of assumed (record v{})",
            record.v
        ));
    }
    Ok(StoredKey {
        name: name.to_owned(),
        access_key_id: record.access_key_id.to_owned(),
        secret_access_key: Zeroizing::new(record.secret_access_key.to_owned()),
        user_arn: record.user_arn.map(str::to_owned),
        added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(record.added_at),
    })
}

trait ClassifyText {
    fn classify_text(&self) -> &'static str;
}

impl ClassifyText for serde_json::Error {
    /// What kind of error, never where: serde's message can quote the input.
    fn classify_text(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "missing or mistyped fields",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_errors_never_quote_the_secret() {
        let key = StoredKey {
            name: "me".into(),
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG".into()),
            user_arn: Some("arn:aws:iam::123456789012:user/me".into()),
            added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let bytes = encode(&key);
        assert_eq!(decode("me", &bytes), Ok(key));
        let broken = String::from_utf8_lossy(&bytes).replace("\"v\":1", "\"v\":\"wJalrXUtnFEMI\"");
        let error = decode("me", broken.as_bytes()).unwrap_err();
        assert!(!error.contains("wJalr"), "{error}");
    }
}
