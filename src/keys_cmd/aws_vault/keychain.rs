//! aws-vault's own keychain file (macOS): one generic password per profile,
//! service `aws-vault` (aws-vault's keyring `ServiceName`), account = the
//! profile, data = the `aws.Credentials` JSON as is (keyring keychain.go
//! `Set` stores `item.Data` raw). Searched in that keychain only, never
//! the login keychain or the rest of the search list.
//!
//! macOS asks the person, as it does aws-vault: for the keychain's
//! password when it is locked, and for each item, whose access list
//! trusts no application (aws-vault writes them with
//! `KeychainNotTrustApplication`), to allow `assumed` to read it.

use std::path::{Path, PathBuf};

use security_framework::base::Error;
use security_framework::item::{ItemClass, ItemSearchOptions, Limit};
use security_framework::os::macos::keychain::SecKeychain;
use security_framework::os::macos::passwords::find_generic_password;
use zeroize::Zeroizing;

use super::format::decode_credentials;
use super::keychain_errors::{Failure, ITEM_NOT_FOUND, Step, explain};
use super::{Found, Picker, Store};

/// The items' service: aws-vault's keyring `ServiceName` (cli/global.go:19).
const SERVICE: &str = "aws-vault";

/// The long-term keys in the keychain file at `path`: of `profiles`, or of
/// every profile when empty.
///
/// The Security framework blocks, for as long as a dialog waits on the
/// person: it runs on a thread of its own that nothing joins, so the
/// import's deadline ends the command even while a dialog is still up.
pub async fn read(path: PathBuf, profiles: Vec<String>) -> Result<Found, String> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("aws-vault-keychain".into())
        .spawn(move || {
            // The receiver is gone only once the deadline has passed.
            let _ = sender.send(read_blocking(&path, &profiles));
        })
        .map_err(|e| format!("cannot start reading aws-vault's keychain: {e}"))?;
    receiver
        .await
        .map_err(|_| "reading aws-vault's keychain ended abnormally".to_owned())?
}

fn failure(step: Step<'_>, path: &Path, error: &Error) -> Failure {
    explain(
        step,
        path,
        error.code(),
        &error.message().unwrap_or_default(),
    )
}

fn read_blocking(path: &Path, profiles: &[String]) -> Result<Found, String> {
    let failed = |step: Step<'_>, error: Error| failure(step, path, &error).sentence;
    let mut keychain = SecKeychain::open(path).map_err(|e| failed(Step::Open, e))?;
    // macOS's own password dialog when the keychain is locked (as aws-vault
    // gets); an unlocked keychain answers at once, without one.
    keychain.unlock(None).map_err(|e| failed(Step::Unlock, e))?;
    let keychains = [keychain];
    let store = Store::Keychain(path.to_owned());
    let mut found = Found::default();
    let mut picker = Picker::new(profiles);
    for name in names(&keychains).map_err(|e| failed(Step::List, e))? {
        if !picker.take(&name) {
            continue;
        }
        // The first item of that account in this keychain, as keyring's
        // `Get` (MatchLimitOne); the framework's copy is freed on drop.
        match find_generic_password(Some(&keychains), SERVICE, &name) {
            Ok((password, _item)) => {
                let data = Zeroizing::new(password.to_vec());
                drop(password);
                match decode_credentials(&name, &data) {
                    Ok(key) => found.keys.push(key),
                    Err(problem) => found.problems.push(problem),
                }
            }
            Err(error) => {
                let failure = failure(Step::Read { profile: &name }, path, &error);
                if failure.stops {
                    return Err(failure.sentence);
                }
                found.problems.push(failure.sentence);
            }
        }
    }
    found.problems.extend(picker.missing(&store));
    Ok(found)
}

/// The accounts of aws-vault's items in `keychains` (attributes only: no
/// secret, no per-item dialog), sorted, each once.
fn names(keychains: &[SecKeychain]) -> Result<Vec<String>, Error> {
    let found = ItemSearchOptions::new()
        .keychains(keychains)
        .class(ItemClass::generic_password())
        .service(SERVICE)
        .load_attributes(true)
        .limit(Limit::All)
        .search();
    let results = match found {
        Ok(results) => results,
        Err(e) if e.code() == ITEM_NOT_FOUND => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = results
        .iter()
        .filter_map(|result| result.simplify_dict()?.remove("acct"))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}
