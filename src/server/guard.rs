//! Who may talk to the daemon at all, and who may have credentials.
//!
//! `check` runs before every route (the router's `screen` layer and the warm
//! path): it refuses requests whose `Host` is not one we answer to (DNS
//! rebinding), anything that looks like a browser, and request bodies.
//! `authorize` is the token check on the container endpoint.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Method, StatusCode, header};

use super::connection::Connection;
use super::error::ApiError;
use crate::subnet::Subnet;
use crate::token::Token;

/// Host names accepted besides loopback and the listener's own address,
/// lowercased (part of the reloadable `Settings`).
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    pub fn new(names: &[String]) -> Self {
        AllowedHosts(names.iter().map(|name| name.to_ascii_lowercase()).collect())
    }

    fn contains(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
    }
}

pub(super) fn check(
    allowed: &AllowedHosts,
    local: Option<SocketAddr>,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !host_allowed(host, local, allowed) {
        return Err(refuse("HostNotAllowed", "this Host is not served here"));
    }
    if looks_like_a_browser(headers) || method == Method::OPTIONS {
        return Err(refuse(
            "BrowserRefused",
            "requests from web browsers are refused",
        ));
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyNotAllowed",
            "no endpoint takes a request body",
        ));
    }
    Ok(())
}

fn refuse(code: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, message)
}

/// SDKs send none of these; every browser sends at least one.
fn looks_like_a_browser(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers.contains_key(header::REFERER)
        || headers
            .keys()
            .any(|name| name.as_str().starts_with("sec-fetch-"))
        || headers
            .get(header::USER_AGENT)
            .is_some_and(|agent| agent.as_bytes().starts_with(b"Mozilla/"))
}

/// Loopback literals, `localhost`, the address the connection came in on
/// (e.g. `169.254.170.2` on a compose network), and configured names. A
/// rebinding attacker's own name never matches.
fn host_allowed(host: &str, local: Option<SocketAddr>, allowed: &AllowedHosts) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    // Compared without case rather than lowercased: no allocation on the
    // path every request takes (IP literals parse in either case).
    if name.eq_ignore_ascii_case("localhost") || allowed.contains(name) {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || local.is_some_and(|local| local.ip() == ip),
        Err(_) => false,
    }
}

/// The host part of a `Host` header (`name`, `name:port`, `[v6]`, `[v6]:port`),
/// without brackets; `None` for anything malformed.
fn host_name(host: &str) -> Option<&str> {
    let is_port = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) if is_port(port) => ip,
            None if after.is_empty() => ip,
            _ => return None,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => host,
        }
    };
    (!name.is_empty()).then_some(name)
}

pub fn authorize(token: &Token, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut presented = headers.get_all(header::AUTHORIZATION).iter();
    match (presented.next(), presented.next()) {
        (None, _) => Err(ApiError::missing_token()),
        (Some(value), None) if token.matches(value.as_bytes()) => Ok(()),
        // A second Authorization header is never what an SDK sends.
        _ => Err(ApiError::wrong_token()),
    }
}

/// `authorize`, except that a peer inside `trust_subnet` (set explicitly, for
/// a compose network) needs no token; what it sends in `Authorization` is
/// then not looked at. Without a known peer the token is required.
pub fn authorize_peer(
    token: &Token,
    trusted: Option<&Subnet>,
    connection: Option<&Connection>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let peer = connection.map(|connection| connection.peer.ip());
    if trusted
        .zip(peer)
        .is_some_and(|(subnet, peer)| subnet.contains(peer))
    {
        return Ok(());
    }
    authorize(token, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str) -> bool {
        let local = "169.254.170.2:80".parse().ok();
        host_allowed(
            host,
            local,
            &AllowedHosts::new(&["host.docker.internal".to_owned()]),
        )
    }

    #[test]
    fn loopback_own_address_and_configured_names_are_allowed() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:9911",
            "127.1.2.3:80",
            "localhost",
            "LOCALHOST:9911",
            "[::1]",
            "[::1]:9911",
            "169.254.170.2",
            "169.254.170.2:80",
            "host.docker.internal:9911",
            "Host.Docker.Internal:9911",
        ] {
            assert!(allowed(host), "{host}");
        }
    }

    #[test]
    fn other_hosts_are_refused() {
        for host in [
            "",
            "attacker.example",
            "attacker.example:9911",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "169.254.169.254",
            "10.0.0.1:9911",
            "[fe80::1]:80",
            "[::1",
        ] {
            assert!(!allowed(host), "{host}");
        }
    }

    #[test]
    fn only_peers_inside_the_trusted_subnet_skip_the_token() {
        let token = Token::generate().expect("token");
        let subnet: Subnet = "169.254.170.128/25".parse().expect("subnet");
        let from = |peer: &str| {
            let peer = peer.parse().expect("addr");
            Connection {
                local: "169.254.170.2:80".parse().expect("addr"),
                peer,
                owner: crate::peer::PeerOwner::Remote,
                client: crate::clients::Client::new(peer, crate::peer::PeerOwner::Remote),
            }
        };
        let none = HeaderMap::new();
        let mut wrong = HeaderMap::new();
        wrong.insert(header::AUTHORIZATION, "wrong".parse().expect("header"));
        let trusted = from("169.254.170.130:40000");
        assert!(authorize_peer(&token, Some(&subnet), Some(&trusted), &none).is_ok());
        assert!(authorize_peer(&token, Some(&subnet), Some(&trusted), &wrong).is_ok());
        let gateway = from("169.254.170.1:40000");
        assert_eq!(
            authorize_peer(&token, Some(&subnet), Some(&gateway), &none).map_err(|e| e.status()),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            authorize_peer(&token, None, Some(&trusted), &wrong).map_err(|e| e.status()),
            Err(StatusCode::FORBIDDEN),
            "no trust_subnet: the token as always"
        );
        assert!(authorize_peer(&token, Some(&subnet), None, &none).is_err());
    }

    #[test]
    fn browsers_are_recognised() {
        let browser = |name: &'static str, value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().expect("header"));
            looks_like_a_browser(&headers)
        };
        assert!(browser("origin", "https://evil.example"));
        assert!(browser("referer", "https://evil.example/page"));
        assert!(browser("sec-fetch-mode", "no-cors"));
        assert!(browser("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"));
        assert!(!browser("user-agent", "Boto3/1.43 md/Botocore#1.43"));
        assert!(!browser("user-agent", "aws-sdk-js/3.972"));
    }
}
