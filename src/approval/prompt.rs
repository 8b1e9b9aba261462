//! The desktop prompt: `notify-send` with Allow and Deny actions on Linux
//! (it prints the action clicked), an `osascript` dialog on macOS (it
//! prints the button). Everything shown is passed as arguments, never
//! through a shell or into the script's text. The prompt is closed (its
//! process killed) once the question is answered elsewhere or lapses.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use super::{Answer, Program};

/// What the person is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub title: String,
    pub body: String,
    pub timeout: Duration,
}

impl Text {
    pub fn new(
        id: u64,
        role: &str,
        account: Option<&str>,
        program: &Program,
        timeout: Duration,
    ) -> Text {
        let account = account
            .map(|account| format!(" (account {account})"))
            .unwrap_or_default();
        let mut body = format!(
            "{} (pid {}) asks for role {role}{account}.\nCommand: {}\n",
            program.name(),
            program.pid,
            program.cmdline
        );
        if !program.parents.is_empty() {
            let chain: Vec<&str> = program
                .parents
                .iter()
                .map(|parent| parent.cmdline.as_str())
                .collect();
            body.push_str(&format!("Started by: {}\n", chain.join("  ←  ")));
        }
        body.push_str(&format!(
            "Executable: {} (sha256 {})\nOr in a terminal: assumed approve {id} / assumed deny {id}",
            program.exe,
            &program.sha256[..program.sha256.len().min(16)]
        ));
        Text {
            title: format!("assumed: allow {} to use {role}?", program.name()),
            body,
            timeout,
        }
    }
}

/// Shows the prompt until it is answered (`Some(allow)`), dismissed
/// (`None`), or `closed` says the question ended another way.
pub async fn ask(text: &Text, mut closed: watch::Receiver<Option<Answer>>) -> Option<bool> {
    let mut command = command(text);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::debug!(%error, "no desktop prompt could be shown; `assumed approve` answers");
            return None;
        }
    };
    tokio::select! {
        output = child.wait_with_output() => {
            let output = output.ok()?;
            parse(&String::from_utf8_lossy(&output.stdout))
        }
        _ = closed.wait_for(Option::is_some) => None,
    }
}

/// What the prompt printed: the action's or button's name.
fn parse(printed: &str) -> Option<bool> {
    match printed.trim().to_ascii_lowercase().as_str() {
        "allow" => Some(true),
        "deny" => Some(false),
        _ => None,
    }
}

fn command(text: &Text) -> Command {
    if cfg!(target_os = "macos") {
        dialog(text)
    } else {
        let mut command = Command::new("notify-send");
        command
            .args(["--app-name", "assumed", "--urgency", "critical"])
            .arg(format!("--expire-time={}", text.timeout.as_millis()))
            .args(["--action=allow=Allow", "--action=deny=Deny", "--"])
            .arg(&text.title)
            .arg(&text.body);
        command
    }
}

/// `display dialog` with Deny as the default button (Return must not
/// allow), giving up after the timeout; the text arrives as `argv`.
fn dialog(text: &Text) -> Command {
    let seconds = text.timeout.as_secs().to_string();
    let script = [
        "set answer to display dialog (item 1 of argv) with title (item 2 of argv) \
         buttons {\"Deny\", \"Allow\"} default button \"Deny\" \
         giving up after ((item 3 of argv) as integer)",
        "return button returned of answer",
    ];
    Command::from(crate::notify::applescript(
        &script,
        [text.body.as_str(), text.title.as_str(), &seconds],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::Ancestor;

    fn program() -> Program {
        Program {
            pid: 42,
            started: 1,
            uid: 1000,
            exe: "/usr/bin/node".into(),
            sha256: "ab".repeat(32),
            script: Some("/p/node_modules/x/postinstall.js".into()),
            cmdline: "node /p/node_modules/x/postinstall.js".into(),
            parents: vec![
                Ancestor {
                    pid: 41,
                    exe: "/bin/sh".into(),
                    cmdline: "sh -c node postinstall.js".into(),
                },
                Ancestor {
                    pid: 40,
                    exe: "/usr/bin/node".into(),
                    cmdline: "npm install".into(),
                },
            ],
        }
    }

    #[test]
    fn the_prompt_names_the_program_its_parents_the_role_and_the_account() {
        let text = Text::new(
            7,
            "prod",
            Some("222222222222"),
            &program(),
            Duration::from_secs(60),
        );
        assert_eq!(text.title, "assumed: allow node to use prod?");
        for part in [
            "node (pid 42) asks for role prod (account 222222222222)",
            "Command: node /p/node_modules/x/postinstall.js",
            "Started by: sh -c node postinstall.js  ←  npm install",
            "/usr/bin/node (sha256 abababababababab)",
            "assumed approve 7 / assumed deny 7",
        ] {
            assert!(text.body.contains(part), "{part:?} in {}", text.body);
        }
    }

    #[test]
    fn the_dialog_gets_its_text_as_arguments_with_deny_as_default() {
        let hostile = Program {
            cmdline: "x\" & do shell script \"touch /tmp/pwned".into(),
            ..program()
        };
        let text = Text::new(1, "prod", None, &hostile, Duration::from_secs(30));
        let command = dialog(&text);
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let script: String = args[..8].concat();
        assert!(!script.contains("pwned"), "the script is fixed text");
        assert!(script.contains("default button \"Deny\""));
        assert_eq!(
            args[8..],
            ["--".to_owned(), text.body, text.title, "30".into()]
        );
    }

    #[test]
    fn only_allow_or_deny_answers() {
        assert_eq!(parse("allow\n"), Some(true));
        assert_eq!(parse("Allow"), Some(true));
        assert_eq!(parse("deny\n"), Some(false));
        assert_eq!(parse(""), None);
        assert_eq!(parse("closed"), None);
    }
}
