//! The admin endpoints' line to the daemon's main loop, which owns the config.
//! The server defines it and the daemon answers it, so the server never
//! names the daemon.

use tokio::sync::oneshot;

/// What an admin endpoint asks the main loop to do.
pub enum Control {
    /// Re-read the config; the reply is a summary, or why it was refused.
    Reload(oneshot::Sender<Result<String, String>>),
}
