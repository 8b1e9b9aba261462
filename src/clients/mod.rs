//! Who took each role's credentials: the processes (or, where none can be
//! named, the addresses) behind the connections that were served, for
//! `assumed status`, one log line per new (role, client), and optional
//! desktop notifications.
//!
//! Each connection gets a [`Client`] when it is accepted
//! ([`Clients::accepted`]), and a local one is handed at once to the
//! resolver thread (`resolver.rs`), which finds its process (a walk over
//! `/proc`, newest processes first, in batches) while the client sends its
//! request. A credential answer calls [`Clients::took`], which costs a short
//! lock and a counter; the uses seen before the process is named are kept on
//! the connection until it is.
//!
//! A client that makes one request and exits (`curl`, a Python one-liner) is
//! only there to be found until it has its answer. So the first credential
//! answer on a connection whose process is not named yet waits for the
//! resolver, for at most [`NAMING_WAIT`] ([`Client::named_within`], called by
//! the ecs and IMDS handlers; the warm path leaves such a connection's
//! requests to them); on an idle machine the walk is done before the answer
//! is ready, or half a millisecond after. Later answers on the connection,
//! and every answer once it is named, never wait: they read one atomic flag.
//!
//! Memory is bounded: at most [`RECENT_PER_ROLE`] clients per role, the ones
//! seen most recently. A client that drops out and comes back counts as new
//! again (another log line, another notification).
//!
//! This is an audit trail, not access control (docs/security.md): a process
//! can start another, and a pid says what ran, not who asked it to.

mod resolver;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::Notify;

use crate::credentials::format_expiration;
use crate::notify::{self, Notification};
use crate::peer::{PeerOwner, Process, SocketOwner};

/// Clients kept per role.
pub const RECENT_PER_ROLE: usize = 16;
/// What `status` says for a client whose process cannot be named.
pub const UNKNOWN_PROCESS: &str = "unknown process";
/// The longest a connection's first credential answer waits for its process
/// to be named. On an idle machine the walk takes well under a millisecond
/// for a client that just started; this bound is for a loaded one, where the
/// resolver thread waits for a core like everything else (a credential
/// request that needs STS takes tens of milliseconds anyway, and SDKs give
/// the endpoint a second or more). Measured in docs/performance.md.
pub const NAMING_WAIT: Duration = Duration::from_millis(50);

/// Every role's recent clients.
#[derive(Clone)]
pub struct Clients {
    shared: Arc<Shared>,
}

struct Shared {
    recent: Mutex<HashMap<String, Vec<Entry>>>,
    /// Roles with `notify_on_use = true`.
    notify: RwLock<HashSet<String>>,
    resolver: resolver::Queue,
}

struct Entry {
    identity: Arc<Identity>,
    requests: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
}

/// The client behind one connection, as far as it can be named.
#[derive(Debug)]
pub struct Identity {
    address: IpAddr,
    /// The socket's owner, for a local peer.
    uid: Option<u32>,
    process: Option<Process>,
}

impl Identity {
    /// The same process (pid and start time), or, for clients without one,
    /// the same address and user.
    fn same_as(&self, other: &Identity) -> bool {
        match (&self.process, &other.process) {
            (Some(a), Some(b)) => a.pid == b.pid && a.started == b.started,
            (None, None) => self.address == other.address && self.uid == other.uid,
            _ => false,
        }
    }
}

/// One accepted connection's client: named at once when there is nothing to
/// look up (a remote peer), else once the resolver has looked.
pub struct Client {
    address: IpAddr,
    socket: Option<SocketOwner>,
    known: Mutex<Known>,
    /// `known` is `Named`: what every answer reads, without the lock, to
    /// learn that it need not wait.
    named: AtomicBool,
    /// Handed to the resolver (at accept, or at the first use for a client
    /// made without [`Clients::accepted`]).
    queued: AtomicBool,
    /// An answer has waited for the name: no other will.
    waited: AtomicBool,
    /// A request waits for the name before it can be answered at all (a
    /// `confirm` role): the resolver walks every process for it, as for a
    /// client that took credentials.
    wanted: AtomicBool,
    /// Wakes the answer waiting for the name.
    on_named: Notify,
}

enum Known {
    /// Waiting for the resolver, with the uses seen so far.
    Pending(Vec<Use>),
    Named(Arc<Identity>),
}

struct Use {
    role: String,
    requests: u64,
    first: SystemTime,
    last: SystemTime,
}

impl Client {
    pub fn new(peer: SocketAddr, owner: PeerOwner) -> Arc<Client> {
        let address = peer.ip().to_canonical();
        let (socket, known) = match owner {
            PeerOwner::Local(socket) => (Some(socket), Known::Pending(Vec::new())),
            // Nothing to look up: named (by address) at once.
            PeerOwner::Remote | PeerOwner::Unknown | PeerOwner::Unsupported => (
                None,
                Known::Named(Arc::new(Identity {
                    address,
                    uid: None,
                    process: None,
                })),
            ),
        };
        Arc::new(Client {
            address,
            named: AtomicBool::new(socket.is_none()),
            socket,
            known: Mutex::new(known),
            queued: AtomicBool::new(false),
            waited: AtomicBool::new(false),
            wanted: AtomicBool::new(false),
            on_named: Notify::new(),
        })
    }

    /// Whether it has taken credentials (or a request waits for its name)
    /// while waiting for its name: then it is worth a full walk.
    fn took_any(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
            || matches!(&*self.known.lock(), Known::Pending(uses) if !uses.is_empty())
    }

    /// After a quick look found nothing: unless it has taken credentials
    /// meanwhile, it leaves the resolver's hands (true), so that its first
    /// use hands it back. Under the lock `took` adds uses under, so a use
    /// either is seen here or finds it out of the resolver's hands.
    fn release_unless_took(&self) -> bool {
        let known = self.known.lock();
        match &*known {
            Known::Pending(uses) if uses.is_empty() && !self.wanted.load(Ordering::Relaxed) => {
                self.queued.store(false, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Whether an answer on this connection may have to wait for the name
    /// ([`Client::named_within`]). One atomic load: every keep-alive answer
    /// after the first reads it and moves on.
    pub fn naming(&self) -> bool {
        !self.named.load(Ordering::Acquire)
    }

    /// Waits, at most `bound`, for the resolver to name this client, if it
    /// has taken credentials and is not named yet, and no answer has waited
    /// before. Called after a credential answer is ready and before it is
    /// sent: while the client waits for its answer, its process is there to
    /// be found. How long it waited is `assumed_client_naming_wait_seconds`;
    /// a wait that ran out, `assumed_client_naming_timeouts_total`.
    pub async fn named_within(&self, bound: Duration) {
        let notified = self.on_named.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.naming() {
            return;
        }
        // Named but not yet flagged: the resolver is counting its uses; the
        // wake-up is microseconds away.
        let took = match &*self.known.lock() {
            Known::Pending(uses) => !uses.is_empty(),
            Known::Named(_) => true,
        };
        if !took || self.waited.swap(true, Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        let named = tokio::time::timeout(bound, notified).await.is_ok();
        metrics::histogram!("assumed_client_naming_wait_seconds")
            .record(started.elapsed().as_secs_f64());
        if !named {
            metrics::counter!("assumed_client_naming_timeouts_total").increment(1);
        }
    }
}

impl Identity {
    /// The process behind the connection, when one was found.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }

    /// The socket's owner, for a local peer.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }
}

/// One role's client, as `status --json` shows it (`clients`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientStatus {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    /// The executable, or "unknown process".
    pub process: String,
    /// The peer's address (loopback for local processes).
    pub address: String,
    pub requests: u64,
    pub first_seen: String,
    pub last_seen: String,
}

impl Default for Clients {
    fn default() -> Self {
        Self::new()
    }
}

impl Clients {
    pub fn new() -> Self {
        Clients {
            shared: Arc::new(Shared {
                recent: Mutex::new(HashMap::new()),
                notify: RwLock::new(HashSet::new()),
                resolver: resolver::Queue::default(),
            }),
        }
    }

    /// The roles whose new clients raise a desktop notification (at start
    /// and on every reload).
    pub fn notify_for(&self, roles: impl IntoIterator<Item = String>) {
        *self.shared.notify.write() = roles.into_iter().collect();
    }

    /// The client behind a connection just accepted; a local one is handed
    /// to the resolver now, while it is sure to be there.
    pub fn accepted(&self, peer: SocketAddr, owner: PeerOwner) -> Arc<Client> {
        let client = Client::new(peer, owner);
        if client.socket.is_some() {
            self.look_up(&client);
        }
        client
    }

    fn look_up(&self, client: &Arc<Client>) {
        if !client.queued.swap(true, Ordering::Relaxed) {
            resolver::enqueue(&self.shared, client.clone());
        }
    }

    /// Who `client` is, for a request that cannot be answered without
    /// knowing (a `confirm` role): waits, at most `bound`, for the resolver.
    /// `None`: not named in time.
    pub async fn identify(&self, client: &Arc<Client>, bound: Duration) -> Option<Arc<Identity>> {
        let named = |client: &Client| match &*client.known.lock() {
            Known::Named(identity) => Some(identity.clone()),
            Known::Pending(_) => None,
        };
        if let Some(identity) = named(client) {
            return Some(identity);
        }
        let notified = client.on_named.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        client.wanted.store(true, Ordering::Relaxed);
        // Named between the first look and `enable`: no wake-up will come.
        if let Some(identity) = named(client) {
            return Some(identity);
        }
        self.look_up(client);
        let _ = tokio::time::timeout(bound, notified).await;
        named(client)
    }

    /// `client` was just given `role`'s credentials.
    pub fn took(&self, client: &Arc<Client>, role: &str) {
        let now = SystemTime::now();
        let mut known = client.known.lock();
        match &mut *known {
            Known::Named(identity) => {
                let identity = identity.clone();
                drop(known);
                self.shared.count(role, &identity, 1, now, now);
            }
            Known::Pending(uses) => {
                match uses.iter_mut().find(|used| used.role == role) {
                    Some(used) => {
                        used.requests += 1;
                        used.last = now;
                    }
                    None => uses.push(Use {
                        role: role.to_owned(),
                        requests: 1,
                        first: now,
                        last: now,
                    }),
                }
                drop(known);
                self.look_up(client);
            }
        }
    }

    /// `role`'s clients, most recently seen first. `hide` (the daemon's
    /// token, which `curl -H "Authorization: …"` puts on a command line)
    /// shows as `<redacted>` in command lines.
    pub fn recent(&self, role: &str, hide: &str) -> Vec<ClientStatus> {
        let recent = self.shared.recent.lock();
        let mut entries: Vec<&Entry> = recent
            .get(role)
            .map(|l| l.iter().collect())
            .unwrap_or_default();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.last_seen));
        entries
            .into_iter()
            .map(|entry| entry.status(hide))
            .collect()
    }
}

impl Shared {
    /// Adds uses of `role` by `identity`; a client new to the role is
    /// announced, and the least recently seen one leaves a full list.
    fn count(
        &self,
        role: &str,
        identity: &Arc<Identity>,
        requests: u64,
        first: SystemTime,
        last: SystemTime,
    ) {
        let new = {
            let mut recent = self.recent.lock();
            if !recent.contains_key(role) {
                recent.insert(role.to_owned(), Vec::new());
            }
            let Some(list) = recent.get_mut(role) else {
                return;
            };
            let known = list.iter_mut().find(|entry| {
                Arc::ptr_eq(&entry.identity, identity) || entry.identity.same_as(identity)
            });
            match known {
                Some(entry) => {
                    entry.requests += requests;
                    entry.last_seen = entry.last_seen.max(last);
                    false
                }
                None => {
                    if list.len() >= RECENT_PER_ROLE {
                        if let Some(oldest) = (0..list.len()).min_by_key(|&i| list[i].last_seen) {
                            list.swap_remove(oldest);
                        }
                    }
                    list.push(Entry {
                        identity: identity.clone(),
                        requests,
                        first_seen: first,
                        last_seen: last,
                    });
                    true
                }
            }
        };
        if new {
            self.announce(role, identity);
        }
    }

    /// The one log line (and, if asked for, the notification) for a client
    /// new to a role.
    fn announce(&self, role: &str, identity: &Identity) {
        // No command line here: it may carry what a user typed, secrets included.
        let what = match (&identity.process, identity.uid) {
            (Some(process), uid) => {
                tracing::info!(
                    role = %role,
                    pid = process.pid,
                    exe = %process.exe,
                    uid = uid.unwrap_or_default(),
                    "a new process took credentials"
                );
                format!(
                    "{} (pid {}) took credentials for role {role}",
                    process.exe, process.pid
                )
            }
            (None, Some(uid)) => {
                tracing::info!(
                    role = %role,
                    address = %identity.address,
                    uid,
                    "an unknown process took credentials"
                );
                format!("an unknown process of user {uid} took credentials for role {role}")
            }
            (None, None) => {
                tracing::info!(
                    role = %role,
                    address = %identity.address,
                    "an unknown process took credentials"
                );
                format!(
                    "an unknown process at {} took credentials for role {role}",
                    identity.address
                )
            }
        };
        if self.notify.read().contains(role) {
            notify::send(Notification::new(format!("assumed: {role}"), what));
        }
    }
}

impl Entry {
    fn status(&self, hide: &str) -> ClientStatus {
        let identity = &self.identity;
        let process = identity.process.as_ref();
        ClientStatus {
            pid: process.map(|p| p.pid),
            uid: identity.uid,
            exe: process.map(|p| p.exe.clone()),
            cmdline: process.map(|p| match hide.is_empty() {
                true => p.cmdline.clone(),
                false => p.cmdline.replace(hide, "<redacted>"),
            }),
            process: process.map_or_else(|| UNKNOWN_PROCESS.to_owned(), |p| p.exe.clone()),
            address: identity.address.to_string(),
            requests: self.requests,
            first_seen: format_expiration(self.first_seen),
            last_seen: format_expiration(self.last_seen),
        }
    }
}

#[cfg(test)]
mod tests;
