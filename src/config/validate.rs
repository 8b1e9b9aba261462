//! Checks of single values (pure: text in, message out) and of how values
//! relate across the file (role chains, listeners). The public ones also
//! check settings that arrive another way: profiles imported from
//! `~/.aws/config`, `console --region`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::diagnostic::Problems;
use super::reader::Span;

type Checked = Result<(), String>;

const ROLE_ARN_SHAPE: &str = "arn:aws:iam::123456789012:role/NAME (or role/PATH/NAME)";
const MFA_ARN_SHAPE: &str = "arn:aws:iam::123456789012:mfa/NAME";
/// STS accepts DurationSeconds from 15 minutes to 12 hours.
const SESSION_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(15 * 60), Duration::from_secs(12 * 3600));

pub(super) fn anything(_: &str) -> Checked {
    Ok(())
}

/// `\w` in AWS patterns: ASCII letters, digits and underscore.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn made_of(text: &str, extra: &str) -> bool {
    text.chars().all(|c| is_word(c) || extra.contains(c))
}

fn length_in(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.chars().count())
}

/// `text` must be `min..=max` characters of `\w` plus `extra`.
fn word_chars(key: &str, text: &str, extra: &str, min: usize, max: usize) -> Checked {
    if length_in(text, min, max) && made_of(text, extra) {
        return Ok(());
    }
    Err(format!(
        "{key} must be {min}-{max} characters of letters, digits and _{extra}"
    ))
}

pub(super) fn role_name(name: &str) -> Checked {
    word_chars("role name", name, ".@+=,-", 1, 64)
        .map_err(|message| format!("{message} (it is part of URLs)"))
}

/// The name stored keys go by (`assumed keys add NAME`, `[source] keys`,
/// `source_keys`): IAM user names' characters, so a user's own name fits.
pub fn key_name(name: &str) -> Checked {
    word_chars("a key name", name, "+=,.@-", 1, 64)
}

pub(super) fn keyring(text: &str) -> Checked {
    match crate::keys::BackendKind::parse(text) {
        Some(_) => Ok(()),
        None => Err(format!(
            "keyring \"{text}\" is not a keyring: use \"secret-service\", \"keychain\" or \"file\""
        )),
    }
}

pub(super) fn keyring_path(key: &'static str) -> impl Fn(&str) -> Checked {
    move |path| {
        if path.starts_with('/') || path.starts_with("~/") {
            return Ok(());
        }
        Err(format!(
            "{key} \"{path}\" must be an absolute path or start with ~/"
        ))
    }
}

pub fn session_name(text: &str) -> Checked {
    word_chars("session_name", text, "+=,.@-", 2, 64)
}

pub(super) fn source_identity(text: &str) -> Checked {
    word_chars("source_identity", text, "+=,.@-", 2, 64)
}

pub fn external_id(text: &str) -> Checked {
    word_chars("external_id", text, "+=,.@:/-", 2, 1224)
}

pub(super) fn not_empty(text: &str) -> Checked {
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(())
    }
}

/// Splits `arn:PARTITION:iam::ACCOUNT:KIND/REST` and returns REST.
fn iam_arn<'t>(arn: &'t str, kind: &str) -> Result<&'t str, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, resource] = parts[..] else {
        return Err("not an ARN".to_owned());
    };
    let is_partition = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && !rest.ends_with('-')
                && rest.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
    if !is_partition {
        return Err(format!("unknown partition \"{partition}\""));
    }
    if service != "iam" || !region.is_empty() {
        return Err("not an IAM ARN (arn:PARTITION:iam::ACCOUNT:…)".to_owned());
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("account \"{account}\" is not 12 digits"));
    }
    let rest = resource
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('/'));
    rest.ok_or_else(|| format!("resource \"{resource}\" does not start with {kind}/"))
}

pub fn role_arn(arn: &str) -> Checked {
    let explain =
        |problem: String| format!("role_arn \"{arn}\": {problem}; expected {ROLE_ARN_SHAPE}");
    let path_and_name = iam_arn(arn, "role").map_err(explain)?;
    let (path, name) = path_and_name
        .rsplit_once('/')
        .unwrap_or(("", path_and_name));
    if !path.is_empty()
        && path
            .split('/')
            .any(|segment| segment.is_empty() || !made_of(segment, "+=,.@-"))
    {
        return Err(explain(format!("invalid role path \"/{path}/\"")));
    }
    if !length_in(name, 1, 64) || !made_of(name, "+=,.@-") {
        return Err(explain(format!(
            "role name \"{name}\" must be 1-64 characters of letters, digits and _+=,.@-"
        )));
    }
    Ok(())
}

pub fn mfa_serial(serial: &str) -> Checked {
    if serial.starts_with("arn:") {
        let explain = |problem: String| {
            format!("mfa_serial \"{serial}\": {problem}; expected {MFA_ARN_SHAPE}")
        };
        let name = iam_arn(serial, "mfa").map_err(explain)?;
        if name.is_empty() || !made_of(name, "+=,.@-/") {
            return Err(explain(format!("invalid device name \"{name}\"")));
        }
        return Ok(());
    }
    word_chars("mfa_serial", serial, "+=/:,.@-", 9, 256)
        .map_err(|message| format!("{message} (a hardware serial), or an ARN like {MFA_ARN_SHAPE}"))
}

pub(super) fn policy(text: &str) -> Checked {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(
            "policy must be a JSON object like {\"Version\":\"2012-10-17\",\"Statement\":[…]}"
                .to_owned(),
        ),
        Err(error) => Err(format!("policy is not valid JSON: {error}")),
    }
}

pub(super) fn policy_arn(arn: &str) -> Checked {
    if arn.starts_with("arn:") && arn.contains(":policy/") {
        return Ok(());
    }
    Err(format!(
        "policy_arns entry \"{arn}\" is not a policy ARN like arn:aws:iam::aws:policy/ReadOnlyAccess"
    ))
}

pub fn region(region: &str) -> Checked {
    if !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Ok(());
    }
    Err(format!(
        "region \"{region}\" must be lowercase letters, digits and -, like eu-west-1"
    ))
}

pub(super) fn sts_endpoint(url: &str) -> Checked {
    http_url("sts_endpoint", url)
}

/// The console federation endpoint (`getSigninToken` and `Action=login`):
/// the whole URL, path included, e.g. `https://signin.aws.amazon.com/federation`.
pub(super) fn federation_endpoint(url: &str) -> Checked {
    http_url("federation_endpoint", url)?;
    if url.contains(['?', '#']) {
        return Err(format!(
            "federation_endpoint \"{url}\" must not carry a query or fragment: assumed adds the query"
        ));
    }
    Ok(())
}

fn http_url(key: &str, url: &str) -> Checked {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match authority {
        Some(authority) if !authority.is_empty() && !authority.starts_with(':') => Ok(()),
        _ => Err(format!(
            "{key} \"{url}\" must be an http:// or https:// URL with a host"
        )),
    }
}

pub(super) fn token_file(path: &str) -> Checked {
    if path.starts_with('/') || path.starts_with("~/") {
        return Ok(());
    }
    Err(format!(
        "token_file \"{path}\" must be an absolute path or start with ~/"
    ))
}

pub(super) fn host_name(host: &str) -> Checked {
    if !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Ok(());
    }
    Err(format!(
        "allowed_hosts entry \"{host}\" must be a host name like host.docker.internal"
    ))
}

pub(super) fn positive(key: &'static str) -> impl Fn(&Duration) -> Checked {
    move |duration| {
        if duration.is_zero() {
            Err(format!("{key} must be greater than 0"))
        } else {
            Ok(())
        }
    }
}

pub fn session_duration(duration: &Duration) -> Checked {
    let (min, max) = SESSION_BOUNDS;
    if (min..=max).contains(duration) {
        return Ok(());
    }
    Err(format!(
        "duration {} is outside 15m..12h, the range STS accepts",
        humantime::format_duration(*duration)
    ))
}

/// GetSessionToken grants 15 minutes to 36 hours.
pub(super) fn mfa_session(duration: &Duration) -> Checked {
    let range = Duration::from_secs(15 * 60)..=Duration::from_secs(36 * 3600);
    if range.contains(duration) {
        return Ok(());
    }
    Err(format!(
        "mfa_session {} is outside 15m..36h, the range STS accepts",
        humantime::format_duration(*duration)
    ))
}

/// A listening address and the key that asked for it.
pub(super) struct Listener {
    pub(super) addr: SocketAddr,
    pub(super) span: Span,
    pub(super) key: &'static str,
}

/// Non-loopback addresses need `expose`; no address may be bound twice.
pub(super) fn listeners(listeners: &[Listener], expose: bool, problems: &Problems) {
    for (index, listener) in listeners.iter().enumerate() {
        let Listener { addr, span, key } = listener;
        if !expose && !addr.ip().to_canonical().is_loopback() {
            let message = format!(
                "{key} {addr} is not loopback: set expose = true in [server] to serve other hosts"
            );
            problems.report(span.clone(), message);
        }
        if let Some(first) = listeners[..index]
            .iter()
            .find(|earlier| earlier.addr == *addr)
        {
            problems.report(
                span.clone(),
                format!("{key} {addr} is already used by {}", first.key),
            );
        }
    }
}

/// `via` must name a configured role and chains must not loop.
/// `vias` maps each role that has `via` to its target.
pub(super) fn via_chains(
    vias: &BTreeMap<String, Spanned<String>>,
    is_role: impl Fn(&str) -> bool,
    problems: &Problems,
) {
    for (role, target) in vias {
        let (span, target) = (target.span(), target.get_ref());
        if !is_role(target) {
            problems.report(
                span,
                format!("via = \"{target}\": no role named \"{target}\""),
            );
            continue;
        }
        let mut chain = vec![role.as_str()];
        let mut next = Some(target.as_str());
        while let Some(current) = next {
            chain.push(current);
            if current == role {
                problems.report(
                    span,
                    format!("via = \"{target}\" forms a cycle: {}", chain.join(" -> ")),
                );
                break;
            }
            if chain[..chain.len() - 1].contains(&current) {
                break; // a cycle further on, reported at its own roles
            }
            next = vias.get(current).map(|via| via.get_ref().as_str());
        }
    }
}
