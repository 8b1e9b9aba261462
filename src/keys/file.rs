//! The encrypted file keyring: every key in one file, `keys.age` in the
//! user's data directory (`[source] keyring_file` elsewhere), for machines
//! with no Secret Service or Keychain (servers, WSL, containers).
//!
//! The file is an ordinary age file encrypted to a passphrase (age's scrypt
//! recipient: scrypt derives the key that wraps the file key, the header is
//! MACed and the payload is ChaCha20-Poly1305, so a wrong passphrase or a
//! changed byte is an error, never garbage). `age -d keys.age` opens it too.
//! Inside is JSON, `{"v":1,"keys":{NAME: record}}`, each record the bytes of
//! `record::encode`; every plaintext buffer is a `Zeroizing` one.
//!
//! The passphrase comes from `passphrase_file`, else systemd's
//! `$CREDENTIALS_DIRECTORY/assumed-keyring` (`LoadCredential=`), else a
//! prompt on the terminal, which only [`Backend::unlock`] shows (it has the
//! long deadline a person typing needs): until then the keyring is `Locked`
//! and says the three ways. A missing file is an empty keyring (`list`,
//! `read`, `delete` need no passphrase for it); the first `write` creates it.
//!
//! Writes are atomic (a temporary file in the same directory, fsync, rename,
//! fsync of the directory) under an exclusive lock on the directory, so two
//! `keys add` at once both land; the file is 0600 when created (its
//! directory 0700) and keeps its mode when replaced.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::{
    Backend, BackendKind, KeyInfo, KeyringError, KeyringSettings, LockState, StoredKey, record,
};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "keys.age";
/// The systemd credential (`LoadCredential=assumed-keyring:…`) that holds
/// the passphrase.
pub const CREDENTIAL_NAME: &str = "assumed-keyring";

/// scrypt's cost when writing, as log2(N) (r = 8, p = 1, age's): 2^17 is
/// OWASP's minimum for scrypt, 128 MiB and about half a second on a laptop
/// core. age itself aims at one second of the writing machine (2^18 or more:
/// 256 MiB); the daemon reads the file once at start (and at a reload) in a
/// process that otherwise needs a few MiB, often under a container's memory
/// limit, and a write costs a read and a write under the keyring's 5 s
/// deadline, so the fixed lower cost. The passphrase's length is the rest
/// of the protection: docs/keys.md asks for a long one.
pub const WORK_FACTOR: u8 = 17;
/// The most work a file may ask for when read: a file re-encrypted with
/// `age -p` on a fast machine (2^18–2^20) still opens; a file asking for
/// more (a corrupt or hostile header: 2^30 would be 128 GiB) is refused
/// rather than tried.
pub const MAX_WORK_FACTOR: u8 = 20;

pub struct FileBackend {
    path: PathBuf,
    passphrase_file: Option<PathBuf>,
    /// `$CREDENTIALS_DIRECTORY` when opened.
    credentials_dir: Option<PathBuf>,
    /// [`WORK_FACTOR`]; lower only in this module's tests.
    work_factor: u8,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// A passphrase typed at the prompt, kept for the backend's life so the
    /// person types it once.
    typed: Option<Zeroizing<String>>,
    /// The file as last read or written, and what it holds: a second call
    /// (the daemon's `read` of each name, `keys add`'s write after its read)
    /// costs no second scrypt while the file's bytes are the same.
    opened: Option<Opened>,
}

struct Opened {
    ciphertext: Vec<u8>,
    /// The passphrase that opened (or wrote) it.
    passphrase: Zeroizing<String>,
    keys: BTreeMap<String, StoredKey>,
}

impl FileBackend {
    pub fn open(settings: &KeyringSettings) -> Result<Self, KeyringError> {
        let path = match &settings.file {
            Some(path) => path.clone(),
            None => default_path().ok_or_else(|| KeyringError::Unavailable {
                backend: BackendKind::File,
                reason: "there is no data directory (no HOME?); set [source] keyring_file".into(),
            })?,
        };
        Ok(FileBackend {
            path,
            passphrase_file: settings.passphrase_file.clone(),
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY")
                .filter(|dir| !dir.is_empty())
                .map(PathBuf::from),
            work_factor: WORK_FACTOR,
            state: Mutex::new(State::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The passphrase from the passphrase file, systemd's credential or an
    /// earlier prompt; `None` if only a prompt could give it.
    fn passphrase_at_hand(&self, state: &State) -> Result<Option<Zeroizing<String>>, KeyringError> {
        if let Some(file) = &self.passphrase_file {
            return read_passphrase(file).map(Some);
        }
        if let Some(dir) = &self.credentials_dir {
            let file = dir.join(CREDENTIAL_NAME);
            if file.exists() {
                return read_passphrase(&file).map(Some);
            }
        }
        Ok(state.typed.clone())
    }

    fn locked(&self) -> KeyringError {
        KeyringError::Locked {
            backend: BackendKind::File,
            what_to_do: format!(
                "the passphrase of {} comes from --passphrase-file (or [source] \
                 keyring_passphrase_file), from systemd's LoadCredential={CREDENTIAL_NAME}:PATH, \
                 or from a prompt when run on a terminal",
                self.path.display()
            ),
        }
    }

    /// The file's keys, decrypted (or from the cache while its bytes are
    /// unchanged); `None` when there is no file.
    fn load<'s>(&self, state: &'s mut State) -> Result<Option<&'s Opened>, KeyringError> {
        let ciphertext = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                state.opened = None;
                return Ok(None);
            }
            Err(error) => return Err(self.failed(format!("cannot read it: {error}"))),
        };
        let passphrase = self
            .passphrase_at_hand(state)?
            .ok_or_else(|| self.locked())?;
        // The same bytes opened with the same passphrase: no second scrypt.
        // A passphrase that changed (a new passphrase file) must open the
        // file itself, or a write would re-encrypt it to an unchecked one.
        let fresh = state.opened.as_ref().is_some_and(|opened| {
            opened.ciphertext == ciphertext && opened.passphrase == passphrase
        });
        if !fresh {
            let plaintext = decrypt(&self.path, &ciphertext, &passphrase)?;
            let keys = parse(&plaintext).map_err(|reason| self.failed(reason))?;
            tracing::debug!(path = %self.path.display(), keys = keys.len(), "read the keyring file");
            state.opened = Some(Opened {
                ciphertext,
                passphrase,
                keys,
            });
        }
        Ok(state.opened.as_ref())
    }

    /// Reads, changes and rewrites the file under the directory's lock;
    /// `change` says whether there is anything to write.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, StoredKey>) -> (T, bool),
    ) -> Result<T, KeyringError> {
        let dir = self.dir();
        create_private_dir(&dir)
            .map_err(|e| self.failed(format!("cannot create {}: {e}", dir.display())))?;
        let _lock = DirLock::take(&dir)
            .map_err(|e| self.failed(format!("cannot lock {}: {e}", dir.display())))?;
        let mut state = self.state.lock();
        let mut keys = match self.load(&mut state)? {
            Some(opened) => opened.keys.clone(),
            None => BTreeMap::new(),
        };
        let (answer, changed) = change(&mut keys);
        if !changed {
            return Ok(answer);
        }
        let passphrase = self
            .passphrase_at_hand(&state)?
            .ok_or_else(|| self.locked())?;
        let plaintext = serialize(&keys);
        let ciphertext = encrypt(&plaintext, &passphrase, self.work_factor)
            .map_err(|e| self.failed(format!("cannot encrypt: {e}")))?;
        replace(&self.target(), &ciphertext)
            .map_err(|e| self.failed(format!("cannot write it: {e}")))?;
        tracing::debug!(path = %self.path.display(), keys = keys.len(), "wrote the keyring file");
        state.opened = Some(Opened {
            ciphertext,
            passphrase,
            keys,
        });
        Ok(answer)
    }

    fn dir(&self) -> PathBuf {
        match self.target().parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The file written: the link's target when the path is a symlink (a
    /// dotfiles checkout), so the link stays.
    fn target(&self) -> PathBuf {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone())
            }
            _ => self.path.clone(),
        }
    }

    fn failed(&self, what: String) -> KeyringError {
        KeyringError::Failed {
            backend: BackendKind::File,
            reason: format!("{}: {what}", self.path.display()),
        }
    }

    /// Asks on the terminal: once for an existing file (checked by opening
    /// it), twice for a new one (a typo would lock the keys away).
    fn prompt(&self, state: &mut State) -> Result<(), KeyringError> {
        let ask = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(Zeroizing::new)
                .map_err(|e| self.failed(format!("cannot read the passphrase: {e}")))
        };
        let path = self.path.display();
        if self.path.exists() {
            let typed = ask(&format!("Passphrase for {path}: "))?;
            state.typed = Some(typed);
            if let Err(error) = self.load(state) {
                state.typed = None;
                return Err(error);
            }
        } else {
            let typed = ask(&format!("New passphrase for {path}: "))?;
            if typed.is_empty() {
                return Err(self.failed("the passphrase is empty".into()));
            }
            let again = ask("The same passphrase again: ")?;
            if typed != again {
                return Err(self.failed("the two passphrases differ; nothing written".into()));
            }
            state.typed = Some(typed);
        }
        Ok(())
    }
}

impl Backend for FileBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::File
    }

    fn lock_state(&self) -> Result<LockState, KeyringError> {
        let state = self.state.lock();
        Ok(match self.passphrase_at_hand(&state)? {
            Some(_) => LockState::Unlocked,
            None => LockState::Locked,
        })
    }

    fn unlock(&self) -> Result<(), KeyringError> {
        let mut state = self.state.lock();
        if self.passphrase_at_hand(&state)?.is_some() {
            // Said to be unlocked: a wrong passphrase shows now, not later.
            return self.load(&mut state).map(|_| ());
        }
        if !io::stdin().is_terminal() {
            return Err(self.locked());
        }
        self.prompt(&mut state)
    }

    fn read(&self, name: &str) -> Result<Option<StoredKey>, KeyringError> {
        let mut state = self.state.lock();
        Ok(self
            .load(&mut state)?
            .and_then(|opened| opened.keys.get(name).cloned()))
    }

    fn write(&self, key: &StoredKey) -> Result<(), KeyringError> {
        self.update(|keys| {
            keys.insert(key.name.clone(), key.clone());
            ((), true)
        })
    }

    fn delete(&self, name: &str) -> Result<bool, KeyringError> {
        if !self.path.exists() {
            return Ok(false);
        }
        self.update(|keys| {
            let had = keys.remove(name).is_some();
            (had, had)
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyringError> {
        let mut state = self.state.lock();
        Ok(self
            .load(&mut state)?
            .map(|opened| {
                opened
                    .keys
                    .values()
                    .map(|key| key.info(BackendKind::File))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// `keys.age` in the data directory: `$XDG_DATA_HOME/assumed` on Linux,
/// `~/Library/Application Support/assumed` on macOS.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "assumed").map(|dirs| dirs.data_dir().join(FILE_NAME))
}

/// A passphrase file's contents without the line end an editor or `echo`
/// leaves (systemd's credentials keep the file's bytes as they are).
fn read_passphrase(file: &Path) -> Result<Zeroizing<String>, KeyringError> {
    let failed = |what: String| KeyringError::Failed {
        backend: BackendKind::File,
        reason: format!("the passphrase file {}: {what}", file.display()),
    };
    let bytes = Zeroizing::new(fs::read(file).map_err(|e| failed(format!("cannot read it: {e}")))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| failed("not UTF-8 text".into()))?;
    let text = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(failed("it is empty".into()));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

fn decrypt(
    path: &Path,
    ciphertext: &[u8],
    passphrase: &Zeroizing<String>,
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let failed = |what: String| KeyringError::Failed {
        backend: BackendKind::File,
        reason: format!("{}: {what}", path.display()),
    };
    let decryptor = age::Decryptor::new_buffered(ciphertext)
        .map_err(|e| failed(format!("not an age file ({e})")))?;
    if !decryptor.is_scrypt() {
        return Err(failed(
            "encrypted to age recipients, not to a passphrase".into(),
        ));
    }
    let mut identity = age::scrypt::Identity::new(SecretString::from(passphrase.as_str()));
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|error| match error {
            age::DecryptError::DecryptionFailed => KeyringError::WrongPassphrase {
                path: path.display().to_string(),
            },
            age::DecryptError::ExcessiveWork { required, .. } => failed(format!(
                "it asks for scrypt work 2^{required}, more than the 2^{MAX_WORK_FACTOR} allowed"
            )),
            other => failed(format!("damaged or changed ({other})")),
        })?;
    // Room for all of it up front: a growing Vec would leave copies of the
    // plaintext behind in the memory it moves out of.
    let mut plaintext = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .read_to_end(&mut plaintext)
        .map_err(|_| failed("damaged or changed (the contents do not authenticate)".into()))?;
    Ok(plaintext)
}

fn encrypt(
    plaintext: &[u8],
    passphrase: &Zeroizing<String>,
    work_factor: u8,
) -> io::Result<Vec<u8>> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.as_str()));
    recipient.set_work_factor(work_factor);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(io::Error::other)?;
    let mut ciphertext = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor.wrap_output(&mut ciphertext)?;
    writer.write_all(plaintext)?;
    writer.finish()?;
    Ok(ciphertext)
}

#[derive(Deserialize)]
struct Contents<'a> {
    v: u32,
    #[serde(borrow)]
    keys: BTreeMap<String, &'a RawValue>,
}

/// The keys in the decrypted file. Errors say what is wrong, never quote
/// it (serde's messages can).
fn parse(plaintext: &[u8]) -> Result<BTreeMap<String, StoredKey>, String> {
    let contents: Contents<'_> = serde_json::from_slice(plaintext)
        .map_err(|e| format!("its contents are not a keyring ({:?} error)", e.classify()))?;
    if contents.v != 1 {
        return Err(format!(
            "written by a newer version of assumed (v{})",
            contents.v
        ));
    }
    contents
        .keys
        .into_iter()
        .map(|(name, raw)| {
            let key = record::decode(&name, raw.get().as_bytes())
                .map_err(|e| format!("the key {name:?}: {e}"))?;
            Ok((name, key))
        })
        .collect()
}

/// `{"v":1,"keys":{NAME: record, …}}`, built in one buffer sized up front
/// (no reallocation leaves a copy behind) and wiped when dropped.
fn serialize(keys: &BTreeMap<String, StoredKey>) -> Zeroizing<Vec<u8>> {
    let entries: Vec<(String, Zeroizing<Vec<u8>>)> = keys
        .iter()
        .map(|(name, key)| {
            let name = serde_json::to_string(name).unwrap_or_default();
            (name, record::encode(key))
        })
        .collect();
    let size = 32
        + entries
            .iter()
            .map(|(name, record)| name.len() + record.len() + 2)
            .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(b"{\"v\":1,\"keys\":{");
    for (i, (name, record)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(record);
    }
    out.extend_from_slice(b"}}");
    out
}

/// The directory for the file, 0700 where this creates it (an existing one
/// is left as its owner set it).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or
/// the new one, never a part, and a crash leaves one of them on disk. The
/// mode of the file replaced is kept; a new file is 0600.
fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0o600,
        Err(error) => return Err(error),
    };
    let temp = dir.join(format!(
        ".{}.{}.{:08x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        fastrand::u32(..)
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written?;
    // The rename itself is durable once the directory is.
    fs::File::open(dir)?.sync_all()
}

/// An exclusive `flock` on the file's directory, held while a write reads,
/// changes and replaces the file (the file itself is replaced, so it cannot
/// carry the lock).
struct DirLock {
    _held: fs::File,
}

impl DirLock {
    fn take(dir: &Path) -> io::Result<Self> {
        use std::os::fd::AsRawFd;
        let file = fs::File::open(dir)?;
        // SAFETY: flock on a descriptor we own; it is released when the
        // descriptor closes (on drop).
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirLock { _held: file })
    }
}

#[cfg(test)]
mod tests;
