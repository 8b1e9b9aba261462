//! MFA sessions kept across daemon restarts, so an upgrade, a crash or a
//! restarted service does not ask for a code again.
//!
//! They are written 0600 into the daemon's 0700 runtime directory
//! (`$XDG_RUNTIME_DIR/assumed`, a tmpfs cleared at logout under systemd).
//! Where the system has no runtime directory (macOS), nothing is written
//! unless `[source] mfa_session_file` names a place: an MFA session is a
//! bearer credential, and a persistent disk outlives the login.
//!
//! A file that another user owns, or that others could read, is refused
//! with a warning (and left alone): something is wrong, and its sessions
//! may not be ours. Expired sessions are dropped on reading.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::sources::SourceKey;
use crate::config::SourceConfig;
use crate::credentials::{Issued, Secret};

const FILE_NAME: &str = "mfa-sessions.json";

/// One MFA session, with what it belongs to.
#[derive(Clone, Debug)]
pub struct Kept {
    /// The shared source whose keys opened it.
    pub source: SourceKey,
    pub serial: String,
    /// The access key id of the long-lived keys that opened the session: a
    /// session is only reused for the same keys.
    pub source_key_id: String,
    pub session: Issued,
}

/// Where MFA sessions are kept, if anywhere.
pub fn path(source: &SourceConfig) -> Option<PathBuf> {
    if source.remember_mfa == Some(false) {
        return None;
    }
    source.mfa_session_file.clone().or_else(default_path)
}

/// `$XDG_RUNTIME_DIR/assumed/mfa-sessions.json`; none without a runtime directory.
fn default_path() -> Option<PathBuf> {
    let dirs = directories::BaseDirs::new()?;
    Some(dirs.runtime_dir()?.join("assumed").join(FILE_NAME))
}

/// A source as the file names it: `profile:NAME`, `default-chain`,
/// `environment`, `ec2-instance-metadata`, `ecs-container`.
pub fn source_id(source: &SourceKey) -> String {
    match source {
        SourceKey::Profile(name) => format!("profile:{name}"),
        SourceKey::DefaultChain => "default-chain".into(),
        SourceKey::Environment => "environment".into(),
        SourceKey::Ec2InstanceMetadata => "ec2-instance-metadata".into(),
        SourceKey::EcsContainer => "ecs-container".into(),
        SourceKey::Keys(name) => format!("keys:{name}"),
    }
}

fn parse_source_id(id: &str) -> Option<SourceKey> {
    Some(match id {
        "default-chain" => SourceKey::DefaultChain,
        "environment" => SourceKey::Environment,
        "ec2-instance-metadata" => SourceKey::Ec2InstanceMetadata,
        "ecs-container" => SourceKey::EcsContainer,
        other => match other.strip_prefix("keys:") {
            Some(name) => SourceKey::Keys(name.to_owned()),
            None => SourceKey::Profile(other.strip_prefix("profile:")?.to_owned()),
        },
    })
}

#[derive(Serialize, Deserialize)]
struct Entry {
    /// [`source_id`].
    source: String,
    serial: String,
    source_key_id: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// Seconds since the epoch.
    expiration: u64,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u8,
    sessions: Vec<Entry>,
}

/// The sessions kept at `path` that have not ended; none (with a warning)
/// when the file cannot be trusted or read.
pub fn load(path: &Path) -> Vec<Kept> {
    match read(path) {
        Ok(kept) => {
            if !kept.is_empty() {
                tracing::info!(file = %path.display(), sessions = kept.len(), "MFA sessions restored");
            }
            kept
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            tracing::warn!(
                file = %path.display(),
                "not using the kept MFA sessions: {error}"
            );
            Vec::new()
        }
    }
}

fn read(path: &Path) -> io::Result<Vec<Kept>> {
    let metadata = fs::symlink_metadata(path)?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not a regular file",
        ));
    }
    crate::token::refuse_if_shared(path, &metadata, 0o077)?;
    let text = fs::read(path)?;
    let file: File = serde_json::from_slice(&text).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is not an MFA session file (line {})", error.line()),
        )
    })?;
    if file.version != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("version {} is unknown", file.version),
        ));
    }
    let now = SystemTime::now();
    Ok(file
        .sessions
        .into_iter()
        .filter_map(|entry| {
            Some(Kept {
                source: parse_source_id(&entry.source)?,
                serial: entry.serial,
                source_key_id: entry.source_key_id,
                session: Issued {
                    access_key_id: entry.access_key_id,
                    secret_access_key: Secret::new(entry.secret_access_key),
                    session_token: Secret::new(entry.session_token),
                    expiration: UNIX_EPOCH + Duration::from_secs(entry.expiration),
                    role_arn: String::new(),
                    account_id: String::new(),
                },
            })
        })
        .filter(|kept| kept.session.expiration > now)
        .collect())
}

/// Writes `sessions` to `path` (0600, atomically, in a 0700 directory); no
/// sessions: the file is removed.
pub fn save(path: &Path, sessions: &[Kept]) -> io::Result<()> {
    if sessions.is_empty() {
        return match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        };
    }
    if let Some(dir) = path.parent() {
        crate::token::ensure_private_dir(dir)?;
    }
    let file = File {
        version: 1,
        sessions: sessions
            .iter()
            .map(|kept| Entry {
                source: source_id(&kept.source),
                serial: kept.serial.clone(),
                source_key_id: kept.source_key_id.clone(),
                access_key_id: kept.session.access_key_id.clone(),
                secret_access_key: kept.session.secret_access_key.expose().to_owned(),
                session_token: kept.session.session_token.expose().to_owned(),
                expiration: kept
                    .session
                    .expiration
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            })
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(io::Error::other)?;
    crate::token::write_atomically(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn kept(serial: &str, lasts: Duration) -> Kept {
        Kept {
            source: SourceKey::Profile("src".into()),
            serial: serial.into(),
            source_key_id: "AKIASOURCE".into(),
            session: Issued {
                access_key_id: "ASIAMFA".into(),
                secret_access_key: Secret::new("secret"),
                session_token: Secret::new("token"),
                expiration: SystemTime::now() + lasts,
                role_arn: String::new(),
                account_id: String::new(),
            },
        }
    }

    #[test]
    fn sessions_come_back_as_written_and_ended_ones_do_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("run/assumed").join(FILE_NAME);
        let sessions = [
            kept("arn:aws:iam::111111111111:mfa/a", Duration::from_secs(3600)),
            kept("arn:aws:iam::111111111111:mfa/b", Duration::ZERO),
        ];
        save(&path, &sessions).expect("save");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        let back = load(&path);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].serial, "arn:aws:iam::111111111111:mfa/a");
        assert_eq!(back[0].source, SourceKey::Profile("src".into()));
        assert_eq!(back[0].session.session_token.expose(), "token");
        save(&path, &[]).expect("forget");
        assert!(!path.exists());
        save(&path, &[]).expect("forgetting nothing is fine");
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("private").join(FILE_NAME);
        save(&path, &[kept("GAHT12345678", Duration::from_secs(3600))]).expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = read(&path).expect_err("refused");
        assert!(error.to_string().contains("mode 644"), "{error}");
        assert!(load(&path).is_empty());
        assert!(path.exists(), "left for the user to look at");
    }

    #[test]
    fn sources_are_named_and_read_back() {
        for key in [
            SourceKey::Profile("a:b".into()),
            SourceKey::DefaultChain,
            SourceKey::Environment,
            SourceKey::Ec2InstanceMetadata,
            SourceKey::EcsContainer,
            SourceKey::Keys("alice".into()),
        ] {
            assert_eq!(parse_source_id(&source_id(&key)), Some(key));
        }
        assert_eq!(parse_source_id("nonsense"), None);
    }

    #[test]
    fn garbage_is_no_sessions() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(FILE_NAME);
        crate::token::write_atomically(&path, b"not json").expect("write");
        assert!(load(&path).is_empty());
    }

    #[test]
    fn no_file_without_a_runtime_dir_or_when_turned_off() {
        let mut source = SourceConfig {
            mfa_session_file: Some("/x/sessions.json".into()),
            ..SourceConfig::default()
        };
        assert_eq!(path(&source), Some(PathBuf::from("/x/sessions.json")));
        source.remember_mfa = Some(false);
        assert_eq!(path(&source), None);
    }
}
