//! `assumed healthcheck`: the container image's `HEALTHCHECK`. The runtime
//! image has no shell or curl, so the binary asks its own daemon for
//! `/healthz` on its first listen address (a wildcard one on loopback; the
//! daemon's address file first, `daemon_client`) and exits 0 only for
//! `200 ok`; any failure exits 1, which Docker reads as unhealthy.

use std::process::ExitCode;

use crate::daemon_client::DaemonClient;
use crate::local_client;

pub fn run(daemon: &DaemonClient) -> Result<ExitCode, String> {
    let address = daemon.address;
    // /healthz takes no token; the helper always sends the header, empty here.
    let reply = local_client::get(address, "/healthz", "")
        .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?;
    if reply.status == 200 && reply.body == b"ok" {
        return Ok(ExitCode::SUCCESS);
    }
    Err(format!(
        "the daemon at {address} answered /healthz with {}",
        reply.status
    ))
}
