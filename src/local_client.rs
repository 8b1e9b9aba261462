//! The CLI's own requests to the daemon on loopback (for `daemon_client`
//! and `doctor`): hyper's client connection, one request per connection, on
//! a small runtime of its own (the CLI has none). hyper does the framing (`Content-Length` or chunked);
//! the body is bounded, and a path that is no valid URI is refused here
//! rather than sent.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::{AUTHORIZATION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;

/// A cold role may wait on STS (and the SDK's retries) before answering.
const TIMEOUT: Duration = Duration::from_secs(40);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `/healthz` answers at once or not at all: something else holding the
/// port (or a stopped daemon) must not stall the command that asked.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Far above any answer of the daemon's (credentials, status of many roles).
const MAX_BODY: usize = 4 << 20;

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

pub fn get(address: SocketAddr, path: &str, authorization: &str) -> io::Result<Reply> {
    request(address, "GET", path, authorization, &[])
}

/// `GET /healthz` (no token), within [`PROBE_TIMEOUT`].
pub fn healthz(address: SocketAddr) -> io::Result<Reply> {
    request_within(PROBE_TIMEOUT, address, "GET", "/healthz", "", &[])
}

/// One request without a body; `headers` are extra `(name, value)` pairs.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    request_within(TIMEOUT, address, method, path, authorization, headers)
}

/// [`request`] with a time limit of its own.
pub fn request_within(
    limit: Duration,
    address: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
    headers: &[(&str, &str)],
) -> io::Result<Reply> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, address.to_string())
        .header(AUTHORIZATION, authorization)
        .header(USER_AGENT, "assumed-cli");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad request: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(limit, exchange(address, request))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
    })
}

async fn exchange(address: SocketAddr, request: Request<Empty<Bytes>>) -> io::Result<Reply> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        .to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one connection with `answer`, on a thread of
    /// its own (the client blocks its caller); what it was sent.
    fn serve_once(answer: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let (mut stream, _) = listener.accept().await.expect("accept");
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let mut byte = [0u8; 1];
                    if stream.read(&mut byte).await.expect("read") == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                stream.write_all(answer).await.expect("write");
                String::from_utf8_lossy(&head).into_owned()
            })
        });
        (address, server)
    }

    #[test]
    fn chunked_answers_are_reassembled_and_headers_sent() {
        let (address, server) = serve_once(
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        );
        let reply =
            request(address, "PUT", "/admin/mfa/dev", "tok", &[("x-extra", "1")]).expect("request");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body, b"{}");
        let head = server.join().expect("server").to_ascii_lowercase();
        assert!(
            head.starts_with("put /admin/mfa/dev http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("authorization: tok\r\n") && head.contains("x-extra: 1\r\n"));
    }

    #[test]
    fn the_body_stops_at_its_length() {
        let (address, _server) =
            serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA-NOT-BODY");
        let reply = get(address, "/healthz", "").expect("request");
        assert_eq!(reply.body, b"ok");
    }

    #[test]
    fn a_path_that_is_no_uri_is_refused_before_sending() {
        let address = "127.0.0.1:9".parse().expect("address");
        let error = get(address, "/role/a b", "").err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
