//! Command-line interface: parses arguments and runs one command.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::aws_files;
use crate::client_env::{self, Format};
use crate::config::{self, Config, RoleConfig};
use crate::daemon;
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
    /// Config file (default: $ASSUMED_CONFIG, else ~/.config/assumed/config.toml)
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
    Env {
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
    },
    /// Exit 0 if the daemon answers /healthz on its first listen address (container HEALTHCHECK)
    Healthcheck,
    /// Print ROLE's credentials as `credential_process` JSON (Version 1), fetched from the daemon
    CredentialProcess { role: String },
    /// Ask the running daemon how each role is doing
    Status {
        /// Print the daemon's JSON answer instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Hand a one-time MFA code to the daemon for a role with mfa_serial
    /// (`mfa ROLE CODE`), or drop every MFA session it holds (`mfa --forget`)
    Mfa {
        #[arg(required_unless_present = "forget")]
        role: Option<String>,
        #[arg(required_unless_present = "forget")]
        code: Option<String>,
        /// Forget every MFA session, in the daemon and in the file that keeps
        /// them across restarts; the next role that needs one asks again
        #[arg(long, conflicts_with_all = ["role", "code"])]
        forget: bool,
    },
    /// Make the running daemon re-read its config (like SIGHUP)
    Reload,
    /// Explain what works and what does not: the daemon, its token, the config, the
    /// daemon's source credentials, the clock, and which credentials an SDK started in
    /// this shell would take. Exits 1 if anything fails.
    Doctor {
        /// The role this shell should get (default: the one it points at, if any)
        role: Option<String>,
        /// Print the findings as JSON
        #[arg(long)]
        json: bool,
    },
    /// Write the user service definition and print how to enable it
    Install {
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
    },
    /// Open the AWS console as ROLE (a federation sign-in URL, from the daemon's credentials)
    Console {
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
    },
    /// Run CMD with ROLE's credentials from the daemon; exits with CMD's status
    Exec {
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("assumed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    if let Command::Doctor { role, json } = &cli.command {
        // Before anything edits the environment: the shell is what it checks.
        return crate::doctor::run(cli.config.as_deref(), role.as_deref(), *json);
    }
    // In a shell that `assumed env` set up, read the user's own AWS files.
    aws_files::restore_users_own_env();
    let loaded = config::load_or_default(cli.config.as_deref());
    match cli.command {
        Command::Check => Ok(check(loaded, cli.config)),
        Command::Install {
            systemd,
            dry_run,
            force,
            ..
        } => install(systemd, dry_run, force, cli.config.as_deref()),
        command => {
            let config =
                loaded.map_err(|diagnostics| format!("the config is not valid:\n{diagnostics}"))?;
            match command {
                Command::Serve { bench_static } => serve(
                    config,
                    daemon::ServeOptions {
                        config_arg: cli.config,
                        bench_static,
                    },
                    cli.log_format,
                ),
                Command::Roles => {
                    print!("{}", roles_table(&config, &daemon::known_roles(&config)));
                    Ok(ExitCode::SUCCESS)
                }
                Command::Healthcheck => crate::healthcheck::run(&config),
                Command::Env {
                    role,
                    format,
                    imds,
                    compose,
                } => {
                    let roles = daemon::known_roles(&config);
                    let env = if compose {
                        crate::compose::env_for(&config, &roles, &role)?
                    } else if imds {
                        imds_env_for(&config, &roles, &role)?
                    } else {
                        client_env_for(&config, &roles, &role)?
                    };
                    print!("{}", client_env::render(&env, format));
                    Ok(ExitCode::SUCCESS)
                }
                Command::CredentialProcess { role } => credential_process(&config, &role),
                Command::Exec { role, command } => exec(&config, &role, command),
                Command::Status { json } => status(&config, json),
                Command::Mfa {
                    role: Some(role),
                    code: Some(code),
                    forget: false,
                } => mfa(&config, &role, &code),
                Command::Mfa { .. } => forget_mfa(&config),
                Command::Reload => reload(&config),
                Command::Console {
                    role,
                    print,
                    destination,
                    region,
                    duration,
                } => crate::console::run(
                    &config,
                    crate::console::Request {
                        role,
                        print,
                        destination,
                        region,
                        duration,
                    },
                    |path| ask_daemon(&config, "GET", path, &[]),
                ),
                Command::Check | Command::Install { .. } | Command::Doctor { .. } => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

fn check(loaded: Result<Config, config::Diagnostics>, explicit: Option<PathBuf>) -> ExitCode {
    match crate::doctor::validate(loaded, explicit.as_deref()) {
        Ok((_, summary)) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn serve(
    config: Config,
    options: daemon::ServeOptions,
    log_format: LogFormat,
) -> Result<ExitCode, String> {
    crate::logging::init(log_format);
    // Before the runtime starts: this edits the process environment.
    daemon::strip_self_pointing_env(&config.server.listen);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(daemon::run(config, options))?;
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

fn client_env_for(
    config: &Config,
    roles: &BTreeMap<String, RoleConfig>,
    role: &str,
) -> Result<client_env::ClientEnv, String> {
    let settings = known_role(roles, role)?;
    let listen = main_listener(config)?;
    Ok(client_env::container_env(
        listen,
        role,
        &daemon::token_path(config),
        &credential_free_copy(settings)?,
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
fn imds_env_for(
    config: &Config,
    roles: &BTreeMap<String, RoleConfig>,
    role: &str,
) -> Result<client_env::ClientEnv, String> {
    let settings = known_role(roles, role)?;
    let listen = match settings.imds_listen {
        Some(address) => address,
        None if config.server.default_role.as_deref() == Some(role) => main_listener(config)?,
        None => {
            return Err(format!(
                "IMDS serves only default_role on the main listener; give role {role:?} \
                 its own listener with imds_listen = \"127.0.0.1:PORT\""
            ));
        }
    };
    let proxied = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    let no_proxy = proxied.then(|| {
        std::env::var("NO_PROXY")
            .or_else(|_| std::env::var("no_proxy"))
            .unwrap_or_default()
    });
    Ok(client_env::imds_env(
        listen,
        no_proxy.as_deref(),
        &credential_free_copy(settings)?,
    ))
}

fn main_listener(config: &Config) -> Result<std::net::SocketAddr, String> {
    config
        .server
        .listen
        .first()
        .copied()
        .ok_or_else(|| "the config has no listen address".to_owned())
}

/// The token the running daemon wrote.
fn daemon_token(config: &Config) -> Result<crate::token::Token, String> {
    let token_file = daemon::token_path(config);
    crate::token::read(&token_file).map_err(|e| {
        format!(
            "cannot read the token at {} ({e}); is `assumed serve` running?",
            token_file.display()
        )
    })
}

/// One request to the running daemon, with the token; the JSON answer, or
/// the daemon's own message when it says no.
fn ask_daemon(
    config: &Config,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let token = daemon_token(config)?;
    let address = client_env::client_address(main_listener(config)?);
    let reply = crate::local_client::request(address, method, path, token.expose(), headers)
        .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|_| format!("the daemon answered {} without JSON", reply.status))?;
    if reply.status != 200 {
        return Err(answer["message"]
            .as_str()
            .unwrap_or("the daemon gave no reason")
            .to_owned());
    }
    Ok(answer)
}

/// Fetches ROLE from the daemon and prints it the way `credential_process`
/// expects (stdout, exit 0), for tools that only read `~/.aws/config`.
fn credential_process(config: &Config, role: &str) -> Result<ExitCode, String> {
    let answer = ask_daemon(config, "GET", &format!("/role/{role}"), &[])?;
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

fn status(config: &Config, json: bool) -> Result<ExitCode, String> {
    let answer = ask_daemon(config, "GET", "/admin/status", &[])?;
    if json {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
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

fn mfa(config: &Config, role: &str, code: &str) -> Result<ExitCode, String> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err("an MFA code is six digits".into());
    }
    let answer = ask_daemon(
        config,
        "PUT",
        &format!("/admin/mfa/{role}"),
        &[(crate::server::admin::MFA_CODE_HEADER, code)],
    )?;
    println!("{}", answer["message"].as_str().unwrap_or("done"));
    Ok(ExitCode::SUCCESS)
}

/// Asks the daemon to forget its MFA sessions, and removes the file that
/// keeps them in any case (the daemon may not be running).
fn forget_mfa(config: &Config) -> Result<ExitCode, String> {
    let asked = ask_daemon(config, "DELETE", "/admin/mfa", &[]);
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

fn reload(config: &Config) -> Result<ExitCode, String> {
    let answer = ask_daemon(config, "PUT", "/admin/reload", &[])?;
    println!("reloaded: {}", answer["message"].as_str().unwrap_or("done"));
    Ok(ExitCode::SUCCESS)
}

fn install(
    systemd: bool,
    dry_run: bool,
    force: bool,
    config: Option<&std::path::Path>,
) -> Result<ExitCode, String> {
    let manager = if systemd {
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
    if dry_run {
        for (path, contents) in &plan.files {
            println!("# {}\n{contents}", path.display());
        }
    } else {
        for line in crate::install::write(&plan, force)? {
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

    let env = client_env_for(config, &daemon::known_roles(config), role)?;
    let token = daemon_token(config)?;
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
