//! The admin endpoints' line to the daemon's main loop, which owns the config.
//! The server defines it and the daemon answers it, so the server never
//! names the daemon.

use tokio::sync::oneshot;

/// What an admin endpoint asks the main loop to do.
pub enum Control {
    /// Re-read the config; the reply is what changed, or why it was refused.
    Reload(oneshot::Sender<Result<Reloaded, String>>),
}

/// What a reload did, in the words `assumed reload` prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Every change applied, one entry each (`[source] sts_endpoint changed
    /// (role dev fetched again)`), the roles added, changed and removed last.
    pub applied: Vec<String>,
    /// Every change the reload could not apply (a setting only a restart
    /// changes, an address that cannot be bound), with why and what the
    /// daemon does meanwhile. Anything here makes `assumed reload` exit non-zero.
    pub not_applied: Vec<String>,
}

impl Reloaded {
    /// One line: the applied changes, `; `-separated.
    pub fn summary(&self) -> String {
        self.applied.join("; ")
    }
}
