//! What every stand-in server shares: an axum router on `127.0.0.1:0`,
//! served until the value is dropped.

use std::net::SocketAddr;

use axum::Router;
use tokio::task::JoinHandle;

pub struct Served {
    pub address: SocketAddr,
    server: JoinHandle<()>,
}

impl Served {
    /// Serves `app` on a free loopback port; `what` names it in a panic.
    pub async fn start(what: &str, app: Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the {what} on 127.0.0.1:0: {e}"));
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Served { address, server }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}
