//! Life under a service manager: readiness and status for systemd
//! (`sd_notify`; no-ops when `NOTIFY_SOCKET` is unset), sockets handed over by
//! socket activation (`LISTEN_FDS`), and the signals that reload or stop us.

use std::io;

use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

// Notification failures are not worth stopping for: without a service
// manager listening there is nobody to tell.
fn notify(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::debug!(%error, "sd_notify failed");
    }
}

/// Whether a service manager reads our notifications at all.
pub fn manager_listens() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    // systemd wants a monotonic timestamp with RELOADING=1 (for Type=notify-reload).
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Listening sockets passed by the service manager, if any (socket activation).
pub fn inherited_listeners() -> io::Result<Vec<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut listeners = Vec::new();
    for index in 0..fds.len() {
        if let Some(listener) = fds.take_tcp_listener(index)? {
            listener.set_nonblocking(true)?;
            listeners.push(TcpListener::from_std(listener)?);
        }
    }
    Ok(listeners)
}

pub enum Signalled {
    Reload,
    Stop,
}

pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Self> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn next(&mut self) -> Signalled {
        tokio::select! {
            _ = self.hangup.recv() => Signalled::Reload,
            _ = self.terminate.recv() => Signalled::Stop,
            _ = self.interrupt.recv() => Signalled::Stop,
        }
    }
}
