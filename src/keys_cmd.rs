//! `assumed keys …`: long-term IAM keys into the keyring (`add`, `import`),
//! out of it (`remove`), shown without their secret (`list`) and replaced
//! by new ones (`rotate`). Secrets are read from a terminal without echo or
//! from standard input, never from argv or the environment.

mod add;
mod aws;
mod aws_vault;
mod import;
mod input;
mod list;
pub mod plaintext;
mod remove;
mod rotate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::keys::{self, BackendKind, Keyring, KeyringSettings, LockState};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Store an IAM user's access key id and secret under NAME (asked without echo)
    Add {
        name: String,
        /// Read the key id and the secret as two lines from standard input
        #[arg(long)]
        stdin: bool,
        /// Store without checking them with GetCallerIdentity
        #[arg(long)]
        no_check: bool,
        #[command(flatten)]
        keyring: KeyringFlags,
    },
    /// Show each stored key: name, the key id's last four characters, the IAM user, the backend, the age
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        keyring: KeyringFlags,
    },
    /// Delete a stored key (asks first unless --yes)
    Remove {
        name: String,
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        keyring: KeyringFlags,
    },
    /// Move keys in: a profile's from ~/.aws/credentials, or aws-vault's (--from aws-vault)
    Import {
        /// The profile of ~/.aws/credentials whose keys move
        #[arg(long, default_value = "default", conflicts_with = "from")]
        profile: String,
        /// Then rewrite ~/.aws/credentials without that profile's two key lines
        #[arg(long, conflicts_with = "from")]
        remove_plaintext: bool,
        /// Copy the keys another tool stored in its keyring
        #[arg(long, value_enum)]
        from: Option<ImportFrom>,
        /// With --from: the profiles to copy (default: every one it holds)
        profiles: Vec<String>,
        #[command(flatten)]
        keyring: KeyringFlags,
    },
    /// Create a new access key, store and check it, then delete the old one
    Rotate {
        name: String,
        /// Sign the IAM calls with an MFA session from this device (asks for a code);
        /// default: the mfa_serial of the roles these keys sign for
        #[arg(long, value_name = "ARN")]
        mfa_serial: Option<String>,
        /// Sign the IAM calls with the keys themselves, even where roles use MFA
        #[arg(long, conflicts_with = "mfa_serial")]
        no_mfa: bool,
        #[command(flatten)]
        keyring: KeyringFlags,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportFrom {
    AwsVault,
}

/// Which keyring, when not `[source]`'s.
#[derive(Args, Debug, Default, Clone)]
pub struct KeyringFlags {
    /// secret-service, keychain or file (default: [source] keyring, else the platform's)
    #[arg(long, value_name = "BACKEND", value_parser = parse_backend)]
    pub keyring: Option<BackendKind>,
    /// The file backend's file (default: [source] keyring_file, else keys.age in the data dir)
    #[arg(long, value_name = "PATH")]
    pub keyring_file: Option<PathBuf>,
    /// The file backend's passphrase, from this file
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,
}

fn parse_backend(text: &str) -> Result<BackendKind, String> {
    BackendKind::parse(text)
        .ok_or_else(|| format!("{text:?}: the keyring is secret-service, keychain or file"))
}

impl KeyringFlags {
    /// The flags over the config's `[source]` keyring settings.
    pub fn settings(&self, config: &Config) -> KeyringSettings {
        let configured = config.source.keyring.clone();
        KeyringSettings {
            backend: self.keyring.unwrap_or(configured.backend),
            file: self.keyring_file.clone().or(configured.file),
            passphrase_file: self.passphrase_file.clone().or(configured.passphrase_file),
        }
    }
}

pub fn run(command: KeysCommand, config: &Config) -> Result<ExitCode, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // Add, import and rotate change what a running daemon uses: it is
    // told afterwards, outside the runtime (its client blocks). Remove is
    // not: a daemon keeps signing with keys it holds until it restarts,
    // as it does when the keyring locks.
    let tell = matches!(
        command,
        KeysCommand::Add { .. } | KeysCommand::Import { .. } | KeysCommand::Rotate { .. }
    );
    let code = runtime.block_on(async {
        match command {
            KeysCommand::Add {
                name,
                stdin,
                no_check,
                keyring,
            } => add::run(config, &keyring, &name, stdin, !no_check).await,
            KeysCommand::List { json, keyring } => list::run(config, &keyring, json).await,
            KeysCommand::Remove { name, yes, keyring } => {
                remove::run(config, &keyring, &name, yes).await
            }
            KeysCommand::Import {
                profile,
                remove_plaintext,
                from,
                profiles,
                keyring,
            } => {
                let settings = keyring.settings(config);
                match from {
                    Some(ImportFrom::AwsVault) => {
                        import::from_aws_vault(config, &settings, &profiles).await
                    }
                    None => {
                        import::from_credentials_file(config, &settings, &profile, remove_plaintext)
                            .await
                    }
                }
                .map(|()| ExitCode::SUCCESS)
            }
            KeysCommand::Rotate {
                name,
                mfa_serial,
                no_mfa,
                keyring,
            } => {
                let mfa = rotate::Mfa {
                    serial: match (mfa_serial, no_mfa) {
                        (Some(serial), _) => Some(serial),
                        (None, true) => None,
                        (None, false) => mfa_serial_for(config, &name),
                    },
                };
                let keyring = unlocked_keyring(config, &keyring).await?;
                rotate::rotate(config, &keyring, &name, &mfa)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
        }
    })?;
    // Not a plain drop, which waits for every blocking task: a keyring
    // call that ran past its deadline (a frozen Secret Service) is given
    // up on, and must not hold the command open after its error.
    runtime.shutdown_background();
    if tell {
        tell_daemon(config);
    }
    Ok(code)
}

/// The keyring the flags (else `[source]`) name, unlocked: through the
/// keyring's own prompt when it is locked, since a person at a terminal
/// ran this command. Every error is one sentence saying what to do.
pub(crate) async fn unlocked_keyring(
    config: &Config,
    flags: &KeyringFlags,
) -> Result<Keyring, String> {
    let keyring = keys::open(&flags.settings(config)).map_err(|e| e.to_string())?;
    if keyring.lock_state().await.map_err(|e| e.to_string())? == LockState::Locked {
        eprintln!(
            "The {} keyring is locked: asking to unlock it…",
            keyring.kind()
        );
        keyring.unlock().await.map_err(|e| e.to_string())?;
    }
    Ok(keyring)
}

/// Where the backend choice came from, for `keys list`: it must never
/// change by itself (aws-vault #213), so the person can see why it is this one.
pub(crate) fn backend_origin(config: &Config, flags: &KeyringFlags) -> &'static str {
    if flags.keyring.is_some() {
        "--keyring"
    } else if config.source.keyring.backend != BackendKind::platform_default() {
        "[source] keyring"
    } else {
        "this platform's default"
    }
}

/// The MFA device of the roles these keys sign for (`source_keys = NAME`,
/// or `[source] keys = NAME` and no source of their own), when they name one: an IAM policy that asks
/// for MFA before AssumeRole usually asks for it before key changes too.
fn mfa_serial_for(config: &Config, name: &str) -> Option<String> {
    config
        .roles
        .values()
        .filter(|role| match &role.source_keys {
            Some(keys) => keys == name,
            None => role.source_profile.is_none() && config.source.keys.as_deref() == Some(name),
        })
        .find_map(|role| role.mfa_serial.clone())
}

/// A running daemon reads its stored keys again and its roles switch to
/// them without a restart. No daemon is fine: it reads them when it starts.
fn tell_daemon(config: &Config) {
    match crate::daemon_client::tell_keys_changed(config) {
        Ok(Some(read)) => println!("the running daemon took the stored keys: {read}"),
        Ok(None) => {}
        Err(error) => eprintln!(
            "assumed: the running daemon did not take the stored keys ({error}); \
             once that is fixed: assumed reload"
        ),
    }
}
