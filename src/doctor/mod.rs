//! `assumed doctor [ROLE]`: for the moment something does not work. Each
//! check prints ok / warn / fail and, when it is not ok, the command to run
//! next. It asks the daemon over the admin path (which makes the one STS
//! call, `GetCallerIdentity`, for the source check) and reads files; it
//! never prints a secret.
//!
//! * `mod.rs` — the checks of the daemon, its token, the config, the roles,
//!   the source and the clock, and the report;
//! * `shell.rs` — which credentials an SDK started in this shell would take.

mod shell;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::aws_files;
use crate::client_env::client_address;
use crate::config::{self, Config, RoleConfig};
use crate::daemon;
use crate::local_client;

/// Past this, SigV4 starts to refuse requests (it allows 5 minutes).
const CLOCK_SKEW_WARNING_SECONDS: i64 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    /// The command to run next, when there is something to do.
    pub next: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Finding {
            check,
            status: Status::Ok,
            message: message.into(),
            next: None,
        }
    }

    fn warn(check: &'static str, message: impl Into<String>, next: impl Into<String>) -> Self {
        Finding {
            status: Status::Warn,
            next: Some(next.into()),
            ..Finding::ok(check, message)
        }
    }

    fn fail(check: &'static str, message: impl Into<String>, next: impl Into<String>) -> Self {
        Finding {
            status: Status::Fail,
            next: Some(next.into()),
            ..Finding::ok(check, message)
        }
    }
}

/// The running daemon as the admin path shows it.
struct Daemon {
    address: std::net::SocketAddr,
    token: String,
    status: serde_json::Value,
}

pub fn run(config_arg: Option<&Path>, role: Option<&str>, json: bool) -> Result<ExitCode, String> {
    // The shell as it is, before anything reads the user's own files instead.
    let shell: HashMap<String, String> = std::env::vars().collect();
    aws_files::restore_users_own_env();
    let mut findings = Vec::new();

    let config = match validate(config::load_or_default(config_arg), config_arg) {
        Ok((config, summary)) => {
            findings.push(Finding::ok("config", summary));
            config
        }
        Err(errors) => {
            findings.push(Finding::fail(
                "config",
                format!(
                    "the config is not valid (a running daemon keeps its last good one):\n{errors}"
                ),
                "fix the lines named above, then: assumed check && assumed reload",
            ));
            // Still look for a daemon where one would be without a config.
            Config::default()
        }
    };
    let daemon = check_daemon(&config, &mut findings);
    // The role in question: the one asked about, else the one this shell points at.
    let target = role
        .map(str::to_owned)
        .or_else(|| shell::pointed_role(&shell, &config));
    if let Some(daemon) = &daemon {
        check_roles(daemon, target.as_deref(), role.is_some(), &mut findings);
        check_source(daemon, target.as_deref(), &mut findings);
    }
    let daemon_token = daemon.as_ref().map(|d| d.token.as_str());
    findings.push(shell::check(&shell, &config, daemon_token, role));

    let failed = findings.iter().any(|f| f.status == Status::Fail);
    if json {
        let report = serde_json::json!({ "ok": !failed, "findings": findings });
        println!("{report}");
    } else {
        print!("{}", render(&findings));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What `assumed check` reports: the config is valid, and `default_role`
/// names something the daemon would serve (which may be an imported
/// profile, so the parser alone cannot tell). The summary, or every problem
/// as `file:line:column: message`.
pub fn validate(
    loaded: Result<Config, config::Diagnostics>,
    explicit: Option<&Path>,
) -> Result<(Config, String), String> {
    let config = loaded.map_err(|diagnostics| diagnostics.to_string())?;
    let source = config
        .path
        .as_deref()
        .or(explicit)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults (no config file)".into());
    let roles = daemon::known_roles(&config);
    if let Some(problem) = default_role_problem(&config, &roles, &source) {
        return Err(problem);
    }
    let imported = roles.len() - config.roles.len();
    let summary = format!(
        "{source}: ok, {} role(s) configured, {imported} more from ~/.aws/config",
        config.roles.len()
    );
    Ok((config, summary))
}

/// `default_role` checked against everything the daemon would serve.
fn default_role_problem(
    config: &Config,
    roles: &BTreeMap<String, RoleConfig>,
    source: &str,
) -> Option<String> {
    let name = config.server.default_role.as_ref()?;
    if roles.contains_key(name) {
        return None;
    }
    let text = config
        .path
        .as_ref()
        .and_then(|path| fs::read_to_string(path).ok())
        .unwrap_or_default();
    let (line, column) = config::locate_value(&text, "default_role").unwrap_or((1, 1));
    Some(format!(
        "{source}:{line}:{column}: default_role \"{name}\" names neither a [roles] entry nor a ~/.aws/config profile with role_arn"
    ))
}

/// Is the daemon answering, is its token file as SDKs need it, and does the
/// daemon take that token.
fn check_daemon(config: &Config, findings: &mut Vec<Finding>) -> Option<Daemon> {
    let Some(listen) = config.server.listen.first() else {
        findings.push(Finding::fail(
            "daemon",
            "the config has no listen address",
            "add listen = [\"127.0.0.1:9911\"] to [server]",
        ));
        return None;
    };
    let address = client_address(*listen);
    let token_path = daemon::token_path(config);
    let token = check_token_file(&token_path, findings);
    let start = "assumed serve   (as a service: systemctl --user start assumed)";
    match local_client::request(address, "GET", "/healthz", "", &[]) {
        Ok(reply) if reply.status == 200 => {}
        Ok(reply) => {
            findings.push(Finding::fail(
                "daemon",
                format!(
                    "{address} answers /healthz with {}: is that assumed?",
                    reply.status
                ),
                start,
            ));
            return None;
        }
        Err(error) => {
            findings.push(Finding::fail(
                "daemon",
                format!("no daemon answers at {address} ({error})"),
                start,
            ));
            return None;
        }
    }
    let token = token?;
    let reply = match local_client::request(address, "GET", "/admin/status", &token, &[]) {
        Ok(reply) => reply,
        Err(error) => {
            findings.push(Finding::fail(
                "daemon",
                format!("the daemon at {address} stopped answering: {error}"),
                start,
            ));
            return None;
        }
    };
    let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status != 200 {
        let reason = status["message"].as_str().unwrap_or("no reason given");
        findings.push(Finding::fail(
            "daemon",
            format!(
                "the daemon at {address} refuses the token in {} ({}: {reason}); another daemon may have written it",
                token_path.display(),
                reply.status
            ),
            "restart the daemon so that it writes its token again: systemctl --user restart assumed",
        ));
        return None;
    }
    let pid = status["daemon"]["pid"].as_u64().unwrap_or_default();
    let version = status["daemon"]["version"].as_str().unwrap_or("unknown");
    let ours = env!("CARGO_PKG_VERSION");
    findings.push(if version == ours {
        Finding::ok(
            "daemon",
            format!("answering at {address} (pid {pid}, assumed {version})"),
        )
    } else {
        Finding::warn(
            "daemon",
            format!(
                "answering at {address} (pid {pid}) runs assumed {version}, this command is {ours}"
            ),
            "restart the daemon to run this version: systemctl --user restart assumed",
        )
    });
    Some(Daemon {
        address,
        token,
        status,
    })
}

/// The token file as SDKs read it: there, ours, private, exactly the token.
/// Returns the token when it is usable.
fn check_token_file(path: &Path, findings: &mut Vec<Finding>) -> Option<String> {
    let shown = path.display();
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => {
            findings.push(Finding::fail(
                "token",
                format!("cannot read the token file {shown}: {error}"),
                "start the daemon, which writes it: assumed serve",
            ));
            return None;
        }
    };
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if metadata.uid() != uid {
        findings.push(Finding::fail(
            "token",
            format!("{shown} belongs to uid {}, not to you", metadata.uid()),
            "run the daemon as yourself, or point token_file at a file of yours",
        ));
        return None;
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        findings.push(Finding::fail(
            "token",
            format!("{shown} has mode {mode:03o}: other users can read it and take every role"),
            format!("chmod 600 {shown}"),
        ));
        return None;
    }
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            findings.push(Finding::fail(
                "token",
                format!("cannot read {shown}: {error}"),
                format!("ls -l {shown}"),
            ));
            return None;
        }
    };
    if bytes.ends_with(b"\n") || bytes.ends_with(b"\r") {
        findings.push(Finding::fail(
            "token",
            format!("{shown} ends in a newline: botocore, Node and Rust refuse such a token"),
            format!("printf %s \"$(cat {shown})\" > {shown}"),
        ));
        return None;
    }
    let text = String::from_utf8(bytes).ok()?;
    if text.len() < 16 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        findings.push(Finding::fail(
            "token",
            format!("{shown} does not hold a token (visible ASCII, 16 characters or more)"),
            "restart the daemon so that it writes a new one: systemctl --user restart assumed",
        ));
        return None;
    }
    findings.push(Finding::ok(
        "token",
        format!("{shown}: mode 600, no newline"),
    ));
    Some(text)
}

/// Each role's state as the daemon reports it; with `asked`, only that one.
fn check_roles(daemon: &Daemon, target: Option<&str>, asked: bool, findings: &mut Vec<Finding>) {
    let roles = daemon.status["roles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(name) = target.filter(|_| asked) {
        if !roles.iter().any(|r| r["name"] == name) {
            findings.push(Finding::fail(
                "role",
                format!("the daemon serves no role named {name:?}"),
                "assumed roles",
            ));
            return;
        }
    }
    for role in &roles {
        let name = role["name"].as_str().unwrap_or_default();
        if asked && Some(name) != target {
            continue;
        }
        let state = role["state"].as_str().unwrap_or("unknown");
        let is_target = Some(name) == target;
        let finding = match role["last_error"].as_str() {
            Some(error) if state == "failing" => {
                let next = next_step(error).unwrap_or("assumed status");
                let message = format!("role {name}: {state}: {error}");
                if is_target {
                    Finding::fail("role", message, next)
                } else {
                    Finding::warn("role", message, next)
                }
            }
            _ => {
                let expires = role["expires_in_seconds"]
                    .as_u64()
                    .map(|s| {
                        let left = humantime::format_duration(std::time::Duration::from_secs(s));
                        format!(", expires in {left}")
                    })
                    .unwrap_or_default();
                Finding::ok("role", format!("role {name}: {state}{expires}"))
            }
        };
        findings.push(finding);
    }
}

/// The command a daemon message ends with (`…; run: aws sso login …`).
fn next_step(message: &str) -> Option<&str> {
    message
        .rsplit_once("run: ")
        .map(|(_, command)| command.trim())
}

/// The credentials that sign for `target` (or `[source]`): do they work, and
/// is the clock in step with STS.
fn check_source(daemon: &Daemon, target: Option<&str>, findings: &mut Vec<Finding>) {
    let path = match target {
        Some(role) => format!("/admin/source/{role}"),
        None => "/admin/source".to_owned(),
    };
    let answer = local_client::request(daemon.address, "GET", &path, &daemon.token, &[])
        .ok()
        .and_then(|reply| serde_json::from_slice::<serde_json::Value>(&reply.body).ok());
    let Some(answer) = answer else {
        findings.push(Finding::fail(
            "source",
            "the daemon did not answer the source check",
            "assumed status",
        ));
        return;
    };
    if answer["source"].is_null() {
        let message = answer["message"].as_str().unwrap_or("no reason given");
        findings.push(Finding::fail("source", message, "assumed roles"));
        return;
    }
    let source = answer["source"].as_str().unwrap_or("the source");
    let signs_for = answer["signs_for"]
        .as_str()
        .map(|role| format!(" (signs for role {role})"))
        .unwrap_or_default();
    findings.push(match answer["identity"]["arn"].as_str() {
        Some(arn) => {
            let expires = answer["identity"]["expires"]
                .as_str()
                .map(|at| format!(", expires {at}"))
                .unwrap_or_else(|| ", long-lived".into());
            Finding::ok(
                "source",
                format!("{source}{signs_for} works as {arn}{expires}"),
            )
        }
        None => {
            let message = answer["error"]["message"].as_str().unwrap_or("failed");
            Finding::fail(
                "source",
                format!("{source}{signs_for} does not work: {message}"),
                next_step(message).unwrap_or("assumed status"),
            )
        }
    });
    match answer["clock_skew_seconds"].as_i64() {
        Some(skew) if skew.abs() > CLOCK_SKEW_WARNING_SECONDS => {
            let direction = if skew > 0 { "behind" } else { "ahead of" };
            findings.push(Finding::warn(
                "clock",
                format!(
                    "this machine's clock is {}s {direction} STS; SigV4 refuses requests over 5 minutes off",
                    skew.abs()
                ),
                "timedatectl set-ntp true   (or: sudo systemctl restart systemd-timesyncd)",
            ))
        }
        Some(skew) => findings.push(Finding::ok(
            "clock",
            format!("within {}s of STS", skew.abs()),
        )),
        None => findings.push(Finding::warn(
            "clock",
            "no answer from STS carried a Date to compare with",
            "assumed doctor   (again, once STS answers)",
        )),
    }
}

fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for finding in findings {
        let status = match finding.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        };
        let mut lines = finding.message.lines();
        let first = lines.next().unwrap_or_default();
        out.push_str(&format!("{status:<5} {:<7} {first}\n", finding.check));
        for line in lines {
            out.push_str(&format!("{:14}{line}\n", ""));
        }
        if let Some(next) = &finding.next {
            out.push_str(&format!("{:14}next: {next}\n", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_step_is_what_a_message_says_to_run() {
        assert_eq!(
            next_step("the AWS SSO session … has expired; run: aws sso login --sso-session corp"),
            Some("aws sso login --sso-session corp")
        );
        assert_eq!(next_step("STS AccessDenied: no"), None);
    }

    #[test]
    fn the_report_aligns_and_shows_next_steps() {
        let text = render(&[
            Finding::ok("daemon", "answering"),
            Finding::fail("token", "bad\nsecond line", "chmod 600 t"),
        ]);
        assert_eq!(
            text,
            "ok    daemon  answering\nfail  token   bad\n              second line\n              next: chmod 600 t\n"
        );
    }
}
