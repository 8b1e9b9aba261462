//! The bytes a backend stores for one key: a small JSON object, versioned,
//! so every backend (and a later version of this program) reads the same
//! thing. The key's name is the backend's item name, not part of the record.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Rotation, StoredKey};

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    v: u32,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_arn: Option<&'a str>,
    /// Seconds since the Unix epoch.
    added_at: u64,
    /// A rotation under way; absent otherwise (and in records written
    /// before rotation existed, which read as none).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    rotation: Option<RotationRecord<'a>>,
}

/// [`Rotation`] as stored: `step` names the variant, the other fields are
/// those it has.
#[derive(Serialize, Deserialize, Default)]
struct RotationRecord<'a> {
    step: &'a str,
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    existing: Vec<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_key_id: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_access_key: Option<&'a str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    old_access_key_id: Option<&'a str>,
}

impl<'a> RotationRecord<'a> {
    fn of(rotation: &'a Rotation) -> Self {
        match rotation {
            Rotation::Creating { existing } => RotationRecord {
                step: "creating",
                existing: existing.iter().map(String::as_str).collect(),
                ..RotationRecord::default()
            },
            Rotation::Created {
                access_key_id,
                secret_access_key,
            } => RotationRecord {
                step: "created",
                access_key_id: Some(access_key_id),
                secret_access_key: Some(secret_access_key),
                ..RotationRecord::default()
            },
            Rotation::Retiring { old_access_key_id } => RotationRecord {
                step: "retiring",
                old_access_key_id: Some(old_access_key_id),
                ..RotationRecord::default()
            },
        }
    }

    fn rotation(&self) -> Result<Rotation, String> {
        let missing = |field: &str| format!("a rotation record without {field}");
        match self.step {
            "creating" => Ok(Rotation::Creating {
                existing: self.existing.iter().map(|s| (*s).to_owned()).collect(),
            }),
            "created" => Ok(Rotation::Created {
                access_key_id: self
                    .access_key_id
                    .ok_or_else(|| missing("access_key_id"))?
                    .to_owned(),
                secret_access_key: Zeroizing::new(
                    self.secret_access_key
                        .ok_or_else(|| missing("secret_access_key"))?
                        .to_owned(),
                ),
            }),
            "retiring" => Ok(Rotation::Retiring {
                old_access_key_id: self
                    .old_access_key_id
                    .ok_or_else(|| missing("old_access_key_id"))?
                    .to_owned(),
            }),
            _ => Err("a rotation step of a newer version of assumed".into()),
        }
    }
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
        rotation: key.rotation.as_ref().map(RotationRecord::of),
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
    let rotation = record
        .rotation
        .as_ref()
        .map(RotationRecord::rotation)
        .transpose()?;
    Ok(StoredKey {
        name: name.to_owned(),
        access_key_id: record.access_key_id.to_owned(),
        secret_access_key: Zeroizing::new(record.secret_access_key.to_owned()),
        user_arn: record.user_arn.map(str::to_owned),
        added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(record.added_at),
        rotation,
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
            rotation: None,
        };
        let bytes = encode(&key);
        assert_eq!(decode("me", &bytes), Ok(key.clone()));
        assert!(!String::from_utf8_lossy(&bytes).contains("rotation"));
        for rotation in [
            Rotation::Creating {
                existing: vec!["AKIAONE".into(), "AKIATWO".into()],
            },
            Rotation::Created {
                access_key_id: "AKIANEW".into(),
                secret_access_key: Zeroizing::new("newsecret".into()),
            },
            Rotation::Retiring {
                old_access_key_id: "AKIAOLD".into(),
            },
        ] {
            let rotating = StoredKey {
                rotation: Some(rotation),
                ..key.clone()
            };
            assert_eq!(decode("me", &encode(&rotating)), Ok(rotating));
        }
        let broken = String::from_utf8_lossy(&bytes).replace("\"v\":1", "\"v\":\"wJalrXUtnFEMI\"");
        let error = decode("me", broken.as_bytes()).unwrap_err();
        assert!(!error.contains("wJalr"), "{error}");
    }
}
