//! Who is on the other end of a TCP connection, on macOS.
//!
//! * [`owner_of`] reads the kernel's TCP table (`net.inet.tcp.pcblist_n`,
//!   which any user may read, as `netstat` does): the peer's socket, found
//!   by its address pair, carries its user (`so_uid`, the credentials it was
//!   made with, as Linux's socket uid), the kernel's handle for it
//!   (`xso_so`, our "inode") and the process that last used it. One sysctl
//!   copies the whole table, so the cost grows with the machine's
//!   connections (netstat's cost), not with its processes; another user's
//!   peer is named and refused like on Linux, and `allow_uids` works.
//! * [`processes_holding`] walks the processes through libproc (`walk.rs`):
//!   a process's socket fds (`PROC_PIDLISTFDS`), each one's handle
//!   (`PROC_PIDFDSOCKETINFO`'s `soi_so`, the same number as `xso_so`),
//!   then the holder's path (`proc_pidpath`), arguments (`KERN_PROCARGS2`),
//!   parent and start time (`PROC_PIDTBSDINFO`). The process that last used
//!   the socket is looked at first. Only our own user's processes can be
//!   read unless we are root (EPERM): another user's process is never
//!   named, as on Linux.
//!
//! If the table cannot be read (a sandbox, a kernel whose layout we do not
//! know: the daemon's own end of the connection is not in what we read),
//! the peer's socket is searched for by address among the fds of the
//! processes we may read, and its user is its holder's (effective) user.
//! That walk sees only our own user's processes, so a socket it does not
//! find may well be another user's: a loopback peer not found is
//! [`PeerOwner::Unknown`] and refused, as Linux refuses a loopback peer its
//! tables do not show (docs/macos.md).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use parking_lot::Mutex;

use super::darwin::{self, TcpConnection};
use super::macos_ffi as ffi;
use super::walk::{self, Processes};
use super::{PeerOwner, Process, SocketOwner};

/// How many sockets' last users are remembered for the walk that names them.
const HINTS: usize = 256;

/// The user behind the connection from `peer` to our `local` address.
pub fn owner_of(peer: SocketAddr, local: SocketAddr) -> PeerOwner {
    let loopback = peer.ip().to_canonical().is_loopback();
    let found = match from_table(peer, local) {
        Ok(found) => found,
        Err(error) => {
            warn_once(&error);
            from_fds(peer, local)
        }
    };
    match found {
        Some((owner, last_pid)) => {
            remember(owner.inode, last_pid);
            PeerOwner::Local(owner)
        }
        None if loopback => {
            tracing::debug!(%peer, "loopback peer not found (already closed?)");
            PeerOwner::Unknown
        }
        None => PeerOwner::Remote,
    }
}

/// The peer's socket in the TCP table, and the process that last used it.
/// An error when the table cannot be read or does not show the daemon's own
/// end of the connection (which is open while we ask): then it is no
/// evidence that the peer has gone.
fn from_table(peer: SocketAddr, local: SocketAddr) -> Result<Option<(SocketOwner, u32)>, String> {
    let table =
        ffi::tcp_table().map_err(|error| format!("cannot read net.inet.tcp.pcblist_n: {error}"))?;
    let connections = darwin::tcp_connections(&table);
    if let Some(connection) = darwin::find_connection(&connections, peer, local) {
        return Ok(Some(owner(&connection)));
    }
    if darwin::find_connection(&connections, local, peer).is_none() {
        return Err(format!(
            "net.inet.tcp.pcblist_n ({} bytes, {} connections read) does not list the \
             daemon's own end of a new connection",
            table.len(),
            connections.len()
        ));
    }
    Ok(None)
}

fn owner(connection: &TcpConnection) -> (SocketOwner, u32) {
    let owner = SocketOwner {
        uid: connection.uid,
        inode: connection.handle,
    };
    (owner, connection.last_pid)
}

/// Without the table: the socket whose addresses are the peer's end, among
/// the fds of the processes we may read (our own user's; everyone's as
/// root), the newest processes first. Its user is its holder's.
fn from_fds(peer: SocketAddr, local: SocketAddr) -> Option<(SocketOwner, u32)> {
    let own = std::process::id();
    for pid in ffi::all_pids().into_iter().filter(|&pid| pid != own) {
        for fd in ffi::socket_fds(pid) {
            let Some(socket) = ffi::socket_info(pid, fd).and_then(|info| darwin::socket_fd(&info))
            else {
                continue;
            };
            if darwin::is_peer_end(&socket, peer, local) {
                let uid = ffi::user_of(pid)?;
                let owner = SocketOwner {
                    uid,
                    inode: socket.handle,
                };
                return Some((owner, pid));
            }
        }
    }
    None
}

/// A table that cannot be read is logged once, not once per connection.
fn warn_once(error: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "cannot read the kernel's TCP table ({error}); looking for each client's \
             socket among the processes this user may inspect instead, which is slower, \
             and refusing every loopback client whose socket is not found there"
        );
    });
    tracing::debug!(error, "TCP table lookup failed");
}

/// The last user of each recently accepted peer's socket, handle → pid.
static LAST_USERS: Mutex<VecDeque<(u64, u32)>> = parking_lot::const_mutex(VecDeque::new());

fn remember(handle: u64, pid: u32) {
    if pid == 0 {
        return;
    }
    let mut last_users = LAST_USERS.lock();
    if last_users.len() == HINTS {
        last_users.pop_front();
    }
    last_users.push_back((handle, pid));
}

/// The processes that hold these sockets (by handle): the sockets' last
/// users first (usually the holder: found in a few calls), then as on Linux
/// (`walk.rs`).
pub fn processes_holding(
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    let wanted: HashSet<u64> = sockets.iter().map(|socket| socket.inode).collect();
    let mut first: Vec<u32> = LAST_USERS
        .lock()
        .iter()
        .rev()
        .filter(|(handle, _)| wanted.contains(handle))
        .map(|&(_, pid)| pid)
        .collect();
    first.extend_from_slice(likely);
    walk::holding(&Libproc, sockets, &first, reach)
}

/// The processes as libproc shows them.
struct Libproc;

/// One process, and its parent's pid (`peer::describe`).
pub fn describe(pid: u32) -> Option<(Process, u32)> {
    Libproc.describe(pid)
}

impl Processes for Libproc {
    fn newest_first(&self) -> Vec<u32> {
        ffi::all_pids()
    }

    fn uid_of(&self, pid: u32) -> Option<u32> {
        ffi::user_of(pid)
    }

    fn sockets_of(&self, pid: u32, wanted: &HashSet<u64>) -> Vec<u64> {
        let mut held = Vec::new();
        for fd in ffi::socket_fds(pid) {
            let Some(socket) = ffi::socket_info(pid, fd).and_then(|info| darwin::socket_fd(&info))
            else {
                continue;
            };
            if wanted.contains(&socket.handle) && !held.contains(&socket.handle) {
                held.push(socket.handle);
                if held.len() == wanted.len() {
                    break;
                }
            }
        }
        held
    }

    fn describe(&self, pid: u32) -> Option<(Process, u32)> {
        let info = ffi::bsd_info(pid)?;
        let arguments = ffi::process_arguments(pid)
            .as_deref()
            .and_then(darwin::process_arguments);
        let (from_arguments, cmdline) = arguments.unwrap_or_default();
        // proc_pidpath is the executable's resolved path; KERN_PROCARGS2's
        // is the path it was started by.
        let exe = ffi::path(pid).unwrap_or(from_arguments);
        let process = Process {
            pid,
            started: darwin::start_time(info.pbi_start_tvsec, info.pbi_start_tvusec),
            exe,
            cmdline,
        };
        Some((process, info.pbi_ppid))
    }
}
