//! Who is on the other end of a connection, and where it came in: learnt
//! once, when the connection is accepted (`listener`), and read by the
//! guard, `users` and the client log on every request.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::clients::{Client, Clients};
use crate::peer::{self, PeerOwner};

/// Where a request came in (what the guard checks `Host` against), and who
/// is on the other end.
#[derive(Clone)]
pub struct Connection {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// The user owning the peer's socket (`users` admits or refuses it).
    pub owner: PeerOwner,
    /// Who took credentials on this connection (`status`'s `clients`).
    pub client: Arc<Client>,
}

impl Connection {
    /// Looks the peer up in the kernel's socket table: once per connection,
    /// before its first request (a hash lookup through netlink); a local
    /// peer's process is then looked for on the resolver thread (`clients`).
    pub fn accepted(local: SocketAddr, peer: SocketAddr, clients: &Clients) -> Self {
        let owner = peer::owner_of(peer, local);
        Connection {
            local,
            peer,
            owner,
            client: clients.accepted(peer, owner),
        }
    }
}
