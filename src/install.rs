//! `assumed install --systemd|--launchd`: writes the user service definition
//! for this binary into the user's directories and says how to enable it.
//! The files are the ones in `systemd/`, with the real paths filled in.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const SERVICE_TEMPLATE: &str = include_str!("../systemd/assumed.service");
const SOCKET_TEMPLATE: &str = include_str!("../systemd/assumed.socket");
const TEMPLATE_EXEC_START: &str = "ExecStart=%h/.cargo/bin/assumed serve";
pub const LAUNCHD_LABEL: &str = "dev.assumed";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

/// What the installer writes: paths and contents, decided before touching disk.
pub struct Plan {
    pub files: Vec<(PathBuf, String)>,
    pub enable: String,
}

/// `binary` is the executable to run, `config` the config file to pass (if
/// the user has one: without a file `serve` runs on defaults).
pub fn plan(manager: Manager, binary: &Path, config: Option<&Path>) -> Result<Plan, String> {
    let dirs = directories::BaseDirs::new().ok_or("cannot find the home directory")?;
    match manager {
        Manager::Systemd => {
            let dir = dirs.config_dir().join("systemd/user");
            let mut exec_start = format!("ExecStart={} serve", systemd_quote(binary));
            if let Some(config) = config {
                exec_start.push_str(&format!(" --config {}", systemd_quote(config)));
            }
            Ok(Plan {
                files: vec![
                    (
                        dir.join("assumed.service"),
                        SERVICE_TEMPLATE.replace(TEMPLATE_EXEC_START, &exec_start),
                    ),
                    (dir.join("assumed.socket"), SOCKET_TEMPLATE.to_owned()),
                ],
                enable: "systemctl --user daemon-reload\n\
                         systemctl --user enable --now assumed.socket assumed.service"
                    .into(),
            })
        }
        Manager::Launchd => {
            let home = dirs.home_dir();
            let plist = home.join(format!("Library/LaunchAgents/{LAUNCHD_LABEL}.plist"));
            let log = home.join("Library/Logs/assumed.log");
            Ok(Plan {
                enable: format!("launchctl bootstrap gui/$(id -u) {}", plist.display()),
                files: vec![(plist, launchd_plist(binary, config, &log))],
            })
        }
    }
}

/// Writes the plan. A file that exists with other contents is left alone
/// unless `force`: it may hold the user's own edits.
pub fn write(plan: &Plan, force: bool) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    for (path, contents) in &plan.files {
        match fs::read_to_string(path) {
            Ok(existing) if existing == *contents => {
                report.push(format!("unchanged {}", path.display()));
                continue;
            }
            Ok(_) if !force => {
                return Err(format!(
                    "{} exists and differs from what would be written; \
                     rerun with --force to replace it (see --dry-run for the new contents)",
                    path.display()
                ));
            }
            Ok(_) => report.push(format!("replaced {}", path.display())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                report.push(format!("wrote {}", path.display()))
            }
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report)
}

/// systemd splits ExecStart on spaces; quote paths that have any.
fn systemd_quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains([' ', '"', '\\']) {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn launchd_plist(binary: &Path, config: Option<&Path>, log: &Path) -> String {
    let mut arguments = vec![binary.display().to_string(), "serve".into()];
    if let Some(config) = config {
        arguments.push("--config".into());
        arguments.push(config.display().to_string());
    }
    let arguments: String = arguments
        .iter()
        .map(|arg| format!("    <string>{}</string>\n", xml_escape(arg)))
        .collect();
    let log = xml_escape(&log.display().to_string());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{arguments}  </array>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <true/>
  <key>ProcessType</key>
  <string>Background</string>
  <key>StandardOutPath</key>
  <string>{log}</string>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_has_the_line_the_installer_replaces() {
        assert!(SERVICE_TEMPLATE.contains(TEMPLATE_EXEC_START));
    }

    #[test]
    fn paths_with_spaces_are_quoted_for_systemd() {
        assert_eq!(
            systemd_quote(Path::new("/opt/a b/assumed")),
            "\"/opt/a b/assumed\""
        );
        assert_eq!(
            systemd_quote(Path::new("/usr/bin/assumed")),
            "/usr/bin/assumed"
        );
    }

    #[test]
    fn plist_arguments_are_escaped() {
        let plist = launchd_plist(
            Path::new("/x/a&b"),
            Some(Path::new("/c<d>.toml")),
            Path::new("/l"),
        );
        assert!(plist.contains("<string>/x/a&amp;b</string>"));
        assert!(plist.contains("<string>/c&lt;d&gt;.toml</string>"));
    }
}
