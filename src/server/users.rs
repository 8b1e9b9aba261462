//! Credentials go to the daemon owner's processes only: a connection from
//! this machine whose socket belongs to another user (and not one named in
//! `[server] allow_uids`) is refused on every credential and admin route
//! with 403 `ForeignUser`. `/healthz` and `/metrics` are not behind it.
//!
//! The owner was looked up once, when the connection was accepted
//! (`Connection::accepted`, `peer::owner_of`); a request only compares numbers. Peers
//! that are not on this machine (a compose network, another namespace,
//! another host) have no local user: their rules stay the token and
//! `trust_subnet`.

use axum::http::StatusCode;

use super::error::ApiError;
use crate::peer::PeerOwner;

/// The users whose processes may have credentials.
pub struct LocalUsers {
    /// The daemon's own (effective) user.
    own: u32,
    /// `allow_uids` (part of the reloadable `Settings`).
    allowed: Vec<u32>,
}

impl LocalUsers {
    pub fn new(allow_uids: &[u32]) -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let own = unsafe { libc::geteuid() };
        LocalUsers {
            own,
            allowed: allow_uids.to_vec(),
        }
    }

    pub(super) fn admit(&self, owner: PeerOwner) -> Result<(), ApiError> {
        match owner {
            PeerOwner::Local(socket) if socket.uid == self.own => Ok(()),
            PeerOwner::Local(socket) if self.allowed.contains(&socket.uid) => Ok(()),
            PeerOwner::Local(socket) => Err(foreign(format!(
                "this daemon serves the processes of user {} only, and this connection belongs to user {}; \
                 [server] allow_uids can name other users",
                self.own, socket.uid
            ))),
            PeerOwner::Unknown => Err(foreign(
                "the daemon could not tell which user this connection belongs to (it may have \
                 closed already), so it refuses it"
                    .to_owned(),
            )),
            PeerOwner::Remote | PeerOwner::Unsupported => Ok(()),
        }
    }
}

fn foreign(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "ForeignUser", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::SocketOwner;

    fn local(uid: u32) -> PeerOwner {
        PeerOwner::Local(SocketOwner { uid, inode: 7 })
    }

    fn status(result: Result<(), ApiError>) -> Option<StatusCode> {
        result.err().map(|e| e.status())
    }

    #[test]
    fn the_owner_and_allowed_users_pass_everyone_else_local_is_refused() {
        let users = LocalUsers::new(&[]);
        let other = users.own.wrapping_add(1);
        assert_eq!(status(users.admit(local(users.own))), None);
        assert_eq!(
            status(users.admit(local(other))),
            Some(StatusCode::FORBIDDEN)
        );
        // Fail closed: a loopback peer whose owner is unknown.
        assert_eq!(
            status(users.admit(PeerOwner::Unknown)),
            Some(StatusCode::FORBIDDEN)
        );
        // Not this machine's to judge: the token and trust_subnet decide.
        assert_eq!(status(users.admit(PeerOwner::Remote)), None);
        assert_eq!(status(users.admit(PeerOwner::Unsupported)), None);

        let allowing = LocalUsers::new(&[other]);
        assert_eq!(status(allowing.admit(local(other))), None);
    }
}
