//! The daemon's TOML config: types, loading, and validation that reports
//! every problem at once with `file:line:column`.

mod diagnostic;
mod reader;
mod sections;
#[cfg(test)]
mod tests;
pub mod validate;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diagnostic::{Diagnostic, Diagnostics};

use crate::credentials::Secret;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";
const DEFAULT_PORT: u16 = 9911;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The file this came from; `None` for built-in defaults or `parse`.
    pub path: Option<PathBuf>,
    pub server: ServerConfig,
    pub source: SourceConfig,
    pub roles: BTreeMap<String, RoleConfig>,
    pub console: ConsoleConfig,
}

/// `[console]`: how `assumed console` opens the sign-in URL.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConsoleConfig {
    /// `browser`: a browser's name (`chromium`, `chrome`, `brave`, `edge`,
    /// `vivaldi`, `firefox`) or a command; `None`: `$BROWSER`, then the
    /// platform's opener, unless a console is isolated.
    pub browser: Option<String>,
    /// `isolate`: the default of `--isolate`.
    pub isolate: Isolation,
}

/// How the consoles of different roles are kept apart in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// One browser profile for all: opening a role signs the last one out.
    #[default]
    Shared,
    /// A browser profile of the role's own (`isolate = true` or `"profile"`).
    Profile,
    /// A Firefox container named after the role, through the
    /// `ext+granted-containers:` URL its extension handles.
    Container,
}

impl Isolation {
    /// `isolate`'s and `--isolate=`'s words.
    pub fn parse(text: &str) -> Option<Isolation> {
        match text {
            "profile" => Some(Isolation::Profile),
            "container" => Some(Isolation::Container),
            "none" => Some(Isolation::Shared),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub default_role: Option<String>,
    /// `~/` already expanded to `$HOME`.
    pub token_file: Option<PathBuf>,
    pub allowed_hosts: Vec<String>,
    pub refresh_before: Duration,
    /// A role nobody asked for this long stops being refreshed.
    pub idle_timeout: Duration,
    pub expose: bool,
    /// Container-endpoint requests from peers inside this subnet need no token.
    pub trust_subnet: Option<crate::subnet::Subnet>,
    pub imdsv1: bool,
    pub import_profiles: bool,
    /// Serve Prometheus metrics at /metrics.
    pub metrics: bool,
    /// Desktop notifications when a person must act; `None`: on when a
    /// graphical session is present (see `crate::notify::by_default`).
    pub notify: Option<bool>,
    /// Other local users whose processes may have credentials.
    pub allow_uids: Vec<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT))],
            default_role: None,
            token_file: None,
            allowed_hosts: Vec::new(),
            refresh_before: Duration::from_secs(30 * 60),
            idle_timeout: Duration::from_secs(60 * 60),
            expose: false,
            trust_subnet: None,
            imdsv1: false,
            import_profiles: true,
            metrics: true,
            notify: None,
            allow_uids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceConfig {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// The console federation endpoint for `assumed console`; `None`: the
    /// role's partition's (`https://signin.aws.amazon.com/federation`, …).
    pub federation_endpoint: Option<String>,
    /// How long an MFA session (GetSessionToken) lasts when the source is
    /// long-lived keys; `None` means the default, 12h.
    pub mfa_session: Option<Duration>,
    /// Keep MFA sessions across restarts; `None` means yes.
    pub remember_mfa: Option<bool>,
    /// Where MFA sessions are kept; `None`: the runtime directory, when the
    /// system has one (see `crate::sts::mfa_store`).
    pub mfa_session_file: Option<PathBuf>,
    pub deadlines: Deadlines,
    /// `keys`: the stored keys (`assumed keys add`) that sign for every role
    /// without a source of its own; `None`: the profile or default chain.
    pub keys: Option<String>,
    /// `keyring`, `keyring_file`, `keyring_passphrase_file`: where stored keys live.
    pub keyring: crate::keys::KeyringSettings,
}

/// How long the daemon waits on anything upstream. Nothing waits without
/// one: a dead TCP connection after a network change must end in an error
/// and a retry, never in a role that is "refreshing" for ever.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deadlines {
    /// `connect_timeout`: TCP + TLS connect to STS (and SSO, IMDS…).
    pub connect: Duration,
    /// `read_timeout`: silence on an open connection before it is given up.
    pub read: Duration,
    /// `sts_timeout`: one STS operation, retries included.
    pub sts: Duration,
    /// `process_timeout`: a `credential_process` run; then it is killed.
    pub process: Duration,
    /// `source_timeout`: any other source (SSO token refresh, web identity,
    /// IMDS, the container endpoint).
    pub source: Duration,
    /// `mfa_process_timeout`: a role's `mfa_process` run; then it is killed.
    pub mfa_process: Duration,
}

impl Deadlines {
    /// The whole of one role's fetch: its source, then STS, with room to
    /// spare; for a role that needs an MFA code, also its `mfa_process` and
    /// the GetSessionToken that spends the code.
    pub fn fetch(&self) -> Duration {
        self.process.max(self.source) + self.mfa_process + self.sts * 2 + Duration::from_secs(5)
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(10),
            sts: Duration::from_secs(20),
            process: Duration::from_secs(60),
            source: Duration::from_secs(30),
            // Long enough to touch a key or unlock a password manager,
            // short enough that the client asking is still there.
            mfa_process: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct RoleConfig {
    pub role_arn: Option<String>,
    pub profile: Option<String>,
    pub session_name: Option<String>,
    pub duration: Option<Duration>,
    /// A secret shared with the role's owner: it prints as `<redacted>`.
    pub external_id: Option<Secret>,
    pub mfa_serial: Option<String>,
    /// A command whose first line of output is the MFA code (a YubiKey, a
    /// password manager), run by the daemon when a code is needed.
    pub mfa_process: Option<String>,
    pub source_profile: Option<String>,
    /// `source_keys`: stored keys (`assumed keys add`) sign this role's
    /// AssumeRole, whatever `[source]` says.
    pub source_keys: Option<String>,
    pub via: Option<String>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub region: Option<String>,
    /// This role's own STS endpoint: wins over `[source] sts_endpoint` and
    /// everything the SDKs would read (see `sts/endpoint.rs`).
    pub sts_endpoint: Option<String>,
    pub prefetch: bool,
    pub imds_listen: Option<SocketAddr>,
    /// A desktop notification the first time a process takes this role.
    pub notify_on_use: bool,
    /// `confirm`: the role goes only to programs the person allowed.
    pub confirm: Option<Confirm>,
    /// Set only for roles imported from `~/.aws/config`: where they came from.
    pub imported: Option<ImportedProfile>,
}

/// `confirm`, `confirm_for`, `confirm_timeout`: ask the person before a
/// program gets the role (docs/security.md, "Ask before prod").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub scope: ConfirmScope,
    /// `confirm_for`: how long an approval lasts.
    pub lasts: Duration,
    /// `confirm_timeout`: how long a question waits for an answer.
    pub timeout: Duration,
}

/// What one approval covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmScope {
    /// `true` or `"once-per-program"`: the same executable (path and
    /// content) and script, for the same user.
    Program,
    /// `"each-process"`: one process (pid and start time).
    Process,
}

impl Confirm {
    pub const DEFAULT_LASTS: Duration = Duration::from_secs(8 * 60 * 60);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
}

/// What a role imported from `~/.aws/config` carries beyond the TOML keys.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ImportedProfile {
    /// The profile's name; its own settings (region, `endpoint_url`,
    /// `services`, then its source profile's) shape the STS client that
    /// assumes it (see `sts/endpoint.rs`).
    pub profile: String,
    pub credential_source: Option<CredentialSource>,
    /// `web_identity_token_file`: assume with AssumeRoleWithWebIdentity.
    pub web_identity_token_file: Option<PathBuf>,
    /// `sts_regional_endpoints = legacy`: use the global STS endpoint.
    pub legacy_global_sts: bool,
}

/// `credential_source` in a profile: where the source credentials come from
/// instead of another profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    Ec2InstanceMetadata,
    EcsContainer,
}

/// Where `key = value` first stands in `source`, as 1-based line and column
/// of the value: for checks made after parsing (e.g. against imported profiles).
pub fn locate_value(source: &str, key: &str) -> Option<(usize, usize)> {
    source.lines().enumerate().find_map(|(index, line)| {
        let rest = line.trim_start().strip_prefix(key)?;
        let after_equals = rest.trim_start().strip_prefix('=')?;
        let value_at = line.len() - after_equals.trim_start().len();
        Some((index + 1, line[..value_at].chars().count() + 1))
    })
}

/// Parses and validates a config; `file_name` only labels the diagnostics.
pub fn parse(source: &str, file_name: &str) -> Result<Config, Diagnostics> {
    let problems = diagnostic::Problems::default();
    let (document, syntax_errors) = toml::de::DeTable::parse_recoverable(source);
    let mut last_line = 0;
    for error in &syntax_errors {
        let span = error.span().unwrap_or(0..0);
        // The parser recovers by skipping ahead; a second error on the same line is an echo.
        let (line, _) = diagnostic::line_column(source, span.start);
        if line != last_line {
            problems.report(span, error.message());
        }
        last_line = line;
    }
    // A partly parsed document would only add confusing follow-up problems.
    let config = if syntax_errors.is_empty() {
        sections::config(document.get_ref(), &problems)
    } else {
        Config::default()
    };
    problems.into_result(config, source, file_name)
}

pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let source = std::fs::read_to_string(path).map_err(|error| unreadable(path, &error))?;
    parse_file(&source, path)
}

/// `--config`, else `$ASSUMED_CONFIG`, else the platform config dir's `config.toml`.
pub fn resolve_path(cli: Option<&Path>) -> Option<PathBuf> {
    explicit_path(cli).or_else(default_path)
}

/// What to do when there is nothing to serve (`serve` says it at start,
/// `doctor` as a finding): where roles come from, for this config file.
pub fn no_roles_hint(path: Option<&Path>) -> String {
    let file = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the config file".into());
    format!(
        "no roles to serve: `assumed init` writes {file} from the role profiles of \
         ~/.aws/config, or add a [roles.NAME] with role_arn to it (config/example.toml \
         shows every key); then `assumed reload`"
    )
}

/// Like `load`, but a missing file at the default location means built-in
/// defaults (serve works with no file); a missing file that was asked for is an error.
pub fn load_or_default(cli: Option<&Path>) -> Result<Config, Diagnostics> {
    match explicit_path(cli) {
        Some(path) => load(&path),
        None => load_if_present(default_path()),
    }
}

/// The config file the user named (`--config`, else `ASSUMED_CONFIG`).
pub fn explicit_path(cli: Option<&Path>) -> Option<PathBuf> {
    let from_env = || {
        std::env::var_os("ASSUMED_CONFIG")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    cli.map(Path::to_path_buf).or_else(from_env)
}

fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "assumed")
        .map(|dirs| dirs.config_dir().join("config.toml"))
}

fn load_if_present(path: Option<PathBuf>) -> Result<Config, Diagnostics> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    match std::fs::read_to_string(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(error) => Err(unreadable(&path, &error)),
        Ok(source) => parse_file(&source, &path),
    }
}

fn parse_file(source: &str, path: &Path) -> Result<Config, Diagnostics> {
    let config = parse(source, &path.display().to_string())?;
    Ok(Config {
        path: Some(path.to_path_buf()),
        ..config
    })
}

fn unreadable(path: &Path, error: &std::io::Error) -> Diagnostics {
    let message = format!("cannot read config: {error}");
    Diagnostics(vec![Diagnostic {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message,
    }])
}
