//! The shared secret that credential requests must present.
//!
//! SDKs read it from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` on every fetch
//! and send it raw in `Authorization`. The file therefore holds exactly the
//! token: visible ASCII and no trailing newline (botocore, Go and Rust reject
//! a header value with CR/LF). It lives in a 0700 directory, mode 0600, and is
//! replaced atomically so a reader never sees half a token.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// 256 bits of randomness, hex-encoded.
const TOKEN_BYTES: usize = 32;
const TOKEN_FILE_NAME: &str = "token";

#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    pub fn generate() -> io::Result<Token> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Token(hex::encode(bytes)))
    }

    /// Constant-time comparison with what a client presented. Length is not
    /// secret (every token has the same length), the content is.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        if ours.len() != presented.len() {
            return false;
        }
        // Eight bytes at a time, every byte looked at, one test at the end:
        // no early exit, like `subtle`'s byte loop, at a fraction of its
        // instructions on the path every credential request takes.
        let mut difference = 0u64;
        let mut ours_words = ours.chunks_exact(8);
        let mut presented_words = presented.chunks_exact(8);
        for (a, b) in (&mut ours_words).zip(&mut presented_words) {
            difference |= word(a) ^ word(b);
        }
        for (a, b) in ours_words
            .remainder()
            .iter()
            .zip(presented_words.remainder())
        {
            difference |= u64::from(a ^ b);
        }
        std::hint::black_box(difference) == 0
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn parse(text: &str) -> Option<Token> {
        let valid = text.len() >= 16 && text.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Token(text.to_owned()))
    }
}

/// Where the token lives unless the config says otherwise.
pub fn default_path() -> PathBuf {
    runtime_dir().join(TOKEN_FILE_NAME)
}

/// Where the token is: `[server] token_file`, or the runtime dir's default.
pub fn path(config: &Config) -> PathBuf {
    config
        .server
        .token_file
        .clone()
        .unwrap_or_else(default_path)
}

/// The user's private directory for what lives as long as the login: the
/// user's runtime directory (`$XDG_RUNTIME_DIR/assumed`, a tmpfs cleared at
/// logout under systemd), or a per-user directory under the temp dir where
/// there is none (macOS).
pub fn runtime_dir() -> PathBuf {
    directories::BaseDirs::new()
        .and_then(|dirs| dirs.runtime_dir().map(|dir| dir.join("assumed")))
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("assumed-{uid}"))
        })
}

/// The token the daemon serves with. A fresh one is written at `path` on
/// every start, unless `keep_existing` (a configured `token_file`) and the
/// file already holds a valid token, which is then reused: a compose stack or
/// a wrapper may have handed it out already.
pub fn install(path: &Path, keep_existing: bool) -> io::Result<Token> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    if keep_existing {
        if let Some(token) = read_existing(path)? {
            return Ok(token);
        }
    }
    let token = Token::generate()?;
    write_atomically(path, token.expose().as_bytes())?;
    Ok(token)
}

/// A reload's new token file: the token it already holds, when it holds a
/// valid one (as a restart takes it: a compose stack may have handed it
/// out), else `current` written there, so clients keep the token they have.
pub fn move_to(path: &Path, current: &Token) -> io::Result<Token> {
    let dir = path.parent().unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    if let Some(token) = read_existing(path)? {
        return Ok(token);
    }
    write_atomically(path, current.expose().as_bytes())?;
    Ok(current.clone())
}

/// Reads the token a running daemon wrote (for `env`/`exec`).
pub fn read(path: &Path) -> io::Result<Token> {
    let text = fs::read_to_string(path)?;
    Token::parse(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold a valid token", path.display()),
        )
    })
}

fn read_existing(path: &Path) -> io::Result<Option<Token>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    refuse_if_shared(path, &metadata, 0o077)?;
    read(path).map(Some)
}

/// Creates `dir` 0700, or checks that an existing one is ours and private.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let metadata = fs::metadata(dir)?;
    refuse_if_shared(dir, &metadata, 0o077)
}

pub(crate) fn refuse_if_shared(
    path: &Path,
    metadata: &fs::Metadata,
    forbidden: u32,
) -> io::Result<()> {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if metadata.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} belongs to another user", path.display()),
        ));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & forbidden != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is accessible to other users (mode {mode:03o}); run: chmod go-rwx {}",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Writes `contents` 0600 through a temporary file and a rename, so a reader
/// never sees half a file.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temp, path)
}

/// Eight bytes as one word (`chunks_exact(8)` guarantees the length).
fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("assumed-token-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_tokens_are_long_hex_and_distinct() {
        let a = Token::generate().expect("token");
        let b = Token::generate().expect("token");
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn matches_only_the_exact_token() {
        let token = Token::generate().expect("token");
        assert!(token.matches(token.expose().as_bytes()));
        assert!(!token.matches(b""));
        assert!(!token.matches(format!("{}\n", token.expose()).as_bytes()));
        assert!(!token.matches(&token.expose().as_bytes()[1..]));
    }

    #[test]
    fn installed_file_is_private_and_has_no_newline() {
        let dir = scratch_dir("install");
        let path = dir.join("token");
        let token = install(&path, false).expect("install");
        let written = fs::read(&path).expect("read");
        assert_eq!(written, token.expose().as_bytes());
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
        let again = install(&path, false).expect("install again");
        assert_ne!(again.expose(), token.expose(), "a fresh token per start");
        let kept = install(&path, true).expect("keep");
        assert_eq!(
            kept.expose(),
            again.expose(),
            "a configured token file is reused"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn refuses_a_directory_others_can_read() {
        let dir = scratch_dir("shared");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let error = install(&dir.join("token"), false).expect_err("must refuse");
        assert!(
            error.to_string().contains("accessible to other users"),
            "{error}"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn debug_hides_the_token() {
        let token = Token::generate().expect("token");
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
