//! Stored keys as `Sts` uses them: which names the roles need (read into
//! memory by `stored_keys.rs`), and `assumed credential-process --keys
//! NAME`: a short GetSessionToken session made from them, cached until
//! near its end, so a profile in `~/.aws/config` gets what aws-vault's
//! `exec` gives, never the long-term keys.
//!
//! Where a role signed by those keys has an `mfa_serial`, the session is
//! that device's MFA session (`mfa.rs`): the same GetSessionToken the role
//! signs with, opened by `assumed mfa ROLE CODE` or the role's
//! `mfa_process`, so a profile gets MFA-backed credentials as the role does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::describe::Call;
use super::mfa::MfaProof;
use super::sources::SourceKey;
use super::stored_keys::{KeyringStatus, ReadReport};
use super::{Sts, classify, issued, record_call};
use crate::cache::{FetchError, RoleSpec};
use crate::config::RoleConfig;
use crate::credentials::Issued;

/// How long a plain (no MFA) session lasts: an hour, as the AWS CLI's
/// cached sessions do; it is made again shortly before it ends.
const KEYS_SESSION: Duration = Duration::from_secs(3600);
/// A cached session with less than this left is not handed out: the
/// program that asked must have time to use it.
const KEYS_SESSION_MARGIN: Duration = Duration::from_secs(10 * 60);

impl Sts {
    /// The stored keys `specs` are signed by, and the keyring `[source]`
    /// names, for the next [`Sts::read_keys`]; whether the keyring changed.
    pub fn configure_keys(&self, specs: &[RoleSpec]) -> bool {
        let wanted: BTreeSet<String> = specs
            .iter()
            .filter_map(|spec| match self.source_key(spec) {
                SourceKey::Keys(name) => Some(name),
                _ => None,
            })
            .collect();
        let changed = self.keys.configure(&self.source().keyring, wanted);
        if changed {
            self.keys_sessions.lock().clear();
        }
        changed
    }

    /// Reads the configured stored keys from the keyring into memory (at
    /// start, a reload, `keys add`/`rotate`).
    pub async fn read_keys(&self) -> ReadReport {
        let report = self.keys.read().await;
        if !report.changed.is_empty() {
            // Sessions of the keys that were replaced (a rotation).
            let mut sessions = self.keys_sessions.lock();
            for name in &report.changed {
                sessions.remove(name);
            }
        }
        report
    }

    /// The roles among `specs` whose stored keys `names` are.
    pub fn roles_on_keys(&self, specs: &[RoleSpec], names: &[String]) -> Vec<String> {
        specs
            .iter()
            .filter(|spec| match self.source_key(spec) {
                SourceKey::Keys(name) => names.contains(&name),
                _ => false,
            })
            .map(|spec| spec.name.clone())
            .collect()
    }

    /// For `assumed status`; `None` when no stored keys are in use.
    pub fn keyring_status(&self) -> Option<KeyringStatus> {
        self.keys.status()
    }

    /// A GetSessionToken session of the stored keys `name`, for
    /// `credential-process --keys`: the MFA session of a role on those keys
    /// that has `mfa_serial` (among `roles`), else a plain one, cached.
    pub async fn keys_session(&self, name: &str, roles: &[RoleSpec]) -> Result<Issued, FetchError> {
        let key = SourceKey::Keys(name.to_owned());
        if self.keys.want(name) {
            // Keys no role uses: read now, under the keyring's deadline.
            self.keys.read().await;
        }
        let with_mfa = roles.iter().find(|role| {
            role.config.mfa_serial.is_some()
                && role.config.via.is_none()
                && self.source_key(role) == key
        });
        if let Some(role) = with_mfa {
            return match self.mfa_for(role).await? {
                Some(MfaProof::Session(session)) => Ok(session),
                // Stored keys are long-lived: their code always opens a session.
                _ => Err(FetchError::transient(
                    "MfaSessionUnavailable",
                    format!("no MFA session for the stored keys {name}; try again"),
                )),
            };
        }
        let usable_until = SystemTime::now() + KEYS_SESSION_MARGIN;
        if let Some(session) = self.keys_sessions.lock().get(name) {
            if session.expiration > usable_until {
                return Ok(session.clone());
            }
        }
        let session = self.get_session_token(name).await?;
        self.keys_sessions
            .lock()
            .insert(name.to_owned(), session.clone());
        Ok(session)
    }

    /// One GetSessionToken without MFA, signed by the stored keys `name`,
    /// at `[source]`'s STS endpoint and region.
    async fn get_session_token(&self, name: &str) -> Result<Issued, FetchError> {
        let role = RoleSpec {
            name: format!("keys:{name}"),
            config: RoleConfig {
                source_keys: Some(name.to_owned()),
                ..RoleConfig::default()
            },
        };
        let signer = self.source_credentials(&role).await?;
        let client = self.client(&role, Some(signer)).await;
        let call = Call::new("GetSessionToken", self.deadlines());
        let started = Instant::now();
        let sent = client
            .get_session_token()
            .duration_seconds(KEYS_SESSION.as_secs() as i32)
            .customize()
            .interceptor(call.watch())
            .send()
            .await;
        record_call(&role.name, "GetSessionToken", started, sent.as_ref().err());
        let output = sent.map_err(|error| classify(&role.name, &call, error))?;
        let session = issued(output.credentials(), "", "")?;
        tracing::info!(
            keys = name,
            until = %crate::credentials::format_expiration(session.expiration),
            "session of stored keys opened for credential-process"
        );
        Ok(session)
    }
}
