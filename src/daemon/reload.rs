//! What a reload changes, setting by setting, in the words `assumed reload`
//! prints: the running config against the new one. The main loop applies
//! the changes (`daemon.rs`); this names them, and names the few that wait
//! for a restart, so that a reload never reports "nothing changed" while a
//! setting the user edited is silently ignored.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, ServerConfig, SourceConfig};

/// `[server]` keys whose change a reload applies, by name.
pub fn server_keys(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    [
        ("default_role", old.default_role != new.default_role),
        ("allowed_hosts", old.allowed_hosts != new.allowed_hosts),
        ("refresh_before", old.refresh_before != new.refresh_before),
        ("idle_timeout", old.idle_timeout != new.idle_timeout),
        ("expose", old.expose != new.expose),
        ("trust_subnet", old.trust_subnet != new.trust_subnet),
        ("imdsv1", old.imdsv1 != new.imdsv1),
        (
            "import_profiles",
            old.import_profiles != new.import_profiles,
        ),
        ("notify", old.notify != new.notify),
        ("allow_uids", old.allow_uids != new.allow_uids),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The `[source]` keys that changed, by what a change means.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SourceKeys {
    /// Keys that shape how credentials are fetched (which source signs,
    /// which STS, in which region, how long to wait): every role in use is
    /// fetched again under the new settings.
    pub refetch: Vec<&'static str>,
    /// Keys that shape only what comes later (the next MFA session, where
    /// MFA sessions are kept, `assumed console`).
    pub later: Vec<&'static str>,
}

impl SourceKeys {
    pub fn is_empty(&self) -> bool {
        self.refetch.is_empty() && self.later.is_empty()
    }
}

pub fn source_keys(old: &SourceConfig, new: &SourceConfig) -> SourceKeys {
    let (was, is) = (&old.deadlines, &new.deadlines);
    let refetch = [
        ("profile", old.profile != new.profile),
        ("region", old.region != new.region),
        ("sts_endpoint", old.sts_endpoint != new.sts_endpoint),
        ("connect_timeout", was.connect != is.connect),
        ("read_timeout", was.read != is.read),
        ("sts_timeout", was.sts != is.sts),
        ("process_timeout", was.process != is.process),
        ("source_timeout", was.source != is.source),
        ("mfa_process_timeout", was.mfa_process != is.mfa_process),
    ];
    let later = [
        ("mfa_session", old.mfa_session != new.mfa_session),
        ("remember_mfa", old.remember_mfa != new.remember_mfa),
        (
            "mfa_session_file",
            old.mfa_session_file != new.mfa_session_file,
        ),
        // Read by `assumed console` from the config itself.
        (
            "federation_endpoint",
            old.federation_endpoint != new.federation_endpoint,
        ),
    ];
    let changed = |keys: &[(&'static str, bool)]| -> Vec<&'static str> {
        keys.iter()
            .filter_map(|(key, changed)| changed.then_some(*key))
            .collect()
    };
    SourceKeys {
        refetch: changed(&refetch),
        later: changed(&later),
    }
}

/// What the listeners, the token and `/metrics` are as the daemon started:
/// these stay until a restart, so each reload compares the new config with
/// this, not with the last config it read, and keeps saying so.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedWith {
    listen: Vec<SocketAddr>,
    imds_listen: Vec<(String, SocketAddr)>,
    token_file: Option<PathBuf>,
    metrics: bool,
    /// The main listeners were passed by the service manager.
    socket_activated: bool,
}

impl StartedWith {
    pub fn new(config: &Config, socket_activated: bool) -> Self {
        StartedWith {
            listen: config.server.listen.clone(),
            imds_listen: imds_listeners(config),
            token_file: config.server.token_file.clone(),
            metrics: config.server.metrics,
            socket_activated,
        }
    }

    /// What `new` asks for that only a restart gives, one sentence each:
    /// the setting, the change, why it waits and what the daemon does meanwhile.
    pub fn needs_restart(&self, new: &Config) -> Vec<String> {
        let mut waiting = Vec::new();
        if new.server.listen != self.listen {
            let change = format!(
                "[server] listen changed ({} to {})",
                addresses(&self.listen),
                addresses(&new.server.listen)
            );
            waiting.push(if self.socket_activated {
                format!(
                    "{change}: the daemon serves the sockets its service manager passed it (socket activation), which only the manager changes; edit the socket unit's ListenStream= and restart it"
                )
            } else {
                format!(
                    "{change}: the daemon keeps listening where it started until it is restarted"
                )
            });
        }
        let imds = imds_listeners(new);
        if imds != self.imds_listen {
            waiting.push(format!(
                "imds_listen changed ({} to {}): the daemon keeps its IMDS listeners until it is restarted",
                named_addresses(&self.imds_listen),
                named_addresses(&imds)
            ));
        }
        if new.server.token_file != self.token_file {
            waiting.push(
                "[server] token_file changed: clients hold the token the daemon started with, and it keeps that one until it is restarted"
                    .to_owned(),
            );
        }
        if new.server.metrics != self.metrics {
            waiting.push(
                "[server] metrics changed: /metrics is on or off from the daemon's start, its gauges counting since then, until it is restarted"
                    .to_owned(),
            );
        }
        waiting
    }
}

fn imds_listeners(config: &Config) -> Vec<(String, SocketAddr)> {
    config
        .roles
        .iter()
        .filter_map(|(name, role)| role.imds_listen.map(|a| (name.clone(), a)))
        .collect()
}

fn addresses(list: &[SocketAddr]) -> String {
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
    list.join(", ")
}

fn named_addresses(list: &[(String, SocketAddr)]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = list
        .iter()
        .map(|(role, address)| format!("{role} on {address}"))
        .collect();
    list.join(", ")
}

/// `role dev fetched again`, `roles dev, prod fetched again`.
pub fn fetched_again(roles: &[String]) -> String {
    match roles {
        [] => "no role was in use".into(),
        [one] => format!("role {one} fetched again"),
        many => format!("roles {} fetched again", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoleConfig;

    fn with_source(edit: impl FnOnce(&mut SourceConfig)) -> SourceConfig {
        let mut source = SourceConfig::default();
        edit(&mut source);
        source
    }

    #[test]
    fn each_source_key_is_named_under_what_its_change_means() {
        let old = SourceConfig::default();
        let new = with_source(|s| {
            s.sts_endpoint = Some("http://127.0.0.1:1".into());
            s.deadlines.read *= 2;
            s.mfa_session = Some(std::time::Duration::from_secs(3600));
        });
        assert_eq!(
            source_keys(&old, &new),
            SourceKeys {
                refetch: vec!["sts_endpoint", "read_timeout"],
                later: vec!["mfa_session"],
            }
        );
        assert!(source_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn restart_only_settings_are_compared_with_the_start_not_the_last_reload() {
        let mut started = Config::default();
        started.roles.insert("dev".into(), RoleConfig::default());
        let running = StartedWith::new(&started, false);
        let mut moved = started.clone();
        moved.server.listen = vec!["127.0.0.1:9912".parse().expect("address")];
        let waiting = running.needs_restart(&moved);
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(
            waiting[0].starts_with(
                "[server] listen changed (127.0.0.1:9911 to 127.0.0.1:9912): the daemon keeps listening"
            ),
            "{waiting:?}"
        );
        // Still waiting at the next reload of the same file.
        assert_eq!(running.needs_restart(&moved), waiting);
        assert!(running.needs_restart(&started).is_empty());
        let activated = StartedWith::new(&started, true).needs_restart(&moved);
        assert!(activated[0].contains("socket activation"), "{activated:?}");
    }

    #[test]
    fn fetched_roles_are_listed_the_way_the_cli_prints_names() {
        assert_eq!(fetched_again(&[]), "no role was in use");
        assert_eq!(fetched_again(&["dev".into()]), "role dev fetched again");
        assert_eq!(
            fetched_again(&["dev".into(), "prod".into()]),
            "roles dev, prod fetched again"
        );
    }
}
