//! A browser `assumed console` starts itself: the one `[console] browser` or
//! `--browser` names, or, to isolate a console, one found on this machine.
//!
//! Isolation keeps the consoles of several roles signed in at once. The
//! console's session is a cookie, and a browser profile holds one console
//! session at a time; so each role gets a profile of its own
//! (`<data dir>/console-profiles/<browser>/<role>`, made on first use) — a
//! Chromium `--user-data-dir` or a Firefox `--profile` — or, for people who
//! use Firefox's container extensions, a container named after the role
//! (`ext+granted-containers:`, the URL form granted's extension handles).
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::Isolation;
use crate::credentials::Secret;

use super::browser::{Outcome, start};

/// A browser that fails to start (no display, a bad flag, a locked profile)
/// exits within this; one still running is showing the console.
const EARLY_EXIT: Duration = Duration::from_secs(2);

/// The two browser engines whose profiles and flags this knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Chromium,
    Firefox,
}

/// A browser this knows by name: what it is called here (and in profile
/// paths), its engine, and where it is installed.
struct Known {
    name: &'static str,
    family: Family,
    /// The commands it installs on Linux and other Unixes, most common first.
    commands: &'static [&'static str],
    /// Its executable inside the macOS application bundle.
    mac_app: &'static str,
}

/// In the order a browser is looked for when none is configured.
const KNOWN: [Known; 6] = [
    Known {
        name: "chromium",
        family: Family::Chromium,
        commands: &["chromium", "chromium-browser"],
        mac_app: "/Applications/Chromium.app/Contents/MacOS/Chromium",
    },
    Known {
        name: "chrome",
        family: Family::Chromium,
        commands: &["google-chrome", "google-chrome-stable"],
        mac_app: "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    },
    Known {
        name: "brave",
        family: Family::Chromium,
        commands: &["brave-browser", "brave"],
        mac_app: "/Applications/Brave Browser.app/Contents/MacOS/Brave Browser",
    },
    Known {
        name: "edge",
        family: Family::Chromium,
        commands: &["microsoft-edge", "microsoft-edge-stable"],
        mac_app: "/Applications/Microsoft Edge.app/Contents/MacOS/Microsoft Edge",
    },
    Known {
        name: "vivaldi",
        family: Family::Chromium,
        commands: &["vivaldi", "vivaldi-stable"],
        mac_app: "/Applications/Vivaldi.app/Contents/MacOS/Vivaldi",
    },
    Known {
        name: "firefox",
        family: Family::Firefox,
        commands: &["firefox", "firefox-esr"],
        mac_app: "/Applications/Firefox.app/Contents/MacOS/firefox",
    },
];

/// A browser, found: the executable and what is known of it.
#[derive(Debug, PartialEq)]
pub struct Browser {
    pub program: PathBuf,
    /// The name profile directories are kept under (`chromium`, `firefox`…).
    pub name: String,
    /// `None`: a browser this does not know; it can only open a URL.
    pub family: Option<Family>,
}

impl Browser {
    /// The browser `setting` names (a known name or a command), else, when
    /// isolating, the first of `$BROWSER` and the known browsers that is
    /// installed and can keep consoles apart the way `isolation` asks.
    pub fn choose(setting: Option<&str>, isolation: Isolation) -> Result<Browser, String> {
        let browser = match setting {
            Some(setting) => Browser::named(setting)?,
            None => Browser::found(isolation)?,
        };
        browser.check(isolation)?;
        Ok(browser)
    }

    fn named(setting: &str) -> Result<Browser, String> {
        if let Some(known) = KNOWN.iter().find(|known| known.name == setting) {
            return installed(known).ok_or_else(|| {
                format!(
                    "browser \"{setting}\" is not installed (looked for {})",
                    places(known)
                )
            });
        }
        let program = which::which(setting).map_err(|_| {
            format!("browser \"{setting}\" is neither a known browser nor a command found on PATH")
        })?;
        Ok(Browser::of_program(program))
    }

    /// What is known of a command from its file name (`google-chrome-stable`
    /// is Chrome, `firefox-esr` Firefox, a wrapper named `chromium` Chromium).
    fn of_program(program: PathBuf) -> Browser {
        let file_name = program
            .file_name()
            .map(|name| name.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let known = KNOWN.iter().find(|known| {
            known.commands.contains(&file_name.as_str())
                || file_name == known.name
                || Path::new(known.mac_app)
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().to_lowercase() == file_name)
        });
        match known {
            Some(known) => Browser {
                program,
                name: known.name.to_owned(),
                family: Some(known.family),
            },
            None => Browser {
                name: profile_safe(&file_name),
                program,
                family: None,
            },
        }
    }

    fn found(isolation: Isolation) -> Result<Browser, String> {
        let from_env = std::env::var("BROWSER").unwrap_or_default();
        let first_entry = from_env.split(':').map(str::trim).find(|e| !e.is_empty());
        // A plain command in $BROWSER is the user's choice of browser.
        if let Some(program) = first_entry
            .filter(|entry| !entry.contains(['%', ' ']))
            .and_then(|entry| which::which(entry).ok())
        {
            let browser = Browser::of_program(program);
            if browser.check(isolation).is_ok() {
                return Ok(browser);
            }
        }
        KNOWN
            .iter()
            .filter(|known| isolation != Isolation::Container || known.family == Family::Firefox)
            .find_map(installed)
            .ok_or_else(|| {
                let wanted = match isolation {
                    Isolation::Container => "Firefox",
                    _ => "a Chromium-based browser or Firefox",
                };
                format!(
                    "no browser found that can isolate a console: it takes {wanted}. Set \
                     [console] browser to one (a name such as \"chrome\" or a command)"
                )
            })
    }

    /// Whether this browser can keep consoles apart as `isolation` asks.
    fn check(&self, isolation: Isolation) -> Result<(), String> {
        let program = self.program.display();
        match (isolation, self.family) {
            (Isolation::Shared, _)
            | (Isolation::Profile, Some(_))
            | (Isolation::Container, Some(Family::Firefox)) => Ok(()),
            (Isolation::Container, _) => Err(format!(
                "{program} is not Firefox: container tabs (ext+granted-containers:) are a \
                 Firefox extension's. Use --isolate=profile, or a Firefox browser"
            )),
            (Isolation::Profile, None) => Err(format!(
                "{program} is not a browser assumed knows how to give a profile of its own \
                 (Chromium, Chrome, Brave, Edge, Vivaldi, Firefox); name one with [console] \
                 browser, or leave out --isolate"
            )),
        }
    }

    /// The command that opens `url` for `role`, kept apart as `isolation`
    /// says, and the role's profile when it has one; `profiles` is where
    /// role profiles live.
    pub fn command(
        &self,
        url: &Secret,
        role: &str,
        isolation: Isolation,
        profiles: &Path,
    ) -> Result<(Command, Option<PathBuf>), String> {
        self.check(isolation)?;
        let mut command = Command::new(&self.program);
        let mut role_profile = None;
        match (isolation, self.family) {
            (Isolation::Profile, Some(family)) => {
                let profile = profile_dir(profiles, &self.name, role)?;
                match family {
                    Family::Chromium => {
                        command
                            .arg(format!("--user-data-dir={}", profile.display()))
                            .args(["--no-first-run", "--no-default-browser-check"]);
                    }
                    Family::Firefox => {
                        command.arg("--profile").arg(&profile);
                    }
                }
                command.arg(url.expose());
                role_profile = Some(profile);
            }
            (Isolation::Container, _) => {
                command
                    .arg("--new-tab")
                    .arg(container_url(role, url).expose());
            }
            _ => {
                command.arg(url.expose());
            }
        }
        Ok((command, role_profile))
    }

    /// Starts the browser on its own: a process group of its own (a Ctrl-C
    /// or the terminal closing later leaves it open) and no terminal
    /// output (its chatter would land after the shell's prompt).
    pub fn open(&self, mut command: Command) -> Outcome {
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let name = self.program.display();
        match start(command, EARLY_EXIT) {
            Ok(()) => Outcome::Opened {
                with: self.program.display().to_string(),
            },
            Err(problem) => Outcome::NotOpened {
                why: format!("{name} {problem}; run it yourself to see its messages"),
            },
        }
    }
}

/// The first of a known browser's places that holds it.
fn installed(known: &Known) -> Option<Browser> {
    let program = if cfg!(target_os = "macos") {
        Some(PathBuf::from(known.mac_app)).filter(|path| path.is_file())
    } else {
        None
    };
    let program = program.or_else(|| {
        known
            .commands
            .iter()
            .find_map(|command| which::which(command).ok())
    })?;
    Some(Browser {
        program,
        name: known.name.to_owned(),
        family: Some(known.family),
    })
}

fn places(known: &Known) -> String {
    let mut places: Vec<&str> = known.commands.to_vec();
    if cfg!(target_os = "macos") {
        places.insert(0, known.mac_app);
    }
    places.join(", ")
}

/// Where role profiles live: the user's data directory
/// (`~/.local/share/assumed`, `~/Library/Application Support/assumed`).
pub fn profiles_root() -> Result<PathBuf, String> {
    directories::ProjectDirs::from("", "", "assumed")
        .map(|dirs| dirs.data_dir().join("console-profiles"))
        .ok_or_else(|| "cannot find the home directory for the console profiles".to_owned())
}

/// `role`'s profile directory for `browser`, made (0700: it holds a signed-in
/// session) if it is not there yet.
fn profile_dir(root: &Path, browser: &str, role: &str) -> Result<PathBuf, String> {
    if role.is_empty() || role.chars().all(|c| c == '.') || role.contains('/') {
        return Err(format!("role \"{role}\" cannot name a profile directory"));
    }
    let dir = root.join(browser).join(role);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("cannot make the browser profile {}: {e}", dir.display()))?;
    Ok(dir)
}

/// A file name's characters kept to those that are safe in a path.
fn profile_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The sign-in URL for a Firefox container named after `role`, in the form
/// granted's extension registers (`ext+granted-containers:name=…&url=…`, read
/// with `URLSearchParams`, so both values are form-encoded).
pub fn container_url(role: &str, url: &Secret) -> Secret {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("name", role)
        .append_pair("url", url.expose())
        .finish();
    Secret::new(format!("ext+granted-containers:{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn arguments(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    fn browser(program: &str) -> Browser {
        Browser::of_program(PathBuf::from(program))
    }

    const URL: &str = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=a%2Bb";

    #[test]
    fn browsers_are_known_by_their_commands_and_mac_executables() {
        let known = |program: &str| {
            let browser = browser(program);
            (browser.name, browser.family)
        };
        let chromium = ("chromium".to_owned(), Some(Family::Chromium));
        assert_eq!(known("/usr/bin/chromium"), chromium);
        assert_eq!(known("/snap/bin/chromium-browser"), chromium);
        assert_eq!(
            known("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"),
            ("chrome".to_owned(), Some(Family::Chromium))
        );
        assert_eq!(
            known("/usr/bin/firefox-esr"),
            ("firefox".to_owned(), Some(Family::Firefox))
        );
        assert_eq!(known("/opt/my browser"), ("my-browser".to_owned(), None));
    }

    #[test]
    fn a_chromium_profile_is_the_roles_own_user_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let url = Secret::new(URL.to_owned());
        let (command, made) = browser("/usr/bin/chromium")
            .command(&url, "prod", Isolation::Profile, root.path())
            .unwrap();
        let profile = root.path().join("chromium/prod");
        assert_eq!(made.as_ref(), Some(&profile));
        assert_eq!(
            arguments(&command),
            [
                format!("--user-data-dir={}", profile.display()),
                "--no-first-run".into(),
                "--no-default-browser-check".into(),
                URL.into(),
            ]
        );
        let mode = std::fs::metadata(&profile).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "made, for this user only");
    }

    #[test]
    fn a_firefox_container_or_profile_is_named_after_the_role() {
        let root = tempfile::tempdir().unwrap();
        let url = Secret::new(URL.to_owned());
        let firefox = browser("/usr/bin/firefox");
        let (command, made) = firefox
            .command(&url, "dev", Isolation::Container, root.path())
            .unwrap();
        assert_eq!(made, None);
        let args = arguments(&command);
        assert_eq!(args[0], "--new-tab");
        let rest = args[1]
            .strip_prefix("ext+granted-containers:")
            .expect("the extension's scheme");
        // What the extension does with it: URLSearchParams.
        let params: Vec<(String, String)> = url::form_urlencoded::parse(rest.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            params,
            [("name".into(), "dev".into()), ("url".into(), URL.into())]
        );
        assert!(
            !root.path().join("firefox/dev").exists(),
            "a container needs no profile"
        );

        let (command, _) = firefox
            .command(&url, "dev", Isolation::Profile, root.path())
            .unwrap();
        let profile = root.path().join("firefox/dev").display().to_string();
        assert_eq!(arguments(&command), ["--profile", &profile, URL]);
    }

    #[test]
    fn only_firefox_has_containers_and_only_known_browsers_profiles() {
        let chromium = browser("/usr/bin/chromium");
        let problem = chromium.check(Isolation::Container).unwrap_err();
        assert!(problem.contains("is not Firefox"), "{problem}");
        let unknown = browser("/usr/local/bin/lynx");
        let problem = unknown.check(Isolation::Profile).unwrap_err();
        assert!(problem.contains("[console] browser"), "{problem}");
        assert!(unknown.check(Isolation::Shared).is_ok());
    }

    #[test]
    fn a_role_name_that_is_only_dots_makes_no_profile() {
        let root = tempfile::tempdir().unwrap();
        assert!(profile_dir(root.path(), "chromium", "..").is_err());
        assert!(profile_dir(root.path(), "chromium", ".").is_err());
        assert!(profile_dir(root.path(), "chromium", "a.b").is_ok());
    }
}
