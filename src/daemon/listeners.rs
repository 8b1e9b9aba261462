//! The sockets the daemon serves: the main listeners (passed by socket
//! activation, else bound from `listen`) and one IMDS-only listener per
//! `imds_listen` role. A reload moves the ones the daemon bound itself: the
//! new address is bound first, and only then does the old listener stop
//! accepting, finishing the requests in flight on its own, as at shutdown.
//! Sockets the service manager passed are its own to change.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::{self, AppState, Serving};
use crate::service;

/// What a listener serves.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Serves {
    /// Everything: the container endpoint, IMDS for the default role, admin.
    Main,
    /// IMDS for this role only (`imds_listen`).
    Imds(String),
}

struct Listener {
    serves: Serves,
    /// As configured (`None`: passed by the service manager). With port 0
    /// this differs from `bound`; a reload compares the configured one.
    configured: Option<SocketAddr>,
    bound: SocketAddr,
    serving: Serving,
}

#[derive(Default)]
pub struct Listeners {
    listening: Vec<Listener>,
    /// Listeners a reload retired, still finishing their requests.
    draining: Vec<JoinHandle<()>>,
    socket_activated: bool,
}

/// What a reload did to the listeners, in `assumed reload`'s words.
#[derive(Debug, Default)]
pub struct Moved {
    pub applied: Vec<String>,
    pub not_applied: Vec<String>,
    /// The main listeners moved: the address file must say where they are now.
    pub main_moved: bool,
}

/// The listeners at start, bound but not yet served: where they are can be
/// published before the first client can connect.
pub struct Bound {
    listeners: Vec<(TcpListener, Serves, Option<SocketAddr>)>,
    socket_activated: bool,
}

impl Bound {
    /// Takes the sockets the service manager passed, else binds `listen`;
    /// and binds every `imds_listen`.
    pub async fn new(config: &Config) -> Result<Bound, String> {
        let inherited = service::inherited_listeners()
            .map_err(|e| format!("cannot use the sockets passed by the service manager: {e}"))?;
        let socket_activated = !inherited.is_empty();
        if socket_activated {
            tracing::info!(
                sockets = inherited.len(),
                "using sockets from the service manager instead of listen"
            );
        }
        let mut listeners: Vec<_> = inherited
            .into_iter()
            .map(|listener| (listener, Serves::Main, None))
            .collect();
        for (serves, address) in wanted(config, socket_activated) {
            listeners.push((bind(address).await?, serves, Some(address)));
        }
        Ok(Bound {
            listeners,
            socket_activated,
        })
    }

    /// Where the main listeners are bound.
    pub fn main_addresses(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, serves, _)| *serves == Serves::Main)
            .filter_map(|(listener, _, _)| listener.local_addr().ok())
            .collect()
    }

    pub fn socket_activated(&self) -> bool {
        self.socket_activated
    }

    /// Serves them all.
    pub fn serve(self, state: &Arc<AppState>) -> Listeners {
        let mut listeners = Listeners {
            socket_activated: self.socket_activated,
            ..Listeners::default()
        };
        for (listener, serves, configured) in self.listeners {
            listeners.serve(listener, serves, configured, state);
        }
        listeners
    }
}

impl Listeners {
    /// Where the main listeners are bound.
    pub fn main_addresses(&self) -> Vec<SocketAddr> {
        self.listening
            .iter()
            .filter(|l| l.serves == Serves::Main)
            .map(|l| l.bound)
            .collect()
    }

    /// Makes the listeners what `config` asks for. A listener whose new
    /// address cannot be bound is reported, and the old one it was to
    /// replace keeps serving: a reload never leaves a role (or the daemon)
    /// with nothing listening because of a typo.
    pub async fn reload(&mut self, config: &Config, state: &Arc<AppState>) -> Moved {
        let wanted = wanted(config, self.socket_activated);
        let before_main = self.main_addresses();
        let before_imds = self.imds_description();
        let is_wanted = |l: &Listener| {
            l.configured
                .is_none_or(|address| wanted.contains(&(l.serves.clone(), address)))
        };
        let (kept, mut retiring): (Vec<Listener>, Vec<Listener>) =
            std::mem::take(&mut self.listening)
                .into_iter()
                .partition(is_wanted);
        self.listening = kept;
        let adding: Vec<(Serves, SocketAddr)> = wanted
            .into_iter()
            .filter(|(serves, address)| {
                !self
                    .listening
                    .iter()
                    .any(|l| &l.serves == serves && l.configured == Some(*address))
            })
            .collect();
        let mut moved = Moved::default();
        // An address that changes hands (an imds_listen moved to another
        // role) is closed first; its requests in flight still finish.
        let (freeing, rest): (Vec<Listener>, Vec<Listener>) =
            retiring.into_iter().partition(|old| {
                adding
                    .iter()
                    .any(|(_, address)| old.configured == Some(*address))
            });
        retiring = rest;
        for old in freeing {
            self.draining.push(old.serving.stop().await);
        }
        let mut failed: Vec<Serves> = Vec::new();
        for (serves, address) in adding {
            match bind(address).await {
                Ok(listener) => self.serve(listener, serves, Some(address), state),
                Err(error) => {
                    moved.not_applied.push(format!(
                        "{}: {error}; the daemon keeps listening where it was",
                        describe(&serves)
                    ));
                    failed.push(serves);
                }
            }
        }
        for old in retiring {
            if failed.contains(&old.serves) && config_still_names(config, &old.serves) {
                self.listening.push(old); // its replacement could not be bound
            } else {
                tracing::info!(address = %old.bound, "no longer listening; finishing the requests in flight");
                self.draining.push(old.serving.stop().await);
            }
        }
        self.draining.retain(|task| !task.is_finished());
        let after_main = self.main_addresses();
        if after_main != before_main {
            moved.main_moved = true;
            moved.applied.push(format!(
                "[server] listen changed (now {})",
                addresses(&after_main)
            ));
        }
        let after_imds = self.imds_description();
        if after_imds != before_imds {
            moved
                .applied
                .push(format!("imds_listen changed (now {after_imds})"));
        }
        moved
    }

    /// Stops every listener and waits for the requests in flight.
    pub async fn shutdown(self) {
        let mut stopped = self.draining;
        for listener in self.listening {
            stopped.push(listener.serving.stop().await);
        }
        server::drain(stopped).await;
    }

    fn serve(
        &mut self,
        listener: TcpListener,
        serves: Serves,
        configured: Option<SocketAddr>,
        state: &Arc<AppState>,
    ) {
        let Ok(bound) = listener.local_addr() else {
            return;
        };
        if bound.ip().is_loopback() {
            tracing::info!(address = %bound, "listening");
        } else {
            tracing::warn!(address = %bound, "listening beyond loopback (expose = true): anyone who can reach this address and holds the token can get credentials");
        }
        let endpoint = match &serves {
            Serves::Main => server::endpoint(state.clone()),
            Serves::Imds(role) => server::imds_endpoint(state.clone(), role),
        };
        self.listening.push(Listener {
            serves,
            configured,
            bound,
            serving: Serving::start(listener, endpoint),
        });
    }

    /// `dev on 127.0.0.1:1338, …` for the IMDS listeners.
    fn imds_description(&self) -> String {
        let mut named: Vec<String> = self
            .listening
            .iter()
            .filter_map(|l| match &l.serves {
                Serves::Imds(role) => Some(format!("{role} on {}", l.bound)),
                Serves::Main => None,
            })
            .collect();
        named.sort();
        if named.is_empty() {
            "none".into()
        } else {
            named.join(", ")
        }
    }
}

/// The listeners `config` asks the daemon to bind itself.
fn wanted(config: &Config, socket_activated: bool) -> Vec<(Serves, SocketAddr)> {
    let main = config
        .server
        .listen
        .iter()
        .filter(|_| !socket_activated)
        .map(|address| (Serves::Main, *address));
    let imds = config.roles.iter().filter_map(|(name, role)| {
        role.imds_listen
            .map(|address| (Serves::Imds(name.clone()), address))
    });
    main.chain(imds).collect()
}

/// Whether `config` still has a listener of this kind (a role removed
/// from it has no IMDS listener to keep).
fn config_still_names(config: &Config, serves: &Serves) -> bool {
    match serves {
        Serves::Main => true,
        Serves::Imds(role) => config.roles.contains_key(role),
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    let mut bound = server::bind(&[address]).await.map_err(|e| e.to_string())?;
    bound
        .pop()
        .ok_or_else(|| format!("cannot listen on {address}"))
}

fn describe(serves: &Serves) -> String {
    match serves {
        Serves::Main => "[server] listen".into(),
        Serves::Imds(role) => format!("[roles.{role}] imds_listen"),
    }
}

fn addresses(list: &[SocketAddr]) -> String {
    let list: Vec<String> = list.iter().map(ToString::to_string).collect();
    list.join(", ")
}
