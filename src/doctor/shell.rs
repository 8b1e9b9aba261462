//! Which credentials an SDK started in this shell would take, following the
//! SDKs' own chain order (`SDK-CONTRACT.md` §9; botocore's, the strictest):
//! key variables, then the selected profile in either shared file, then web
//! identity, then the container endpoint, then IMDS. Whatever comes first
//! wins, so a profile with keys silently beats a daemon the container
//! variables point at; that is the finding this exists for.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::Finding;
use crate::aws_files::{IniFile, Origin, Selection};
use crate::client_env::client_address;
use crate::config::Config;
use crate::own_address::{self, Authority};

/// Where ECS's RELATIVE_URI is resolved.
const ECS_BASE: &str = "http://169.254.170.2";
const REAL_IMDS: &str = "http://169.254.169.254/";

/// Profile keys that make the profile a credential source, in the order
/// botocore's chain looks at them (credentials-file keys come before
/// `credential_process`, config-file keys after it).
const PROFILE_SOURCES: [(&str, InFile); 8] = [
    ("role_arn", InFile::Either),
    ("web_identity_token_file", InFile::Either),
    ("sso_session", InFile::Either),
    ("sso_start_url", InFile::Either),
    ("aws_access_key_id", InFile::Credentials),
    ("credential_process", InFile::Either),
    ("aws_access_key_id", InFile::Config),
    ("login_session", InFile::Either),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum InFile {
    Config,
    Credentials,
    Either,
}

/// One link of the chain that would give credentials.
struct Link {
    what: String,
    /// What to remove or unset to take this link out, when that is the fix.
    remove: String,
    /// The role the daemon would serve through this link, if it is the daemon.
    daemon_role: Option<String>,
}

/// The role this shell's container or IMDS variables ask the daemon for.
pub fn pointed_role(shell: &HashMap<String, String>, config: &Config) -> Option<String> {
    links(shell, config)
        .into_iter()
        .find_map(|link| link.daemon_role)
}

pub fn check(
    shell: &HashMap<String, String>,
    config: &Config,
    daemon_token: Option<&str>,
    wanted: Option<&str>,
) -> Finding {
    let links = links(shell, config);
    let daemon_link = links.iter().find(|l| l.daemon_role.is_some());
    let role_for_fix = wanted
        .or(daemon_link.and_then(|l| l.daemon_role.as_deref()))
        .unwrap_or("ROLE");
    let eval = format!("eval \"$(assumed env {role_for_fix})\"");
    let Some(first) = links.first() else {
        return Finding::warn(
            "shell",
            "an SDK started here finds no credentials (no keys, no profile with any, no container \
             or IMDS variables) and would try the real IMDS",
            eval,
        );
    };
    match (&first.daemon_role, daemon_link) {
        (Some(role), _) => daemon_first(shell, first, role, daemon_token, wanted, &eval),
        (None, Some(daemon)) => {
            let role = daemon.daemon_role.as_deref().unwrap_or_default();
            Finding::fail(
                "shell",
                format!(
                    "{} comes before {} in every SDK's chain: programs here run as that identity, \
                     not as role {role}",
                    first.what, daemon.what
                ),
                format!("{eval}   (or {})", first.remove),
            )
        }
        (None, None) => {
            let message = format!(
                "this shell is not pointed at the daemon: an SDK started here uses {}",
                first.what
            );
            if wanted.is_some() {
                Finding::fail("shell", message, eval)
            } else {
                Finding::warn("shell", message, eval)
            }
        }
    }
}

/// The daemon wins the chain: is it the role asked for, and will the daemon
/// take the token this shell sends.
fn daemon_first(
    shell: &HashMap<String, String>,
    link: &Link,
    role: &str,
    daemon_token: Option<&str>,
    wanted: Option<&str>,
    eval: &str,
) -> Finding {
    if let Some(wanted) = wanted.filter(|w| *w != role) {
        return Finding::fail(
            "shell",
            format!("an SDK started here takes role {role} from the daemon, not {wanted}"),
            eval,
        );
    }
    if link.what.contains("IMDS") {
        return Finding::ok(
            "shell",
            format!("an SDK started here takes role {role} from {}", link.what),
        );
    }
    let sent = match shell_var(shell, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(file) => std::fs::read_to_string(file).ok(),
        None => shell_var(shell, "AWS_CONTAINER_AUTHORIZATION_TOKEN").map(str::to_owned),
    };
    match (sent, daemon_token) {
        (None, _) => Finding::fail(
            "shell",
            format!(
                "{} points at the daemon, but this shell sends no token it can read",
                link.what
            ),
            eval,
        ),
        (Some(sent), Some(token)) if sent != token => Finding::fail(
            "shell",
            format!(
                "{} points at the daemon, but the token this shell sends is not the daemon's",
                link.what
            ),
            eval,
        ),
        _ => Finding::ok(
            "shell",
            format!("an SDK started here takes role {role} from {}", link.what),
        ),
    }
}

fn shell_var<'a>(shell: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    shell
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Every link of the chain that would give credentials, in chain order.
fn links(shell: &HashMap<String, String>, config: &Config) -> Vec<Link> {
    let mut links = Vec::new();
    if shell_var(shell, "AWS_ACCESS_KEY_ID").is_some() {
        links.push(Link {
            what: "AWS_ACCESS_KEY_ID in the environment".into(),
            remove: "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN".into(),
            daemon_role: None,
        });
    }
    links.extend(profile_link(shell));
    if shell_var(shell, "AWS_WEB_IDENTITY_TOKEN_FILE").is_some()
        && shell_var(shell, "AWS_ROLE_ARN").is_some()
    {
        links.push(Link {
            what: "web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)".into(),
            remove: "unset AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN".into(),
            daemon_role: None,
        });
    }
    links.extend(container_link(shell, config));
    links.extend(imds_link(shell, config));
    links
}

/// The selected profile, when it holds credentials of any kind (or is missing).
fn profile_link(shell: &HashMap<String, String>) -> Option<Link> {
    let env = |name: &str| shell.get(name).cloned();
    let selection = Selection::as_sdks_see_it(&env);
    let config = IniFile::read(&selection.config_path).unwrap_or_default();
    let credentials = IniFile::read(&selection.credentials_path).unwrap_or_default();
    let in_config = config.config_profile(&selection.profile);
    let in_credentials = credentials.credentials_profile(&selection.profile);
    let chosen_by = selection
        .profile_from
        .map(|variable| format!(" (chosen by {variable})"))
        .unwrap_or_default();
    if in_config.is_empty() && in_credentials.is_empty() {
        let variable = selection.profile_from?;
        return Some(Link {
            what: format!(
                "{variable}={}, a profile that neither {} nor {} has (SDKs stop with ProfileNotFound)",
                selection.profile,
                selection.config_path.display(),
                selection.credentials_path.display()
            ),
            remove: format!("unset {variable}"),
            daemon_role: None,
        });
    }
    for (key, origin) in PROFILE_SOURCES {
        let files = [
            (InFile::Config, &selection.config_path, &in_config),
            (
                InFile::Credentials,
                &selection.credentials_path,
                &in_credentials,
            ),
        ];
        for (file_origin, path, sections) in files {
            if origin != InFile::Either && origin != file_origin {
                continue;
            }
            let found = sections
                .iter()
                .flat_map(|s| &s.entries)
                .find(|e| e.key.eq_ignore_ascii_case(key));
            if let Some(entry) = found {
                let copy = Origin::of(path)
                    .map(|o| format!(", a copy of {}", o.config.display()))
                    .unwrap_or_default();
                return Some(Link {
                    what: format!(
                        "profile {}{chosen_by} with {key} at {}:{}{copy}",
                        selection.profile,
                        path.display(),
                        entry.line
                    ),
                    remove: format!("remove line {} of {}", entry.line, path.display()),
                    daemon_role: None,
                });
            }
        }
    }
    None
}

fn container_link(shell: &HashMap<String, String>, config: &Config) -> Option<Link> {
    // RELATIVE wins over FULL in every SDK.
    let (variable, uri) = match shell_var(shell, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        Some(relative) => (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("{ECS_BASE}{relative}"),
        ),
        None => (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            shell_var(shell, "AWS_CONTAINER_CREDENTIALS_FULL_URI")?.to_owned(),
        ),
    };
    let ours = points_at_daemon(&uri, &config.server.listen);
    let daemon_role = ours.then(|| served_role(&uri, config)).flatten();
    let what = if ours {
        format!("the daemon's container endpoint ({variable}={uri})")
    } else {
        format!("the container endpoint {uri} ({variable}), which is not this daemon")
    };
    Some(Link {
        what,
        remove: format!("unset {variable}"),
        daemon_role,
    })
}

fn imds_link(shell: &HashMap<String, String>, config: &Config) -> Option<Link> {
    if shell_var(shell, "AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return None;
    }
    let endpoint = shell_var(shell, "AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or(REAL_IMDS);
    let ours = points_at_daemon(endpoint, &config.server.listen);
    if !ours && endpoint == REAL_IMDS {
        // Not a credential source worth naming on a workstation: the SDKs'
        // last resort, which fails there after a timeout.
        return None;
    }
    Some(Link {
        what: if ours {
            format!("the daemon's IMDS ({endpoint})")
        } else {
            format!("IMDS at {endpoint}")
        },
        remove: "unset AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        daemon_role: ours.then(|| imds_role(endpoint, config)).flatten(),
    })
}

fn points_at_daemon(uri: &str, listen: &[SocketAddr]) -> bool {
    let reachable: Vec<SocketAddr> = listen.iter().map(|a| client_address(*a)).collect();
    own_address::reaches(uri, &reachable)
}

/// `/role/NAME` is NAME; `/creds` is the default role.
fn served_role(uri: &str, config: &Config) -> Option<String> {
    let uri: hyper::Uri = uri.parse().ok()?;
    let path = uri.path();
    match path.strip_prefix("/role/") {
        Some(name) => Some(name.trim_end_matches('/').to_owned()),
        None if path == "/creds" => config.server.default_role.clone(),
        None => None,
    }
}

/// The main listener's IMDS serves the default role; an `imds_listen` its own.
fn imds_role(endpoint: &str, config: &Config) -> Option<String> {
    let authority = Authority::of(endpoint)?;
    let own_listener = config
        .roles
        .iter()
        .find(|(_, role)| {
            role.imds_listen
                .is_some_and(|a| authority.is_one_of(&[client_address(a)]))
        })
        .map(|(name, _)| name.clone());
    own_listener.or_else(|| config.server.default_role.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let mut config = Config::default();
        config.server.listen = vec!["127.0.0.1:9911".parse().expect("addr")];
        config.server.default_role = Some("dev".into());
        config
    }

    fn shell(home: &Path, vars: &[(&str, &str)]) -> HashMap<String, String> {
        let mut shell: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        shell.insert("HOME".into(), home.display().to_string());
        shell
    }

    fn home(config: &str, credentials: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join(".aws")).expect("mkdir");
        std::fs::write(dir.path().join(".aws/config"), config).expect("write");
        std::fs::write(dir.path().join(".aws/credentials"), credentials).expect("write");
        std::fs::write(dir.path().join("token"), "0123456789abcdef0123").expect("write");
        dir
    }

    fn pointed(home: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:9911/role/dev".to_owned(),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                home.join("token").display().to_string(),
            ),
        ]
    }

    fn verdict(dir: &Path, extra: &[(&str, &str)]) -> Finding {
        let pointed = pointed(dir);
        let mut vars: Vec<(&str, &str)> = pointed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        vars.extend_from_slice(extra);
        check(
            &shell(dir, &vars),
            &config(),
            Some("0123456789abcdef0123"),
            None,
        )
    }

    #[test]
    fn default_keys_in_the_credentials_file_shadow_the_daemon() {
        let dir = home(
            "[default]\nregion = eu-west-1\n",
            "# mine\n[default]\naws_access_key_id = AKIA\n",
        );
        let finding = verdict(dir.path(), &[]);
        assert_eq!(finding.status, super::super::Status::Fail);
        let credentials = dir.path().join(".aws/credentials");
        assert!(
            finding
                .message
                .contains(&format!("{}:3", credentials.display())),
            "{}",
            finding.message
        );
        assert!(
            finding.message.contains("not as role dev"),
            "{}",
            finding.message
        );
        let next = finding.next.expect("next");
        assert!(next.contains("eval \"$(assumed env dev)\""), "{next}");
        assert!(next.contains(&format!("remove line 3 of {}", credentials.display())));
    }

    #[test]
    fn each_kind_of_profile_source_is_named_with_its_line() {
        for (config_text, key, line) in [
            (
                "[default]\nregion = x\ncredential_process = /bin/keys\n",
                "credential_process",
                3,
            ),
            ("[default]\nsso_session = corp\n", "sso_session", 2),
            (
                "[default]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = b\n",
                "role_arn",
                2,
            ),
            (
                "[default]\nweb_identity_token_file = /t\n",
                "web_identity_token_file",
                2,
            ),
            (
                "[default]\nlogin_session = arn:aws:iam::1:user/u\n",
                "login_session",
                2,
            ),
            (
                "[profile default]\naws_access_key_id = AKIA\n",
                "aws_access_key_id",
                2,
            ),
        ] {
            let dir = home(config_text, "");
            let finding = verdict(dir.path(), &[]);
            assert_eq!(finding.status, super::super::Status::Fail, "{config_text}");
            let at = format!(
                "with {key} at {}:{line}",
                dir.path().join(".aws/config").display()
            );
            assert!(
                finding.message.contains(&at),
                "{at} not in {}",
                finding.message
            );
        }
    }

    #[test]
    fn profile_variables_and_env_keys_are_followed() {
        let dir = home("[profile work]\ncredential_process = /bin/keys\n", "");
        let finding = verdict(dir.path(), &[("AWS_DEFAULT_PROFILE", "work")]);
        assert!(
            finding.message.contains("chosen by AWS_DEFAULT_PROFILE"),
            "{}",
            finding.message
        );
        let finding = verdict(dir.path(), &[("AWS_PROFILE", "gone")]);
        assert!(
            finding.message.contains("ProfileNotFound"),
            "{}",
            finding.message
        );
        let finding = verdict(dir.path(), &[("AWS_ACCESS_KEY_ID", "AKIA")]);
        assert!(
            finding
                .message
                .starts_with("AWS_ACCESS_KEY_ID in the environment comes before")
        );
    }

    #[test]
    fn a_clean_shell_pointed_at_the_daemon_is_ok() {
        let dir = home("[default]\nregion = eu-west-1\n", "");
        let finding = verdict(dir.path(), &[]);
        assert_eq!(
            finding.status,
            super::super::Status::Ok,
            "{}",
            finding.message
        );
        assert!(finding.message.contains("role dev"));
        let wrong_token = check(
            &shell(
                dir.path(),
                &[
                    (
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "http://localhost:9911/role/dev",
                    ),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "stale"),
                ],
            ),
            &config(),
            Some("0123456789abcdef0123"),
            None,
        );
        assert_eq!(wrong_token.status, super::super::Status::Fail);
        let other_role = check(
            &shell(
                dir.path(),
                &pointed(dir.path())
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            ),
            &config(),
            Some("0123456789abcdef0123"),
            Some("prod"),
        );
        assert!(other_role.message.contains("not prod"));
        assert_eq!(
            other_role.next.as_deref(),
            Some("eval \"$(assumed env prod)\"")
        );
    }

    #[test]
    fn imds_and_unpointed_shells() {
        let dir = home("", "");
        let imds = check(
            &shell(
                dir.path(),
                &[(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                    "http://127.0.0.1:9911/",
                )],
            ),
            &config(),
            None,
            None,
        );
        assert_eq!(imds.status, super::super::Status::Ok, "{}", imds.message);
        assert!(imds.message.contains("role dev from the daemon's IMDS"));
        let nothing = check(&shell(dir.path(), &[]), &config(), None, None);
        assert_eq!(nothing.status, super::super::Status::Warn);
        let keys_only = check(
            &shell(dir.path(), &[("AWS_ACCESS_KEY_ID", "AKIA")]),
            &config(),
            None,
            Some("dev"),
        );
        assert_eq!(keys_only.status, super::super::Status::Fail);
        assert!(keys_only.message.contains("not pointed at the daemon"));
    }
}
