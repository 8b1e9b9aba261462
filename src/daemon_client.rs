//! How CLI commands reach the running daemon (`status`, `reload`, `mfa`,
//! `console`, `credential-process`, `healthcheck`, `doctor`): where it
//! listens and the token it serves with.
//!
//! First from the address file the daemon writes beside its token
//! (`address_file`), without reading the config, so a config that no longer
//! parses does not hide the daemon; the file is taken only when the daemon it
//! names answers `/healthz`, and, when the user named a config (`--config`,
//! `ASSUMED_CONFIG`), only when that daemon serves that very file: a config
//! named on the command line is the user's choice of daemon and wins. Else
//! from the config (or the defaults), as before any daemon wrote a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::address_file::{self, AddressFile};
use crate::client_env::client_address;
use crate::config::{self, Config};
use crate::local_client;
use crate::token::{self, Token};

/// A daemon to ask: where it listens and where its token is.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    /// Where to connect: the first main listener, a wildcard one on loopback.
    pub address: SocketAddr,
    /// Its main listeners.
    pub listen: Vec<SocketAddr>,
    pub token_file: PathBuf,
    /// Found through the address file rather than the config.
    pub from_address_file: bool,
}

impl DaemonClient {
    /// The daemon in the address file if it is the one wanted and answers,
    /// else the one `config` describes.
    pub fn locate(
        config_arg: Option<&Path>,
        config: impl FnOnce() -> Result<Config, String>,
    ) -> Result<DaemonClient, String> {
        match DaemonClient::from_address_file(config_arg) {
            Some(daemon) => Ok(daemon),
            None => DaemonClient::from_config(&config()?),
        }
    }

    /// The daemon the address file names, when it answers and serves the
    /// config the user named (if any). A file that is there but not to be
    /// trusted is said on stderr and passed over.
    pub fn from_address_file(config_arg: Option<&Path>) -> Option<DaemonClient> {
        let file = match address_file::read() {
            Ok(file) => file?,
            Err(error) => {
                eprintln!(
                    "assumed: passing over {}: {error}",
                    address_file::path().display()
                );
                return None;
            }
        };
        if !serves_the_named_config(&file, config_arg) {
            return None;
        }
        let daemon = DaemonClient {
            address: client_address(*file.listen.first()?),
            listen: file.listen,
            token_file: file.token_file,
            from_address_file: true,
        };
        daemon.answers().then_some(daemon)
    }

    /// The daemon as `config` describes it: its first `listen` address, its
    /// `token_file` or the default one.
    pub fn from_config(config: &Config) -> Result<DaemonClient, String> {
        Ok(DaemonClient {
            address: client_address(main_listener(config)?),
            listen: config.server.listen.clone(),
            token_file: crate::token::path(config),
            from_address_file: false,
        })
    }

    /// `/healthz` answers `200 ok` (it takes no token).
    fn answers(&self) -> bool {
        local_client::healthz(self.address)
            .is_ok_and(|reply| reply.status == 200 && reply.body == b"ok")
    }

    /// The token the daemon wrote.
    pub fn token(&self) -> Result<Token, String> {
        token::read(&self.token_file).map_err(|e| {
            format!(
                "cannot read the token at {} ({e}); is `assumed serve` running?",
                self.token_file.display()
            )
        })
    }

    /// One request with the token; the JSON answer, or the daemon's own
    /// message when it says no.
    pub fn ask(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<serde_json::Value, String> {
        let token = self.token()?;
        let reply = local_client::request(self.address, method, path, token.expose(), headers);
        self.answer(reply)
    }

    /// [`ask`](Self::ask) without extra headers, given up after `limit` (for
    /// what must not keep a person waiting, such as a shell completion).
    pub fn ask_within(
        &self,
        limit: Duration,
        method: &str,
        path: &str,
    ) -> Result<serde_json::Value, String> {
        let token = self.token()?;
        let reply =
            local_client::request_within(limit, self.address, method, path, token.expose(), &[]);
        self.answer(reply)
    }

    fn answer(
        &self,
        reply: std::io::Result<local_client::Reply>,
    ) -> Result<serde_json::Value, String> {
        let address = self.address;
        let reply = reply.map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?;
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
}

/// Tells the running daemon that stored keys changed (`keys add`, `keys
/// rotate`, `keys import`), so it reads them again and its roles use them
/// without a restart. `Ok(None)`: no daemon answers (it reads them at its
/// next start); `Ok(Some(what it read))`; `Err`: it answered, but could
/// not read them (a locked keyring), in its words.
pub fn tell_keys_changed(config: &Config) -> Result<Option<String>, String> {
    let daemon = DaemonClient::locate(config.path.as_deref(), || Ok(config.clone()))?;
    if !daemon.answers() {
        return Ok(None);
    }
    let answer = daemon.ask("POST", "/admin/keys/reload", &[])?;
    Ok(Some(
        answer["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// The config's first listen address, which clients are pointed at.
pub fn main_listener(config: &Config) -> Result<SocketAddr, String> {
    config
        .server
        .listen
        .first()
        .copied()
        .ok_or_else(|| "the config has no listen address".to_owned())
}

/// Without a config named by the user any daemon will do; with one, only
/// the daemon that reads that file (its `listen` in the file may have
/// changed since the daemon bound, which takes a restart).
fn serves_the_named_config(file: &AddressFile, config_arg: Option<&Path>) -> bool {
    match config::explicit_path(config_arg) {
        None => true,
        Some(named) => file.config.as_deref() == Some(address_file::canonical(&named).as_path()),
    }
}
