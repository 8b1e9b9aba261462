//! The accept loop (the shape of mini-redis's `server.rs`): a bounded number
//! of connections, bounded request heads, a deadline for slow headers, and a
//! graceful shutdown that lets requests in flight finish.
//!
//! Hand-rolled rather than `axum::serve` because the limits that keep a slow
//! or malicious client from stalling others live on hyper's connection
//! builder, and because the guard needs each connection's local address (the
//! listener's own address is an accepted `Host`) and `users` its owner.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::connection::Connection;
use super::warm::Warm;
use crate::clients::Clients;

/// Connections served at once. Idle keep-alive connections count too, and are
/// closed by the header deadline, so this many idle sockets cannot lock out a
/// real client for longer than that.
pub const MAX_CONNECTIONS: usize = 4096;
/// Request line plus headers; anything longer gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A client must send a complete request head within this (slowloris), and
/// an idle keep-alive connection is closed after it.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);

/// What a listener serves: the router, and in front of it the warm path for
/// credential requests answered from memory (`warm`); and who is told about
/// each accepted connection's client (`clients`).
#[derive(Clone)]
pub struct Endpoint {
    pub router: Router,
    pub warm: Option<Arc<Warm>>,
    pub clients: Clients,
}

/// Serves `endpoint` on `listener` until `stopped` turns true, then closes
/// the listener (saying so on `closed`) and waits for the connections that
/// are still answering.
pub async fn run(
    listener: TcpListener,
    endpoint: Endpoint,
    mut stopped: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = until_stopped(&mut stopped) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = until_stopped(&mut stopped) => break,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let endpoint = endpoint.clone();
        let stopped = stopped.clone();
        let open = crate::memory::connection_opened();
        connections.spawn(async move {
            // In the connection's task, not the accept loop: others keep being accepted.
            let connection = Connection::accepted(local, peer, &endpoint.clients);
            serve_connection(stream, connection, endpoint, stopped).await;
            drop(open);
            drop(permit);
        });
        // Reap finished connection tasks so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
    // Closed now, not after the drain: a reload may bind its address again.
    drop(listener);
    let _ = closed.send(());
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    connection: Connection,
    endpoint: Endpoint,
    mut stopped: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        // Warm credential requests are answered right here; everything else
        // (and every refusal) goes through the router. So does every request
        // on a connection whose process is not named yet: the handler's
        // answer is the one that waits for the name (`Client::named_within`),
        // which leaves the warm path as it was but for one atomic load.
        let warm = match &endpoint.warm {
            Some(warm) if !connection.client.naming() => warm.answer(&connection, request),
            _ => Err(request),
        };
        let routed = warm.map_err(|mut request| {
            request.extensions_mut().insert(connection.clone());
            (request, endpoint.router.clone())
        });
        async move {
            match routed {
                Ok(response) => Ok(response.map(Either::Left)),
                Err((request, router)) => {
                    let response = router.oneshot(request).await;
                    response.map(|response| response.map(Either::Right))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_DEADLINE)
        .max_header_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = until_stopped(&mut stopped) => {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Completes once shutdown begins (or the signal's sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
