//! Shell completion: `assumed completions bash|zsh|fish` prints a script that
//! hands every TAB back to `assumed` itself (clap_complete's dynamic engine),
//! so commands, flags and role names come from the installed binary and are
//! never out of date. Role names are the running daemon's, else the ones the
//! config and `~/.aws/config` would give it.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::time::Duration;

use clap::ValueEnum;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::config;
use crate::daemon_client::DaemonClient;

/// The variable that turns a run of `assumed` into a completion request. Our
/// own name rather than clap's default `COMPLETE`, which other programs'
/// completions may leave set.
pub const ENV_VAR: &str = "ASSUMED_COMPLETE";

/// A TAB must not wait: a daemon that does not answer this quickly is passed
/// over for the config.
const DAEMON_WAIT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the registration script for `shell`. It runs `assumed` from PATH
/// at each TAB, so it keeps working when the binary is upgraded or moved.
pub fn write_script(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    completer.write_registration(ENV_VAR, "assumed", "assumed", "assumed", out)
}

/// The role names that start with `current`.
pub fn role_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else {
        return Vec::new();
    };
    let mut names = daemon_roles().unwrap_or_else(configured_roles);
    names.retain(|name| name.starts_with(prefix));
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// What the running daemon serves, if one answers at once. `--config` is not
/// known here (clap completes before parsing), so `$ASSUMED_CONFIG` picks the
/// daemon as it does for every command.
fn daemon_roles() -> Option<Vec<String>> {
    let daemon = DaemonClient::from_address_file(config::explicit_path(None).as_deref())?;
    let status = daemon
        .ask_within(DAEMON_WAIT, "GET", "/admin/status")
        .ok()?;
    let names = status["roles"]
        .as_array()?
        .iter()
        .filter_map(|role| role["name"].as_str().map(str::to_owned))
        .collect();
    Some(names)
}

/// What a daemon started now would serve: `[roles]` and the role profiles of
/// `~/.aws/config`. A config that does not parse gives no names (`assumed
/// check` says why), rather than noise on the command line.
fn configured_roles() -> Vec<String> {
    match config::load_or_default(None) {
        Ok(config) => crate::profiles::known_roles(&config).into_keys().collect(),
        Err(_) => Vec::new(),
    }
}
