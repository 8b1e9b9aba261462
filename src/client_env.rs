//! The environment that points an unmodified SDK at the daemon, and its
//! renderings for shells, dotenv files and JSON (`assumed env`, `assumed exec`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use clap::ValueEnum;

use crate::aws_files::Copy;

/// Variables that give an SDK credentials before it reaches the container
/// endpoint or IMDS: static keys, a profile choice (the profile itself is
/// made harmless by the credential-free copy), and web identity.
const CREDENTIAL_VARIABLES: [&str; 10] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
];

/// Besides those, what fights with FULL_URI + token file: RELATIVE_URI wins
/// over FULL_URI everywhere, and Java prefers the TOKEN variable over the file.
const CONTAINER_RIVALS: [&str; 2] = [
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Besides the credential variables, what keeps an SDK from reaching IMDS:
/// the container endpoint (which comes before IMDS in every chain) and the
/// switch that turns IMDS off.
const IMDS_RIVALS: [&str; 5] = [
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Sh,
    Fish,
    Dotenv,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEnv {
    pub set: Vec<(&'static str, String)>,
    pub unset: Vec<&'static str>,
}

/// FULL_URI + token file for `role`, reached through the first listener;
/// `files` is the credential-free copy of the user's profile.
pub fn container_env(listen: SocketAddr, role: &str, token_file: &Path, files: &Copy) -> ClientEnv {
    let mut set = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{}/role/{role}", client_address(listen)),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ];
    set.extend(shared_files(files));
    ClientEnv {
        set,
        unset: container_unset(),
    }
}

/// What a container-endpoint client must not have set.
pub fn container_unset() -> Vec<&'static str> {
    [CREDENTIAL_VARIABLES.as_slice(), &CONTAINER_RIVALS].concat()
}

/// The credential-free copy in place of the user's shared files.
fn shared_files(files: &Copy) -> [(&'static str, String); 2] {
    [
        ("AWS_CONFIG_FILE", files.config.display().to_string()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            files.credentials.display().to_string(),
        ),
    ]
}

/// IMDS at `listen`. The endpoint ends in `/`: Debian's AWS CLI 2.9 appends
/// `latest/…` without one. `no_proxy` is the current `NO_PROXY` when a proxy
/// is configured, since botocore sends IMDS requests through `HTTP_PROXY`.
pub fn imds_env(listen: SocketAddr, no_proxy: Option<&str>, files: &Copy) -> ClientEnv {
    let address = client_address(listen);
    let mut set = vec![(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        format!("http://{address}/"),
    )];
    set.extend(shared_files(files));
    if address.is_ipv6() {
        set.push(("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6".into()));
    }
    if let Some(existing) = no_proxy {
        let host = address.ip().to_string();
        let mut hosts: Vec<&str> = existing.split(',').filter(|h| !h.is_empty()).collect();
        for needed in [host.as_str(), "localhost"] {
            if !hosts.contains(&needed) {
                hosts.push(needed);
            }
        }
        set.push(("NO_PROXY", hosts.join(",")));
    }
    ClientEnv {
        set,
        unset: [CREDENTIAL_VARIABLES.as_slice(), &IMDS_RIVALS].concat(),
    }
}

/// Where a local client should connect for a listener: a wildcard listener
/// is reached on loopback, under the literal every SDK's allowlist accepts.
pub fn client_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

pub fn render(env: &ClientEnv, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Sh => {
            for name in &env.unset {
                out.push_str(&format!("unset {name}\n"));
            }
            for (name, value) in &env.set {
                out.push_str(&format!("export {name}={}\n", sh_quote(value)));
            }
        }
        Format::Fish => {
            for name in &env.unset {
                out.push_str(&format!("set -e {name}\n"));
            }
            for (name, value) in &env.set {
                out.push_str(&format!("set -gx {name} {}\n", fish_quote(value)));
            }
            // `set -e` of an unset variable fails and `set -gx` keeps that
            // status, which would stop `… | source; and cmd`.
            out.push_str("true\n");
        }
        Format::Dotenv => {
            // dotenv cannot unset. Empty keys count as unset in every SDK,
            // and naming the copy's one profile beats any other choice; for
            // the rest (an empty RELATIVE_URI still wins in botocore), say so.
            // A compose service's environment starts empty: there the
            // comment is all it takes.
            let local = names_copy(env);
            let mut others = Vec::new();
            for name in &env.unset {
                if local && EMPTY_IS_UNSET.contains(name) {
                    out.push_str(&format!("{name}=\n"));
                } else if local && PROFILE_CHOICE.contains(name) {
                    out.push_str(&format!("{name}=default\n"));
                } else {
                    others.push(*name);
                }
            }
            out.insert_str(
                0,
                &format!("# also make sure these are not set: {}\n", others.join(" ")),
            );
            for (name, value) in &env.set {
                out.push_str(&format!("{name}={}\n", dotenv_quote(value)));
            }
        }
        Format::Json => {
            let set: serde_json::Map<String, serde_json::Value> = env
                .set
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone().into()))
                .collect();
            let doc = serde_json::json!({ "set": set, "unset": env.unset });
            out.push_str(&doc.to_string());
            out.push('\n');
        }
    }
    out
}

/// Variables every SDK treats as unset when empty (dotenv's only way to unset).
const EMPTY_IS_UNSET: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// The variables that choose a profile; the copy's only one is `default`.
const PROFILE_CHOICE: [&str; 2] = ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"];

/// Whether `env` points at a credential-free copy (not so for compose).
fn names_copy(env: &ClientEnv) -> bool {
    env.set.iter().any(|(name, _)| *name == "AWS_CONFIG_FILE")
}

fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn fish_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

fn dotenv_quote(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-@+=,".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy() -> Copy {
        Copy {
            config: "/run/user/1000/assumed/aws-config-00".into(),
            credentials: "/run/user/1000/assumed/aws-credentials-empty".into(),
        }
    }

    fn env() -> ClientEnv {
        container_env(
            "0.0.0.0:9911".parse().expect("addr"),
            "dev",
            Path::new("/run/user/1000/assumed/token"),
            &copy(),
        )
    }

    #[test]
    fn wildcard_listener_is_reached_on_loopback() {
        let env = env();
        assert_eq!(env.set[0].1, "http://127.0.0.1:9911/role/dev");
        let v6 = container_env(
            "[::]:80".parse().expect("addr"),
            "x",
            Path::new("/t"),
            &copy(),
        );
        assert_eq!(v6.set[0].1, "http://[::1]:80/role/x");
    }

    #[test]
    fn every_earlier_link_of_the_chains_is_cleared() {
        for env in [
            env(),
            imds_env("127.0.0.1:1".parse().expect("addr"), None, &copy()),
        ] {
            for name in [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_DEFAULT_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            ] {
                assert!(env.unset.contains(&name), "{name}");
            }
            assert!(env.set.contains(&(
                "AWS_CONFIG_FILE",
                "/run/user/1000/assumed/aws-config-00".to_owned()
            )));
            assert!(env.set.contains(&(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/run/user/1000/assumed/aws-credentials-empty".to_owned()
            )));
        }
    }

    #[test]
    fn sh_output_unsets_conflicts_and_quotes() {
        let text = render(&env(), Format::Sh);
        assert!(text.contains("unset AWS_ACCESS_KEY_ID\n"));
        assert!(text.contains("unset AWS_CONTAINER_CREDENTIALS_RELATIVE_URI\n"));
        assert!(text.contains(
            "export AWS_CONTAINER_CREDENTIALS_FULL_URI='http://127.0.0.1:9911/role/dev'\n"
        ));
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn imds_variant_points_at_the_listener_with_a_trailing_slash() {
        let env = imds_env("127.0.0.1:9921".parse().expect("addr"), None, &copy());
        assert_eq!(
            env.set[0],
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://127.0.0.1:9921/".to_owned()
            )
        );
        assert!(env.unset.contains(&"AWS_CONTAINER_CREDENTIALS_FULL_URI"));
        let proxied = imds_env(
            "127.0.0.1:9921".parse().expect("addr"),
            Some("corp.example"),
            &copy(),
        );
        assert!(
            proxied
                .set
                .contains(&("NO_PROXY", "corp.example,127.0.0.1,localhost".to_owned()))
        );
    }

    #[test]
    fn other_formats() {
        assert!(render(&env(), Format::Fish).contains("set -e AWS_PROFILE\n"));
        let dotenv = render(&env(), Format::Dotenv);
        assert!(
            dotenv
                .contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/user/1000/assumed/token\n")
        );
        // dotenv cannot unset: empty keys and the copy's one profile instead.
        assert!(dotenv.contains("\nAWS_ACCESS_KEY_ID=\n"));
        assert!(dotenv.contains("\nAWS_PROFILE=default\n"));
        assert!(
            dotenv.starts_with("# also make sure these are not set: AWS_CREDENTIAL_EXPIRATION")
        );
        assert!(!dotenv.contains("not set: AWS_ACCESS_KEY_ID"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&env(), Format::Json)).expect("json");
        assert_eq!(
            json["set"]["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            "http://127.0.0.1:9911/role/dev"
        );
        assert_eq!(json["unset"][0], "AWS_ACCESS_KEY_ID");
        assert_eq!(dotenv_quote("a b\"c"), "\"a b\\\"c\"");
    }
}
