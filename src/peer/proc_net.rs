//! One socket from `/proc/net/tcp` or `/proc/net/tcp6`: the fallback where
//! netlink `sock_diag` is unavailable. The kernel writes the whole table on
//! every read, so this reads it in chunks and stops at the row it wants,
//! found with one substring search per chunk rather than by parsing rows.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

use memchr::memmem;

use super::SocketOwner;

const CHUNK: usize = 64 * 1024;

/// The socket whose local address is `peer` and remote address is `local`.
pub fn lookup(peer: SocketAddr, local: SocketAddr) -> io::Result<Option<SocketOwner>> {
    let path = match peer.ip() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    find(file, &needle(peer, local)).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// `": LOCAL REMOTE "` as the table writes it: only the peer's own row has
/// the peer's address in the local column right after the slot number.
fn needle(peer: SocketAddr, local: SocketAddr) -> String {
    format!(": {} {} ", hex(peer), hex(local))
}

/// The kernel prints each 32-bit word of the address as a native-endian
/// integer in hex, then the port in hex.
fn hex(address: SocketAddr) -> String {
    let octets = match address.ip() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let mut text = String::with_capacity(40);
    for word in octets.chunks_exact(4) {
        let word = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        text.push_str(&format!("{word:08X}"));
    }
    text.push_str(&format!(":{:04X}", address.port()));
    text
}

/// Reads `table` until a complete row contains `needle` with a live socket
/// (inode not 0); a TIME_WAIT row for the same pair is passed over.
fn find(mut table: impl Read, needle: &str) -> io::Result<Option<SocketOwner>> {
    let finder = memmem::Finder::new(needle.as_bytes());
    let mut buffer = Vec::with_capacity(2 * CHUNK);
    loop {
        let start = buffer.len();
        buffer.resize(start + CHUNK, 0);
        let read = table.read(&mut buffer[start..])?;
        buffer.truncate(start + read);
        let at_end = read == 0;
        // Only complete rows are searched; the tail waits for the next chunk.
        let complete = match memchr::memrchr(b'\n', &buffer) {
            Some(newline) => newline + 1,
            None if at_end => buffer.len(),
            None => continue,
        };
        let mut from = 0;
        while let Some(found) = finder.find(&buffer[from..complete]) {
            let row_rest = &buffer[from + found + needle.len()..complete];
            let row_end = memchr::memchr(b'\n', row_rest).unwrap_or(row_rest.len());
            match owner_columns(&row_rest[..row_end]) {
                Some(owner) if owner.inode != 0 => return Ok(Some(owner)),
                _ => {}
            }
            from += found + needle.len() + row_end;
        }
        if at_end {
            return Ok(None);
        }
        buffer.drain(..complete);
    }
}

/// After the two addresses: `st tx:rx tr:when retrnsmt uid timeout inode …`.
fn owner_columns(rest: &[u8]) -> Option<SocketOwner> {
    let text = std::str::from_utf8(rest).ok()?;
    let mut columns = text.split_ascii_whitespace();
    let uid = columns.nth(4)?.parse().ok()?;
    let inode = columns.nth(1)?.parse().ok()?;
    Some(SocketOwner { uid, inode })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2AB7 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:2AB7 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
   2: 0100007F:9C41 0100007F:2AB7 01 00000000:00000000 00:00000000 00000000  1001        0 98765 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:2AB7 0100007F:9C41 01 00000000:00000000 00:00000000 00000000  1000        0 98766 1 0000000000000000 20 4 30 10 -1
";

    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(into.len()).min(7);
            into[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn local() -> SocketAddr {
        "127.0.0.1:10935".parse().expect("addr")
    }

    #[test]
    fn addresses_are_written_the_way_the_kernel_writes_them() {
        if cfg!(target_endian = "little") {
            assert_eq!(hex(local()), "0100007F:2AB7");
            let v6: SocketAddr = "[::1]:443".parse().expect("addr");
            assert_eq!(hex(v6), "00000000000000000000000001000000:01BB");
        }
    }

    #[test]
    fn finds_the_peers_row_not_ours_and_not_a_time_wait() {
        if !cfg!(target_endian = "little") {
            return;
        }
        let peer: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        // A few bytes at a time: rows split across reads are still found.
        let trickle = Trickle(TABLE.as_bytes());
        assert_eq!(
            find(trickle, &needle(peer, local())).ok(),
            Some(Some(SocketOwner {
                uid: 1001,
                inode: 98765
            }))
        );
        let time_wait: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert_eq!(
            find(TABLE.as_bytes(), &needle(time_wait, local())).ok(),
            Some(None)
        );
        let absent: SocketAddr = "127.0.0.1:40002".parse().expect("addr");
        assert_eq!(
            find(TABLE.as_bytes(), &needle(absent, local())).ok(),
            Some(None)
        );
    }
}
