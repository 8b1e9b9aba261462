//! Temporary credentials as the daemon holds and serves them.
//!
//! The secret parts never print: `Debug` and `Display` show `<redacted>`.
//! The bytes come out only where they are sent on: [`Secret::expose`] (to
//! sign a request, to the console's federation endpoint) and the
//! pre-serialised response body, built once per STS answer so that serving a
//! warm role costs a pointer copy.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

/// A secret string that refuses to show itself in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What an STS call (or a profile's own provider) hands back.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: SystemTime,
    /// The role the credentials act as (`arn:aws:iam::…:role/…`), what ECS calls `RoleArn`.
    pub role_arn: String,
    pub account_id: String,
}

/// Credentials in the cache: what was issued, when, and the container-endpoint
/// answer for them, serialised once.
pub struct Credentials {
    pub issued: Issued,
    pub received_at: SystemTime,
    container_body: Bytes,
    /// The IMDS answer, serialised on first use: most roles are never
    /// served over IMDS, and 1,000 roles should not carry a second copy.
    imds_body: OnceLock<Bytes>,
}

impl Credentials {
    pub fn new(issued: Issued, received_at: SystemTime) -> Self {
        let container_body = container_json(&issued);
        Credentials {
            issued,
            received_at,
            container_body,
            imds_body: OnceLock::new(),
        }
    }

    pub fn expiration(&self) -> SystemTime {
        self.issued.expiration
    }

    /// Time left at `now`; zero once expired.
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.issued
            .expiration
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// The session length STS granted, as seen from here.
    pub fn lifetime(&self) -> Duration {
        self.issued
            .expiration
            .duration_since(self.received_at)
            .unwrap_or(Duration::ZERO)
    }

    /// The body of a container-credentials answer (ECS shape, no `Code`).
    pub fn container_body(&self) -> Bytes {
        self.container_body.clone()
    }

    /// The body of an IMDS credentials answer, serialised once.
    pub fn imds_body(&self) -> Bytes {
        self.imds_body
            .get_or_init(|| Bytes::from(self.imds_json(false)))
            .clone()
    }

    /// An IMDS credentials answer; `extended` (Java v2's
    /// `security-credentials-extended`) adds `AccountId`.
    pub fn imds_json(&self, extended: bool) -> Vec<u8> {
        let issued = &self.issued;
        let answer = ImdsAnswer {
            code: "Success",
            last_updated: format_expiration(self.received_at),
            kind: "AWS-HMAC",
            access_key_id: &issued.access_key_id,
            secret_access_key: issued.secret_access_key.expose(),
            token: issued.session_token.expose(),
            expiration: format_expiration(issued.expiration),
            account_id: extended.then_some(issued.account_id.as_str()),
        };
        // As for the container body: a struct of strings always serialises.
        serde_json::to_vec(&answer).unwrap_or_default()
    }
}

impl fmt::Debug for Credentials {
    // By hand: the serialised body holds the secrets in clear.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("issued", &self.issued)
            .field("received_at", &self.received_at)
            .finish_non_exhaustive()
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`: the one form every SDK parses (no fractions, no offset).
pub fn format_expiration(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerAnswer<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    role_arn: &'a str,
    account_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImdsAnswer<'a> {
    code: &'static str,
    last_updated: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
}

fn container_json(issued: &Issued) -> Bytes {
    let answer = ContainerAnswer {
        access_key_id: &issued.access_key_id,
        secret_access_key: issued.secret_access_key.expose(),
        token: issued.session_token.expose(),
        expiration: format_expiration(issued.expiration),
        role_arn: &issued.role_arn,
        account_id: &issued.account_id,
    };
    // Serialising a struct of strings cannot fail; an empty body would be
    // rejected by every SDK rather than misread, should it ever happen.
    Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Issued {
        Issued {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("very-secret-key"),
            session_token: Secret::new("very-secret-token"),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045),
            role_arn: "arn:aws:iam::111111111111:role/dev".into(),
            account_id: "111111111111".into(),
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let creds = Credentials::new(sample(), SystemTime::now());
        let shown = format!("{creds:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("ASIAEXAMPLE"));
    }

    #[test]
    fn container_body_has_the_ecs_shape() {
        let creds = Credentials::new(sample(), SystemTime::now());
        let body: serde_json::Value =
            serde_json::from_slice(&creds.container_body()).expect("valid json");
        assert_eq!(body["AccessKeyId"], "ASIAEXAMPLE");
        assert_eq!(body["SecretAccessKey"], "very-secret-key");
        assert_eq!(body["Token"], "very-secret-token");
        assert_eq!(body["Expiration"], "2026-01-02T03:04:05Z");
        assert_eq!(body["AccountId"], "111111111111");
        assert_eq!(body["RoleArn"], "arn:aws:iam::111111111111:role/dev");
        assert!(body.get("Code").is_none());
    }
}
