//! `assumed doctor [ROLE]`: for the moment something does not work. Each
//! check prints ok / warn / fail and, when it is not ok, the command to run
//! next. It asks the daemon over the admin path (which makes the one STS
//! call, `GetCallerIdentity`, for the source check) and reads files; it
//! never prints a secret.
//!
//! * `mod.rs` — the checks of the daemon, its token, the config, the roles,
//!   the source and the clock, and the report;
//! * `shell.rs` — which credentials an SDK started in this shell would take;
//! * `keys.rs` — long-term keys in plain text, and the keyring's state.

mod keys;
mod shell;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use crate::aws_files;
use crate::config::{self, Config, RoleConfig};
use crate::daemon_client::DaemonClient;
use crate::local_client;

/// Past this, SigV4 starts to refuse requests (it allows 5 minutes).
const CLOCK_SKEW_WARNING_SECONDS: i64 = 60;
const START: &str = "assumed serve   (as a service: systemctl --user start assumed)";
const RESTART: &str = "systemctl --user restart assumed";

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

    let (mut config, valid) = check_config(config_arg, &mut findings);
    let located = locate_daemon(config_arg, &config, valid, &mut findings);
    let daemon = located
        .as_ref()
        .and_then(|located| check_daemon(located, &mut findings));
    if let Some(located) = located.filter(|l| l.from_address_file) {
        // The shell is checked against where the daemon listens, which
        // its address file knows even when the config is broken or changed.
        config.server.listen = located.listen;
    }
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
    findings.extend(keys::plaintext_keys(&shell));
    findings.push(keys::keyring(&config));

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

/// The config as `assumed check` sees it, and whether it is valid; the
/// defaults when it is not, which is where a daemon runs without one.
fn check_config(config_arg: Option<&Path>, findings: &mut Vec<Finding>) -> (Config, bool) {
    match validate(config::load_or_default(config_arg), config_arg) {
        Ok((config, summary, roles)) => {
            findings.push(Finding::ok("config", summary));
            if roles == 0 {
                let path = config
                    .path
                    .clone()
                    .or_else(|| config::resolve_path(config_arg));
                findings.push(Finding::warn(
                    "roles",
                    config::no_roles_hint(path.as_deref()),
                    "assumed check && assumed reload",
                ));
            }
            (config, true)
        }
        Err(errors) => {
            findings.push(Finding::fail(
                "config",
                format!(
                    "the config is not valid (a running daemon keeps its last good one):\n{errors}"
                ),
                "fix the lines named above, then: assumed check && assumed reload",
            ));
            (Config::default(), false)
        }
    }
}

/// What `assumed check` reports: the config is valid, and `default_role`
/// names something the daemon would serve (which may be an imported
/// profile, so the parser alone cannot tell). The summary, or every problem
/// as `file:line:column: message`. Also how many roles it would serve.
pub fn validate(
    loaded: Result<Config, config::Diagnostics>,
    explicit: Option<&Path>,
) -> Result<(Config, String, usize), String> {
    let config = loaded.map_err(|diagnostics| diagnostics.to_string())?;
    let source = config
        .path
        .as_deref()
        .or(explicit)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults (no config file)".into());
    let roles = crate::profiles::known_roles(&config);
    if let Some(problem) = default_role_problem(&config, &roles, &source) {
        return Err(problem);
    }
    let imported = roles.len() - config.roles.len();
    let summary = format!(
        "{source}: ok, {} role(s) configured, {imported} more from ~/.aws/config",
        config.roles.len()
    );
    Ok((config, summary, roles.len()))
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

/// Where the daemon should be: its address file (found without the config),
/// else the config's first listen address. A daemon that listens elsewhere
/// than a valid config says has not been restarted since `listen` changed.
fn locate_daemon(
    config_arg: Option<&Path>,
    config: &Config,
    valid: bool,
    findings: &mut Vec<Finding>,
) -> Option<DaemonClient> {
    let from_config = DaemonClient::from_config(config);
    match (DaemonClient::from_address_file(config_arg), from_config) {
        (Some(found), Ok(configured)) if valid && found.address != configured.address => {
            findings.push(Finding::warn(
                "daemon",
                format!(
                    "the daemon listens at {}, the config says {}: clients set up by \
                     `assumed env` look there",
                    found.address, configured.address
                ),
                format!("restart the daemon to listen where the config says: {RESTART}"),
            ));
            Some(found)
        }
        (Some(found), _) => Some(found),
        (None, Ok(configured)) => Some(configured),
        (None, Err(_)) => {
            findings.push(Finding::fail(
                "daemon",
                "the config has no listen address",
                "add listen = [\"127.0.0.1:9911\"] to [server]",
            ));
            None
        }
    }
}

/// Is the daemon answering, is its token file as SDKs need it, and does the
/// daemon take that token.
fn check_daemon(located: &DaemonClient, findings: &mut Vec<Finding>) -> Option<Daemon> {
    let token = check_token_file(&located.token_file, findings);
    match ask_status(located, token) {
        Ok(daemon) => {
            findings.push(version_finding(&daemon));
            Some(daemon)
        }
        Err(failure) => {
            findings.extend(failure);
            None
        }
    }
}

/// `/healthz`, then `/admin/status` with the token. The finding that says
/// what failed (none when it is the token, which has its own).
fn ask_status(located: &DaemonClient, token: Option<String>) -> Result<Daemon, Option<Finding>> {
    let address = located.address;
    let down = |message: String| Some(Finding::fail("daemon", message, START));
    match local_client::healthz(address) {
        Ok(reply) if reply.status == 200 => {}
        Ok(reply) => {
            return Err(down(format!(
                "{address} answers /healthz with {}: is that assumed?",
                reply.status
            )));
        }
        Err(error) => return Err(down(format!("no daemon answers at {address} ({error})"))),
    }
    let token = token.ok_or(None)?;
    let reply = local_client::get(address, "/admin/status", &token).map_err(|error| {
        down(format!(
            "the daemon at {address} stopped answering: {error}"
        ))
    })?;
    let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status != 200 {
        let reason = status["message"].as_str().unwrap_or("no reason given");
        return Err(Some(Finding::fail(
            "daemon",
            format!(
                "the daemon at {address} refuses the token in {} ({}: {reason}); another daemon may have written it",
                located.token_file.display(),
                reply.status
            ),
            format!("restart the daemon so that it writes its token again: {RESTART}"),
        )));
    }
    Ok(Daemon {
        address,
        token,
        status,
    })
}

/// The daemon's pid and version, and whether it runs this version.
fn version_finding(daemon: &Daemon) -> Finding {
    let address = daemon.address;
    let pid = daemon.status["daemon"]["pid"].as_u64().unwrap_or_default();
    let version = daemon.status["daemon"]["version"]
        .as_str()
        .unwrap_or("unknown");
    let ours = env!("CARGO_PKG_VERSION");
    if version == ours {
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
            format!("restart the daemon to run this version: {RESTART}"),
        )
    }
}

/// The token file as SDKs read it: there, ours, private, exactly the token.
/// Returns the token when it is usable.
fn check_token_file(path: &Path, findings: &mut Vec<Finding>) -> Option<String> {
    match usable_token(path) {
        Ok(token) => {
            let message = format!("{}: mode 600, no newline", path.display());
            findings.push(Finding::ok("token", message));
            Some(token)
        }
        Err(problem) => {
            findings.push(problem);
            None
        }
    }
}

/// The token in `path`, or the first thing that keeps SDKs from using it.
fn usable_token(path: &Path) -> Result<String, Finding> {
    let shown = path.display();
    let fail = |message: String, next: String| Finding::fail("token", message, next);
    let metadata = fs::metadata(path).map_err(|error| {
        fail(
            format!("cannot read the token file {shown}: {error}"),
            "start the daemon, which writes it: assumed serve".into(),
        )
    })?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    if metadata.uid() != uid {
        return Err(fail(
            format!("{shown} belongs to uid {}, not to you", metadata.uid()),
            "run the daemon as yourself, or point token_file at a file of yours".into(),
        ));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(
            format!("{shown} has mode {mode:03o}: other users can read it and take every role"),
            format!("chmod 600 {shown}"),
        ));
    }
    let bytes = fs::read(path).map_err(|error| {
        fail(
            format!("cannot read {shown}: {error}"),
            format!("ls -l {shown}"),
        )
    })?;
    if bytes.ends_with(b"\n") || bytes.ends_with(b"\r") {
        return Err(fail(
            format!("{shown} ends in a newline: botocore, Node and Rust refuse such a token"),
            format!("printf %s \"$(cat {shown})\" > {shown}"),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) if text.len() >= 16 && text.bytes().all(|b| b.is_ascii_graphic()) => Ok(text),
        _ => Err(fail(
            format!("{shown} does not hold a token (visible ASCII, 16 characters or more)"),
            format!("restart the daemon so that it writes a new one: {RESTART}"),
        )),
    }
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
        let endpoint = endpoint_line(role);
        let finding = match role["last_error"].as_str() {
            // What a person must do (needs-mfa, needs-login) is in the error too.
            Some(error) if matches!(state, "failing" | "needs-mfa" | "needs-login") => {
                let next = next_step(error).unwrap_or("assumed status");
                let message = format!("role {name}: {state}: {error}{endpoint}");
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
                Finding::ok("role", format!("role {name}: {state}{expires}{endpoint}"))
            }
        };
        findings.push(finding);
    }
}

/// The second line of a role's finding: where its STS calls go and which
/// setting chose that (empty when the daemon does not say).
fn endpoint_line(role: &serde_json::Value) -> String {
    match (
        role["sts_endpoint"]["url"].as_str(),
        role["sts_endpoint"]["from"].as_str(),
    ) {
        (Some(url), Some(from)) => format!("\nSTS endpoint {url} (from {from})"),
        _ => String::new(),
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
