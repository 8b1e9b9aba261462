//! When a role's IAM Identity Center (SSO) session ends, for the reminder
//! ahead of time. The AWS CLI's `aws sso login` leaves the token in
//! `~/.aws/sso/cache/<SHA-1 of the session name or start URL>.json`; its
//! `expiresAt` is the end of the session unless it carries a refresh token,
//! which aws-config uses to renew it (the session's real end is then known
//! only to Identity Center, and the notice comes when a renewal fails).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};
use sha1::Digest;

use super::Sts;
use crate::attention::Renew;
use crate::cache::RoleSpec;

impl Sts {
    /// If `role`'s credentials come from an SSO session whose end is known,
    /// has a reminder set for it.
    pub(super) fn watch_sso_session(&self, role: &RoleSpec) {
        let profile = match (&role.config.profile, &role.config.via) {
            (Some(profile), _) => Some(profile.clone()),
            (None, None)
                if role
                    .config
                    .imported
                    .as_ref()
                    .is_none_or(|i| i.credential_source.is_none()) =>
            {
                self.source_profile(role)
            }
            _ => None,
        };
        let Some((name, login)) = profile.and_then(|p| self.profiles().sso_login(&p)) else {
            return;
        };
        let cache = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".aws/sso/cache"));
        let Some(ends) = cache.and_then(|dir| token_end(&dir, &name)) else {
            return;
        };
        let key = format!("sso {name}");
        self.attention.session_started(
            &key,
            format!("the SSO session {name}"),
            Renew::Command(login),
            ends,
        );
        self.attention.session_used(&key, &role.name);
    }
}

/// The end of the cached SSO token for `name` in `cache`, if it cannot be renewed.
fn token_end(cache: &Path, name: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Token {
        expires_at: String,
        refresh_token: Option<serde::de::IgnoredAny>,
    }
    let digest = sha1::Sha1::digest(name.as_bytes());
    let file: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = cache.join(format!("{file}.json"));
    let token: Token = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if token.refresh_token.is_some() {
        return None;
    }
    let at = DateTime::from_str(&token.expires_at, DateTimeFormat::DateTime).ok()?;
    SystemTime::try_from(at).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_without_a_refresh_token_ends_at_its_expiry() {
        let dir = tempfile::tempdir().expect("dir");
        // The SHA-1 of "corp", as the AWS CLI names the file.
        let file = dir
            .path()
            .join("ee0bfd2552fbd840c02cc48b6e823320543c450f.json");
        std::fs::write(
            &file,
            r#"{"accessToken":"t","expiresAt":"2099-01-01T00:00:00Z","region":"us-east-1"}"#,
        )
        .expect("write");
        let end = token_end(dir.path(), "corp").expect("known end");
        assert_eq!(
            end.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after")
                .as_secs(),
            4_070_908_800
        );
        std::fs::write(
            &file,
            r#"{"accessToken":"t","expiresAt":"2099-01-01T00:00:00Z","refreshToken":"r"}"#,
        )
        .expect("write");
        assert_eq!(
            token_end(dir.path(), "corp"),
            None,
            "renewable: end unknown"
        );
        assert_eq!(token_end(dir.path(), "other"), None);
    }
}
