//! What a reload may change, as one immutable snapshot. A reload builds the
//! whole new `Settings` first and swaps it in at once (`AppState::replace_settings`),
//! so a request sees either the old settings or the new ones, never half of each.

use std::collections::HashMap;

use super::guard::AllowedHosts;
use super::users::LocalUsers;
use crate::config::{Config, Confirm};
use crate::subnet::Subnet;
use crate::token::Token;

pub struct Settings {
    /// What `/creds` and the main listener's IMDS serve.
    pub default_role: Option<String>,
    /// Allow token-less IMDS GETs.
    pub imdsv1: bool,
    /// Peers inside need no token on the container endpoint. Reloaded, not
    /// deferred to a restart: revoking token-less access must not wait.
    pub trust_subnet: Option<Subnet>,
    /// `Host` names accepted besides loopback and the listener's own address.
    pub allowed_hosts: AllowedHosts,
    /// The daemon's own user and `allow_uids`: a user taken off the list is
    /// refused from the next request on.
    pub users: LocalUsers,
    /// Region IMDS reports for roles that set none: `[source] region`.
    pub region: String,
    /// What credential and admin requests must present. A reload that moves
    /// `token_file` may change it (to the token the new file already holds).
    pub token: Token,
    /// Roles handed only to programs the person allowed (`confirm`). Empty
    /// in most configs, and then the only cost to every other role.
    pub confirm: HashMap<String, Confirm>,
    /// Ask about them on the desktop (`[server] notify`), not only in `status`.
    pub ask_on_desktop: bool,
}

impl Settings {
    /// `fallback_region`: what the region is when `[source]` names none.
    pub fn new(config: &Config, fallback_region: &str, token: Token) -> Self {
        let server = &config.server;
        Settings {
            default_role: server.default_role.clone(),
            imdsv1: server.imdsv1,
            trust_subnet: server.trust_subnet,
            allowed_hosts: AllowedHosts::new(&server.allowed_hosts),
            users: LocalUsers::new(&server.allow_uids),
            region: config
                .source
                .region
                .clone()
                .unwrap_or_else(|| fallback_region.to_owned()),
            token,
            confirm: config
                .roles
                .iter()
                .filter_map(|(name, role)| Some((name.clone(), role.confirm?)))
                .collect(),
            ask_on_desktop: crate::notify::enabled(server),
        }
    }
}
