//! `assumed env ROLE --compose`: what goes into a compose service's
//! `environment:` to reach the daemon container on an ECS-style network
//! (docs/docker-compose.md).
//!
//! Over plain http SDKs accept a container-credentials URI only for loopback
//! and the ECS/EKS link-local addresses, so app containers reach the daemon
//! at `169.254.170.2`, never by service name, and read the token from the
//! shared volume mounted at [`TOKEN_PATH`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::client_env::{ClientEnv, container_unset};
use crate::config::{Config, RoleConfig};

/// Where app containers mount the token volume, and so where the daemon
/// container's `token_file` lives.
pub const TOKEN_PATH: &str = "/run/assumed/token";
/// ECS's container-credentials address: every SDK allows it over http, and
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is resolved against it (port 80).
pub const ECS_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
const HTTP_PORT: u16 = 80;

/// FULL_URI + token file for `role`, as an app container on the compose
/// network sees the daemon.
/// `roles` are all the daemon serves: `[roles]` and imported profiles.
pub fn env_for(
    config: &Config,
    roles: &BTreeMap<String, RoleConfig>,
    role: &str,
) -> Result<ClientEnv, String> {
    if !roles.contains_key(role) {
        return Err(format!(
            "no role named {role:?} in the config (see `assumed roles`)"
        ));
    }
    let (address, served) = endpoint(&config.server.listen);
    if !served {
        // Still print the usual recipe: this config may be the host's, not the daemon container's.
        eprintln!(
            "assumed: note: no listener in this config serves a compose network; the daemon \
             container needs e.g. listen = [\"169.254.170.2:80\"] and expose = true"
        );
    }
    Ok(ClientEnv {
        set: vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/role/{role}", base_url(address)),
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", TOKEN_PATH.into()),
        ],
        unset: container_unset(),
    })
}

/// The address app containers connect to, and whether a listener serves it:
/// the first listener on a specific non-loopback address, else
/// `169.254.170.2` on a wildcard listener's port, else `169.254.170.2:80`.
pub fn endpoint(listen: &[SocketAddr]) -> (SocketAddr, bool) {
    let specific = listen
        .iter()
        .find(|address| !address.ip().is_loopback() && !address.ip().is_unspecified());
    if let Some(address) = specific {
        return (*address, true);
    }
    match listen.iter().find(|address| address.ip().is_unspecified()) {
        Some(wildcard) => (SocketAddr::from((ECS_ADDRESS, wildcard.port())), true),
        None => (SocketAddr::from((ECS_ADDRESS, HTTP_PORT)), false),
    }
}

/// `http://HOST[:PORT]`, without `:80`.
fn base_url(address: SocketAddr) -> String {
    let host = match address.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    match address.port() {
        HTTP_PORT => format!("http://{host}"),
        port => format!("http://{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("addr")).collect()
    }

    #[test]
    fn the_configured_network_address_wins() {
        let (address, served) = endpoint(&addrs(&["127.0.0.1:9911", "169.254.170.2:80"]));
        assert_eq!(
            (address.to_string().as_str(), served),
            ("169.254.170.2:80", true)
        );
        let (address, _) = endpoint(&addrs(&["[fd00:ec2::23]:80"]));
        assert_eq!(base_url(address), "http://[fd00:ec2::23]");
        let (address, _) = endpoint(&addrs(&["10.0.0.5:8080"]));
        assert_eq!(base_url(address), "http://10.0.0.5:8080");
    }

    #[test]
    fn a_wildcard_listener_is_reached_at_the_ecs_address() {
        let (address, served) = endpoint(&addrs(&["127.0.0.1:9911", "0.0.0.0:80"]));
        assert!(served);
        assert_eq!(base_url(address), "http://169.254.170.2");
        let (address, _) = endpoint(&addrs(&["[::]:9911"]));
        assert_eq!(base_url(address), "http://169.254.170.2:9911");
    }

    #[test]
    fn loopback_only_falls_back_to_the_recipe_and_says_so() {
        let (address, served) = endpoint(&addrs(&["127.0.0.1:9911"]));
        assert!(!served);
        assert_eq!(base_url(address), "http://169.254.170.2");
    }

    #[test]
    fn env_points_at_the_role_and_the_shared_token() {
        let config = crate::config::parse(
            "[server]\nlisten = [\"169.254.170.2:80\"]\nexpose = true\n\
             [roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\n",
            "c.toml",
        )
        .expect("valid");
        let env = env_for(&config, &config.roles, "dev").expect("env");
        assert_eq!(
            env.set,
            vec![
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.2/role/dev".to_owned()
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    "/run/assumed/token".to_owned()
                ),
            ]
        );
        assert!(
            env.unset
                .contains(&"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        );
        assert!(env_for(&config, &config.roles, "nope").is_err());
    }
}
