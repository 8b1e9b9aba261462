//! Who is on the other end of a TCP connection, as the kernel tells it.
//!
//! Two questions, asked at different times:
//!
//! * [`owner_of`]: which user owns the peer's socket. Asked once per
//!   connection, before its first request is served, because the answer
//!   decides whether the connection may have credentials at all
//!   (`server::users`). It must be cheap, and it blocks the connection's
//!   task: the kernel looks the socket up by its address pair (netlink
//!   `sock_diag`, a hash lookup: ~25 µs with the netlink socket's set-up),
//!   and only if that does not work here is `/proc/net/tcp` read, which walks
//!   the whole table (4–9 ms per read on a host with 262,144 hash buckets).
//! * [`processes_holding`]: which process holds the socket. Needs a walk over
//!   `/proc/<pid>/fd`, so it runs on a thread of its own (`clients`), for
//!   many sockets at once, started when the connection is accepted: a client
//!   that makes one request and exits is only there to be found until it
//!   has its answer.
//!
//! A connection is only ever looked up in the daemon's own network
//! namespace: a peer in another namespace (a container) or on another host
//! has no socket here, and is [`PeerOwner::Remote`].
//!
//! Linux and macOS answer; elsewhere every peer is
//! [`PeerOwner::Unsupported`] (docs/security.md says what that leaves
//! open). On macOS (`macos.rs`) the owner comes from the kernel's TCP table
//! (`net.inet.tcp.pcblist_n`) and the process from libproc; docs/macos.md.

mod cmdline;
// The bytes macOS hands out, read on every system so they are tested on
// every system; only macOS calls them outside tests.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod darwin;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
mod macos_ffi;
#[cfg(target_os = "linux")]
mod proc_net;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
mod sock_diag;
#[cfg(any(target_os = "linux", target_os = "macos"))]
mod walk;

use std::collections::HashMap;
use std::net::SocketAddr;

/// The peer's socket as the kernel lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketOwner {
    pub uid: u32,
    /// The socket's inode: what `/proc/<pid>/fd/N` links to (`socket:[inode]`).
    /// On macOS, the kernel's handle for the socket (`xso_so`, `soi_so`).
    pub inode: u64,
}

/// What the kernel says about the other end of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerOwner {
    /// A socket in this network namespace (a process on this machine, on
    /// loopback or on one of the host's own addresses).
    Local(SocketOwner),
    /// Not in this namespace: another host, a container, another namespace.
    /// There is no local user to name.
    Remote,
    /// A loopback peer whose owner could not be learnt (the kernel's tables
    /// could not be read, or the socket closed before it was looked up).
    Unknown,
    /// This system cannot tell (neither Linux nor macOS).
    Unsupported,
}

/// A process that holds a socket, as `/proc/<pid>` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// When it started (Linux: clock ticks after boot; macOS: microseconds
    /// since the epoch): with `pid`, names one process even after the pid is
    /// reused.
    pub started: u64,
    /// `/proc/<pid>/exe` (macOS: `proc_pidpath`); for a script, its interpreter.
    pub exe: String,
    /// Arguments joined by spaces, cut at [`CMDLINE_LIMIT`] characters.
    pub cmdline: String,
}

/// How much of a command line is kept.
pub const CMDLINE_LIMIT: usize = 200;

/// The user behind the connection from `peer` to our `local` address.
/// Loopback peers that cannot be looked up come back [`PeerOwner::Unknown`]
/// (the caller refuses them); why is logged once.
#[cfg(target_os = "linux")]
pub fn owner_of(peer: SocketAddr, local: SocketAddr) -> PeerOwner {
    let peer = canonical(peer);
    let local = canonical(local);
    let loopback = peer.ip().is_loopback();
    match lookup(peer, local) {
        Ok(Some(owner)) if owner.inode != 0 => PeerOwner::Local(owner),
        // Not here, or only the TIME_WAIT remains of it (which has no owner).
        Ok(_) if loopback => {
            tracing::debug!(%peer, "loopback peer not found in the socket table (already closed?)");
            PeerOwner::Unknown
        }
        Ok(_) => PeerOwner::Remote,
        Err(error) => {
            warn_once(&error);
            if loopback {
                PeerOwner::Unknown
            } else {
                PeerOwner::Remote
            }
        }
    }
}

#[cfg(target_os = "macos")]
pub fn owner_of(peer: SocketAddr, local: SocketAddr) -> PeerOwner {
    macos::owner_of(peer, local)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn owner_of(_peer: SocketAddr, _local: SocketAddr) -> PeerOwner {
    PeerOwner::Unsupported
}

/// Netlink when it works here, else `/proc/net/tcp`. Netlink is trusted
/// once it has found the daemon's own end of a connection: a kernel without
/// `tcp_diag` answers "no such socket" to everything, which must not pass
/// for "the peer has gone".
#[cfg(target_os = "linux")]
fn lookup(peer: SocketAddr, local: SocketAddr) -> Result<Option<SocketOwner>, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NETLINK_WORKS: AtomicBool = AtomicBool::new(false);
    static WARNED: std::sync::Once = std::sync::Once::new();

    let netlink = NETLINK_WORKS.load(Ordering::Relaxed)
        || match sock_diag::lookup(local, peer) {
            Ok(Some(_)) => {
                NETLINK_WORKS.store(true, Ordering::Relaxed);
                true
            }
            outcome => {
                WARNED.call_once(|| {
                    tracing::warn!(
                        ?outcome,
                        "netlink sock_diag did not find the daemon's own end of a new \
                         connection; reading /proc/net/tcp instead, which is slower"
                    )
                });
                false
            }
        };
    if netlink {
        match sock_diag::lookup(peer, local) {
            Ok(Some(found)) if found.inode != 0 => return Ok(Some(found)),
            // Seen under a burst of new connections: netlink missed a live
            // peer. Refusing is for when the table agrees it is gone.
            Ok(_) => {
                tracing::debug!(%peer, "sock_diag did not find the peer; reading /proc/net/tcp")
            }
            Err(error) => tracing::debug!(%error, "sock_diag failed; reading /proc/net/tcp"),
        }
    }
    proc_net::lookup(peer, local).map_err(|error| format!("cannot read {error}"))
}

/// A table that cannot be read is logged once, not once per connection.
#[cfg(target_os = "linux")]
fn warn_once(error: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "cannot tell which user owns loopback connections ({error}); \
             refusing every loopback client except for /healthz and /metrics until it can"
        );
    });
    tracing::debug!(error, "socket owner lookup failed");
}

/// IPv4-mapped addresses as plain IPv4: the kernel lists such connections
/// (a dual-stack listener's IPv4 peers) in the IPv4 table.
#[cfg(target_os = "linux")]
fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// The processes that hold these sockets (by inode), found in one walk over
/// `/proc` that looks at the `likely` pids first, then at the sockets'
/// users' newest processes (only the `reach` newest, if given), then at
/// everyone else's (not when `reach` is given), and stops once every socket
/// is found. Sockets whose process is gone, or belongs to a user whose
/// `/proc/<pid>/fd` we may not read, are missing from the answer.
#[cfg(target_os = "linux")]
pub fn processes_holding(
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    process::holding(sockets, likely, reach)
}

#[cfg(target_os = "macos")]
pub fn processes_holding(
    sockets: &[SocketOwner],
    likely: &[u32],
    reach: Option<usize>,
) -> HashMap<u64, Process> {
    macos::processes_holding(sockets, likely, reach)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn processes_holding(
    _sockets: &[SocketOwner],
    _likely: &[u32],
    _reach: Option<usize>,
) -> HashMap<u64, Process> {
    HashMap::new()
}

/// One process, and its parent's pid; `None` when it is gone (or this
/// system cannot tell). For the parent chain a confirm prompt shows.
#[cfg(target_os = "linux")]
pub fn describe(pid: u32) -> Option<(Process, u32)> {
    process::describe(pid)
}

#[cfg(target_os = "macos")]
pub fn describe(pid: u32) -> Option<(Process, u32)> {
    macos::describe(pid)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn describe(_pid: u32) -> Option<(Process, u32)> {
    None
}

/// The file a process runs, to read its content: `/proc/<pid>/exe` on Linux
/// (the very file, even if replaced on disk since), else its path.
pub fn executable_file(process: &Process) -> std::path::PathBuf {
    if cfg!(target_os = "linux") {
        std::path::PathBuf::from(format!("/proc/{}/exe", process.pid))
    } else {
        std::path::PathBuf::from(&process.exe)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    /// A live loopback connection: the client's socket, and its inode.
    fn connection() -> (std::net::TcpStream, std::net::TcpStream, u64) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat fills the struct we own for an fd we own.
        assert_eq!(unsafe { libc::fstat(client.as_raw_fd(), &mut stat) }, 0);
        (client, server, stat.st_ino)
    }

    fn own_uid() -> u32 {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    }

    #[test]
    fn the_owner_of_a_loopback_peer_is_this_user_and_its_socket() {
        let (_client, server, inode) = connection();
        let peer = server.peer_addr().expect("peer");
        let local = server.local_addr().expect("local");
        let expected = SocketOwner {
            uid: own_uid(),
            inode,
        };
        assert_eq!(owner_of(peer, local), PeerOwner::Local(expected));
        assert_eq!(sock_diag::lookup(peer, local).ok(), Some(Some(expected)));
        assert_eq!(proc_net::lookup(peer, local).ok(), Some(Some(expected)));
    }

    #[test]
    fn a_closed_loopback_peer_is_unknown_and_a_foreign_address_is_remote() {
        let (client, server, _) = connection();
        let peer = server.peer_addr().expect("peer");
        let local = server.local_addr().expect("local");
        drop(client);
        drop(server);
        assert_eq!(owner_of(peer, local), PeerOwner::Unknown);
        let elsewhere: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        assert_eq!(owner_of(elsewhere, local), PeerOwner::Remote);
    }

    #[test]
    fn the_process_holding_a_socket_is_found_with_its_exe_and_command_line() {
        let (client, _server, inode) = connection();
        // A child holds the socket (as its stdin); the daemon never looks in its own fds.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                client,
            )))
            .spawn()
            .expect("start sleep");
        // Its exec is done once /proc shows its own command line; sampled
        // earlier (a loaded machine), the exe is new but the cmdline empty.
        let cmdline = format!("/proc/{}/cmdline", child.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read(&cmdline).unwrap_or_default() != b"sleep\x0030\x00" {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::yield_now();
        }
        let own = own_uid();
        let sockets = [
            SocketOwner { uid: own, inode },
            SocketOwner { uid: own, inode: 1 },
        ];
        let found = processes_holding(&sockets, &[], None);
        let _ = child.kill();
        let _ = child.wait();
        let process = found.get(&inode).expect("the child holds the socket");
        assert_eq!(process.pid, child.id());
        assert!(process.exe.ends_with("/sleep"), "{process:?}");
        assert_eq!(process.cmdline, "sleep 30");
        assert!(process.started > 0);
        assert!(!found.contains_key(&1));
    }

    #[test]
    fn a_socket_a_forked_child_shares_is_its_parents() {
        let (client, _server, inode) = connection();
        // sh holds the socket as its stdin and starts sleep with it too: the
        // newer holder is found first, the walk names the one that had it first.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 <&0 & wait"])
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                client,
            )))
            .process_group(0)
            .spawn()
            .expect("start sh");
        let children = format!("/proc/{0}/task/{0}/children", sh.id());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let sleep: u32 = loop {
            let started = std::fs::read_to_string(&children)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
                        == b"sleep\x0030\x00"
                });
            if let Some(pid) = started {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::yield_now();
        };
        let sockets = [SocketOwner {
            uid: own_uid(),
            inode,
        }];
        // Another test's spawn forks this test process, and until that
        // child execs it holds a copy of `client` too (close-on-exec closes
        // it only then): a holder running this very test binary is such a
        // fork, and is looked past by asking again.
        let this_binary = std::env::current_exe().expect("test binary");
        let holding = |likely: &[u32]| loop {
            let found = processes_holding(&sockets, likely, None);
            let forked = found
                .get(&inode)
                .is_some_and(|process| std::path::Path::new(&process.exe) == this_binary);
            if !forked || std::time::Instant::now() > deadline {
                break found;
            }
            std::thread::yield_now();
        };
        let newest_first = holding(&[]);
        let child_first = holding(&[sleep]);
        // SAFETY: kill with a negative pid signals the process group we created.
        unsafe { libc::kill(-(sh.id() as i32), libc::SIGKILL) };
        let _ = sh.wait();
        for found in [newest_first, child_first] {
            let process = found.get(&inode).expect("found");
            assert_eq!(process.pid, sh.id(), "{process:?} (sleep is {sleep})");
            assert!(process.cmdline.starts_with("sh -c"), "{process:?}");
        }
    }
}
