//! One socket by its address pair, through netlink `sock_diag` (what `ss`
//! uses): the kernel answers from its connection hash, so the cost does not
//! grow with the number of sockets, unlike reading `/proc/net/tcp`.
//!
//! The request is `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP` (an exact
//! lookup, `inet_diag_req_v2`); the answer one `inet_diag_msg`, whose `uid`
//! and `inode` are the columns `/proc/net/tcp` shows. Layouts from
//! `linux/inet_diag.h` and `linux/sock_diag.h`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SocketOwner;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, sockid (48).
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg`: 4 bytes, sockid (48), expires, rqueue, wqueue, uid, inode.
const MESSAGE_LEN: usize = 72;
const UID_OFFSET: usize = 64;
const INODE_OFFSET: usize = 68;
/// `INET_DIAG_NOCOOKIE`: match whatever socket has the addresses.
const NO_COOKIE: u32 = !0;

/// The socket whose local address is `peer` and remote address is `local`
/// (the other end of our connection), in this network namespace. `Ok(None)`:
/// there is none.
pub fn lookup(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<SocketOwner>> {
    let socket = open()?;
    let request = request(peer, local);
    // SAFETY: sends `request.len()` bytes of our buffer on a socket we own to
    // the kernel (a zeroed sockaddr_nl with only the family set).
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut answer = [0u8; 1024];
    // SAFETY: the kernel writes at most `answer.len()` bytes into our buffer.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            answer.as_mut_ptr().cast(),
            answer.len(),
            0,
        )
    };
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    parse(&answer[..received.min(answer.len())])
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // The kernel answers while handling the send; a bound on the wait all the same.
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt reads a timeval we own for its stated size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(socket)
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for the socket bound to `peer` and
/// connected to `local`. Ports and addresses are in network order.
fn request(peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    message.extend_from_slice(&((HEADER_LEN + REQUEST_LEN) as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    let family = match peer.ip() {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    message.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    message.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    message.extend_from_slice(&peer.port().to_be_bytes());
    message.extend_from_slice(&local.port().to_be_bytes());
    message.extend_from_slice(&address_bytes(peer.ip()));
    message.extend_from_slice(&address_bytes(local.ip()));
    message.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    message.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    message
}

/// `__be32[4]`: an IPv4 address fills the first word.
fn address_bytes(ip: IpAddr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => bytes[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => bytes = v6.octets(),
    }
    bytes
}

fn parse(answer: &[u8]) -> io::Result<Option<SocketOwner>> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short sock_diag answer");
    let u32_at = |offset: usize| -> io::Result<u32> {
        answer
            .get(offset..offset + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or_else(short)
    };
    let kind = answer
        .get(4..6)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u16::from_ne_bytes)
        .ok_or_else(short)?;
    if kind == libc::NLMSG_ERROR as u16 {
        let errno = -(u32_at(HEADER_LEN)? as i32);
        return match errno {
            libc::ENOENT => Ok(None),
            _ => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY || answer.len() < HEADER_LEN + MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected sock_diag answer (type {kind})"),
        ));
    }
    Ok(Some(SocketOwner {
        uid: u32_at(HEADER_LEN + UID_OFFSET)?,
        inode: u64::from(u32_at(HEADER_LEN + INODE_OFFSET)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_has_the_kernels_layout() {
        let request = request(
            "127.0.0.1:40000".parse().expect("addr"),
            "127.0.0.2:9911".parse().expect("addr"),
        );
        assert_eq!(request.len(), HEADER_LEN + REQUEST_LEN);
        assert_eq!(
            &request[HEADER_LEN + 8..HEADER_LEN + 10],
            &40000u16.to_be_bytes()
        );
        assert_eq!(
            &request[HEADER_LEN + 10..HEADER_LEN + 12],
            &9911u16.to_be_bytes()
        );
        assert_eq!(&request[HEADER_LEN + 12..HEADER_LEN + 16], &[127, 0, 0, 1]);
        assert_eq!(&request[HEADER_LEN + 28..HEADER_LEN + 32], &[127, 0, 0, 2]);
    }

    #[test]
    fn not_found_is_none_and_other_errors_are_errors() {
        let error = |errno: i32| {
            let mut answer = vec![0u8; HEADER_LEN + 4];
            answer[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
            answer[HEADER_LEN..].copy_from_slice(&(-errno).to_ne_bytes());
            parse(&answer)
        };
        assert_eq!(error(libc::ENOENT).ok(), Some(None));
        assert!(error(libc::EPERM).is_err());
        assert!(parse(&[0u8; 3]).is_err());
    }
}
