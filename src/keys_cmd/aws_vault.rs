//! The long-term keys aws-vault stored, read the way aws-vault (v7, through
//! 99designs/keyring v1.2) writes them, so an aws-vault user moves over with
//! one `assumed keys import --from aws-vault`. docs/keys.md, "Moving in",
//! has the format with the source lines it comes from.
//!
//! Secret Service: a collection labelled `awsvault` (aws-vault's
//! `--secret-service-collection`, `AWS_VAULT_SECRET_SERVICE_COLLECTION_NAME`),
//! found by its object path; one item per profile, labelled with the profile
//! name, attribute `profile` = the name; its secret a JSON `keyring.Item`
//! whose `Data` (base64) is the JSON of the Go SDK's `aws.Credentials`.
//! aws-vault keeps its cached sessions and SSO tokens in the same
//! collection: those are skipped, by the names aws-vault gives them.

use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

/// aws-vault's default collection name, and the variable that changes it.
pub const DEFAULT_COLLECTION: &str = "awsvault";
pub const COLLECTION_ENV: &str = "AWS_VAULT_SECRET_SERVICE_COLLECTION_NAME";

/// One profile's long-term keys as aws-vault stored them.
pub struct VaultKey {
    pub profile: String,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
}

/// Whether an item name is one of aws-vault's own session or token items
/// (vault/sessionkeyring.go `IsSessionKey`, vault/oidctokenkeyring.go
/// `IsOIDCTokenKey`), not a profile's long-term keys.
pub fn is_session_item(name: &str) -> bool {
    if name.starts_with("oidc:") {
        return true;
    }
    // Current: `TYPE,base64url(profile),base64url(mfa serial),EXPIRY`.
    let parts: Vec<&str> = name.split(',').collect();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 4 && !parts[0].is_empty() && !parts[1].is_empty() && digits(parts[3]) {
        return true;
    }
    // Older: `session:PROFILE:SERIAL:EXPIRY` and `PROFILE session (EXPIRY)`.
    if name.starts_with("session:") && name.matches(':').count() >= 3 {
        return true;
    }
    if let Some(rest) = name.strip_suffix(')') {
        if let Some((_, number)) = rest.rsplit_once(" session (") {
            return digits(number);
        }
    }
    false
}

/// The secret of a Secret Service item: 99designs/keyring's `Item`.
#[derive(Deserialize)]
struct KeyringItem {
    #[serde(rename = "Data")]
    data: Option<String>,
}

/// The Go SDK's `aws.Credentials` (no JSON tags: the field names).
#[derive(Deserialize)]
struct GoCredentials {
    #[serde(rename = "AccessKeyID")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: String,
    #[serde(rename = "SessionToken", default)]
    session_token: Option<String>,
}

/// The keys in a Secret Service item's secret. The error never quotes it.
pub fn decode_secret_service_item(profile: &str, secret: &[u8]) -> Result<VaultKey, String> {
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

/// The keys in aws-vault's `aws.Credentials` JSON (what the macOS Keychain
/// item holds directly).
pub fn decode_credentials(profile: &str, data: &[u8]) -> Result<VaultKey, String> {
    let credentials: GoCredentials = serde_json::from_slice(data)
        .map_err(|_| format!("aws-vault's item {profile:?} holds no AWS credentials"))?;
    // Wiped on drop from here on.
    let secret_access_key = Zeroizing::new(credentials.secret_access_key);
    let session_token = Zeroizing::new(credentials.session_token.unwrap_or_default());
    if !session_token.is_empty() {
        return Err(format!(
            "aws-vault's item {profile:?} holds a session token: temporary credentials, not long-term keys"
        ));
    }
    if credentials.access_key_id.is_empty() || secret_access_key.is_empty() {
        return Err(format!("aws-vault's item {profile:?} has an empty key"));
    }
    Ok(VaultKey {
        profile: profile.to_owned(),
        access_key_id: credentials.access_key_id,
        secret_access_key,
    })
}

/// An object path as 99designs/keyring compares it: `_XX` is the byte with
/// hex code XX (how gnome-keyring writes a label that is not a D-Bus path
/// element; secretservice.go `decodeKeyringString`).
pub fn decode_path(path: &str) -> String {
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

/// What a read of aws-vault's keyring found: the keys, and for each item
/// that could not be taken, why (no secret in it).
#[derive(Default)]
pub struct Found {
    pub keys: Vec<VaultKey>,
    pub problems: Vec<String>,
}

#[cfg(target_os = "linux")]
pub use secret_service_reader::read;

#[cfg(target_os = "linux")]
mod secret_service_reader {
    use std::collections::BTreeSet;

    use secret_service::{EncryptionType, SecretService};

    use super::*;

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
        let mut seen = BTreeSet::new();
        for item in &items {
            let Ok(name) = item.get_label().await else {
                continue;
            };
            if is_session_item(&name) || seen.contains(&name) {
                continue;
            }
            if !profiles.is_empty() && !profiles.contains(&name) {
                continue;
            }
            // aws-vault reads the first item of a name; so does this.
            seen.insert(name.clone());
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
        for profile in profiles {
            if !seen.contains(profile) {
                result.problems.push(format!(
                    "aws-vault holds no keys for profile {profile:?} in collection {collection:?}"
                ));
            }
        }
        Ok(result)
    }
}

/// The macOS Keychain half (`aws-vault.keychain`, service `aws-vault`,
/// account = profile, data = the `aws.Credentials` JSON) is documented in
/// docs/keys.md; reading it is not written yet.
#[cfg(not(target_os = "linux"))]
pub async fn read(_collection: &str, _profiles: &[String]) -> Result<Found, String> {
    Err(
        "importing from aws-vault reads its Secret Service items, on Linux only for now \
         (see docs/keys.md, \"Moving in\")"
            .into(),
    )
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
    fn session_and_token_items_are_recognised() {
        for name in [
            "sts.GetSessionToken,d29yaw,YXJuOmF3czppYW06OjEyMzQ6bWZhL21l,1700000000",
            "sts.AssumeRole,d29yaw,,1700000000",
            "session,d29yaw,,1700000000",
            "session:work:arn:1700000000",
            "work session (1700000000)",
            "oidc:https://corp.awsapps.com/start",
        ] {
            assert!(is_session_item(name), "{name}");
        }
        for name in ["work", "default", "my,profile", "a session (x)"] {
            assert!(!is_session_item(name), "{name}");
        }
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
