//! Where aws-vault keeps its keys on this machine: which of its backends it
//! uses, and that backend's collection or keychain file, from the same
//! variables aws-vault reads. Plain functions of the environment, so the
//! macOS choices are tested on any machine.

use std::fmt;
use std::path::{Path, PathBuf};

/// aws-vault's `--backend`: on macOS `keychain`, on Linux `secret-service`
/// unless this says otherwise (cli/global.go:112-115, keyring.go:27-39).
pub const BACKEND_ENV: &str = "AWS_VAULT_BACKEND";
/// aws-vault's `--secret-service-collection` (cli/global.go:143-146).
pub const COLLECTION_ENV: &str = "AWS_VAULT_SECRET_SERVICE_COLLECTION_NAME";
pub const DEFAULT_COLLECTION: &str = "awsvault";
/// aws-vault's `--keychain` (cli/global.go:138-141).
pub const KEYCHAIN_ENV: &str = "AWS_VAULT_KEYCHAIN_NAME";
pub const DEFAULT_KEYCHAIN: &str = "aws-vault";

/// The systems whose aws-vault backend this command reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    MacOs,
    Linux,
    Other,
}

impl Platform {
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Platform::MacOs
        } else if cfg!(target_os = "linux") {
            Platform::Linux
        } else {
            Platform::Other
        }
    }

    /// aws-vault's default backend here: the first of keyring's order
    /// that the platform has, and the one `assumed` reads.
    fn backend(self) -> Option<&'static str> {
        match self {
            Platform::MacOs => Some("keychain"),
            Platform::Linux => Some("secret-service"),
            Platform::Other => None,
        }
    }
}

/// The aws-vault store to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// A Secret Service collection, by its label.
    Collection(String),
    /// A keychain file, by its path.
    Keychain(PathBuf),
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Store::Collection(name) => write!(f, "aws-vault's Secret Service collection {name:?}"),
            Store::Keychain(path) => write!(f, "aws-vault's keychain {}", path.display()),
        }
    }
}

/// The store aws-vault would use, given its variables (`env`), the home
/// directory and a test of whether a file exists.
pub fn locate(
    env: &dyn Fn(&str) -> Option<String>,
    platform: Platform,
    home: Option<&Path>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Store, String> {
    // An empty variable is an unset one, as kingpin reads them.
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    let Some(default) = platform.backend() else {
        return Err(
            "assumed reads aws-vault's keys from the macOS Keychain or the Secret Service only; \
             add each profile's keys with `assumed keys add PROFILE`"
                .into(),
        );
    };
    if let Some(backend) = var(BACKEND_ENV) {
        if backend != default {
            return Err(unreadable_backend(&backend, default));
        }
    }
    match platform {
        Platform::MacOs => {
            let name = var(KEYCHAIN_ENV).unwrap_or_else(|| DEFAULT_KEYCHAIN.into());
            let home = home.ok_or(
                "HOME is not set, so aws-vault's keychain (in ~/Library/Keychains) cannot be \
                 found: set HOME and run this again",
            )?;
            keychain_file(home, &name, exists).map(Store::Keychain)
        }
        _ => Ok(Store::Collection(
            var(COLLECTION_ENV).unwrap_or_else(|| DEFAULT_COLLECTION.into()),
        )),
    }
}

/// The refusal for a backend `assumed` does not read, with the way round:
/// aws-vault hands the keys to a command that pipes them in.
fn unreadable_backend(backend: &str, readable: &str) -> String {
    format!(
        "{BACKEND_ENV} is {backend:?}, and assumed reads only aws-vault's {readable:?} backend \
         here: unset {BACKEND_ENV} if the keys are there, else copy each profile with \
         aws-vault exec PROFILE --no-session -- sh -c 'printf \"%s\\n%s\\n\" \
         \"$AWS_ACCESS_KEY_ID\" \"$AWS_SECRET_ACCESS_KEY\"' | assumed keys add PROFILE --stdin"
    )
}

/// The files keyring's `NAME.keychain` may be. keyring opens
/// `NAME + ".keychain"` (keychain.go:35-37) with `SecKeychainOpen`, which
/// takes a relative name in `~/Library/Keychains`; macOS 10.12 and later
/// keep a keychain as `NAME.keychain-db` (aws-vault's USAGE.md:316), one
/// made before that and never upgraded as `NAME.keychain`.
pub fn keychain_candidates(home: &Path, name: &str) -> [PathBuf; 2] {
    let base = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        home.join("Library/Keychains").join(name)
    };
    let with = |suffix: &str| {
        let mut file = base.clone().into_os_string();
        file.push(suffix);
        PathBuf::from(file)
    };
    [with(".keychain-db"), with(".keychain")]
}

/// The first candidate that exists (the upgraded `-db` file wins, as on
/// macOS), else an error naming where it was looked for and how to point
/// this at another keychain.
pub fn keychain_file(
    home: &Path,
    name: &str,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    let [db, old] = keychain_candidates(home, name);
    if exists(&db) {
        return Ok(db);
    }
    if exists(&old) {
        return Ok(old);
    }
    Err(format!(
        "aws-vault's keychain is not at {} (nor {}): if aws-vault uses another keychain \
         (its --keychain), set {KEYCHAIN_ENV} to that name and run this again",
        db.display(),
        old.display()
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn only(file: &'static str) -> impl Fn(&Path) -> bool {
        move |path| path == Path::new(file)
    }

    const HOME: &str = "/Users/me";

    fn mac(pairs: &[(&str, &str)], exists: &dyn Fn(&Path) -> bool) -> Result<Store, String> {
        locate(&env(pairs), Platform::MacOs, Some(Path::new(HOME)), exists)
    }

    #[test]
    fn macos_reads_aws_vaults_own_keychain_by_default() {
        let file = "/Users/me/Library/Keychains/aws-vault.keychain-db";
        assert_eq!(
            mac(&[], &only(file)),
            Ok(Store::Keychain(PathBuf::from(file)))
        );
        // Empty variables are unset ones; the keychain backend named is the default.
        let vars = [(KEYCHAIN_ENV, ""), (BACKEND_ENV, "keychain")];
        assert_eq!(
            mac(&vars, &only(file)),
            Ok(Store::Keychain(PathBuf::from(file)))
        );
    }

    #[test]
    fn the_keychain_name_comes_from_aws_vaults_variable() {
        let file = "/Users/me/Library/Keychains/work-vault.keychain-db";
        assert_eq!(
            mac(&[(KEYCHAIN_ENV, "work-vault")], &only(file)),
            Ok(Store::Keychain(PathBuf::from(file)))
        );
        // An absolute name is a path, as SecKeychainOpen takes it.
        let file = "/Volumes/keys/vault.keychain-db";
        assert_eq!(
            mac(&[(KEYCHAIN_ENV, "/Volumes/keys/vault")], &only(file)),
            Ok(Store::Keychain(PathBuf::from(file)))
        );
    }

    #[test]
    fn a_keychain_never_upgraded_is_found_and_the_upgraded_one_wins() {
        let old = "/Users/me/Library/Keychains/aws-vault.keychain";
        assert_eq!(
            mac(&[], &only(old)),
            Ok(Store::Keychain(PathBuf::from(old)))
        );
        let both = |_: &Path| true;
        assert_eq!(
            mac(&[], &both),
            Ok(Store::Keychain(PathBuf::from(
                "/Users/me/Library/Keychains/aws-vault.keychain-db"
            )))
        );
    }

    #[test]
    fn a_missing_keychain_names_the_path_and_the_variable() {
        let error = mac(&[], &|_: &Path| false).expect_err("refused");
        assert!(
            error.contains("/Users/me/Library/Keychains/aws-vault.keychain-db")
                && error.contains(KEYCHAIN_ENV),
            "{error}"
        );
        let error =
            locate(&env(&[]), Platform::MacOs, None, &|_: &Path| true).expect_err("no home");
        assert!(error.contains("HOME"), "{error}");
    }

    #[test]
    fn linux_reads_the_collection_aws_vault_names() {
        let linux = |pairs: &[(&str, &str)]| {
            locate(
                &env(pairs),
                Platform::Linux,
                Some(Path::new(HOME)),
                &|_: &Path| false,
            )
        };
        assert_eq!(linux(&[]), Ok(Store::Collection("awsvault".into())));
        assert_eq!(
            linux(&[(COLLECTION_ENV, "work"), (BACKEND_ENV, "secret-service")]),
            Ok(Store::Collection("work".into()))
        );
    }

    #[test]
    fn a_backend_assumed_cannot_read_is_refused_with_the_way_round() {
        for (platform, backend) in [
            (Platform::MacOs, "file"),
            (Platform::MacOs, "secret-service"),
            (Platform::Linux, "pass"),
            (Platform::Linux, "keychain"),
        ] {
            let error = locate(
                &env(&[(BACKEND_ENV, backend)]),
                platform,
                Some(Path::new(HOME)),
                &|_: &Path| true,
            )
            .expect_err("refused");
            assert!(
                error.contains(BACKEND_ENV)
                    && error.contains(&format!("{backend:?}"))
                    && error.contains("assumed keys add PROFILE --stdin"),
                "{error}"
            );
        }
        let error =
            locate(&env(&[]), Platform::Other, None, &|_: &Path| true).expect_err("refused");
        assert!(error.contains("assumed keys add"), "{error}");
    }

    #[test]
    fn stores_are_shown_by_name_and_path() {
        assert_eq!(
            Store::Collection("awsvault".into()).to_string(),
            "aws-vault's Secret Service collection \"awsvault\""
        );
        assert_eq!(
            Store::Keychain(PathBuf::from("/k/aws-vault.keychain-db")).to_string(),
            "aws-vault's keychain /k/aws-vault.keychain-db"
        );
    }
}
