//! `assumed serve`: wires config, token, STS, cache and HTTP together and
//! runs until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::{Cache, Clock, RoleSpec, Timing};
use crate::config::Config;
use crate::server::session_token::SessionTokens;
use crate::server::{self, AppState};
use crate::sts::{CHAINED_SESSION_LIMIT, FALLBACK_REGION, Sts};
use crate::token;

/// Variables that would make the daemon's own source chain read the daemon.
const SELF_POINTING: [&str; 4] = [
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Removes `AWS_CONTAINER_*` when they point at one of our own listeners
/// (as they do in a shell set up by `assumed env`): aws-config would
/// otherwise ask the daemon for the credentials it needs to answer itself.
///
/// Must run before any other thread exists (it edits the environment).
pub fn strip_self_pointing_env(listen: &[SocketAddr]) {
    let full_uri = std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI").ok();
    let points_at_us = full_uri
        .as_deref()
        .and_then(uri_authority)
        .is_some_and(|authority| is_own_address(&authority, listen));
    let relative_reaches_us = std::env::var_os("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
        && listen
            .iter()
            .any(|a| a.port() == 80 && a.ip() == std::net::Ipv4Addr::new(169, 254, 170, 2));
    if points_at_us || relative_reaches_us {
        for name in SELF_POINTING {
            // SAFETY: called from `main` before the runtime or any thread starts.
            unsafe { std::env::remove_var(name) };
        }
    }
}

fn uri_authority(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(authority.to_ascii_lowercase())
}

fn is_own_address(authority: &str, listen: &[SocketAddr]) -> bool {
    let port_of = |a: &str| a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    let host_of = |a: &str| a.rsplit_once(':').map(|(h, _)| h.to_owned());
    let (Some(port), Some(host)) = (port_of(authority), host_of(authority)) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    listen.iter().any(|address| {
        address.port() == port
            && (address.ip().is_unspecified()
                || matches!(host, "localhost" | "127.0.0.1" | "::1")
                || host.parse::<std::net::IpAddr>().ok() == Some(address.ip()))
    })
}

pub fn role_specs(config: &Config) -> Vec<RoleSpec> {
    config
        .roles
        .iter()
        .map(|(name, role)| RoleSpec {
            name: name.clone(),
            config: role.clone(),
        })
        .collect()
}

pub fn token_path(config: &Config) -> PathBuf {
    config
        .server
        .token_file
        .clone()
        .unwrap_or_else(token::default_path)
}

/// Lifts the soft open-file limit to the hard one: every connection is a
/// descriptor, and service managers often start daemons with a soft 1024.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub async fn run(config: Config) -> Result<(), String> {
    raise_open_file_limit();
    let token_path = token_path(&config);
    let token = token::install(&token_path, config.server.token_file.is_some())
        .map_err(|e| format!("cannot set up the token file {}: {e}", token_path.display()))?;

    for spec in role_specs(&config) {
        if spec.config.via.is_some()
            && spec
                .config
                .duration
                .is_some_and(|d| d > CHAINED_SESSION_LIMIT)
        {
            tracing::warn!(role = %spec.name, "duration is above 1h, which STS refuses for chained roles (via); asking for 1h");
        }
    }
    let sts = Arc::new(Sts::new(config.source.clone()));
    let timing = Timing {
        refresh_before: config.server.refresh_before,
        idle_timeout: config.server.idle_timeout,
    };
    let cache = Cache::new(role_specs(&config), sts, timing, Clock::system());

    let state = Arc::new(AppState {
        cache: cache.clone(),
        token,
        default_role: config.server.default_role.clone(),
        session_tokens: SessionTokens::new().map_err(|e| format!("no randomness: {e}"))?,
        imdsv1: config.server.imdsv1,
        metrics: config.server.metrics && server::metrics::install().is_some(),
        allowed_hosts: server::guard::AllowedHosts::new(&config.server.allowed_hosts),
        region: config
            .source
            .region
            .clone()
            .unwrap_or_else(|| FALLBACK_REGION.into()),
    });
    let main_router = server::router(state.clone());
    let mut routed = Vec::new();
    for listener in server::bind(&config.server.listen)
        .await
        .map_err(|e| e.to_string())?
    {
        routed.push((listener, main_router.clone()));
    }
    for (name, role) in &config.roles {
        if let Some(address) = role.imds_listen {
            let mut bound = server::bind(&[address]).await.map_err(|e| e.to_string())?;
            routed.extend(
                bound
                    .pop()
                    .map(|l| (l, server::imds_router(state.clone(), name))),
            );
        }
    }
    for (listener, _) in &routed {
        if let Ok(address) = listener.local_addr() {
            if address.ip().is_loopback() {
                tracing::info!(%address, "listening");
            } else {
                tracing::warn!(%address, "listening beyond loopback (expose = true): anyone who can reach this address and holds the token can get credentials");
            }
        }
    }
    tracing::info!(token_file = %token_path.display(), roles = config.roles.len(), "ready");
    for (name, role) in &config.roles {
        if role.prefetch {
            cache.prefetch(name);
        }
    }

    server::serve(routed, shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_its_own_endpoint() {
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:9911".parse().expect("addr")];
        let own = |uri: &str| {
            uri_authority(uri).is_some_and(|authority| is_own_address(&authority, &listen))
        };
        assert!(own("http://127.0.0.1:9911/role/dev"));
        assert!(own("http://localhost:9911/creds"));
        assert!(!own("http://127.0.0.1:9912/role/dev"));
        assert!(!own("http://169.254.170.2/v2/credentials"));
        assert!(!own("not a uri"));
    }
}
