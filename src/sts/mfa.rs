//! What `assumed mfa ROLE CODE` hands over, and how it is spent: as aws-vault
//! does, long-lived source keys trade the code for an MFA session
//! (GetSessionToken) that signs every later AssumeRole until it ends; other
//! sources pass the code to the role's next AssumeRole.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::{Sts, classify, record_call};
use crate::cache::{FetchError, RoleSpec};
use crate::credentials::{Issued, Secret};

/// MFA sessions last this long unless `[source] mfa_session` says otherwise.
const DEFAULT_MFA_SESSION: Duration = Duration::from_secs(12 * 3600);
/// An MFA session this close to its end is not used to start a role session.
const MFA_SESSION_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
pub(super) struct MfaGrants {
    /// GetSessionToken sessions, per (source profile, MFA serial): one code
    /// unlocks every role behind the same source and device.
    sessions: HashMap<(Option<String>, String), Issued>,
    /// One-time codes for roles whose source is already temporary.
    codes: HashMap<String, Secret>,
}

/// How `assumed mfa` was put to use.
#[derive(Debug, PartialEq, Eq)]
pub enum MfaUse {
    /// An MFA session until this time; the role refreshes from it without codes.
    Session { until: SystemTime },
    /// The code goes into the next AssumeRole.
    OneTimeCode,
}

/// What proves MFA for one AssumeRole.
pub(super) enum MfaProof {
    Session(Issued),
    Code { serial: String, code: Secret },
}

impl Sts {
    fn grants(&self) -> std::sync::MutexGuard<'_, MfaGrants> {
        self.mfa
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes an MFA code for `role`.
    pub async fn provide_mfa(&self, role: &RoleSpec, code: &str) -> Result<MfaUse, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Err(FetchError::permanent(
                "NoMfaSerial",
                format!("role {} has no mfa_serial; it needs no MFA code", role.name),
            ));
        };
        let source = self.source_credentials(role).await?;
        // Long-lived IAM user keys have no session token; STS refuses
        // GetSessionToken with temporary credentials.
        let long_lived = role.config.via.is_none() && source.session_token().is_none();
        if !long_lived {
            self.grants()
                .codes
                .insert(role.name.clone(), Secret::new(code));
            return Ok(MfaUse::OneTimeCode);
        }
        let client = self.client(role, Some(source)).await;
        let duration = self.source.mfa_session.unwrap_or(DEFAULT_MFA_SESSION);
        let started = Instant::now();
        let sent = client
            .get_session_token()
            .serial_number(&serial)
            .token_code(code)
            .duration_seconds(duration.as_secs() as i32)
            .send()
            .await;
        record_call(&role.name, "GetSessionToken", started, sent.as_ref().err());
        let output = sent.map_err(classify)?;
        let session = super::assume::issued(output.credentials(), "", "")?;
        let until = session.expiration;
        let key = (self.source_profile(role).map(str::to_owned), serial);
        self.grants().sessions.insert(key, session);
        Ok(MfaUse::Session { until })
    }

    /// For a role with `mfa_serial`: the MFA session to sign with, or the
    /// one-time code to send; `MfaRequired` when there is neither.
    pub(super) fn mfa_for(&self, role: &RoleSpec) -> Result<Option<MfaProof>, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Ok(None);
        };
        let mut grants = self.grants();
        let key = (self.source_profile(role).map(str::to_owned), serial.clone());
        let usable_until = SystemTime::now() + MFA_SESSION_MARGIN;
        if role.config.via.is_none() {
            match grants.sessions.get(&key) {
                Some(session) if session.expiration > usable_until => {
                    return Ok(Some(MfaProof::Session(session.clone())));
                }
                Some(_) => {
                    grants.sessions.remove(&key);
                }
                None => {}
            }
        }
        match grants.codes.remove(&role.name) {
            Some(code) => Ok(Some(MfaProof::Code { serial, code })),
            None => Err(FetchError::needs_user(
                "MfaRequired",
                format!(
                    "role {} needs an MFA code; run: assumed mfa {} <code>",
                    role.name, role.name
                ),
            )),
        }
    }
}
