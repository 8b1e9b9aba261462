//! What the Security framework's answers mean while reading aws-vault's
//! keychain, as sentences that say what to do. Plain data, so they are
//! tested on any machine; keychain.rs passes its errors through here.

use std::path::Path;

use super::location::KEYCHAIN_ENV;

// OSStatus codes (Security/SecBase.h; -128 is MacErrors.h's userCanceledErr).
pub const USER_CANCELED: i32 = -128;
pub const AUTH_FAILED: i32 = -25293;
pub const NO_SUCH_KEYCHAIN: i32 = -25294;
pub const ITEM_NOT_FOUND: i32 = -25300;
pub const INTERACTION_NOT_ALLOWED: i32 = -25308;

/// What was being done when the Security framework said no.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Open,
    Unlock,
    List,
    Read { profile: &'a str },
}

/// A failed step, said in one sentence. `stops`: the rest of the import
/// is not attempted (the person said no, or could not be asked: asking
/// again for every other item would only repeat that).
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub sentence: String,
    pub stops: bool,
}

/// `code` and the framework's own `message` for it (never a secret: it is
/// the text of the code) at `step` on the keychain at `path`.
pub fn explain(step: Step<'_>, path: &Path, code: i32, message: &str) -> Failure {
    let shown = path.display();
    let stop = |sentence: String| Failure {
        sentence,
        stops: true,
    };
    if code == NO_SUCH_KEYCHAIN {
        return stop(format!(
            "macOS has no keychain at {shown}: if aws-vault uses another keychain \
             (its --keychain), set {KEYCHAIN_ENV} to that name and run this again"
        ));
    }
    let person = match code {
        USER_CANCELED => Some("the dialog was cancelled or access denied"),
        AUTH_FAILED => Some("the password given was not the keychain's"),
        INTERACTION_NOT_ALLOWED => {
            Some("macOS could not show its dialog here (no desktop session, e.g. over SSH?)")
        }
        _ => None,
    };
    match (step, person) {
        (Step::Read { profile }, Some(why)) => stop(format!(
            "aws-vault's item {profile:?} was not read ({why}), so nothing was copied: \
             run this again in a terminal on the Mac's desktop and allow assumed to read it, \
             or name only the profiles to copy"
        )),
        (Step::Read { profile }, None) if code == ITEM_NOT_FOUND => Failure {
            sentence: format!(
                "aws-vault's item {profile:?} went away while it was being read; \
                 run this again to copy it if it is back"
            ),
            stops: false,
        },
        (Step::Read { profile }, None) => Failure {
            sentence: format!(
                "aws-vault's item {profile:?} could not be read: {message} (OSStatus {code})"
            ),
            stops: false,
        },
        (_, Some(why)) => stop(format!(
            "aws-vault's keychain {shown} is locked and was not unlocked ({why}): \
             unlock it with `security unlock-keychain {shown}` and run this again"
        )),
        (Step::Open, None) => stop(format!(
            "aws-vault's keychain {shown} could not be opened: {message} (OSStatus {code})"
        )),
        (Step::Unlock, None) => stop(format!(
            "aws-vault's keychain {shown} could not be unlocked: {message} (OSStatus {code}); \
             try `security unlock-keychain {shown}` and run this again"
        )),
        (Step::List, None) => stop(format!(
            "aws-vault's keychain {shown} did not list its items: {message} (OSStatus {code})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/Users/me/Library/Keychains/aws-vault.keychain-db";

    fn explained(step: Step<'_>, code: i32) -> Failure {
        explain(step, Path::new(PATH), code, "a message")
    }

    #[test]
    fn a_locked_keychain_that_stays_locked_names_the_unlock_command() {
        for code in [USER_CANCELED, AUTH_FAILED, INTERACTION_NOT_ALLOWED] {
            let failure = explained(Step::Unlock, code);
            assert!(failure.stops);
            assert!(
                failure
                    .sentence
                    .contains(&format!("`security unlock-keychain {PATH}`")),
                "{}",
                failure.sentence
            );
        }
    }

    #[test]
    fn a_refused_item_stops_the_import_and_a_vanished_one_does_not() {
        for code in [USER_CANCELED, AUTH_FAILED, INTERACTION_NOT_ALLOWED] {
            let failure = explained(Step::Read { profile: "work" }, code);
            assert!(failure.stops, "{code}");
            assert!(
                failure.sentence.contains("\"work\"")
                    && failure.sentence.contains("nothing was copied"),
                "{}",
                failure.sentence
            );
        }
        let gone = explained(Step::Read { profile: "work" }, ITEM_NOT_FOUND);
        assert!(!gone.stops && gone.sentence.contains("\"work\""));
        let other = explained(Step::Read { profile: "work" }, -50);
        assert!(!other.stops && other.sentence.contains("OSStatus -50"));
    }

    #[test]
    fn no_such_keychain_points_at_the_variable() {
        for step in [Step::Open, Step::Unlock, Step::List] {
            let failure = explained(step, NO_SUCH_KEYCHAIN);
            assert!(failure.stops);
            assert!(
                failure.sentence.contains(PATH) && failure.sentence.contains(KEYCHAIN_ENV),
                "{}",
                failure.sentence
            );
        }
    }

    #[test]
    fn other_codes_say_which_step_and_the_code() {
        for (step, what) in [
            (Step::Open, "could not be opened"),
            (Step::Unlock, "could not be unlocked"),
            (Step::List, "did not list"),
        ] {
            let failure = explained(step, -67701);
            assert!(failure.stops);
            assert!(
                failure.sentence.contains(what) && failure.sentence.contains("OSStatus -67701"),
                "{}",
                failure.sentence
            );
        }
    }
}
