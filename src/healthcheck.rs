//! `assumed healthcheck`: the container image's `HEALTHCHECK`. The runtime
//! image has no shell or curl, so the binary asks its own daemon for
//! `/healthz` on the first listen address (a wildcard one on loopback) and
//! exits 0 only for `200 ok`; any failure exits 1, which Docker reads as
//! unhealthy.

use std::process::ExitCode;

use crate::client_env::client_address;
use crate::config::Config;
use crate::local_client;

pub fn run(config: &Config) -> Result<ExitCode, String> {
    let listen = config
        .server
        .listen
        .first()
        .copied()
        .ok_or("the config has no listen address")?;
    let address = client_address(listen);
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
