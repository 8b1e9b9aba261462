//! Opening a URL in the user's browser: `$BROWSER` when set (a `:`-separated
//! list of commands, `%s` standing for the URL, as xdg-utils and Python's
//! `webbrowser` read it), else the platform's opener (`open` on macOS,
//! `xdg-open` elsewhere). The URL goes to the command as an argument, never
//! through a shell's parsing.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::credentials::Secret;

/// An opener that is still running after this long is taken to be the
/// browser itself (e.g. `BROWSER=firefox` starting its first window).
const SETTLE: Duration = Duration::from_secs(10);

/// Whether the URL reached a browser, and if not why.
pub enum Outcome {
    Opened { with: String },
    NotOpened { why: String },
}

pub fn open(url: &Secret) -> Outcome {
    let browser = std::env::var("BROWSER").unwrap_or_default();
    let mut failures = Vec::new();
    for entry in browser.split(':').map(str::trim).filter(|e| !e.is_empty()) {
        // "$1" is the URL, passed as the script's first argument.
        let script = if entry.contains("%s") {
            entry.replace("%s", "\"$1\"")
        } else {
            format!("{entry} \"$1\"")
        };
        let mut command = Command::new("sh");
        command.args(["-c", &script, "assumed-browser", url.expose()]);
        match start(command, SETTLE) {
            Ok(()) => {
                return Outcome::Opened {
                    with: format!("$BROWSER ({entry})"),
                };
            }
            Err(problem) => failures.push(format!("$BROWSER entry {entry:?} {problem}")),
        }
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let mut command = Command::new(opener);
    command.arg(url.expose());
    match start(command, SETTLE) {
        Ok(()) => Outcome::Opened {
            with: opener.to_owned(),
        },
        Err(problem) => {
            failures.push(format!("{opener} {problem}"));
            Outcome::NotOpened {
                why: failures.join("; "),
            }
        }
    }
}

/// Starts an opener or a browser; `Ok` once it exits 0, or if it is still
/// running after `settle` (then it is left to run).
pub(super) fn start(mut command: Command, settle: Duration) -> Result<(), String> {
    let mut child = command
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "is not installed".to_owned(),
            _ => format!("could not start: {e}"),
        })?;
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    match finished.recv_timeout(settle) {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("failed ({status})")),
        Ok(Err(e)) => Err(format!("could not be waited for: {e}")),
        Err(_) => Ok(()),
    }
}
