//! Names the processes behind new local connections: one thread, started
//! with the first connection that needs it, that takes every connection
//! queued so far (they are queued as they are accepted) and finds them all
//! in one walk over `/proc` (a burst of a thousand connections costs a few
//! walks, not a thousand), looking first at the processes it named last.
//!
//! It runs at the workers' priority: a connection's first credential answer
//! may be waiting for it (`Client::named_within`), and at a lower one a busy
//! machine would leave it without a core for longer than that wait. What
//! keeps it from competing with serving is that a walk stops as soon as it
//! has found what it looks for, which for a client that just started is
//! after a handful of processes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

use super::{Client, Identity, Known, Shared};
use crate::peer::{self, SocketOwner};

/// Processes named most recently, looked at first by the next walk: a
/// long-lived client opening another connection is found there.
const REMEMBERED: usize = 32;
/// How many of the newest processes a walk for connections that have not
/// taken credentials looks at (besides the remembered ones).
const QUICK_LOOK: usize = 64;

#[derive(Default)]
pub(super) struct Queue {
    waiting: Mutex<Vec<Arc<Client>>>,
    wake: Condvar,
    started: OnceLock<()>,
}

pub(super) fn enqueue(shared: &Arc<Shared>, client: Arc<Client>) {
    let queue = &shared.resolver;
    queue.waiting.lock().push(client);
    queue.wake.notify_one();
    queue.started.get_or_init(|| {
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("assumed-clients".into())
            .spawn(move || run(&shared));
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the thread that names client processes");
        }
    });
}

fn run(shared: &Shared) {
    let mut recent = VecDeque::with_capacity(REMEMBERED);
    loop {
        let batch = {
            let mut waiting = shared.resolver.waiting.lock();
            while waiting.is_empty() {
                shared.resolver.wake.wait(&mut waiting);
            }
            std::mem::take(&mut *waiting)
        };
        resolve(shared, batch, &mut recent);
    }
}

fn resolve(shared: &Shared, batch: Vec<Arc<Client>>, recent: &mut VecDeque<u32>) {
    let sockets: Vec<SocketOwner> = batch.iter().filter_map(|client| client.socket).collect();
    // A connection that has not taken credentials yet (its request is on
    // its way, or it is `status`, a health check…) gets a look at the likely
    // and newest processes only: if its socket is already gone, a full walk
    // would read every process's fds for nothing. One that took credentials
    // gets the full walk, and is named as unknown only after it.
    let took = batch.iter().any(|client| client.took_any());
    let reach = if took { None } else { Some(QUICK_LOOK) };
    let started = std::time::Instant::now();
    let found = peer::processes_holding(&sockets, recent.make_contiguous(), reach);
    tracing::debug!(
        sockets = sockets.len(),
        found = found.len(),
        full = took,
        micros = started.elapsed().as_micros() as u64,
        "looked for client processes"
    );
    for process in found.values() {
        if let Some(at) = recent.iter().position(|&pid| pid == process.pid) {
            recent.remove(at);
        }
        if recent.len() == REMEMBERED {
            recent.pop_back();
        }
        recent.push_front(process.pid);
    }
    for client in batch {
        let process = client
            .socket
            .and_then(|socket| found.get(&socket.inode).cloned());
        if process.is_none() && !took {
            // Not found by a quick look. Still nothing taken: its first
            // credential answer hands it back. Taken meanwhile: a full walk.
            if !client.release_unless_took() {
                shared.resolver.waiting.lock().push(client);
            }
            continue;
        }
        let identity = Arc::new(Identity {
            address: client.address,
            uid: client.socket.map(|socket| socket.uid),
            process,
        });
        let uses =
            match std::mem::replace(&mut *client.known.lock(), Known::Named(identity.clone())) {
                Known::Pending(uses) => uses,
                Known::Named(_) => Vec::new(),
            };
        for used in uses {
            shared.count(&used.role, &identity, used.requests, used.first, used.last);
        }
        // Counted first: the answer this releases finds its client in `status`.
        client.named.store(true, Ordering::Release);
        client.on_named.notify_waiters();
    }
}
