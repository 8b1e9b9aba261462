//! What the macOS kernel copies out about TCP connections, sockets and
//! processes, read from the bytes: no call into the kernel here, so it
//! compiles and is tested on every system (`macos.rs` makes the calls).
//!
//! The layouts are xnu's (apple-oss-distributions/xnu, xnu-11417):
//! `struct xinpgen`, `xinpcb_n` (`bsd/netinet/in_pcb.h`) and `xsocket_n`
//! (`bsd/sys/socketvar.h`), all under `#pragma pack(4)`, for the
//! `net.inet.tcp.pcblist_n` sysctl; `struct socket_fdinfo`
//! (`bsd/sys/proc_info.h`, natural alignment) for
//! `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`; and the `KERN_PROCARGS2` buffer
//! (`sysctl_procargsx` in `bsd/kern/kern_sysctl.c`). The offsets below are
//! what a C compiler makes of those declarations for an LP64 target, the
//! same on both Mac architectures; numbers are little-endian there, as on
//! every Mac that runs Rust's std (x86_64 and arm64).
//!
//! Offsets rather than `#[repr(C)]` copies of the structs: a struct would
//! need every field before the ones read (and, for `socket_fdinfo`, a union
//! of seven others), all of it compiled on every system for two numbers and
//! two addresses; a slice read is bounds-checked, so a short or changed
//! buffer gives `None`, never undefined behaviour.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::cmdline::command_line;

/// `sizeof(struct socket_fdinfo)`: what `PROC_PIDFDSOCKETINFO` copies out,
/// and the least buffer it accepts (`PROC_PIDFDSOCKETINFO_SIZE`).
pub const SOCKET_FDINFO_SIZE: usize = 792;

/// `inp_vflag`/`insi_vflag`: which family the addresses are. A connected
/// IPv6 socket to an IPv4-mapped address is `INP_IPV4` (tcp6_usr_connect
/// turns it into an IPv4 connection), with the address as `in_addr_4in6`.
const INP_IPV4: u8 = 0x1;
const INP_IPV6: u8 = 0x2;

/// `xgn_kind` of the records in a pcblist_n answer.
const XSO_SOCKET: u32 = 0x001;
const XSO_INPCB: u32 = 0x010;
/// `sizeof(struct xinpgen)`, the answer's header and trailer. Every record
/// is longer; netstat stops at the first that is not, and so do we.
const XINPGEN_SIZE: usize = 24;

/// Where a PCB's family flags, addresses (16 bytes: `in6_addr` or
/// `in_addr_4in6`) and ports (network byte order) are in a record.
struct Endpoints {
    flags: usize,
    local: usize,
    local_port: usize,
    foreign: usize,
    foreign_port: usize,
}

/// `struct xinpcb_n` (pack 4): `inp_vflag`, `inp_dependladdr`,
/// `inp_lport`, `inp_dependfaddr`, `inp_fport` (the ports `u_short`s).
const XINPCB_N: Endpoints = Endpoints {
    flags: 44,
    local: 64,
    local_port: 18,
    foreign: 48,
    foreign_port: 16,
};

/// Offsets in `struct xsocket_n` (pack 4).
mod xsocket_n {
    /// `xso_so`: the socket's handle, `VM_KERNEL_ADDRHASH(so)`.
    pub const SO: usize = 8;
    /// `so_uid`: the user whose credentials made the socket.
    pub const UID: usize = 64;
    /// `so_last_pid`: the process that last used it.
    pub const LAST_PID: usize = 68;
}

/// Offsets in `struct socket_fdinfo`: `psi` (`struct socket_info`) starts
/// at 24, after `struct proc_fileinfo`.
mod socket_fdinfo {
    /// `psi.soi_so`: the same handle as `xso_so` (`fill_common_sockinfo`).
    pub const SO: usize = 24 + 136;
    /// `psi.soi_kind`: `SOCKINFO_TCP` for a TCP socket with its PCB.
    pub const KIND: usize = 24 + 232;
    /// `psi.soi_proto.pri_tcp.tcpsi_ini`, a `struct in_sockinfo`.
    const IN: usize = 24 + 240;
    /// `insi_vflag`, `insi_laddr`, `insi_lport`, `insi_faddr`,
    /// `insi_fport`. The ports are `int`s that hold the kernel's `u_short`
    /// in network byte order, so on a little-endian Mac their first two
    /// bytes are the port, high byte first.
    pub const ENDPOINTS: super::Endpoints = super::Endpoints {
        flags: IN + 24,
        local: IN + 48,
        local_port: IN + 4,
        foreign: IN + 32,
        foreign_port: IN,
    };
}

/// `soi_kind` of a TCP socket.
const SOCKINFO_TCP: u32 = 2;

/// One TCP connection from `net.inet.tcp.pcblist_n`, with its socket's
/// owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConnection {
    pub local: SocketAddr,
    pub foreign: SocketAddr,
    /// The socket's user (`so_uid`).
    pub uid: u32,
    /// The kernel's handle for the socket (`xso_so`), never 0: what
    /// `proc_pidfdinfo` says of the fd that holds it (`soi_so`).
    pub handle: u64,
    /// The process that last used the socket (`so_last_pid`); 0 if none.
    pub last_pid: u32,
}

/// The TCP connections in a `net.inet.tcp.pcblist_n` answer: an `xinpgen`,
/// then per connection an `xinpcb_n`, an `xsocket_n` and other records,
/// each starting with its length and kind and padded to 8 bytes, then
/// another `xinpgen`. A connection whose socket is gone (the kernel leaves
/// its `xsocket_n` zero, which would read as root's) is left out, as is a
/// record cut short.
pub fn tcp_connections(answer: &[u8]) -> Vec<TcpConnection> {
    let mut connections = Vec::new();
    let Some(header) = u32_at(answer, 0) else {
        return connections;
    };
    let mut at = round_up_8(header as usize);
    let mut addresses = None;
    while let (Some(length), Some(kind)) = (u32_at(answer, at), u32_at(answer, at + 4)) {
        let length = length as usize;
        let Some(record) = answer.get(at..at.saturating_add(length)) else {
            break;
        };
        if length <= XINPGEN_SIZE {
            break;
        }
        match kind {
            XSO_INPCB => addresses = endpoints(record, &XINPCB_N),
            XSO_SOCKET => {
                if let Some((local, foreign)) = addresses.take() {
                    connections.extend(socket_owner(record, local, foreign));
                }
            }
            _ => {}
        }
        at += round_up_8(length);
    }
    connections
}

/// A PCB's (local, foreign) addresses.
fn endpoints(bytes: &[u8], at: &Endpoints) -> Option<(SocketAddr, SocketAddr)> {
    let flags = *bytes.get(at.flags)?;
    let local = SocketAddr::new(
        address(flags, bytes, at.local)?,
        port(bytes, at.local_port)?,
    );
    let foreign = SocketAddr::new(
        address(flags, bytes, at.foreign)?,
        port(bytes, at.foreign_port)?,
    );
    Some((local, foreign))
}

fn socket_owner(record: &[u8], local: SocketAddr, foreign: SocketAddr) -> Option<TcpConnection> {
    let handle = u64_at(record, xsocket_n::SO)?;
    if handle == 0 {
        return None;
    }
    Some(TcpConnection {
        local,
        foreign,
        uid: u32_at(record, xsocket_n::UID)?,
        handle,
        last_pid: u32_at(record, xsocket_n::LAST_PID)?,
    })
}

/// The connection from `peer` to our `local` address, seen from the peer's
/// side: its socket's local address is the peer, its foreign one is ours.
/// (Our own accepted socket is in the table too, the other way round.)
/// IPv4-mapped addresses (a dual-stack listener's IPv4 peers) are compared
/// as IPv4, as the kernel keeps such connections.
pub fn find_connection(
    connections: &[TcpConnection],
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<TcpConnection> {
    let peer = canonical(peer);
    let local = canonical(local);
    connections
        .iter()
        .find(|connection| connection.local == peer && connection.foreign == local)
        .copied()
}

/// One socket fd of a process, from `proc_pidfdinfo(PROC_PIDFDSOCKETINFO)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketFd {
    /// `soi_so`: the handle `pcblist_n` gives the same socket.
    pub handle: u64,
    /// A TCP socket's (local, foreign) addresses.
    pub tcp: Option<(SocketAddr, SocketAddr)>,
}

/// A `socket_fdinfo` as the kernel copied it out; `None` if too short to
/// hold the handle and kind.
pub fn socket_fd(info: &[u8]) -> Option<SocketFd> {
    let handle = u64_at(info, socket_fdinfo::SO)?;
    let kind = u32_at(info, socket_fdinfo::KIND)?;
    // Its handle is what the walk matches; the addresses are only for when
    // the table cannot be read.
    let tcp = if kind == SOCKINFO_TCP {
        endpoints(info, &socket_fdinfo::ENDPOINTS)
    } else {
        None
    };
    Some(SocketFd { handle, tcp })
}

/// Whether this socket is the peer's end of the connection from `peer` to
/// our `local` address (when the TCP table cannot be read, the fds are
/// searched by address instead of by handle).
pub fn is_peer_end(socket: &SocketFd, peer: SocketAddr, local: SocketAddr) -> bool {
    socket.tcp == Some((canonical(peer), canonical(local)))
}

/// A process's executable and command line, from its `KERN_PROCARGS2`
/// buffer: `argc` (an `int`), the executable's path, NUL padding, then
/// `argc` NUL-terminated arguments (the environment follows, never read).
/// `None` when the buffer is not that shape.
pub fn process_arguments(buffer: &[u8]) -> Option<(String, String)> {
    let argc = i32::from_le_bytes(buffer.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = buffer.get(4..)?;
    let path_end = rest.iter().position(|&byte| byte == 0)?;
    let executable = String::from_utf8_lossy(&rest[..path_end]).into_owned();
    let after_path = &rest[path_end..];
    let start = after_path
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(after_path.len());
    let Some(last) = argc.checked_sub(1) else {
        return Some((executable, String::new()));
    };
    let arguments = &after_path[start..];
    // Up to the argc-th NUL (or the end of what was copied out).
    let end = arguments
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == 0)
        .nth(last)
        .map_or(arguments.len(), |(at, _)| at);
    Some((executable, command_line(&arguments[..end])))
}

/// A process's start time as one number (`pbi_start_tvsec`,
/// `pbi_start_tvusec`): microseconds since the epoch, which with the pid
/// names one process even after the pid is reused.
pub fn start_time(seconds: u64, microseconds: u64) -> u64 {
    seconds
        .saturating_mul(1_000_000)
        .saturating_add(microseconds)
}

/// The address at `at` (16 bytes): the last 4 for IPv4 (`in_addr_4in6`),
/// all 16 for IPv6, IPv4-mapped ones as IPv4.
fn address(flags: u8, bytes: &[u8], at: usize) -> Option<IpAddr> {
    let raw: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
    if flags & INP_IPV4 != 0 {
        Some(IpAddr::V4(Ipv4Addr::new(
            raw[12], raw[13], raw[14], raw[15],
        )))
    } else if flags & INP_IPV6 != 0 {
        Some(IpAddr::V6(Ipv6Addr::from(raw)).to_canonical())
    } else {
        None
    }
}

/// A port as the kernel keeps it: network byte order, high byte first.
fn port(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn round_up_8(length: usize) -> usize {
    length.div_ceil(8).saturating_mul(8)
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The layouts written out independently of the constants above, as
    // clang lays out xnu's declarations for arm64/x86_64 macOS (checked by
    // compiling a copy of them: sizeof(xinpcb_n) = sizeof(xsocket_n) = 104,
    // sizeof(socket_fdinfo) = 792).

    /// An address as `in_addr_4in6`/`in6_addr` hold it.
    fn raw_address(address: IpAddr) -> [u8; 16] {
        match address {
            IpAddr::V4(v4) => {
                let mut raw = [0; 16];
                raw[12..].copy_from_slice(&v4.octets());
                raw
            }
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    fn flags(address: IpAddr) -> u8 {
        if address.is_ipv4() { 1 } else { 2 }
    }

    /// The records the kernel writes for one connection (`get_pcblist_n`):
    /// xinpcb_n, xsocket_n, two xsockbuf_n, xsockstat_n, xtcpcb_n.
    fn connection_records(local: SocketAddr, foreign: SocketAddr, uid: u32, so: u64) -> Vec<u8> {
        let mut inpcb = vec![0u8; 104];
        inpcb[0..4].copy_from_slice(&104u32.to_le_bytes());
        inpcb[4..8].copy_from_slice(&0x10u32.to_le_bytes());
        inpcb[8..16].copy_from_slice(&0xdead_beef_u64.to_le_bytes());
        // u_short in network byte order, as inp_fport/inp_lport are.
        inpcb[16..18].copy_from_slice(&foreign.port().to_be_bytes());
        inpcb[18..20].copy_from_slice(&local.port().to_be_bytes());
        inpcb[44] = flags(local.ip());
        inpcb[48..64].copy_from_slice(&raw_address(foreign.ip()));
        inpcb[64..80].copy_from_slice(&raw_address(local.ip()));
        let mut socket = vec![0u8; 104];
        socket[0..4].copy_from_slice(&104u32.to_le_bytes());
        socket[4..8].copy_from_slice(&1u32.to_le_bytes());
        socket[8..16].copy_from_slice(&so.to_le_bytes());
        socket[64..68].copy_from_slice(&uid.to_le_bytes());
        socket[68..72].copy_from_slice(&4321u32.to_le_bytes());
        let mut records = inpcb;
        records.extend(socket);
        // Receive and send buffers (32 bytes each), statistics and the TCP
        // control block: lengths the parser only steps over, one of them
        // not a multiple of 8.
        for (length, kind) in [(32u32, 2u32), (32, 4), (332, 8), (236, 0x20)] {
            let mut record = vec![0u8; length.div_ceil(8) as usize * 8];
            record[0..4].copy_from_slice(&length.to_le_bytes());
            record[4..8].copy_from_slice(&kind.to_le_bytes());
            records.extend(record);
        }
        records
    }

    fn xinpgen(count: u32) -> Vec<u8> {
        let mut header = vec![0u8; 24];
        header[0..4].copy_from_slice(&24u32.to_le_bytes());
        header[4..8].copy_from_slice(&count.to_le_bytes());
        header
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn connections_and_their_owners_are_read_from_pcblist_n() {
        let client = addr("127.0.0.1:53124");
        let daemon = addr("127.0.0.1:9911");
        let v6_client = addr("[::1]:40001");
        let v6_daemon = addr("[::1]:9911");
        let mut answer = xinpgen(3);
        answer.extend(connection_records(client, daemon, 501, 0x1111));
        // The daemon's own accepted socket: the same pair, the other way round.
        answer.extend(connection_records(daemon, client, 502, 0x2222));
        answer.extend(connection_records(v6_client, v6_daemon, 503, 0x3333));
        // A connection whose socket is gone: its xsocket_n is left zero.
        answer.extend(connection_records(addr("127.0.0.1:50000"), daemon, 0, 0));
        answer.extend(xinpgen(3));
        let connections = tcp_connections(&answer);
        assert_eq!(connections.len(), 3, "{connections:?}");
        assert_eq!(
            connections[0],
            TcpConnection {
                local: client,
                foreign: daemon,
                uid: 501,
                handle: 0x1111,
                last_pid: 4321,
            }
        );
        let found = find_connection(&connections, client, daemon).expect("found");
        assert_eq!((found.uid, found.handle), (501, 0x1111));
        let found = find_connection(&connections, v6_client, v6_daemon).expect("found");
        assert_eq!((found.uid, found.handle), (503, 0x3333));
        assert_eq!(
            find_connection(&connections, addr("127.0.0.1:50000"), daemon),
            None
        );
        assert_eq!(
            find_connection(&connections, addr("10.0.0.5:40000"), daemon),
            None
        );
    }

    #[test]
    fn a_dual_stack_listeners_ipv4_peer_matches_its_ipv4_connection() {
        // A client of 127.0.0.1 reaches a listener on [::]: the daemon sees
        // ::ffff:127.0.0.1, the kernel lists the client's socket as IPv4.
        let mut answer = xinpgen(1);
        answer.extend(connection_records(
            addr("127.0.0.1:53124"),
            addr("127.0.0.1:9911"),
            501,
            0x1111,
        ));
        let connections = tcp_connections(&answer);
        let peer = addr("[::ffff:127.0.0.1]:53124");
        let local = addr("[::ffff:127.0.0.1]:9911");
        assert_eq!(
            find_connection(&connections, peer, local).map(|c| c.uid),
            Some(501)
        );
    }

    #[test]
    fn an_ipv6_socket_with_a_mapped_address_reads_as_ipv4() {
        // Flags IPv6 only but the address ::ffff:a.b.c.d: still the IPv4 peer.
        let mut records = connection_records(
            addr("[::ffff:127.0.0.1]:53124"),
            addr("[::ffff:127.0.0.1]:9911"),
            501,
            0x1111,
        );
        assert_eq!(records[44], 2);
        let mut answer = xinpgen(1);
        answer.append(&mut records);
        let connections = tcp_connections(&answer);
        assert_eq!(connections[0].local, addr("127.0.0.1:53124"));
        assert_eq!(connections[0].foreign, addr("127.0.0.1:9911"));
    }

    #[test]
    fn a_cut_or_odd_answer_gives_what_is_whole_and_never_panics() {
        let mut answer = xinpgen(2);
        answer.extend(connection_records(
            addr("127.0.0.1:1"),
            addr("127.0.0.1:2"),
            7,
            9,
        ));
        let second = answer.len();
        answer.extend(connection_records(
            addr("127.0.0.1:3"),
            addr("127.0.0.1:4"),
            8,
            10,
        ));
        // A connection counts once its xinpcb_n and xsocket_n are whole.
        let whole = |start: usize| start + 104 + 104;
        for cut in 0..=answer.len() {
            let expected = usize::from(cut >= whole(24)) + usize::from(cut >= whole(second));
            assert_eq!(
                tcp_connections(&answer[..cut]).len(),
                expected,
                "cut at {cut}"
            );
        }
        // A record claiming a length past the end, or a zero length: stop.
        let mut bad = xinpgen(1);
        bad.extend(u32::MAX.to_le_bytes());
        bad.extend(0x10u32.to_le_bytes());
        assert!(tcp_connections(&bad).is_empty());
        assert!(tcp_connections(&[]).is_empty());
        assert!(tcp_connections(&[24, 0, 0]).is_empty());
    }

    /// A `socket_fdinfo` for a TCP socket, laid out as proc_info.h has it.
    fn socket_fdinfo(local: SocketAddr, foreign: SocketAddr, so: u64, kind: i32) -> Vec<u8> {
        let mut info = vec![0u8; 792];
        // psi at 24; soi_so at psi+136, soi_kind at psi+232, soi_proto at psi+240.
        info[160..168].copy_from_slice(&so.to_le_bytes());
        info[256..260].copy_from_slice(&kind.to_le_bytes());
        let in_sockinfo = 264;
        // insi_fport = inp->inp_fport: the int takes the value of a u_short
        // whose bytes are in network order, on a little-endian Mac.
        let as_int = |port: u16| i32::from(u16::from_le_bytes(port.to_be_bytes())).to_le_bytes();
        info[in_sockinfo..in_sockinfo + 4].copy_from_slice(&as_int(foreign.port()));
        info[in_sockinfo + 4..in_sockinfo + 8].copy_from_slice(&as_int(local.port()));
        info[in_sockinfo + 24] = flags(local.ip());
        info[in_sockinfo + 32..in_sockinfo + 48].copy_from_slice(&raw_address(foreign.ip()));
        info[in_sockinfo + 48..in_sockinfo + 64].copy_from_slice(&raw_address(local.ip()));
        info
    }

    #[test]
    fn a_socket_fds_handle_and_addresses_are_read_with_ports_in_network_order() {
        let local = addr("127.0.0.1:53124");
        let foreign = addr("127.0.0.1:9911");
        let info = socket_fdinfo(local, foreign, 0xabcd, 2);
        assert_eq!(info.len(), SOCKET_FDINFO_SIZE);
        let socket = socket_fd(&info).expect("parsed");
        assert_eq!(socket.handle, 0xabcd);
        assert_eq!(socket.tcp, Some((local, foreign)));
        // 9911 is 0x26B7: a port read in host order would be 0xB726.
        assert!(is_peer_end(&socket, local, foreign));
        assert!(is_peer_end(
            &socket,
            addr("[::ffff:127.0.0.1]:53124"),
            addr("[::ffff:127.0.0.1]:9911")
        ));
        assert!(!is_peer_end(&socket, foreign, local));

        let v6 = socket_fdinfo(addr("[::1]:40001"), addr("[::1]:9911"), 1, 2);
        assert_eq!(
            socket_fd(&v6).and_then(|socket| socket.tcp),
            Some((addr("[::1]:40001"), addr("[::1]:9911")))
        );
        // A UDP or Unix socket: its handle, no TCP addresses.
        let udp = socket_fdinfo(local, foreign, 5, 1);
        assert_eq!(
            socket_fd(&udp),
            Some(SocketFd {
                handle: 5,
                tcp: None
            })
        );
        assert_eq!(
            socket_fd(&info[..300]),
            Some(SocketFd {
                handle: 0xabcd,
                tcp: None
            })
        );
        assert_eq!(socket_fd(&info[..200]), None);
    }

    /// A KERN_PROCARGS2 buffer: argc, the path, NUL padding, the arguments,
    /// the environment.
    fn procargs(path: &str, arguments: &[&str], environment: &[&str]) -> Vec<u8> {
        let mut buffer = (arguments.len() as i32).to_le_bytes().to_vec();
        buffer.extend(path.as_bytes());
        buffer.extend([0, 0, 0, 0, 0]);
        for text in arguments.iter().chain(environment) {
            buffer.extend(text.as_bytes());
            buffer.push(0);
        }
        buffer
    }

    #[test]
    fn the_executable_and_command_line_come_from_procargs2_without_the_environment() {
        let buffer = procargs(
            "/usr/bin/curl",
            &[
                "curl",
                "-H",
                "Authorization: x",
                "http://127.0.0.1:9911/role/dev",
            ],
            &["AWS_SECRET=no", "HOME=/Users/me"],
        );
        assert_eq!(
            process_arguments(&buffer),
            Some((
                "/usr/bin/curl".to_owned(),
                "curl -H Authorization: x http://127.0.0.1:9911/role/dev".to_owned()
            ))
        );
        let newline = procargs("/bin/sh", &["sh", "-c", "a\nb"], &[]);
        assert_eq!(
            process_arguments(&newline).map(|(_, line)| line),
            Some("sh -c a?b".into())
        );
        let long = "x".repeat(500);
        let cut = procargs("/bin/echo", &["echo", &long], &["A=b"]);
        let (_, line) = process_arguments(&cut).expect("parsed");
        assert_eq!(line.chars().count(), crate::peer::CMDLINE_LIMIT);
        // Copied out short: what there is.
        let short = procargs("/bin/echo", &["echo", "one", "two"], &[]);
        assert_eq!(
            process_arguments(&short[..short.len() - 3]).map(|(_, line)| line),
            Some("echo one t".into())
        );
        assert_eq!(
            process_arguments(&procargs("/bin/x", &[], &["A=b"])),
            Some(("/bin/x".to_owned(), String::new()))
        );
        assert_eq!(process_arguments(&[1, 0]), None);
        assert_eq!(process_arguments(&(-1i32).to_le_bytes()), None);
    }

    #[test]
    fn the_start_time_is_microseconds_since_the_epoch() {
        assert_eq!(start_time(1_700_000_000, 250_000), 1_700_000_000_250_000);
        assert_eq!(start_time(u64::MAX, 1), u64::MAX);
    }
}
