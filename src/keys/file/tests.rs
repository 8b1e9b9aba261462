//! The file keyring on real files in a temporary directory. These use
//! scrypt at 2^10 (`work_factor`), not [`WORK_FACTOR`]: every test derives
//! keys several times and the real cost is ~1 s each on a busy CI core.
//! `the_real_work_factor_is_written` checks the real one once, and the
//! integration tests (tests/it/keys_file.rs) run the binary, which has no
//! way to lower it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;

use super::*;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const PASSPHRASE: &str = "correct horse battery staple";

/// A key as `keys add` would store it (built through `record`, so a field
/// added to `StoredKey` needs no change here).
fn key(name: &str, id: &str, secret: &str) -> StoredKey {
    let json = serde_json::json!({
        "v": 1,
        "access_key_id": id,
        "secret_access_key": secret,
        "user_arn": format!("arn:aws:iam::123456789012:user/{name}"),
        "added_at": 1_700_000_000,
    });
    record::decode(name, json.to_string().as_bytes()).expect("a record")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Where the keys go: a directory that does not exist yet.
    fn path(&self) -> PathBuf {
        self.dir.path().join("data/assumed/keys.age")
    }

    fn passphrase_file(&self, text: &str) -> PathBuf {
        let file = self.dir.path().join(format!("pass-{}", fastrand::u32(..)));
        fs::write(&file, text).expect("passphrase file");
        file
    }

    /// A backend reading its passphrase from a file holding `passphrase`.
    fn backend(&self, passphrase: &str) -> FileBackend {
        self.backend_with(Some(self.passphrase_file(passphrase)), None)
    }

    fn backend_with(
        &self,
        passphrase_file: Option<PathBuf>,
        credentials_dir: Option<PathBuf>,
    ) -> FileBackend {
        let settings = KeyringSettings {
            backend: BackendKind::File,
            file: Some(self.path()),
            passphrase_file,
        };
        let mut backend = FileBackend::open(&settings).expect("open");
        backend.credentials_dir = credentials_dir;
        backend.work_factor = 10;
        backend
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(self.path()).expect("keyring file")
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn keys_round_trip_through_the_file() {
    let fixture = Fixture::new();
    let backend = fixture.backend(PASSPHRASE);
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    backend
        .write(&key("home", "AKIAHOMEEXAMPLE12345", "home-secret"))
        .expect("write");
    // Replacing a key keeps one entry under its name.
    backend
        .write(&key("work", "AKIANEWEXAMPLE987654", SECRET))
        .expect("replace");

    // A second backend has no cache: this is the file, decrypted.
    let again = fixture.backend(PASSPHRASE);
    assert_eq!(
        again.read("work").expect("read"),
        Some(key("work", "AKIANEWEXAMPLE987654", SECRET))
    );
    assert_eq!(again.read("nobody").expect("read"), None);
    let listed = again.list().expect("list");
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|info| (info.name.as_str(), info.key_id_last4.as_str()))
        .collect();
    assert_eq!(names, [("home", "2345"), ("work", "7654")]);
    assert!(listed.iter().all(|info| info.backend == BackendKind::File));

    assert!(again.delete("home").expect("delete"));
    assert!(!again.delete("home").expect("delete again"));
    let names: Vec<String> = fixture
        .backend(PASSPHRASE)
        .list()
        .expect("list")
        .into_iter()
        .map(|info| info.name)
        .collect();
    assert_eq!(names, ["work"]);
}

#[test]
fn the_file_never_holds_a_secret_or_key_id_in_clear() {
    let fixture = Fixture::new();
    let backend = fixture.backend(PASSPHRASE);
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    let bytes = fixture.bytes();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    for clear in [
        SECRET, KEY_ID, "MPLE", "wJalr", "work", PASSPHRASE, "arn:aws",
    ] {
        assert!(
            !contains(&bytes, clear),
            "{clear:?} is in the file in clear"
        );
    }
    // Nothing else was left in the directory (no temporary file).
    let entries: Vec<_> = fs::read_dir(fixture.path().parent().expect("dir"))
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(entries, [std::ffi::OsString::from("keys.age")]);
}

#[test]
fn a_wrong_passphrase_is_an_error_and_leaves_the_file_as_it_was() {
    let fixture = Fixture::new();
    fixture
        .backend(PASSPHRASE)
        .write(&key("work", KEY_ID, SECRET))
        .expect("write");
    let before = fixture.bytes();
    let wrong = fixture.backend("Correct horse battery staple");
    let expected = KeyringError::WrongPassphrase {
        path: fixture.path().display().to_string(),
    };
    assert_eq!(wrong.list(), Err(expected.clone()));
    assert_eq!(wrong.read("work"), Err(expected.clone()));
    assert_eq!(wrong.unlock(), Err(expected.clone()));
    assert_eq!(
        wrong.write(&key("evil", "AKIAEVILEXAMPLE00000", "x")),
        Err(expected.clone())
    );
    assert_eq!(wrong.delete("work"), Err(expected.clone()));
    assert_eq!(fixture.bytes(), before, "the file is unchanged");
    assert!(!expected.to_string().contains("horse"), "{expected}");
}

#[test]
fn a_changed_passphrase_file_is_checked_before_anything_is_written() {
    // The cache must not let a new, unchecked passphrase re-encrypt the file.
    let fixture = Fixture::new();
    let file = fixture.passphrase_file(PASSPHRASE);
    let backend = fixture.backend_with(Some(file.clone()), None);
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    let before = fixture.bytes();
    fs::write(&file, "another passphrase").expect("rewrite passphrase file");
    assert!(matches!(
        backend.write(&key("home", "AKIAHOMEEXAMPLE12345", "s")),
        Err(KeyringError::WrongPassphrase { .. })
    ));
    assert_eq!(fixture.bytes(), before);
}

#[test]
fn a_changed_byte_is_an_error_not_garbage() {
    let fixture = Fixture::new();
    fixture
        .backend(PASSPHRASE)
        .write(&key("work", KEY_ID, SECRET))
        .expect("write");
    let mut bytes = fixture.bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(fixture.path(), &bytes).expect("tamper");
    let error = fixture.backend(PASSPHRASE).list().unwrap_err();
    assert!(
        matches!(&error, KeyringError::Failed { reason, .. } if reason.contains("damaged or changed")),
        "{error}"
    );
}

#[test]
fn the_file_is_0600_in_a_0700_directory_and_keeps_its_mode() {
    let fixture = Fixture::new();
    let backend = fixture.backend(PASSPHRASE);
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o7777;
    assert_eq!(mode(&fixture.path()), 0o600);
    assert_eq!(mode(fixture.path().parent().expect("dir")), 0o700);
    assert_eq!(mode(&fixture.dir.path().join("data")), 0o700);

    // A mode the owner chose stays through a rewrite.
    fs::set_permissions(fixture.path(), fs::Permissions::from_mode(0o400)).expect("chmod");
    backend
        .write(&key("home", "AKIAHOMEEXAMPLE12345", "s"))
        .expect("write");
    assert_eq!(mode(&fixture.path()), 0o400);
}

#[test]
fn a_write_replaces_the_file_atomically() {
    // Readers only ever see a whole file: the old one or the new one.
    let fixture = Arc::new(Fixture::new());
    let backend = fixture.backend(PASSPHRASE);
    backend.write(&key("k0", KEY_ID, SECRET)).expect("write");
    // Held open, the first version keeps its inode (no reuse) and shows
    // whether anything wrote into it in place.
    let mut first = fs::File::open(fixture.path()).expect("open");
    let first_bytes = fixture.bytes();
    let inode = first.metadata().expect("metadata").ino();
    let writer = {
        let fixture = fixture.clone();
        std::thread::spawn(move || {
            let backend = fixture.backend(PASSPHRASE);
            for i in 1..=20 {
                backend
                    .write(&key(&format!("k{i}"), KEY_ID, SECRET))
                    .expect("write");
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() || seen == 0 {
        let bytes = fixture.bytes();
        let plaintext = decrypt(&fixture.path(), &bytes, &Zeroizing::new(PASSPHRASE.into()))
            .expect("every version of the file decrypts whole");
        assert!(parse(&plaintext).expect("and parses").contains_key("k0"));
        seen += 1;
    }
    writer.join().expect("writer");
    assert_eq!(fixture.backend(PASSPHRASE).list().expect("list").len(), 21);
    assert_ne!(
        fs::metadata(fixture.path()).expect("metadata").ino(),
        inode,
        "a new file was renamed over the old one"
    );
    let mut still = Vec::new();
    first
        .read_to_end(&mut still)
        .expect("read the first version");
    assert_eq!(
        still, first_bytes,
        "the old file was never written in place"
    );
}

#[test]
fn two_writers_at_once_both_land() {
    let fixture = Arc::new(Fixture::new());
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                let backend = fixture.backend(PASSPHRASE);
                for i in 0..5 {
                    backend
                        .write(&key(&format!("t{t}-{i}"), KEY_ID, SECRET))
                        .expect("write");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    assert_eq!(fixture.backend(PASSPHRASE).list().expect("list").len(), 10);
}

#[test]
fn a_missing_file_is_an_empty_keyring_until_the_first_write() {
    let fixture = Fixture::new();
    // No passphrase at all, no terminal (tests have none on stdin in CI;
    // `lock_state` never prompts anyway).
    let locked = fixture.backend_with(None, None);
    assert_eq!(locked.lock_state(), Ok(LockState::Locked));
    assert_eq!(locked.list(), Ok(Vec::new()));
    assert_eq!(locked.read("work"), Ok(None));
    assert_eq!(locked.delete("work"), Ok(false));
    let error = locked.write(&key("work", KEY_ID, SECRET)).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, KeyringError::Locked { .. }), "{text}");
    for way in [
        "--passphrase-file",
        "LoadCredential=assumed-keyring",
        "prompt",
    ] {
        assert!(text.contains(way), "{text} names {way}");
    }
    assert!(
        !fixture.path().exists(),
        "nothing written without a passphrase"
    );

    let backend = fixture.backend(PASSPHRASE);
    assert_eq!(backend.lock_state(), Ok(LockState::Unlocked));
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    assert!(fixture.path().exists());
    // Now there is a file, reading it needs the passphrase.
    assert!(matches!(locked.list(), Err(KeyringError::Locked { .. })));
}

#[test]
fn the_passphrase_comes_from_the_file_then_systemds_credential() {
    let fixture = Fixture::new();
    let credentials = fixture.dir.path().join("credentials");
    fs::create_dir(&credentials).expect("credentials dir");
    // A line end is not part of the passphrase (echo, an editor).
    fs::write(
        credentials.join(CREDENTIAL_NAME),
        format!("{PASSPHRASE}\r\n"),
    )
    .expect("cred");
    let from_systemd = fixture.backend_with(None, Some(credentials.clone()));
    assert_eq!(from_systemd.lock_state(), Ok(LockState::Unlocked));
    from_systemd
        .write(&key("work", KEY_ID, SECRET))
        .expect("write");

    let from_file = fixture.backend_with(
        Some(fixture.passphrase_file(&format!("{PASSPHRASE}\n"))),
        None,
    );
    assert_eq!(
        from_file.read("work").expect("read").map(|k| k.name),
        Some("work".into())
    );

    // The passphrase file wins over the credential.
    let both = fixture.backend_with(Some(fixture.passphrase_file("wrong")), Some(credentials));
    assert!(matches!(
        both.list(),
        Err(KeyringError::WrongPassphrase { .. })
    ));

    // An empty or missing passphrase file is said so, not taken as "".
    let empty = fixture.backend_with(Some(fixture.passphrase_file("\n")), None);
    assert!(
        matches!(empty.lock_state(), Err(KeyringError::Failed { reason, .. }) if reason.contains("empty"))
    );
    let missing = fixture.backend_with(Some(fixture.dir.path().join("nope")), None);
    assert!(
        matches!(missing.list(), Err(KeyringError::Failed { reason, .. }) if reason.contains("nope")),
        "a passphrase file that is not there is an error, not a fall back to the next way"
    );

    assert!(
        matches!(missing.lock_state(), Err(KeyringError::Failed { reason, .. }) if reason.contains("nope"))
    );
}

#[test]
fn the_real_work_factor_is_written() {
    let fixture = Fixture::new();
    let mut backend = fixture.backend(PASSPHRASE);
    backend.work_factor = WORK_FACTOR;
    backend.write(&key("work", KEY_ID, SECRET)).expect("write");
    let bytes = fixture.bytes();
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(100)]).into_owned();
    let stanza = header.lines().nth(1).expect("stanza line");
    assert!(
        stanza.starts_with("-> scrypt ") && stanza.ends_with(&format!(" {WORK_FACTOR}")),
        "{stanza}"
    );
    assert_eq!(WORK_FACTOR, 17);
}
