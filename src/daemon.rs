//! `assumed serve`: wires config, token, STS, cache and HTTP together and
//! runs until told to stop.

mod fetch_thread;
mod listeners;
mod reload;
mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::attention::Attention;
use crate::cache::{Cache, Clock, RoleChanges, RoleSpec, State, Timing};
use crate::config::{self, Config};
use crate::profiles::{self, AwsProfiles};
use crate::server::control::{Control, Reloaded};
use crate::server::settings::Settings;
use crate::server::{self, AppState};
use crate::service::{self, Signalled, Signals};
use crate::sts::{CHAINED_SESSION_LIMIT, FALLBACK_REGION, Sts};
use crate::token::{self, Token};
use listeners::Listeners;

/// Variables that would make the daemon's own source chain read the daemon.
const SELF_POINTING: [&str; 4] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Removes `AWS_CONTAINER_*` when they point at one of our own listeners
/// (as they do in a shell set up by `assumed env`): aws-config would
/// otherwise ask the daemon for the credentials it needs to answer itself.
///
/// Must run before any other thread exists (it edits the environment).
pub fn strip_self_pointing_env(listen: &[SocketAddr]) {
    let full_uri = std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI").ok();
    let points_at_us = full_uri
        .as_deref()
        .is_some_and(|uri| crate::own_address::reaches(uri, listen));
    let relative_reaches_us = std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        && listen
            .iter()
            .any(|a| a.port() == 80 && a.ip() == std::net::Ipv4Addr::new(169, 254, 170, 2));
    if points_at_us || relative_reaches_us {
        for name in SELF_POINTING {
            // SAFETY: called from `main` before the runtime or any thread starts.
            unsafe { std::env::remove_var(name) };
        }
    }
    // Likewise IMDS (`credential_source = Ec2InstanceMetadata` would read it).
    let imds_is_us = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .as_deref()
        .is_some_and(|uri| crate::own_address::reaches(uri, listen));
    if imds_is_us {
        // SAFETY: as above.
        unsafe { std::env::remove_var("AWS_EC2_METADATA_SERVICE_ENDPOINT") };
    }
}

pub fn role_specs(config: &Config, profiles: &AwsProfiles) -> Vec<RoleSpec> {
    profiles::all_roles(config, profiles)
        .into_iter()
        .map(|(name, config)| RoleSpec { name, config })
        .collect()
}

/// Lifts the soft open-file limit to the hard one: every connection is a
/// descriptor, and service managers often start daemons with a soft 1024.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// How `serve` was asked to run, beyond the config.
pub struct ServeOptions {
    /// `--config` as given (reloads read the same file).
    pub config_arg: Option<PathBuf>,
    /// Serve the benchmark's baseline route.
    pub bench_static: bool,
}

pub async fn run(config: Config, options: ServeOptions) -> Result<(), String> {
    raise_open_file_limit();
    let signals = Signals::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let token_path = token::path(&config);
    let token = token::install(&token_path, config.server.token_file.is_some())
        .map_err(|e| format!("cannot set up the token file {}: {e}", token_path.display()))?;
    let (mut running, requests) = start(config, options, token).await?;

    // Who may take credentials is said before anyone can ask.
    if running.config.server.trust_subnet.is_some() {
        announce_trust_subnet(running.config.server.trust_subnet);
    }
    announce_allow_uids(&running.config.server.allow_uids);
    let bound = listeners::Bound::new(&running.config).await?;
    running.started_with = reload::StartedWith::new(&running.config, bound.socket_activated());
    running.token_path = token_path;
    // Published before anyone can connect: a CLI that reached the daemon
    // finds the file.
    running.publish_address(bound.main_addresses());
    running.listeners = bound.serve(&running.state);
    announce_ready(&running, &running.token_path);
    running.serve(signals, requests).await;

    tracing::info!("shutting down: finishing requests in flight");
    service::stopping();
    running.listeners.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// STS, the cache in front of it and the state the handlers share, with the
/// line on which the admin endpoints ask for reloads.
async fn start(
    config: Config,
    options: ServeOptions,
    token: Token,
) -> Result<(Running, mpsc::Receiver<Control>), String> {
    let profiles = Arc::new(profiles::load().await);
    let specs = role_specs(&config, &profiles);
    warn_about_clamped_sessions(&specs);
    check_default_role(&config, &specs);
    let attention = Attention::new(crate::notify::enabled(&config.server));
    let sts = Arc::new(Sts::new(config.source.clone()).with_attention(attention.clone()));
    sts.set_profiles(profiles).await;
    // Before any role is fetched: a locked keyring is said (and asked to
    // unlock) now, and roles on it answer KeyringLocked, not a hang.
    sts.configure_keys(&specs);
    sts.read_keys().await;
    sts.restore_mfa_sessions();
    let clients = notifying_clients(&specs);
    // Before the cache: its slot and driver gauges count from the first one.
    let metrics = config.server.metrics && server::metrics::install().is_some();
    let fetch_thread =
        fetch_thread::start().map_err(|e| format!("cannot start the STS thread: {e}"))?;
    let cache = Cache::new(
        specs,
        sts.clone(),
        timing(&config),
        Clock::system(),
        fetch_thread,
    );
    remind_only_in_use(&attention, &cache);
    let fixed = server::Fixed {
        metrics,
        bench_static: options.bench_static,
    };
    let settings = Settings::new(&config, FALLBACK_REGION, token);
    let (state, requests) = AppState::new(cache, sts.clone(), clients, settings, fixed)
        .map_err(|e| format!("no randomness: {e}"))?;
    let running = Running {
        started_with: reload::StartedWith::new(&config, false),
        listeners: Listeners::default(),
        token_path: PathBuf::new(),
        address_file: None,
        config,
        config_arg: options.config_arg,
        state,
        sts,
    };
    Ok((running, requests))
}

fn timing(config: &Config) -> Timing {
    Timing {
        refresh_before: config.server.refresh_before,
        idle_timeout: config.server.idle_timeout,
        fetch_timeout: config.source.deadlines.fetch(),
    }
}

/// Reminders go out only for sessions whose roles are kept warm. (The cache
/// holds the Sts that holds this: a cycle, for the daemon's life.)
fn remind_only_in_use(attention: &Attention, cache: &Cache) {
    let in_use = cache.clone();
    attention.set_in_use(move |role| {
        in_use
            .status()
            .iter()
            .any(|s| s.name == role && matches!(s.state, State::Warm | State::Refreshing))
    });
}

/// Warms the prefetched roles, says what is on, and tells the service
/// manager the daemon is ready.
fn announce_ready(running: &Running, token_path: &Path) {
    let cache = &running.state.cache;
    let names = cache.role_names();
    prefetch(cache, &names);
    tracing::info!(token_file = %token_path.display(), roles = names.len(), "ready");
    if names.is_empty() {
        let path = (running.config.path.clone())
            .or_else(|| config::resolve_path(running.config_arg.as_deref()));
        tracing::warn!("{}", config::no_roles_hint(path.as_deref()));
    }
    service::ready(&status_line(cache));
    crate::memory::unmap_code(); // start-up is over, whether or not a client comes
}

/// How often the service manager's STATUS= line is brought up to date.
const STATUS_INTERVAL: Duration = Duration::from_secs(15);

fn status_line(cache: &Cache) -> String {
    let roles = cache.status();
    let warm = roles
        .iter()
        .filter(|role| role.expires_in_seconds.is_some())
        .count();
    format!("{} roles, {warm} warm", roles.len())
}

/// `assumed check` cannot see imported profiles, so a `default_role` naming
/// neither a role nor a profile is only found here.
fn check_default_role(config: &Config, specs: &[RoleSpec]) {
    if let Some(name) = &config.server.default_role {
        if !specs.iter().any(|spec| &spec.name == name) {
            tracing::warn!(
                "default_role {name:?} names neither a [roles] entry nor a ~/.aws/config profile with role_arn; /creds and IMDS will answer 404"
            );
        }
    }
}

fn warn_about_clamped_sessions(specs: &[RoleSpec]) {
    for spec in specs {
        if spec.config.via.is_some()
            && spec
                .config
                .duration
                .is_some_and(|d| d > CHAINED_SESSION_LIMIT)
        {
            tracing::warn!(role = %spec.name, "duration is above 1h, which STS refuses for chained roles (via); asking for 1h");
        }
    }
}

fn prefetch(cache: &Cache, names: impl IntoIterator<Item = impl AsRef<str>>) {
    for name in names {
        let name = name.as_ref();
        if cache.role(name).is_some_and(|spec| spec.config.prefetch) {
            cache.prefetch(name);
        }
    }
}

/// What the main loop owns while serving.
struct Running {
    config: Config,
    config_arg: Option<PathBuf>,
    /// What only a restart changes, as it is.
    started_with: reload::StartedWith,
    listeners: Listeners,
    token_path: PathBuf,
    /// Where the CLI finds us; written again when a reload moves `listen`.
    address_file: Option<crate::address_file::Published>,
    state: Arc<AppState>,
    /// The state's upstream and the cache's fetcher: reloads hand it new profiles.
    sts: Arc<Sts>,
}

impl Running {
    /// Says where the main listeners are (`address_file`); the file written
    /// before is removed only if it is not this one.
    fn publish_address(&mut self, main: Vec<SocketAddr>) {
        let published = crate::address_file::publish(&self.config, &self.token_path, main);
        self.address_file = published;
    }

    /// Answers reloads (SIGHUP, the admin endpoint) and keeps the service
    /// manager's status line current, until told to stop.
    async fn serve(&mut self, mut signals: Signals, mut requests: mpsc::Receiver<Control>) {
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        // Building the status walks every role and maps code the idle
        // daemon otherwise leaves unmapped (docs/performance.md): only
        // for a manager that listens.
        let manager_listens = service::manager_listens();
        loop {
            tokio::select! {
                signalled = signals.next() => match signalled {
                    Signalled::Reload => {
                        let _ = self.reload().await;
                    }
                    Signalled::Stop => break,
                },
                Some(request) = requests.recv() => match request {
                    Control::Reload(reply) => {
                        let _ = reply.send(self.reload().await);
                    }
                },
                _ = status_tick.tick(), if manager_listens => service::status(&status_line(&self.state.cache)),
            }
        }
    }

    /// Re-reads the config (SIGHUP, `assumed reload`). A config that does not
    /// validate changes nothing: the old one keeps serving. SIGHUP logs what
    /// `assumed reload` prints.
    async fn reload(&mut self) -> Result<Reloaded, String> {
        service::reloading();
        let outcome = self.apply_new_config().await;
        match &outcome {
            Ok(reloaded) => {
                tracing::info!("reloaded the config: {}", reloaded.summary());
                for line in &reloaded.not_applied {
                    tracing::warn!("not applied by the reload: {line}");
                }
            }
            Err(errors) => {
                for line in errors.lines() {
                    tracing::error!("reload refused, still serving the previous config: {line}");
                }
            }
        }
        service::ready(&status_line(&self.state.cache));
        crate::memory::unmap_code(); // what only the reload ran
        outcome
    }

    /// The token for `new`: when its token file is elsewhere, the token
    /// that file holds or ours written there (`token::move_to`), and what
    /// to say about it; a file that cannot be set up is named in
    /// `not_applied`, and the token stays where it was.
    fn move_token(
        &mut self,
        new: &Config,
        not_applied: &mut Vec<String>,
    ) -> (Token, Option<String>) {
        let current = self.state.settings().token.clone();
        let path = token::path(new);
        if path == self.token_path {
            return (current, None);
        }
        match token::move_to(&path, &current) {
            Ok(token) => {
                let same = token.matches(current.expose().as_bytes());
                let said = format!(
                    "[server] token_file changed (now {}, {})",
                    path.display(),
                    if same {
                        "the same token"
                    } else {
                        "the token that file held: clients need it from there"
                    }
                );
                self.token_path = path;
                (token, Some(said))
            }
            Err(error) => {
                not_applied.push(format!(
                    "[server] token_file: cannot set up {}: {error}; the token stays at {}",
                    path.display(),
                    self.token_path.display()
                ));
                (current, None)
            }
        }
    }

    /// Applies every setting of the new config that can change while
    /// serving, and names each one it applied; what it could not apply is
    /// named too (`reload::StartedWith`, an address or token file that
    /// cannot be set up).
    async fn apply_new_config(&mut self) -> Result<Reloaded, String> {
        let new = config::load_or_default(self.config_arg.as_deref()).map_err(|d| d.to_string())?;
        let profiles = Arc::new(profiles::load().await);
        let specs = role_specs(&new, &profiles);
        warn_about_clamped_sessions(&specs);
        check_default_role(&new, &specs);
        let server_keys = reload::server_keys(&self.config.server, &new.server);
        let source_keys = reload::source_keys(&self.config.source, &new.source);
        let mut not_applied = self.started_with.needs_restart(&new);
        let (token, token_moved) = self.move_token(&new, &mut not_applied);
        // Built whole before anything is swapped in.
        let settings = Settings::new(&new, FALLBACK_REGION, token);
        let state = &self.state;
        // [source] before the roles: every fetch from here on uses it.
        let forgotten_mfa = match source_keys.is_empty() {
            true => 0,
            false => self.sts.set_source(new.source.clone()),
        };
        self.sts.set_profiles(profiles).await;
        // Read again whatever changed: the keys a rotation replaced too.
        self.sts.configure_keys(&specs);
        let keys_read = self.sts.read_keys().await;
        state.clients.notify_for(notify_roles(&specs));
        let changes = state.cache.replace_roles(specs);
        // default_role, imdsv1, allowed_hosts, trust_subnet, allow_uids and
        // IMDS's region at once. trust_subnet and allow_uids reload rather
        // than wait for a restart: revoking access must not wait.
        state.replace_settings(settings);
        if timing(&new) != timing(&self.config) {
            state.cache.set_timing(timing(&new));
        }
        self.sts
            .attention()
            .set_enabled(crate::notify::enabled(&new.server));
        if new.server.trust_subnet != self.config.server.trust_subnet {
            announce_trust_subnet(new.server.trust_subnet);
        }
        if new.server.allow_uids != self.config.server.allow_uids {
            announce_allow_uids(&new.server.allow_uids);
        }
        prefetch(&state.cache, changes.added.iter().chain(&changes.changed));
        // New keys under the same name (a rotation): roles switch to them now.
        for name in self
            .sts
            .roles_on_keys(&specs_now(&state.cache), &keys_read.changed)
        {
            state.cache.refetch(&name);
        }
        let moved = self.listeners.reload(&new, &self.state).await;

        let mut applied = Vec::new();
        if !source_keys.refetch.is_empty() {
            let effect = self.refetch_all(&changes, forgotten_mfa);
            let keys = source_keys.refetch.join(", ");
            applied.push(format!("[source] {keys} changed ({effect})"));
        }
        if !source_keys.later.is_empty() {
            applied.push(format!("[source] {} changed", source_keys.later.join(", ")));
        }
        if !server_keys.is_empty() {
            applied.push(format!("[server] {} changed", server_keys.join(", ")));
        }
        if keys_read.backend.is_some() {
            applied.push(keys_read.summary());
        }
        applied.extend(token_moved.iter().cloned());
        applied.extend(moved.applied);
        applied.push(format!(
            "{} added, {} changed, {} removed",
            describe(&changes.added),
            describe(&changes.changed),
            describe(&changes.removed)
        ));
        not_applied.extend(moved.not_applied);
        self.config = new;
        if moved.main_moved || token_moved.is_some() {
            self.publish_address(self.listeners.main_addresses());
        }
        Ok(Reloaded {
            applied,
            not_applied,
        })
    }

    /// After a `[source]` change: every role in use is fetched again (added
    /// and changed roles start cold, or prefetch, on their own); what to
    /// say about it.
    fn refetch_all(&self, changes: &RoleChanges, forgotten_mfa: usize) -> String {
        let cache = &self.state.cache;
        let fresh: Vec<&String> = changes.added.iter().chain(&changes.changed).collect();
        let fetched: Vec<String> = cache
            .role_names()
            .into_iter()
            .filter(|name| !fresh.contains(&name) && cache.refetch(name))
            .collect();
        let mut effect = reload::fetched_again(&fetched);
        if forgotten_mfa > 0 {
            effect.push_str(&format!(
                "; {forgotten_mfa} MFA session(s) forgotten, opened at the old endpoint"
            ));
        }
        effect
    }
}

/// `[server] notify`, else on when a desktop is there to show notifications.
/// Token-less access deserves a line in the log when it is on at start, and
/// whenever a reload changes it.
fn announce_trust_subnet(subnet: Option<crate::subnet::Subnet>) {
    match subnet {
        Some(subnet) => tracing::warn!(
            %subnet,
            "trust_subnet: peers in this subnet get credentials without the token"
        ),
        None => tracing::info!("trust_subnet removed: every peer needs the token again"),
    }
}

/// Letting other users' processes in is a deliberate choice worth a log line.
fn announce_allow_uids(uids: &[u32]) {
    if !uids.is_empty() {
        tracing::warn!(
            ?uids,
            "allow_uids: processes of these other users may take credentials"
        );
    }
}

/// The client log, with desktop notifications for `notify_on_use` roles.
fn notifying_clients(specs: &[RoleSpec]) -> crate::clients::Clients {
    let clients = crate::clients::Clients::new();
    clients.notify_for(notify_roles(specs));
    clients
}

fn notify_roles(specs: &[RoleSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|spec| spec.config.notify_on_use)
        .map(|spec| spec.name.clone())
        .collect()
}

/// The roles the cache serves now.
fn specs_now(cache: &Cache) -> Vec<RoleSpec> {
    cache
        .role_names()
        .iter()
        .filter_map(|name| cache.role(name))
        .collect()
}

fn describe(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
