//! The long-term keys aws-vault stored, read the way aws-vault (v7, through
//! 99designs/keyring v1.2) writes them, so an aws-vault user moves over with
//! one `assumed keys import --from aws-vault`. docs/keys.md, "Moving in",
//! has both formats with the source lines they come from.
//!
//! One reader per platform, for aws-vault's default backend there:
//! - Linux (`secret_service.rs`): a Secret Service collection labelled
//!   `awsvault`, one item per profile, its secret a JSON `keyring.Item`
//!   whose `Data` (base64) is the JSON of the Go SDK's `aws.Credentials`.
//! - macOS (`keychain.rs`): aws-vault's own keychain file
//!   `~/Library/Keychains/aws-vault.keychain-db`, one generic password per
//!   profile (service `aws-vault`, account = the profile), its data that
//!   `aws.Credentials` JSON itself.
//!
//! aws-vault keeps its cached sessions and SSO tokens in the same store:
//! those are skipped, by the names aws-vault gives them (`format.rs`).
//! Which store, from aws-vault's own variables, is `location.rs`.

mod format;
#[cfg(target_os = "macos")]
mod keychain;
#[cfg(any(target_os = "macos", test))]
mod keychain_errors;
mod location;
#[cfg(target_os = "linux")]
mod secret_service;

use std::collections::BTreeSet;

use location::Platform;
pub use location::Store;

/// What a read of aws-vault's store found: the keys, and for each item
/// that could not be taken, why (no secret in it).
#[derive(Default)]
pub struct Found {
    pub keys: Vec<format::VaultKey>,
    pub problems: Vec<String>,
}

/// The store aws-vault uses here, from its variables in this process's
/// environment and the home directory.
pub fn locate() -> Result<Store, String> {
    let env = |name: &str| std::env::var(name).ok();
    let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_owned());
    location::locate(&env, Platform::current(), home.as_deref(), &|path| {
        path.exists()
    })
}

/// The long-term keys in `store`: of `profiles`, or of every profile when
/// empty. A locked store is unlocked through the system's own prompt, as
/// aws-vault does.
pub async fn read(store: &Store, profiles: &[String]) -> Result<Found, String> {
    match store {
        #[cfg(target_os = "linux")]
        Store::Collection(collection) => secret_service::read(collection, profiles).await,
        #[cfg(target_os = "macos")]
        Store::Keychain(path) => keychain::read(path.clone(), profiles.to_vec()).await,
        other => Err(format!("{other} cannot be read on this system")),
    }
}

/// Which of the items a reader lists it takes: not aws-vault's sessions
/// and tokens, only the profiles asked for (all when none), and of several
/// items with one name the first, as aws-vault reads them.
pub struct Picker<'a> {
    profiles: &'a [String],
    taken: BTreeSet<String>,
}

impl<'a> Picker<'a> {
    pub fn new(profiles: &'a [String]) -> Self {
        Picker {
            profiles,
            taken: BTreeSet::new(),
        }
    }

    /// Whether to read the item named `name`; once per name.
    pub fn take(&mut self, name: &str) -> bool {
        if format::is_session_item(name) || self.taken.contains(name) {
            return false;
        }
        if !self.profiles.is_empty() && !self.profiles.iter().any(|p| p == name) {
            return false;
        }
        self.taken.insert(name.to_owned())
    }

    /// A problem for each profile asked for that `store` has no item of.
    pub fn missing(&self, store: &Store) -> Vec<String> {
        self.profiles
            .iter()
            .filter(|profile| !self.taken.contains(*profile))
            .map(|profile| format!("{store} holds no keys for profile {profile:?}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_profile_once_and_no_sessions_when_none_are_named() {
        let mut picker = Picker::new(&[]);
        let taken: Vec<&str> = [
            "work",
            "sts.GetSessionToken,d29yaw,,1700000000",
            "oidc:https://corp.awsapps.com/start",
            "ops",
            "work",
        ]
        .into_iter()
        .filter(|name| picker.take(name))
        .collect();
        assert_eq!(taken, ["work", "ops"]);
        assert!(
            picker
                .missing(&Store::Collection("awsvault".into()))
                .is_empty()
        );
    }

    #[test]
    fn only_the_named_profiles_and_each_one_missing_is_said() {
        let wanted = names(&["work", "gone"]);
        let mut picker = Picker::new(&wanted);
        let taken: Vec<&str> = ["ops", "work", "work"]
            .into_iter()
            .filter(|name| picker.take(name))
            .collect();
        assert_eq!(taken, ["work"]);
        let store = Store::Keychain("/k/aws-vault.keychain-db".into());
        assert_eq!(
            picker.missing(&store),
            ["aws-vault's keychain /k/aws-vault.keychain-db holds no keys for profile \"gone\""]
        );
    }

    #[test]
    fn a_session_item_is_not_taken_even_when_named() {
        let wanted = names(&["work session (1700000000)"]);
        let mut picker = Picker::new(&wanted);
        assert!(!picker.take("work session (1700000000)"));
        assert_eq!(
            picker.missing(&Store::Collection("awsvault".into())).len(),
            1
        );
    }
}
