//! Desktop notifications: `notify-send` on Linux (libnotify, what desktop
//! environments and most window managers answer), `osascript` on macOS.
//!
//! Fire and forget: [`send`] returns at once and the notifier runs on a
//! thread of its own, so no caller (a request, the cache) ever waits for a
//! desktop. A machine without a notifier (a server, a container) is normal:
//! that is a debug line, not a warning. Titles and bodies are passed as
//! arguments, never through a shell.

use std::process::{Command, Stdio};

/// Whether notifications are on when `[server] notify` is not set: when a
/// graphical session is there to show them.
pub fn by_default() -> bool {
    cfg!(target_os = "macos")
        || ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Whether notifications (and `confirm` prompts) go to the desktop:
/// `[server] notify`, else [`by_default`].
pub fn enabled(server: &crate::config::ServerConfig) -> bool {
    server.notify.unwrap_or_else(by_default)
}

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
}

impl Notification {
    pub fn new(title: impl Into<String>, body: impl Into<String>) -> Self {
        Notification {
            title: title.into(),
            body: body.into(),
        }
    }
}

/// Shows `notification` on the user's desktop, if there is one.
pub fn send(notification: Notification) {
    let Some(mut command) = command(&notification) else {
        tracing::debug!(title = %notification.title, "no desktop notifier on this system");
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            let program = format!("{:?}", command.get_program());
            match command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
            {
                Ok(output) if output.status.success() => {}
                Ok(output) => tracing::debug!(
                    %program,
                    status = %output.status,
                    stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                    "the desktop notifier failed"
                ),
                Err(error) => {
                    tracing::debug!(%program, %error, "no desktop notifier could be started")
                }
            }
        });
    if let Err(error) = spawned {
        tracing::debug!(%error, "cannot start a thread for a notification");
    }
}

/// The notifier command for this system, if it has one.
fn command(notification: &Notification) -> Option<Command> {
    if cfg!(target_os = "macos") {
        Some(osascript(notification))
    } else if cfg!(unix) {
        let mut command = Command::new("notify-send");
        command
            .args(["--app-name", "assumed", "--"])
            .arg(&notification.title)
            .arg(&notification.body);
        Some(command)
    } else {
        None
    }
}

/// `display notification` with the body and title passed as arguments.
fn osascript(notification: &Notification) -> Command {
    applescript(
        &["display notification (item 1 of argv) with title (item 2 of argv)"],
        [&notification.body, &notification.title],
    )
}

/// `osascript` running `lines` inside `on run argv … end run`, with `args`
/// as `argv`: never spliced into the script's text, so a role name or
/// message with quotes, backslashes or AppleScript of its own is only ever
/// a string.
pub fn applescript<A: AsRef<std::ffi::OsStr>>(
    lines: &[&str],
    args: impl IntoIterator<Item = A>,
) -> Command {
    let mut command = Command::new("osascript");
    command.args(["-e", "on run argv"]);
    for line in lines {
        command.arg("-e").arg(line);
    }
    command.args(["-e", "end run", "--"]).args(args);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osascript_gets_title_and_body_as_arguments_not_as_script() {
        let hostile = "prod\" with title \"x\"\ndo shell script \"touch /tmp/pwned\" --";
        let command = osascript(&Notification::new(hostile, "a\\b\nc"));
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(command.get_program(), "osascript");
        assert_eq!(
            args,
            [
                "-e",
                "on run argv",
                "-e",
                "display notification (item 1 of argv) with title (item 2 of argv)",
                "-e",
                "end run",
                "--",
                "a\\b\nc",
                hostile,
            ]
        );
        // The script itself is fixed text: nothing given reaches it.
        let script: String = args.iter().filter_map(|a| a.to_str()).take(6).collect();
        assert!(!script.contains("pwned"));
    }

    #[test]
    fn notify_send_gets_title_and_body_as_arguments() {
        if cfg!(target_os = "linux") {
            let command = command(&Notification::new("--title", "body; rm -rf /")).expect("cmd");
            let args: Vec<_> = command.get_args().collect();
            assert_eq!(command.get_program(), "notify-send");
            assert_eq!(
                args,
                ["--app-name", "assumed", "--", "--title", "body; rm -rf /"]
            );
        }
    }
}
