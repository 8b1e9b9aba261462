//! Whether a URL a client was handed (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`) reaches one of our own listeners:
//! `serve` strips such variables from its own environment, and `doctor`
//! tells a shell pointed at the daemon from one pointed elsewhere.
//!
//! The URL is parsed as a URI (`http::Uri`): IPv6 literals in brackets,
//! user info and a missing port (the scheme's default) are what a client
//! would make of them, not what splitting at the last colon would.

use std::net::{IpAddr, SocketAddr};

use hyper::Uri;

/// Where a URL sends a client: its host, resolved where that needs no DNS
/// (`localhost` is loopback), and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    host: Host,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Loopback,
    /// A name that only DNS could resolve: never taken for one of ours.
    Name,
}

impl Authority {
    /// The authority of an `http://` or `https://` URL; `None` for anything else.
    pub fn of(url: &str) -> Option<Authority> {
        let uri: Uri = url.parse().ok()?;
        let default_port = match uri.scheme_str()? {
            scheme if scheme.eq_ignore_ascii_case("http") => 80,
            scheme if scheme.eq_ignore_ascii_case("https") => 443,
            _ => return None,
        };
        let host = uri.host()?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if bare.eq_ignore_ascii_case("localhost") => Host::Loopback,
            Err(_) => Host::Name,
        };
        Some(Authority {
            host,
            port: uri.port_u16().unwrap_or(default_port),
        })
    }

    /// The port of one of `listen`, and a host that listener answers on:
    /// any for a wildcard listener, its own address, or loopback (`localhost`,
    /// `127.0.0.1`, `::1` alike) for a loopback listener.
    pub fn is_one_of(&self, listen: &[SocketAddr]) -> bool {
        listen.iter().any(|address| {
            let ip = address.ip();
            address.port() == self.port
                && (ip.is_unspecified()
                    || match self.host {
                        Host::Ip(host) => host == ip || (host.is_loopback() && ip.is_loopback()),
                        Host::Loopback => ip.is_loopback(),
                        Host::Name => false,
                    })
        })
    }
}

/// `url` reaches one of `listen` (see [`Authority::is_one_of`]).
pub fn reaches(url: &str, listen: &[SocketAddr]) -> bool {
    Authority::of(url).is_some_and(|authority| authority.is_one_of(listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(addresses: &[&str]) -> Vec<SocketAddr> {
        addresses
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect()
    }

    #[test]
    fn loopback_urls_reach_a_loopback_listener_on_the_same_port() {
        let ours = listen(&["127.0.0.1:9911"]);
        assert!(reaches("http://127.0.0.1:9911/role/dev", &ours));
        assert!(reaches("http://localhost:9911/creds", &ours));
        assert!(reaches("HTTP://LOCALHOST:9911/creds", &ours));
        assert!(reaches("http://[::1]:9911/role/dev", &ours));
        assert!(!reaches("http://127.0.0.1:9912/role/dev", &ours));
        assert!(!reaches("http://169.254.170.2/v2/credentials", &ours));
        assert!(!reaches("http://example.com:9911/role/dev", &ours));
        assert!(!reaches("not a uri", &ours));
        assert!(!reaches("127.0.0.1:9911", &ours), "no scheme, no URL");
    }

    #[test]
    fn ipv6_listeners_and_literals() {
        let ours = listen(&["[::1]:9911"]);
        assert!(reaches("http://[::1]:9911/role/dev", &ours));
        assert!(reaches("http://localhost:9911/role/dev", &ours));
        assert!(!reaches("http://[::1]:9912/role/dev", &ours));
        assert!(
            !reaches("http://[::1]/role/dev", &ours),
            "port 80, not 9911"
        );
        let wildcard = listen(&["[::]:9911"]);
        assert!(reaches("http://[fd00::5]:9911/role/dev", &wildcard));
    }

    #[test]
    fn a_missing_port_is_the_schemes_and_user_info_is_no_host() {
        let compose = listen(&["169.254.170.2:80"]);
        assert!(reaches("http://169.254.170.2/role/dev", &compose));
        assert!(!reaches("https://169.254.170.2/role/dev", &compose));
        let ours = listen(&["127.0.0.1:9911"]);
        assert!(reaches("http://user@127.0.0.1:9911/role/dev", &ours));
        assert!(!reaches(
            "http://127.0.0.1:9911@evil.example/role/dev",
            &ours
        ));
    }

    #[test]
    fn a_specific_listener_is_not_reached_through_another_address() {
        let lan = listen(&["192.168.1.5:9911"]);
        assert!(reaches("http://192.168.1.5:9911/role/dev", &lan));
        assert!(!reaches("http://127.0.0.1:9911/role/dev", &lan));
        assert!(!reaches("http://localhost:9911/role/dev", &lan));
        let wildcard = listen(&["0.0.0.0:9911"]);
        assert!(reaches("http://192.168.1.5:9911/role/dev", &wildcard));
        assert!(reaches("http://localhost:9911/role/dev", &wildcard));
    }
}
