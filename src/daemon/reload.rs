//! What a reload changes, setting by setting, in the words `assumed reload`
//! prints: the running config against the new one. The main loop applies
//! the changes (`daemon.rs`, `daemon/listeners.rs`); this names them, and
//! names the few that wait for a restart (`metrics`, a socket-activated
//! `listen`), so that a reload never reports "nothing changed" while a
//! setting the user edited is silently ignored.

use std::net::SocketAddr;

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
        ("keys", old.keys != new.keys),
        ("keyring", old.keyring.backend != new.keyring.backend),
        ("keyring_file", old.keyring.file != new.keyring.file),
        (
            "keyring_passphrase_file",
            old.keyring.passphrase_file != new.keyring.passphrase_file,
        ),
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

/// What only a restart changes, as the daemon started with it: compared
/// with each new config rather than the last one read, so each reload keeps
/// saying so until the restart.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedWith {
    listen: Vec<SocketAddr>,
    metrics: bool,
    /// The main listeners were passed by the service manager: `listen` is
    /// not the daemon's to change (`daemon/listeners.rs` moves the others).
    socket_activated: bool,
}

impl StartedWith {
    pub fn new(config: &Config, socket_activated: bool) -> Self {
        StartedWith {
            listen: config.server.listen.clone(),
            metrics: config.server.metrics,
            socket_activated,
        }
    }

    /// What `new` asks for that only a restart gives, one sentence each:
    /// the setting, the change, why it waits and what to do.
    pub fn needs_restart(&self, new: &Config) -> Vec<String> {
        let mut waiting = Vec::new();
        if self.socket_activated && new.server.listen != self.listen {
            waiting.push(format!(
                "[server] listen changed ({} to {}): the daemon serves the sockets its service manager passed it (socket activation), which only the manager changes; edit the socket unit's ListenStream= and restart it",
                addresses(&self.listen),
                addresses(&new.server.listen)
            ));
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

fn addresses(list: &[SocketAddr]) -> String {
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
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
            s.keys = Some("alice".into());
            s.keyring.backend = crate::keys::BackendKind::File;
        });
        assert_eq!(
            source_keys(&old, &new),
            SourceKeys {
                refetch: vec!["sts_endpoint", "read_timeout", "keys", "keyring"],
                later: vec!["mfa_session"],
            }
        );
        assert!(source_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn restart_only_settings_are_compared_with_the_start_not_the_last_reload() {
        let started = Config::default();
        let mut moved = started.clone();
        moved.server.listen = vec!["127.0.0.1:9912".parse().expect("address")];
        moved.server.metrics = !started.server.metrics;
        let bound_itself = StartedWith::new(&started, false);
        let waiting = bound_itself.needs_restart(&moved);
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(
            waiting[0].starts_with("[server] metrics changed"),
            "{waiting:?}"
        );
        // Still waiting at the next reload of the same file.
        assert_eq!(bound_itself.needs_restart(&moved), waiting);
        assert!(bound_itself.needs_restart(&started).is_empty());
        let activated = StartedWith::new(&started, true).needs_restart(&moved);
        assert!(
            activated[0].starts_with(
                "[server] listen changed (127.0.0.1:9911 to 127.0.0.1:9912): the daemon serves the sockets its service manager passed it (socket activation)"
            ),
            "{activated:?}"
        );
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
