//! Command-line interface: parses arguments and runs one command.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;
use clap_complete::env::CompleteEnv;

use crate::aws_files;
use crate::client_env::{self, Format};
use crate::completions;
use crate::config::{self, Config, Isolation, RoleConfig};
use crate::daemon;
use crate::daemon_client::{DaemonClient, main_listener};
use crate::logging::LogFormat;

/// Exit status for a config that does not validate (`assumed check`).
const EXIT_INVALID_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "assumed",
    version,
    about = "Keeps AWS role credentials warm and serves them to unmodified SDKs"
)]
struct Cli {
    /// Config file (default: $ASSUMED_CONFIG, else config.toml in the platform's config dir:
    /// ~/.config/assumed on Linux, ~/Library/Application Support/assumed on macOS)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format for `serve`: human-readable, or JSON lines for journald and collectors
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground (what a service manager starts)
    Serve {
        /// For scripts/bench: also serve a fixed body at /__bench/static, the
        /// baseline the credential endpoint is compared with
        #[arg(long, hide = true)]
        bench_static: bool,
    },
    /// Validate the config: exit 0, or print every error with file:line:column and exit 2
    Check,
    /// List configured roles and their ARNs
    Roles,
    /// Print the variables that point an SDK at ROLE
    Env(EnvArgs),
    /// Exit 0 if the daemon answers /healthz on its first listen address (container HEALTHCHECK)
    Healthcheck,
    /// Print ROLE's credentials as `credential_process` JSON (Version 1), fetched from the daemon;
    /// with --keys NAME, a short session (GetSessionToken) of stored keys instead
    CredentialProcess {
        #[arg(required_unless_present = "keys", add = ArgValueCompleter::new(completions::role_names))]
        role: Option<String>,
        /// A session of the stored keys NAME (`assumed keys add`), made and cached by the
        /// daemon, with MFA where a role on those keys has mfa_serial; never the keys
        #[arg(long, value_name = "NAME", conflicts_with = "role")]
        keys: Option<String>,
    },
    /// Ask the running daemon how each role is doing
    Status {
        /// Print the daemon's JSON answer instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Hand a one-time MFA code to the daemon for a role with mfa_serial
    /// (`mfa ROLE CODE`), or drop every MFA session it holds (`mfa --forget`)
    Mfa(MfaArgs),
    /// Make the running daemon re-read its config (like SIGHUP)
    Reload,
    /// Let the program asking for a `confirm` role have it (question ID, from
    /// `assumed status`; default: the only one waiting)
    Approve { id: Option<u64> },
    /// Refuse the program asking for a `confirm` role (question ID; default:
    /// the only one waiting); it is refused for a while
    Deny { id: Option<u64> },
    /// Explain what works and what does not: the daemon, its token, the config, the
    /// daemon's source credentials, the clock, and which credentials an SDK started in
    /// this shell would take. Exits 1 if anything fails.
    Doctor {
        /// The role this shell should get (default: the one it points at, if any)
        #[arg(add = ArgValueCompleter::new(completions::role_names))]
        role: Option<String>,
        /// Print the findings as JSON
        #[arg(long)]
        json: bool,
    },
    /// Write the user service definition and print how to enable it
    Install(InstallArgs),
    /// Open the AWS console as ROLE (a federation sign-in URL, from the daemon's credentials)
    Console(ConsoleArgs),
    /// Long-term IAM keys in the OS keyring: add, list, remove, import, rotate
    #[command(subcommand)]
    Keys(crate::keys_cmd::KeysCommand),
    /// Write a first config from ~/.aws/config's role profiles (to --config,
    /// $ASSUMED_CONFIG or the default path); never over an existing file without --force
    Init {
        /// Replace an existing config file
        #[arg(long)]
        force: bool,
    },
    /// Print a completion script for SHELL: commands, flags and role names
    /// (bash: `source <(assumed completions bash)`; see docs/install.md)
    Completions {
        #[arg(value_enum)]
        shell: completions::Shell,
    },
    /// Write the man pages (assumed.1 and one per command) into DIR
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Run CMD with ROLE's credentials from the daemon; exits with CMD's status
    Exec {
        #[arg(add = ArgValueCompleter::new(completions::role_names))]
        role: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            required = true,
            value_name = "CMD"
        )]
        command: Vec<OsString>,
    },
}

#[derive(Args, Debug)]
struct EnvArgs {
    #[arg(add = ArgValueCompleter::new(completions::role_names))]
    role: String,
    #[arg(long, value_enum, default_value = "sh")]
    format: Format,
    /// Point the SDK at the IMDS emulation instead of the container endpoint
    #[arg(long)]
    imds: bool,
    /// For a compose service: the daemon at 169.254.170.2 (or its configured network
    /// address) and the token at /run/assumed/token (see docs/docker-compose.md)
    #[arg(long, conflicts_with = "imds")]
    compose: bool,
}

#[derive(Args, Debug)]
struct MfaArgs {
    #[arg(required_unless_present = "forget", add = ArgValueCompleter::new(completions::role_names))]
    role: Option<String>,
    #[arg(required_unless_present = "forget")]
    code: Option<String>,
    /// Forget every MFA session, in the daemon and in the file that keeps
    /// them across restarts; the next role that needs one asks again
    #[arg(long, conflicts_with_all = ["role", "code"])]
    forget: bool,
}

#[derive(Args, Debug)]
struct InstallArgs {
    #[arg(long, required_unless_present = "launchd", conflicts_with = "launchd")]
    systemd: bool,
    #[arg(long)]
    launchd: bool,
    /// Print what would be written, write nothing
    #[arg(long)]
    dry_run: bool,
    /// Replace files that differ from what would be written
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct ConsoleArgs {
    #[arg(add = ArgValueCompleter::new(completions::role_names))]
    role: String,
    /// Print the sign-in URL instead of opening a browser
    #[arg(long)]
    print: bool,
    /// Where to land: a service name (s3, ec2, cloudwatch…) or an https:// console URL
    #[arg(long, value_name = "SERVICE_OR_URL")]
    destination: Option<String>,
    /// Console region (and regional sign-in host); default: the role's region
    #[arg(long)]
    region: Option<String>,
    /// Console session length (15m..12h); only for a role assumed with one AssumeRole
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// Keep this role's console apart from other roles': a browser profile of its own
    /// (default), or a Firefox container (`=container`); default: [console] isolate
    #[arg(long, value_name = "HOW", num_args = 0..=1, require_equals = true,
          default_missing_value = "profile", value_parser = parse_isolation)]
    isolate: Option<Isolation>,
    /// Open in the browser every role shares, whatever [console] isolate says
    #[arg(long, conflicts_with = "isolate")]
    no_isolate: bool,
    /// The browser to open: chromium, chrome, brave, edge, vivaldi, firefox, or a command;
    /// default: [console] browser, else $BROWSER or the system's
    #[arg(long)]
    browser: Option<String>,
}

fn parse_isolation(text: &str) -> Result<Isolation, String> {
    match Isolation::parse(text) {
        Some(Isolation::Shared) | None => Err("use profile or container".into()),
        Some(isolation) => Ok(isolation),
    }
}

pub fn main() -> ExitCode {
    // A TAB in a shell that sourced `assumed completions`: answer and exit.
    CompleteEnv::with_factory(Cli::command)
        .var(completions::ENV_VAR)
        .complete();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("assumed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One arm per command, each naming what it needs: the config (which must be
/// valid), or the running daemon (found without the config when its address
/// file names it, see `daemon_client`).
fn run(cli: Cli) -> Result<ExitCode, String> {
    let config_arg = cli.config.as_deref();
    if let Command::Doctor { role, json } = &cli.command {
        // Before anything edits the environment: the shell is what it checks.
        return crate::doctor::run(config_arg, role.as_deref(), *json);
    }
    // In a shell that `assumed env` set up, read the user's own AWS files.
    aws_files::restore_users_own_env();
    let config = || valid_config(config_arg);
    let daemon = || DaemonClient::locate(config_arg, config);
    match cli.command {
        Command::Serve { bench_static } => serve(config()?, &cli, bench_static),
        Command::Check => Ok(check(config::load_or_default(config_arg), config_arg)),
        Command::Install(args) => install(&args, config_arg),
        Command::Init { force } => crate::init::run(config_arg, force),
        Command::Completions { shell } => {
            completions::write_script(shell, &mut std::io::stdout().lock())
                .map_err(|e| format!("cannot write the completion script: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(&dir),
        Command::Roles => roles(&config()?),
        Command::Env(args) => env(&config()?, &args),
        Command::Exec { role, command } => exec(&config()?, &role, command),
        Command::Healthcheck => crate::healthcheck::run(&daemon()?),
        Command::CredentialProcess { role, keys } => match (role, keys) {
            (_, Some(keys)) => keys_session(&daemon()?, &keys),
            (Some(role), None) => credential_process(&daemon()?, &role),
            (None, None) => Err("name a ROLE or --keys NAME".into()),
        },
        Command::Status { json } => status(&daemon()?, json),
        Command::Reload => reload(&daemon()?),
        Command::Approve { id } => crate::approval_cmd::answer(&daemon()?, id, true),
        Command::Deny { id } => crate::approval_cmd::answer(&daemon()?, id, false),
        Command::Mfa(args) => match (args.role, args.code) {
            (Some(role), Some(code)) if !args.forget => mfa(&daemon()?, &role, &code),
            _ => forget_mfa(config_arg),
        },
        Command::Console(args) => console(config_arg, args),
        Command::Keys(command) => crate::keys_cmd::run(command, &config()?),
        Command::Doctor { .. } => unreachable!("answered before the environment changed"),
    }
}

/// The pages for the command and every subcommand, from the same clap
/// definitions as `--help`.
fn man(dir: &Path) -> Result<ExitCode, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| format!("cannot write the man pages into {}: {e}", dir.display()))?;
    println!("wrote the man pages into {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn valid_config(config_arg: Option<&Path>) -> Result<Config, String> {
    config::load_or_default(config_arg)
        .map_err(|diagnostics| format!("the config is not valid:\n{diagnostics}"))
}

fn check(loaded: Result<Config, config::Diagnostics>, explicit: Option<&Path>) -> ExitCode {
    match crate::doctor::validate(loaded, explicit) {
        Ok((_, summary, _)) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn serve(config: Config, cli: &Cli, bench_static: bool) -> Result<ExitCode, String> {
    crate::logging::init(cli.log_format);
    // Before any secret is in memory: source keys, stored keys, roles.
    match crate::keys::hardening::harden_process() {
        Ok(()) => tracing::debug!("not dumpable: no core file, no ptrace by this user"),
        Err(error) => {
            tracing::warn!("cannot keep other processes out of this one's memory: {error}")
        }
    }
    let options = daemon::ServeOptions {
        config_arg: cli.config.clone(),
        bench_static,
    };
    // Before the runtime starts: this edits the process environment.
    daemon::strip_self_pointing_env(&config.server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(daemon::run(config, options))?;
    Ok(ExitCode::SUCCESS)
}

fn roles(config: &Config) -> Result<ExitCode, String> {
    print!(
        "{}",
        roles_table(config, &crate::profiles::known_roles(config))
    );
    Ok(ExitCode::SUCCESS)
}

fn env(config: &Config, args: &EnvArgs) -> Result<ExitCode, String> {
    let roles = crate::profiles::known_roles(config);
    let env = if args.compose {
        crate::compose::env_for(config, &roles, &args.role)?
    } else {
        client_env_for(config, &roles, &args.role, args.imds)?
    };
    print!("{}", client_env::render(&env, args.format));
    Ok(ExitCode::SUCCESS)
}

fn roles_table(config: &Config, roles: &BTreeMap<String, RoleConfig>) -> String {
    let width = roles.keys().map(String::len).max().unwrap_or(4).max(4);
    let mut out = format!("{:width$}  SOURCE\n", "ROLE");
    for (name, role) in roles {
        let source = match (&role.role_arn, &role.profile, &role.via) {
            (Some(arn), _, Some(via)) => format!("{arn} (via {via})"),
            (Some(arn), _, None) => arn.clone(),
            (None, Some(profile), _) => format!("profile {profile}"),
            (None, None, _) => "-".into(),
        };
        let mut marker = String::new();
        if let Some(imported) = &role.imported {
            marker.push_str(&format!(" [~/.aws/config profile {}]", imported.profile));
        }
        if config.server.default_role.as_deref() == Some(name) {
            marker.push_str(" (default)");
        }
        out.push_str(&format!("{name:width$}  {source}{marker}\n"));
    }
    out
}

/// The variables for ROLE: the container endpoint (`imds`: the IMDS
/// emulation) and the credential-free copy of the user's profile.
fn client_env_for(
    config: &Config,
    roles: &BTreeMap<String, RoleConfig>,
    role: &str,
    imds: bool,
) -> Result<client_env::ClientEnv, String> {
    let settings = known_role(roles, role)?;
    // Every refusal before the copy is written: bad input changes nothing.
    if imds {
        let listen = imds_listener(config, settings, role)?;
        let copy = credential_free_copy(settings)?;
        return Ok(client_env::imds_env(listen, no_proxy().as_deref(), &copy));
    }
    let listen = main_listener(config)?;
    let copy = credential_free_copy(settings)?;
    Ok(client_env::container_env(
        listen,
        role,
        &crate::token::path(config),
        &copy,
    ))
}

fn known_role<'a>(
    roles: &'a BTreeMap<String, RoleConfig>,
    role: &str,
) -> Result<&'a RoleConfig, String> {
    roles
        .get(role)
        .ok_or_else(|| format!("no role named {role:?} in the config (see `assumed roles`)"))
}

/// The user's current profile without its credentials (docs/clients.md):
/// every SDK reads the profile before the container endpoint and IMDS, so
/// a profile with keys, SSO, a credential_process… would win over the role.
fn credential_free_copy(role: &RoleConfig) -> Result<aws_files::Copy, String> {
    let env = |name: &str| std::env::var(name).ok();
    let selection = aws_files::Selection::users_own(&env);
    let dir = crate::token::runtime_dir();
    crate::token::ensure_private_dir(&dir)
        .and_then(|()| aws_files::write_copy(&dir, &selection, role.region.as_deref()))
        .map_err(|e| {
            format!(
                "cannot write the credential-free copy of profile {} into {}: {e}",
                selection.profile,
                dir.display()
            )
        })
}

/// IMDS serves one role per listener: the default role on the main one, or
/// the role an `imds_listen` listener belongs to.
fn imds_listener(
    config: &Config,
    settings: &RoleConfig,
    role: &str,
) -> Result<std::net::SocketAddr, String> {
    match settings.imds_listen {
        Some(address) => Ok(address),
        None if config.server.default_role.as_deref() == Some(role) => main_listener(config),
        None => Err(format!(
            "IMDS serves only default_role on the main listener; give role {role:?} \
             its own listener with imds_listen = \"127.0.0.1:PORT\""
        )),
    }
}

/// `NO_PROXY` as this shell has it, when a proxy is set: IMDS must not go
/// through it.
fn no_proxy() -> Option<String> {
    let proxied = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    proxied.then(|| {
        std::env::var("NO_PROXY")
            .or_else(|_| std::env::var("no_proxy"))
            .unwrap_or_default()
    })
}

/// Fetches ROLE from the daemon and prints it the way `credential_process`
/// expects (stdout, exit 0), for tools that only read `~/.aws/config`.
fn credential_process(daemon: &DaemonClient, role: &str) -> Result<ExitCode, String> {
    let answer = daemon.ask("GET", &format!("/role/{role}"), &[])?;
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
    let output = serde_json::json!({
        "Version": 1,
        "AccessKeyId": field("AccessKeyId"),
        "SecretAccessKey": field("SecretAccessKey"),
        "SessionToken": field("Token"),
        "Expiration": field("Expiration"),
        "AccountId": field("AccountId"),
    });
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}

/// The keyring's lines of `assumed status`: its state, what to do, and
/// which stored keys are in memory; nothing when none are in use.
fn keyring_lines(keyring: &serde_json::Value) -> String {
    if keyring.is_null() {
        return String::new();
    }
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("-").to_owned();
    let keys: Vec<String> = keyring["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|key| match key["key_id_last4"].as_str() {
            Some(last4) => format!("{} (…{last4}, in memory)", text(&key["name"])),
            None => format!("{} (not read)", text(&key["name"])),
        })
        .collect();
    let mut lines = format!(
        "Keyring: {} ({}); stored keys: {}\n",
        text(&keyring["backend"]),
        text(&keyring["state"]),
        keys.join(", ")
    );
    if let Some(message) = keyring["message"].as_str() {
        lines.push_str(&format!("  {message}\n"));
    }
    lines.push('\n');
    lines
}

/// `credential-process --keys NAME`: the daemon's GetSessionToken session
/// of the stored keys, as it answered (already `credential_process` JSON).
fn keys_session(daemon: &DaemonClient, name: &str) -> Result<ExitCode, String> {
    config::validate::key_name(name)?;
    let answer = daemon.ask("GET", &format!("/admin/keys/{name}/session"), &[])?;
    if answer["SessionToken"].as_str().is_none_or(str::is_empty) {
        return Err("the daemon answered without a session token".into());
    }
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

fn status(daemon: &DaemonClient, json: bool) -> Result<ExitCode, String> {
    let answer = daemon.ask("GET", "/admin/status", &[])?;
    if json {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", keyring_lines(&answer["keyring"]));
    let pending = answer["approvals"]["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !pending.is_empty() {
        println!(
            "Waiting for you (`assumed approve ID` / `assumed deny ID`):\n{}\n",
            crate::approval_cmd::lines(&pending).join("\n")
        );
    }
    let roles = answer["roles"].as_array().cloned().unwrap_or_default();
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("-").to_owned();
    let rows: Vec<[String; 5]> = roles
        .iter()
        .map(|role| {
            [
                text(&role["name"]),
                text(&role["state"]),
                role["expires_in_seconds"]
                    .as_u64()
                    .map(|s| {
                        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                    })
                    .unwrap_or_else(|| "-".into()),
                text(&role["last_refresh"]),
                text(&role["last_error"]),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            ["ROLE", "STATE", "EXPIRES IN", "LAST REFRESH", "LAST ERROR"],
            &rows
        )
    );
    let clients = client_rows(&roles);
    if !clients.is_empty() {
        print!(
            "\nRecent clients (most recent first):\n{}",
            table(
                [
                    "ROLE",
                    "PID",
                    "PROCESS",
                    "REQUESTS",
                    "LAST SEEN",
                    "ADDRESS",
                    "COMMAND"
                ],
                &clients
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per process that took a role's credentials (`clients` of `/admin/status`).
fn client_rows(roles: &[serde_json::Value]) -> Vec<[String; 7]> {
    let text = |value: &serde_json::Value| value.as_str().unwrap_or("-").to_owned();
    let number = |value: &serde_json::Value| value.as_u64().map_or("-".into(), |n| n.to_string());
    roles
        .iter()
        .flat_map(|role| {
            let clients = role["clients"].as_array().cloned().unwrap_or_default();
            clients.into_iter().map(move |client| {
                [
                    text(&role["name"]),
                    number(&client["pid"]),
                    text(&client["process"]),
                    number(&client["requests"]),
                    text(&client["last_seen"]),
                    text(&client["address"]),
                    text(&client["cmdline"]),
                ]
            })
        })
        .collect()
}

fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn mfa(daemon: &DaemonClient, role: &str, code: &str) -> Result<ExitCode, String> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err("an MFA code is six digits".into());
    }
    let answer = daemon.ask(
        "PUT",
        &format!("/admin/mfa/{role}"),
        &[(crate::server::admin::MFA_CODE_HEADER, code)],
    )?;
    println!("{}", answer["message"].as_str().unwrap_or("done"));
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to forget its MFA sessions, and removes the file that
/// keeps them in any case (the daemon may not be running).
fn forget_mfa(config_arg: Option<&Path>) -> Result<ExitCode, String> {
    let config = valid_config(config_arg)?;
    let asked = DaemonClient::locate(config_arg, || Ok(config.clone()))
        .and_then(|daemon| daemon.ask("DELETE", "/admin/mfa", &[]));
    if let Some(path) = crate::sts::mfa_store::path(&config.source) {
        crate::sts::mfa_store::save(&path, &[])
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    match asked {
        Ok(answer) => println!("{}", answer["message"].as_str().unwrap_or("done")),
        Err(error) => {
            println!("the daemon did not answer ({error}); no MFA session is kept on disk")
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what the reload applied; each change it could not apply goes to
/// stderr, and makes the exit status non-zero: the user must not believe
/// it is live.
fn reload(daemon: &DaemonClient) -> Result<ExitCode, String> {
    let answer = daemon.ask("PUT", "/admin/reload", &[])?;
    println!("reloaded: {}", answer["message"].as_str().unwrap_or("done"));
    let waiting: Vec<&str> = answer["not_applied"]
        .as_array()
        .map(|list| list.iter().filter_map(|line| line.as_str()).collect())
        .unwrap_or_default();
    for line in &waiting {
        eprintln!("assumed: not applied: {line}");
    }
    Ok(if waiting.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The console needs the config (its federation endpoint) as well as the daemon.
fn console(config_arg: Option<&Path>, args: ConsoleArgs) -> Result<ExitCode, String> {
    let request = crate::console::Request {
        role: args.role,
        print: args.print,
        destination: args.destination,
        region: args.region,
        duration: args.duration,
        isolate: if args.no_isolate {
            Some(Isolation::Shared)
        } else {
            args.isolate
        },
        browser: args.browser,
    };
    let config = valid_config(config_arg)?;
    let daemon = DaemonClient::locate(config_arg, || Ok(config.clone()))?;
    crate::console::run(&config, request, |path| daemon.ask("GET", path, &[]))
}

fn install(args: &InstallArgs, config: Option<&Path>) -> Result<ExitCode, String> {
    let manager = if args.systemd {
        crate::install::Manager::Systemd
    } else {
        crate::install::Manager::Launchd
    };
    let binary = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    // Pass --config only for a file that exists: `serve` refuses an explicit
    // missing one, and runs on defaults without any.
    let config_file = config::resolve_path(config).filter(|path| path.is_file());
    let config_file = config_file.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let plan = crate::install::plan(manager, &binary, config_file.as_deref())?;
    if args.dry_run {
        for (path, contents) in &plan.files {
            println!("# {}\n{contents}", path.display());
        }
    } else {
        for line in crate::install::write(&plan, args.force)? {
            println!("{line}");
        }
    }
    println!("enable it with:\n{}", plan.enable);
    Ok(ExitCode::SUCCESS)
}

/// Replaces this process with CMD, so CMD's exit status and signals are its
/// own. Also sets `AWS_CONTAINER_AUTHORIZATION_TOKEN`: SDKs from before late
/// 2023 (Debian's AWS CLI 2.9, for one) read only that variable.
fn exec(config: &Config, role: &str, command: Vec<OsString>) -> Result<ExitCode, String> {
    use std::os::unix::process::CommandExt;

    let env = client_env_for(config, &crate::profiles::known_roles(config), role, false)?;
    let token = DaemonClient::from_config(config)?.token()?;
    let (program, args) = command.split_first().ok_or("no command given")?;
    let mut child = std::process::Command::new(program);
    child.args(args);
    for name in &env.unset {
        child.env_remove(name);
    }
    for (name, value) in &env.set {
        child.env(name, value);
    }
    child.env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.expose());
    let error = child.exec();
    eprintln!("assumed: cannot run {}: {error}", program.to_string_lossy());
    Ok(ExitCode::from(127))
}
