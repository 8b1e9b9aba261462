//! Long-term keys written in plain text in the shared credentials file
//! (`~/.aws/credentials`): found with their byte ranges, so that `keys
//! import --remove-plaintext` can take out exactly those two lines and leave
//! every other byte as it was, and `doctor` can name file:line.
//!
//! The file is read the way the SDKs read it: `[name]` sections (trimmed),
//! `key = value` lines with the key compared without case (botocore lowers
//! option names), `#`/`;` comment lines, a value cut at an inline comment
//! (whitespace then `#` or `;`, as aws-config does), `\n` or `\r\n` line
//! ends. A profile named twice is one profile, later lines winning.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub const KEY_ID: &str = "aws_access_key_id";
pub const SECRET: &str = "aws_secret_access_key";
pub const SESSION_TOKEN: &str = "aws_session_token";

/// One `key = value` line of a profile.
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based.
    pub number: usize,
    /// The whole line with its line end, as bytes of the file.
    pub bytes: Range<usize>,
    pub value: Zeroizing<String>,
}

/// What the credentials file holds for one profile: the lines of the three
/// settings that make it a key (each possibly written more than once).
#[derive(Clone, Default)]
pub struct ProfileKeys {
    pub profile: String,
    /// The line of the profile's (first) `[name]` header.
    pub header_line: usize,
    pub key_id: Vec<Line>,
    pub secret: Vec<Line>,
    pub session_token: Vec<Line>,
}

impl ProfileKeys {
    /// Long-term keys: a key id and a secret, and no session token.
    pub fn is_long_term(&self) -> bool {
        !self.key_id.is_empty() && !self.secret.is_empty() && self.session_token.is_empty()
    }

    /// The line `doctor` points at: the key id's (the first one written).
    pub fn line(&self) -> usize {
        self.key_id
            .first()
            .or(self.secret.first())
            .map(|l| l.number)
            .unwrap_or(self.header_line)
    }
}

/// Every profile of `text` that sets any of the three, in file order.
pub fn scan(text: &[u8]) -> Vec<ProfileKeys> {
    let mut profiles: Vec<ProfileKeys> = Vec::new();
    let mut current: Option<usize> = None;
    let mut start = 0;
    let mut number = 0;
    while start < text.len() {
        number += 1;
        let end = memchr::memchr(b'\n', &text[start..])
            .map(|i| start + i + 1)
            .unwrap_or(text.len());
        let line = String::from_utf8_lossy(&text[start..end]);
        let trimmed = line.trim();
        let range = start..end;
        start = end;
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.split_once(']')) {
            let name = header.0.trim().to_owned();
            current = Some(match profiles.iter().position(|p| p.profile == name) {
                Some(index) => index,
                None => {
                    profiles.push(ProfileKeys {
                        profile: name,
                        header_line: number,
                        ..ProfileKeys::default()
                    });
                    profiles.len() - 1
                }
            });
            continue;
        }
        // An indented line continues the setting above (`s3 =` blocks).
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let (Some(index), Some((key, value))) = (current, trimmed.split_once('=')) else {
            continue;
        };
        let value = Zeroizing::new(strip_inline_comment(value.trim()).to_owned());
        let found = Line {
            number,
            bytes: range,
            value,
        };
        let profile = &mut profiles[index];
        match key.trim().to_ascii_lowercase().as_str() {
            KEY_ID => profile.key_id.push(found),
            SECRET => profile.secret.push(found),
            SESSION_TOKEN => profile.session_token.push(found),
            _ => {}
        }
    }
    profiles
        .retain(|p| !(p.key_id.is_empty() && p.secret.is_empty() && p.session_token.is_empty()));
    profiles
}

fn strip_inline_comment(value: &str) -> &str {
    let bytes = value.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if (*b == b'#' || *b == b';') && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            return value[..i].trim_end();
        }
    }
    value
}

/// The key id and secret `profile` holds, with the lines that hold them:
/// what `keys import` moves. An error (never quoting a value) when the
/// profile has no such keys, has a session token (temporary credentials,
/// not long-term keys), or sets one of them twice to different values.
pub fn long_term_keys(text: &[u8], profile: &str, path: &Path) -> Result<Found, String> {
    let shown = path.display();
    let Some(keys) = scan(text).into_iter().find(|p| p.profile == profile) else {
        return Err(format!(
            "{shown} has no keys for profile [{profile}] (aws_access_key_id and aws_secret_access_key)"
        ));
    };
    if let Some(token) = keys.session_token.first() {
        return Err(format!(
            "{shown}:{}: profile [{profile}] holds a session token: these are temporary \
             credentials, not long-term keys, and there is nothing to move (they expire by themselves)",
            token.number
        ));
    }
    let key_id = single(&keys, &keys.key_id, KEY_ID, &shown)?;
    let secret = single(&keys, &keys.secret, SECRET, &shown)?;
    if key_id.is_empty() || secret.is_empty() {
        return Err(format!(
            "{shown}: profile [{profile}] has an empty {}",
            if key_id.is_empty() { KEY_ID } else { SECRET }
        ));
    }
    let lines = keys.key_id.iter().chain(&keys.secret).cloned().collect();
    Ok(Found {
        access_key_id: key_id.to_string(),
        secret_access_key: Zeroizing::new(secret.to_string()),
        lines,
    })
}

/// The one value of `key`, however many times it is written.
fn single<'a>(
    keys: &ProfileKeys,
    lines: &'a [Line],
    key: &str,
    shown: &std::path::Display<'_>,
) -> Result<&'a str, String> {
    let profile = &keys.profile;
    let Some(first) = lines.first() else {
        return Err(format!(
            "{shown}:{}: profile [{profile}] has no {key}",
            keys.header_line
        ));
    };
    if lines.iter().any(|l| l.value != first.value) {
        let numbers: Vec<String> = lines.iter().map(|l| l.number.to_string()).collect();
        return Err(format!(
            "{shown}: profile [{profile}] sets {key} more than once, differently (lines {}): \
             keep the one in use, then import again",
            numbers.join(", ")
        ));
    }
    Ok(first.value.as_str())
}

/// A profile's long-term keys and every line that holds them.
pub struct Found {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub lines: Vec<Line>,
}

/// `text` without `lines`: every other byte as it was.
pub fn without(text: &[u8], lines: &[Line]) -> Zeroizing<Vec<u8>> {
    let mut ranges: Vec<&Range<usize>> = lines.iter().map(|l| &l.bytes).collect();
    ranges.sort_by_key(|r| r.start);
    let mut out = Zeroizing::new(Vec::with_capacity(text.len()));
    let mut at = 0;
    for range in ranges {
        if range.start >= at {
            out.extend_from_slice(&text[at..range.start]);
            at = range.end;
        }
    }
    out.extend_from_slice(&text[at..]);
    out
}

/// The file a path names, through symbolic links (a dotfile manager's
/// link stays a link; its target is what is rewritten).
pub fn real_path(path: &Path) -> io::Result<PathBuf> {
    fs::canonicalize(path)
}

/// Replaces `path` (a real file, not a link) with `contents`, keeping its
/// mode and owner: written to a new file beside it, synced, renamed over
/// it, and the directory synced. `expected` is what the file must still
/// hold: a file changed since it was read is left alone. No other copy is
/// made; a failure removes the new file.
pub fn replace(path: &Path, expected: &[u8], contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("the credentials file has no directory"))?;
    let metadata = fs::metadata(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.assumed-{}", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        // The owner first (a no-op for one's own file), then the mode: a
        // chown may clear set-id bits, never widen access.
        let _ = std::os::unix::fs::fchown(&file, Some(metadata.uid()), Some(metadata.gid()));
        file.set_permissions(fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        let now = Zeroizing::new(fs::read(path)?);
        if now.as_slice() != expected {
            return Err(io::Error::other(
                "the file changed while it was being rewritten; nothing was changed, run the command again",
            ));
        }
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# my keys\n\
[default]\n\
aws_access_key_id=AKIADEFAULT\n\
aws_secret_access_key = secretDEFAULT  # inline\n\
region = eu-west-1\n\
\n\
[ work ]\r\n\
; old\r\n\
AWS_ACCESS_KEY_ID =   AKIAWORK\r\n\
aws_secret_access_key\t=\tsecretWORK\r\n\
\r\n\
[temp]\n\
aws_access_key_id = ASIATEMP\n\
aws_secret_access_key = secretTEMP\n\
aws_session_token = tokenTEMP\n\
[last]\n\
aws_secret_access_key = secretLAST\n\
aws_access_key_id = AKIALAST";

    #[test]
    fn finds_every_profile_with_keys_and_their_lines() {
        let profiles = scan(FILE.as_bytes());
        let names: Vec<&str> = profiles.iter().map(|p| p.profile.as_str()).collect();
        assert_eq!(names, ["default", "work", "temp", "last"]);
        assert!(profiles[0].is_long_term());
        assert_eq!(profiles[0].line(), 3);
        assert_eq!(profiles[0].secret[0].value.as_str(), "secretDEFAULT");
        assert_eq!(profiles[1].key_id[0].value.as_str(), "AKIAWORK");
        assert_eq!(profiles[1].line(), 9);
        assert!(!profiles[2].is_long_term(), "a session token is temporary");
        assert_eq!(profiles[3].line(), 18);
    }

    #[test]
    fn removing_leaves_every_other_byte() {
        let path = Path::new("credentials");
        for (profile, expected) in [
            ("default", FILE.replace("aws_access_key_id=AKIADEFAULT\naws_secret_access_key = secretDEFAULT  # inline\n", "")),
            ("work", FILE.replace("AWS_ACCESS_KEY_ID =   AKIAWORK\r\naws_secret_access_key\t=\tsecretWORK\r\n", "")),
            ("last", FILE.replace("aws_secret_access_key = secretLAST\naws_access_key_id = AKIALAST", "")),
        ] {
            let found = long_term_keys(FILE.as_bytes(), profile, path).expect("keys");
            assert_eq!(found.lines.len(), 2);
            let rewritten = without(FILE.as_bytes(), &found.lines);
            assert_eq!(String::from_utf8_lossy(&rewritten), expected, "{profile}");
        }
    }

    #[test]
    fn refuses_what_is_not_long_term_keys_without_quoting_values() {
        let path = Path::new("c");
        let error = long_term_keys(FILE.as_bytes(), "temp", path)
            .err()
            .expect("refused");
        assert!(error.contains("session token"), "{error}");
        assert!(!error.contains("tokenTEMP") && !error.contains("secretTEMP"));
        let error = long_term_keys(FILE.as_bytes(), "nope", path)
            .err()
            .expect("refused");
        assert!(error.contains("no keys for profile [nope]"), "{error}");
        let twice = "[a]\naws_access_key_id = A\naws_secret_access_key = s1\n[a]\naws_secret_access_key = s2\n";
        let error = long_term_keys(twice.as_bytes(), "a", path)
            .err()
            .expect("refused");
        assert!(
            error.contains("lines 3, 5") && !error.contains("s1"),
            "{error}"
        );
        let same = "[a]\naws_access_key_id = A\naws_secret_access_key = s1\n[a]\naws_secret_access_key = s1\n";
        let found = long_term_keys(same.as_bytes(), "a", path).expect("one value");
        assert_eq!(found.lines.len(), 3);
        assert_eq!(&*without(same.as_bytes(), &found.lines), b"[a]\n[a]\n");
    }

    #[test]
    fn a_linked_file_is_rewritten_where_the_link_points() {
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("dotfiles-credentials");
        let link = dir.path().join("credentials");
        fs::write(&target, FILE).expect("write");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        let found = long_term_keys(FILE.as_bytes(), "work", &link).expect("keys");
        let real = real_path(&link).expect("resolved");
        replace(
            &real,
            FILE.as_bytes(),
            &without(FILE.as_bytes(), &found.lines),
        )
        .expect("replace");
        assert!(
            fs::symlink_metadata(&link)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        let now = fs::read_to_string(&link).expect("read");
        assert!(!now.contains("secretWORK") && now.contains("secretDEFAULT"));
    }

    #[test]
    fn replace_keeps_the_mode_and_leaves_no_other_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("credentials");
        fs::write(&path, FILE).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        replace(&path, FILE.as_bytes(), b"[default]\n").expect("replace");
        assert_eq!(fs::read(&path).expect("read"), b"[default]\n");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["credentials"]);
        let error = replace(&path, b"something else", b"x").expect_err("changed under us");
        assert!(error.to_string().contains("changed"), "{error}");
        assert_eq!(fs::read(&path).expect("read"), b"[default]\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["credentials"]);
    }
}
