//! MFA: where codes come from and how they are spent. As aws-vault does,
//! long-lived source keys trade a code for an MFA session (GetSessionToken)
//! that signs every later AssumeRole until it ends; other sources pass the
//! code to the role's next AssumeRole.
//!
//! A code comes from `assumed mfa ROLE CODE`, or from the role's
//! `mfa_process`, which the daemon runs itself (`mfa_process.rs`). There is
//! one MFA session per device: roles that share a source and an
//! `mfa_serial` share it, so a code is asked for (or the process run) once
//! per session, not once per role; concurrent roles wait for one run.
//! Sessions are kept across restarts (`mfa_store.rs`), and the user is
//! reminded before one ends (`crate::attention`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::MutexGuard;

use super::describe::Call;
use super::mfa_store::{self, Kept};
use super::sources::SourceKey;
use super::{Sts, classify, issued, mfa_process, record_call};
use crate::attention::Renew;
use crate::cache::{FetchError, RoleSpec};
use crate::config::SourceConfig;
use crate::credentials::{Issued, Secret};

/// MFA sessions last this long unless `[source] mfa_session` says otherwise.
const DEFAULT_MFA_SESSION: Duration = Duration::from_secs(12 * 3600);
/// An MFA session this close to its end is not used to start a role session.
const MFA_SESSION_MARGIN: Duration = Duration::from_secs(5 * 60);

/// One MFA device behind one shared source: (source, MFA serial).
type Device = (SourceKey, String);

#[derive(Default)]
pub(super) struct MfaGrants {
    /// GetSessionToken sessions, one per device.
    sessions: HashMap<Device, Grant>,
    /// One-time codes for roles whose source is already temporary.
    codes: HashMap<String, Secret>,
    /// Held while a device's `mfa_process` runs, so roles that need the
    /// same device wait for that run instead of starting their own.
    running: HashMap<Device, Arc<tokio::sync::Mutex<()>>>,
}

struct Grant {
    session: Issued,
    /// The access key id of the keys that opened it.
    source_key_id: String,
    /// Restored from the file and not yet matched against today's source
    /// keys: the profile's keys may have been rotated meanwhile.
    verified: bool,
}

/// How a code was put to use.
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
    fn grants(&self) -> MutexGuard<'_, MfaGrants> {
        self.mfa.lock()
    }

    fn device(&self, role: &RoleSpec, serial: &str) -> Device {
        (self.source_key(role), serial.to_owned())
    }

    /// Takes an MFA code for `role` (`assumed mfa`).
    pub async fn provide_mfa(&self, role: &RoleSpec, code: &str) -> Result<MfaUse, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Err(FetchError::permanent(
                "NoMfaSerial",
                format!("role {} has no mfa_serial; it needs no MFA code", role.name),
            ));
        };
        match self.spend_code(role, &serial, Secret::new(code)).await? {
            MfaProof::Session(session) => Ok(MfaUse::Session {
                until: session.expiration,
            }),
            MfaProof::Code { code, .. } => {
                self.grants().codes.insert(role.name.clone(), code);
                Ok(MfaUse::OneTimeCode)
            }
        }
    }

    /// A code for `role`'s device: with long-lived source keys, traded for
    /// an MFA session that every role on the device then shares; otherwise
    /// handed back for the role's AssumeRole.
    async fn spend_code(
        &self,
        role: &RoleSpec,
        serial: &str,
        code: Secret,
    ) -> Result<MfaProof, FetchError> {
        let source = self.source_credentials(role).await?;
        // Long-lived IAM user keys have no session token; STS refuses
        // GetSessionToken with temporary credentials.
        let long_lived = role.config.via.is_none() && source.session_token().is_none();
        if !long_lived {
            return Ok(MfaProof::Code {
                serial: serial.to_owned(),
                code,
            });
        }
        let client = self.client(role, Some(source.clone())).await;
        let duration = self.source().mfa_session.unwrap_or(DEFAULT_MFA_SESSION);
        let call = Call::new("GetSessionToken", self.deadlines());
        let started = Instant::now();
        let sent = client
            .get_session_token()
            .serial_number(serial)
            .token_code(code.expose())
            .duration_seconds(duration.as_secs() as i32)
            .customize()
            .interceptor(call.watch())
            .send()
            .await;
        record_call(&role.name, "GetSessionToken", started, sent.as_ref().err());
        let output = sent.map_err(|error| classify(&role.name, &call, error))?;
        let session = issued(output.credentials(), "", "")?;
        let device = self.device(role, serial);
        tracing::info!(
            serial,
            role = %role.name,
            until = %crate::credentials::format_expiration(session.expiration),
            "MFA session opened"
        );
        self.remind_before_end(&device, session.expiration);
        self.attention
            .session_used(&reminder_key(&device), &role.name);
        self.grants().sessions.insert(
            device,
            Grant {
                session: session.clone(),
                source_key_id: source.access_key_id().to_owned(),
                verified: true,
            },
        );
        self.keep_sessions();
        Ok(MfaProof::Session(session))
    }

    /// For a role with `mfa_serial`: the MFA session to sign with, or the
    /// one-time code to send. Without either, the role's `mfa_process` is
    /// run (once per device at a time); without one, `MfaRequired`.
    pub(super) async fn mfa_for(&self, role: &RoleSpec) -> Result<Option<MfaProof>, FetchError> {
        let Some(serial) = role.config.mfa_serial.clone() else {
            return Ok(None);
        };
        let device = self.device(role, &serial);
        if let Some(session) = self.session_for(role, &device).await {
            return Ok(Some(MfaProof::Session(session)));
        }
        if let Some(code) = self.grants().codes.remove(&role.name) {
            return Ok(Some(MfaProof::Code { serial, code }));
        }
        if let SourceKey::Keys(_) = &device.0 {
            // A locked keyring is what to say, not "needs an MFA code": no
            // code could be spent without the keys.
            self.source_credentials(role).await?;
        }
        let Some(command) = role.config.mfa_process.as_deref() else {
            return Err(FetchError::needs_user(
                "MfaRequired",
                format!(
                    "role {} needs an MFA code; run: assumed mfa {} <code>",
                    role.name, role.name
                ),
            ));
        };
        let running = self
            .grants()
            .running
            .entry(device.clone())
            .or_default()
            .clone();
        let _running = running.lock().await;
        // Whoever held the device before may have opened the session.
        if let Some(session) = self.session_for(role, &device).await {
            return Ok(Some(MfaProof::Session(session)));
        }
        let deadline = self.deadlines().mfa_process;
        tracing::info!(role = %role.name, %serial, "running mfa_process for a code");
        let code = mfa_process::run(&role.name, command, deadline)
            .await
            .map_err(|failure| {
                FetchError::needs_user(
                    "MfaProcessFailed",
                    format!(
                        "role {}: {}; fix it, or run: assumed mfa {} <code>",
                        role.name, failure.0, role.name
                    ),
                )
            })?;
        self.spend_code(role, &serial, code).await.map(Some)
    }

    /// The device's MFA session, if it can still start a role session (and,
    /// when restored from the file, belongs to today's source keys).
    async fn session_for(&self, role: &RoleSpec, device: &Device) -> Option<Issued> {
        if role.config.via.is_some() {
            return None;
        }
        let usable_until = SystemTime::now() + MFA_SESSION_MARGIN;
        let (session, verified, key_id) = {
            let grants = self.grants();
            let grant = grants.sessions.get(device)?;
            if grant.session.expiration <= usable_until {
                self.end_session(grants, device);
                return None;
            }
            (
                grant.session.clone(),
                grant.verified,
                grant.source_key_id.clone(),
            )
        };
        if !verified {
            let same_keys = match self.source_credentials(role).await {
                Ok(source) => source.access_key_id() == key_id,
                // Stored keys not readable yet (a locked keyring): the kept
                // session may well be theirs; look again once they are.
                Err(_) if matches!(device.0, SourceKey::Keys(_)) => return None,
                Err(_) => false,
            };
            let mut grants = self.grants();
            if !same_keys {
                tracing::info!(
                    serial = %device.1,
                    "the kept MFA session was opened with other source keys; not using it"
                );
                self.end_session(grants, device);
                return None;
            }
            if let Some(grant) = grants.sessions.get_mut(device) {
                grant.verified = true;
            }
        }
        self.note_use(device, role);
        Some(session)
    }

    /// The user is reminded before the device's session ends.
    fn remind_before_end(&self, device: &Device, ends: SystemTime) {
        self.attention.session_started(
            &reminder_key(device),
            format!("the MFA session of {}", device.1),
            Renew::MfaCode,
            ends,
        );
    }

    /// Forgets the device's session (here, on disk, and its reminder).
    fn end_session(&self, mut grants: MutexGuard<'_, MfaGrants>, device: &Device) {
        grants.sessions.remove(device);
        drop(grants); // keep_sessions takes the lock again
        self.attention.session_ended(&reminder_key(device));
        self.keep_sessions();
    }

    /// `role` signs with the device's session: it is reminded before the
    /// session ends, unless its `mfa_process` renews the session by itself.
    fn note_use(&self, device: &Device, role: &RoleSpec) {
        if role.config.mfa_process.is_none() {
            self.attention
                .session_used(&reminder_key(device), &role.name);
        }
    }

    /// Reads the MFA sessions a previous run kept (at start).
    pub fn restore_mfa_sessions(&self) {
        let Some(path) = self.mfa_store_path() else {
            return;
        };
        for kept in mfa_store::load(&path) {
            let device = (kept.source, kept.serial);
            self.remind_before_end(&device, kept.session.expiration);
            self.grants().sessions.insert(
                device,
                Grant {
                    session: kept.session,
                    source_key_id: kept.source_key_id,
                    verified: false,
                },
            );
        }
    }

    /// Drops every MFA session and pending code (`assumed mfa --forget`),
    /// here and on disk; how many sessions there were.
    pub fn forget_mfa(&self) -> Result<usize, String> {
        let dropped: Vec<Device> = {
            let mut grants = self.grants();
            grants.codes.clear();
            grants.sessions.drain().map(|(device, _)| device).collect()
        };
        for device in &dropped {
            self.attention.session_ended(&reminder_key(device));
        }
        if let Some(path) = self.mfa_store_path() {
            mfa_store::save(&path, &[])
                .map_err(|error| format!("cannot remove {}: {error}", path.display()))?;
        }
        Ok(dropped.len())
    }

    fn mfa_store_path(&self) -> Option<PathBuf> {
        mfa_store::path(&self.source())
    }

    /// After a reload changed where sessions are kept (`remember_mfa`,
    /// `mfa_session_file`): they are written where `[source]` now says, and
    /// the file `old` named is emptied, so no session stays on disk where
    /// the user no longer expects one.
    pub(super) fn move_mfa_store(&self, old: &SourceConfig) {
        let before = mfa_store::path(old);
        if before == self.mfa_store_path() {
            return;
        }
        if let Some(path) = before {
            if let Err(error) = mfa_store::save(&path, &[]) {
                tracing::warn!(file = %path.display(), "cannot empty the old MFA session file: {error}");
            }
        }
        self.keep_sessions();
    }

    /// Writes the current sessions out; a failure costs only a code after
    /// the next restart, so it is a warning.
    fn keep_sessions(&self) {
        let Some(path) = self.mfa_store_path() else {
            return;
        };
        let kept: Vec<Kept> = self
            .grants()
            .sessions
            .iter()
            .map(|((source, serial), grant)| Kept {
                source: source.clone(),
                serial: serial.clone(),
                source_key_id: grant.source_key_id.clone(),
                session: grant.session.clone(),
            })
            .collect();
        if let Err(error) = mfa_store::save(&path, &kept) {
            tracing::warn!(file = %path.display(), "cannot keep the MFA sessions: {error}");
        }
    }
}

fn reminder_key((source, serial): &Device) -> String {
    format!("mfa {} {serial}", mfa_store::source_id(source))
}
