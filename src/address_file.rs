//! Where the running daemon listens, in a small file beside its token in
//! the runtime dir (`$XDG_RUNTIME_DIR/assumed/daemon.json`): its main
//! listeners as bound (socket activation and port 0 included), its token
//! file, the config file it reloads from, and its pid. CLI commands that talk
//! to the daemon read it instead of the config, so a config that no longer
//! parses does not hide the daemon — nor its own answer to `reload`, which
//! names the broken line.
//!
//! The file is always in the runtime dir, even with a configured
//! `token_file` elsewhere: it is how the CLI finds that token without the
//! config. Written 0600 in the 0700 dir, through a temporary file and a
//! rename, once the listeners are bound; removed at a clean shutdown if it
//! is still the one this daemon wrote (a daemon started since, sharing the
//! runtime dir, may have replaced it). A daemon that was killed leaves its
//! file behind: readers take it only when the daemon it names answers
//! (`daemon_client`).

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::token;

const FILE_NAME: &str = "daemon.json";

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressFile {
    pub pid: u32,
    /// The main listeners (not `imds_listen` ones), first as in `listen`.
    pub listen: Vec<SocketAddr>,
    pub token_file: PathBuf,
    /// The config file the daemon reads ([`canonical`]), `None` on built-in defaults.
    pub config: Option<PathBuf>,
}

/// The file in this user's runtime dir.
pub fn path() -> PathBuf {
    token::runtime_dir().join(FILE_NAME)
}

/// The file this daemon wrote; dropping it removes the file if it still
/// holds what this daemon wrote.
#[derive(Debug)]
pub struct Published {
    path: PathBuf,
    contents: Vec<u8>,
}

impl Drop for Published {
    fn drop(&mut self) {
        // Read-compare-remove is not atomic: a daemon that starts in that
        // instant loses its file, and the CLI falls back to the config.
        if fs::read(&self.path).is_ok_and(|now| now == self.contents) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes the file for a daemon serving `config` with its token at
/// `token_file`, its main listeners bound at `listen` (again after a reload
/// moved them). A file that cannot be written costs only the lookup, so it
/// is a warning, not a reason to stop serving.
pub fn publish(config: &Config, token_file: &Path, listen: Vec<SocketAddr>) -> Option<Published> {
    let file = AddressFile {
        pid: std::process::id(),
        listen,
        // As configured (doctor names it), only made independent of our cwd.
        token_file: std::path::absolute(token_file).unwrap_or_else(|_| token_file.to_owned()),
        config: config.path.as_deref().map(canonical),
    };
    let path = path();
    match write(&path, &file) {
        Ok(contents) => Some(Published { path, contents }),
        Err(error) => {
            tracing::warn!(
                file = %path.display(),
                "cannot write where the daemon listens ({error}); CLI commands will find it through the config only"
            );
            None
        }
    }
}

fn write(path: &Path, file: &AddressFile) -> io::Result<Vec<u8>> {
    let contents = serde_json::to_vec(file)?;
    token::ensure_private_dir(path.parent().unwrap_or(Path::new(".")))?;
    token::write_atomically(path, &contents)?;
    Ok(contents)
}

/// The file, when there is one; an error when it is there but not to be
/// trusted (not ours, open to others, not what a daemon writes).
pub fn read() -> io::Result<Option<AddressFile>> {
    read_at(&path())
}

fn read_at(path: &Path) -> io::Result<Option<AddressFile>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    // Whoever can write it could send our token to an address of theirs.
    token::refuse_if_shared(path, &metadata, 0o022)?;
    if let Some(dir) = path.parent() {
        token::refuse_if_shared(dir, &fs::metadata(dir)?, 0o022)?;
    }
    let file = serde_json::from_slice(&fs::read(path)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a daemon address file: {e}", path.display()),
        )
    })?;
    Ok(Some(file))
}

/// `path` the same however it was named (relative, through a link), so a
/// CLI can tell whether it names the daemon's config; canonical when it exists.
pub fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    fn sample() -> AddressFile {
        AddressFile {
            pid: 42,
            listen: vec!["127.0.0.1:9911".parse().expect("address")],
            token_file: "/run/user/1000/assumed/token".into(),
            config: None,
        }
    }

    #[test]
    fn written_private_and_read_back() {
        let dir = scratch();
        let path = dir.path().join("assumed").join(FILE_NAME);
        write(&path, &sample()).expect("write");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_at(&path).expect("read"), Some(sample()));
        assert_eq!(read_at(&dir.path().join("none")).expect("read"), None);
    }

    #[test]
    fn a_file_others_may_write_is_refused() {
        let dir = scratch();
        let path = dir.path().join(FILE_NAME);
        write(&path, &sample()).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o622)).expect("chmod");
        assert!(read_at(&path).is_err());
    }

    #[test]
    fn dropping_removes_only_the_file_this_daemon_wrote() {
        let dir = scratch();
        let path = dir.path().join(FILE_NAME);
        let contents = write(&path, &sample()).expect("write");
        drop(Published {
            path: path.clone(),
            contents: contents.clone(),
        });
        assert!(!path.exists(), "ours: removed");

        let theirs = AddressFile {
            pid: 43,
            ..sample()
        };
        write(&path, &theirs).expect("write");
        drop(Published {
            path: path.clone(),
            contents,
        });
        assert_eq!(
            read_at(&path).expect("read"),
            Some(theirs),
            "replaced: kept"
        );
    }
}
