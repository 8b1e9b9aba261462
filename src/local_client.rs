//! A minimal HTTP/1.1 client for the CLI's own requests to the daemon on
//! loopback (`credential-process`). One GET, `Connection: close`, body read
//! to the end: nothing here is worth a client library.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A cold role may wait on STS (and the SDK's retries) before answering.
const TIMEOUT: Duration = Duration::from_secs(40);

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn get(address: SocketAddr, path: &str, authorization: &str) -> io::Result<Reply> {
    request(address, "GET", path, authorization, &[])
}

/// One request without a body; `headers` are extra `(name, value)` pairs.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\
         {extra}User-Agent: assumed-cli\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> io::Result<Reply> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| malformed())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(malformed)?;
    Ok(Reply {
        status,
        body: raw[split + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let reply = parse(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}")
            .expect("parse");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, b"{}");
        assert!(parse(b"garbage").is_err());
    }
}
