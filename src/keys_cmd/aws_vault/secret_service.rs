//! aws-vault's Secret Service collection (Linux): found by its object path
//! (`/org/freedesktop/secrets/collection/awsvault`, `_XX`-escaped as
//! gnome-keyring writes it), one item per profile labelled with the
//! profile's name, its secret a keyring `Item` JSON whose `Data` (base64)
//! is the `aws.Credentials` JSON.

use base64::Engine;
use secret_service::{EncryptionType, SecretService};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::format::{VaultKey, decode_credentials};
use super::location::COLLECTION_ENV;
use super::{Found, Picker, Store};

const COLLECTIONS: &str = "/org/freedesktop/secrets/collection/";

/// The long-term keys in aws-vault's collection `collection`: of
/// `profiles`, or every profile when empty. Unlocks the collection if
/// it is locked (the keyring's own prompt, as aws-vault does).
pub async fn read(collection: &str, profiles: &[String]) -> Result<Found, String> {
    let failed = |what: &str, e: secret_service::Error| format!("{what}: {e}");
    let service = SecretService::connect(EncryptionType::Dh)
        .await
        .map_err(|e| failed("no Secret Service on the session bus", e))?;
    let collections = service
        .get_all_collections()
        .await
        .map_err(|e| failed("the Secret Service did not list its collections", e))?;
    let wanted = format!("{COLLECTIONS}{collection}");
    let Some(found) = collections
        .iter()
        .find(|c| decode_path(c.collection_path.as_str()) == wanted)
    else {
        return Err(format!(
            "aws-vault's Secret Service collection {collection:?} does not exist here \
             (another name? aws-vault's --secret-service-collection or ${COLLECTION_ENV})"
        ));
    };
    if found.is_locked().await.unwrap_or(true) {
        found
            .unlock()
            .await
            .map_err(|e| failed("aws-vault's collection is locked and was not unlocked", e))?;
    }
    let items = found
        .get_all_items()
        .await
        .map_err(|e| failed("aws-vault's collection did not list its items", e))?;
    let mut result = Found::default();
    let mut picker = Picker::new(profiles);
    for item in &items {
        let Ok(name) = item.get_label().await else {
            continue;
        };
        if !picker.take(&name) {
            continue;
        }
        let secret = match item.get_secret().await {
            Ok(secret) => Zeroizing::new(secret),
            Err(e) => {
                result
                    .problems
                    .push(format!("aws-vault's item {name:?} could not be read: {e}"));
                continue;
            }
        };
        match decode_secret_service_item(&name, &secret) {
            Ok(key) => result.keys.push(key),
            Err(problem) => result.problems.push(problem),
        }
    }
    let store = Store::Collection(collection.to_owned());
    result.problems.extend(picker.missing(&store));
    Ok(result)
}

/// The secret of a Secret Service item: 99designs/keyring's `Item`.
#[derive(Deserialize)]
struct KeyringItem {
    #[serde(rename = "Data")]
    data: Option<String>,
}

/// The keys in a Secret Service item's secret. The error never quotes it.
fn decode_secret_service_item(profile: &str, secret: &[u8]) -> Result<VaultKey, String> {
    let item: KeyringItem = serde_json::from_slice(secret)
        .map_err(|_| format!("aws-vault's item {profile:?} is not a keyring item (JSON)"))?;
    let data = item.data.unwrap_or_default();
    let data = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .map_err(|_| format!("aws-vault's item {profile:?} has no base64 Data"))?,
    );
    decode_credentials(profile, &data)
}

/// An object path as 99designs/keyring compares it: `_XX` is the byte with
/// hex code XX (how gnome-keyring writes a label that is not a D-Bus path
/// element; secretservice.go `decodeKeyringString`).
fn decode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            match path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                None => return path.to_owned(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes as aws-vault v7 writes them for `aws-vault add work`: the
    /// keyring.Item JSON around base64 of aws.Credentials.
    fn item(credentials: &str) -> Vec<u8> {
        let data = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!(
            r#"{{"Key":"work","Data":"{data}","Label":"aws-vault (work)","Description":"","KeychainNotTrustApplication":true,"KeychainNotSynchronizable":false}}"#
        )
        .into_bytes()
    }

    const LONG_TERM: &str = r#"{"AccessKeyID":"AKIAWORK","SecretAccessKey":"s3cretWORK","SessionToken":"","Source":"","CanExpire":false,"Expires":"0001-01-01T00:00:00Z"}"#;

    #[test]
    fn reads_long_term_keys_as_aws_vault_writes_them() {
        let key = decode_secret_service_item("work", &item(LONG_TERM)).expect("keys");
        assert_eq!(key.access_key_id, "AKIAWORK");
        assert_eq!(key.secret_access_key.as_str(), "s3cretWORK");
    }

    #[test]
    fn refuses_sessions_and_garbage_without_quoting_secrets() {
        let session = LONG_TERM.replace(r#""SessionToken":"""#, r#""SessionToken":"tok3n""#);
        let error = decode_secret_service_item("work", &item(&session))
            .err()
            .expect("refused");
        assert!(
            error.contains("session token") && !error.contains("s3cret"),
            "{error}"
        );
        let error = decode_secret_service_item("work", b"{\"Data\":\"s3cret!!\"}")
            .err()
            .expect("refused");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn object_paths_decode_as_the_go_keyring_does() {
        assert_eq!(
            decode_path("/org/freedesktop/secrets/collection/aws_2dvault"),
            "/org/freedesktop/secrets/collection/aws-vault"
        );
        assert_eq!(decode_path("/a/awsvault"), "/a/awsvault");
        assert_eq!(decode_path("/a/bad_zz"), "/a/bad_zz");
    }
}
