//! What both readers share of aws-vault's format (v7, through
//! 99designs/keyring v1.2): the names it gives its own session and token
//! items, and the `aws.Credentials` JSON it stores as a profile's keys.
//! docs/keys.md, "Moving in", has the format with the source lines it
//! comes from.

use serde::Deserialize;
use zeroize::Zeroizing;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// `aws-vault add work`'s `aws.Credentials`, as Go's json.Marshal writes it.
    const LONG_TERM: &str = r#"{"AccessKeyID":"AKIAWORK","SecretAccessKey":"s3cretWORK","SessionToken":"","Source":"","CanExpire":false,"Expires":"0001-01-01T00:00:00Z"}"#;

    #[test]
    fn reads_the_keychain_items_data_as_is() {
        // The macOS Keychain item's data: this JSON, with no Item around it.
        let key = decode_credentials("work", LONG_TERM.as_bytes()).expect("keys");
        assert_eq!(key.profile, "work");
        assert_eq!(key.access_key_id, "AKIAWORK");
        assert_eq!(key.secret_access_key.as_str(), "s3cretWORK");
        // A newer Go SDK adds AccountID; it changes nothing here.
        let newer = LONG_TERM.replace('{', r#"{"AccountID":"123456789012","#);
        assert!(decode_credentials("work", newer.as_bytes()).is_ok());
        // A Secret Service item's wrapper is not what the Keychain holds.
        let wrapped = br#"{"Key":"work","Data":"czNjcmV0V09SSw==","Label":"aws-vault (work)"}"#;
        let error = decode_credentials("work", wrapped).err().expect("refused");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn refuses_temporary_credentials_without_quoting_them() {
        let session = LONG_TERM.replace(r#""SessionToken":"""#, r#""SessionToken":"tok3n""#);
        let error = decode_credentials("work", session.as_bytes())
            .err()
            .expect("refused");
        assert!(
            error.contains("session token")
                && !error.contains("s3cret")
                && !error.contains("tok3n"),
            "{error}"
        );
        let empty = LONG_TERM.replace("s3cretWORK", "");
        assert!(decode_credentials("work", empty.as_bytes()).is_err());
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
}
