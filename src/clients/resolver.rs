//! Names the processes behind new local connections, off the request path:
//! one thread, started with the first connection that needs it, that takes
//! every connection queued so far and finds them all in one walk over
//! `/proc` (a burst of a thousand connections costs a few walks, not a
//! thousand).

use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

use super::{Client, Identity, Known, Shared};
use crate::peer;

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
    yield_to_serving();
    loop {
        let batch = {
            let mut waiting = shared.resolver.waiting.lock();
            while waiting.is_empty() {
                shared.resolver.wake.wait(&mut waiting);
            }
            std::mem::take(&mut *waiting)
        };
        resolve(shared, batch);
    }
}

/// A walk over `/proc` takes milliseconds of CPU, and it starts just as a
/// burst of new clients is being answered: this thread runs at nice 10, so
/// on a busy machine the workers and the STS thread go first. Naming a client
/// is an audit trail, not part of any answer; it gets done a little later.
#[cfg(target_os = "linux")]
fn yield_to_serving() {
    // SAFETY: gettid has no preconditions; setpriority with PRIO_PROCESS and
    // a thread id changes only that thread's nice value (Linux). Raising
    // one's own nice value needs no privilege, and a failure leaves it as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

#[cfg(not(target_os = "linux"))]
fn yield_to_serving() {}

fn resolve(shared: &Shared, batch: Vec<Arc<Client>>) {
    let inodes: Vec<u64> = batch
        .iter()
        .filter_map(|client| client.socket.map(|socket| socket.inode))
        .collect();
    let found = peer::processes_holding(&inodes);
    for client in batch {
        let identity = Arc::new(Identity {
            address: client.address,
            uid: client.socket.map(|socket| socket.uid),
            process: client
                .socket
                .and_then(|socket| found.get(&socket.inode).cloned()),
        });
        let uses =
            match std::mem::replace(&mut *client.known.lock(), Known::Named(identity.clone())) {
                Known::Pending(uses) => uses,
                Known::Named(_) => Vec::new(),
            };
        for used in uses {
            shared.count(&used.role, &identity, used.requests, used.first, used.last);
        }
    }
}
