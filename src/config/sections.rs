//! Builds a `Config` from the parsed document, one section at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::Problems;
use super::reader::TableReader;
use super::validate::{self, Listener, anything, not_empty};
use super::{
    Config, Confirm, ConfirmScope, ConsoleConfig, Deadlines, Isolation, RoleConfig, ServerConfig,
    SourceConfig,
};
use crate::credentials::Secret;
use crate::subnet::Subnet;

/// Keys that only mean something when the role is assumed through STS.
const ASSUME_ROLE_ONLY: [&str; 13] = [
    "session_name",
    "duration",
    "external_id",
    "mfa_serial",
    "mfa_process",
    "source_profile",
    "source_keys",
    "via",
    "policy",
    "policy_arns",
    "tags",
    "transitive_tag_keys",
    "source_identity",
];
const MAX_POLICY_ARNS: usize = 10;
const MAX_TAGS: usize = 50;

pub(super) fn config(document: &DeTable<'_>, problems: &Problems) -> Config {
    let mut root = TableReader::new(Some(document), String::new(), problems);
    let mut listeners = Vec::new();
    let (server, default_role) = server(root.table("server"), &mut listeners);
    let source = source(root.table("source"));
    let console = console(root.table("console"));
    let mut roles = BTreeMap::new();
    let mut vias = BTreeMap::new();
    for (name, table) in root.table("roles").tables() {
        if let Err(message) = validate::role_name(name.get_ref()) {
            problems.report(name.span(), message);
        }
        let (role, via) = role(&name, table, &mut listeners);
        vias.extend(via.map(|via| (name.get_ref().clone(), via)));
        roles.insert(name.into_inner(), role);
    }
    root.finish();

    validate::listeners(&listeners, server.expose, problems);
    validate::via_chains(&vias, |name| roles.contains_key(name), problems);
    // Roles imported from ~/.aws/config are unknown here; with import on, whoever merges them checks it.
    if let Some(default_role) =
        default_role.filter(|name| !server.import_profiles && !roles.contains_key(name.get_ref()))
    {
        let message = format!(
            "default_role \"{}\" is not a role in [roles]",
            default_role.get_ref()
        );
        problems.report(default_role.span(), message);
    }
    Config {
        path: None,
        server,
        source,
        roles,
        console,
    }
}

/// `confirm` and the two settings that mean something only with it.
fn confirm(table: &mut TableReader<'_>) -> Option<Confirm> {
    let scope = table.typed(
        "confirm",
        "true, false, \"once-per-program\" or \"each-process\"",
        |value| match value {
            DeValue::Boolean(true) => Some(Some(ConfirmScope::Program)),
            DeValue::Boolean(false) => Some(None),
            DeValue::String(text) if text == "once-per-program" => {
                Some(Some(ConfirmScope::Program))
            }
            DeValue::String(text) if text == "each-process" => Some(Some(ConfirmScope::Process)),
            _ => None,
        },
    );
    let lasts = table.duration("confirm_for", &validate::positive("confirm_for"));
    let timeout = table.duration("confirm_timeout", &validate::positive("confirm_timeout"));
    let scope = plain(scope).flatten();
    if scope.is_none() {
        for (key, set) in [("confirm_for", &lasts), ("confirm_timeout", &timeout)] {
            if let Some(value) = set {
                table.report(
                    value.span(),
                    format!("{key} needs confirm = true in the same role"),
                );
            }
        }
    }
    Some(Confirm {
        scope: scope?,
        lasts: plain(lasts).unwrap_or(Confirm::DEFAULT_LASTS),
        timeout: plain(timeout).unwrap_or(Confirm::DEFAULT_TIMEOUT),
    })
}

fn console(mut table: TableReader<'_>) -> ConsoleConfig {
    let browser = plain(table.string("browser", &not_empty));
    let isolate = table.typed(
        "isolate",
        "true, false, \"profile\", \"container\" or \"none\"",
        |value| match value {
            DeValue::Boolean(true) => Some(Isolation::Profile),
            DeValue::Boolean(false) => Some(Isolation::Shared),
            DeValue::String(text) => Isolation::parse(text),
            _ => None,
        },
    );
    table.finish();
    ConsoleConfig {
        browser,
        isolate: plain(isolate).unwrap_or_default(),
    }
}

fn server(
    mut table: TableReader<'_>,
    listeners: &mut Vec<Listener>,
) -> (ServerConfig, Option<Spanned<String>>) {
    let defaults = ServerConfig::default();
    let listen = match table.socket_addr_list("listen") {
        Some(list) => list
            .into_inner()
            .into_iter()
            .map(|addr| listener(addr, "listen", listeners))
            .collect(),
        None => {
            let default = Spanned::new(0..0, defaults.listen[0]);
            vec![listener(default, "the default listen", listeners)]
        }
    };
    let default_role = table.string("default_role", &anything);
    let token_file = table
        .string("token_file", &validate::token_file)
        .map(|path| expand_home(path.get_ref()));
    let allowed_hosts = strings(table.string_list("allowed_hosts", &validate::host_name));
    let refresh_before = table.duration("refresh_before", &validate::positive("refresh_before"));
    let idle_timeout = table.duration("idle_timeout", &validate::positive("idle_timeout"));
    let trust_subnet = table.string("trust_subnet", &|text| {
        Subnet::parse_trusted(text).map(drop)
    });
    let server = ServerConfig {
        listen,
        default_role: default_role.as_ref().map(|name| name.get_ref().clone()),
        token_file,
        allowed_hosts,
        refresh_before: refresh_before.map_or(defaults.refresh_before, Spanned::into_inner),
        idle_timeout: idle_timeout.map_or(defaults.idle_timeout, Spanned::into_inner),
        expose: table.bool("expose").unwrap_or(defaults.expose),
        trust_subnet: trust_subnet
            .as_ref()
            .and_then(|text| Subnet::parse_trusted(text.get_ref()).ok()),
        imdsv1: table.bool("imdsv1").unwrap_or(defaults.imdsv1),
        import_profiles: table
            .bool("import_profiles")
            .unwrap_or(defaults.import_profiles),
        metrics: table.bool("metrics").unwrap_or(defaults.metrics),
        notify: table.bool("notify"),
        allow_uids: table
            .uid_list("allow_uids")
            .map_or(defaults.allow_uids, Spanned::into_inner),
    };
    if let Some(subnet) = trust_subnet.filter(|_| !server.expose) {
        let message =
            "trust_subnet needs expose = true in [server]: it is for a listener other hosts reach";
        table.report(subnet.span(), message);
    }
    table.finish();
    (server, default_role)
}

fn source(mut table: TableReader<'_>) -> SourceConfig {
    let defaults = Deadlines::default();
    let mut deadline = |key: &'static str, default: Duration| {
        plain(table.duration(key, &validate::positive(key))).unwrap_or(default)
    };
    let deadlines = Deadlines {
        connect: deadline("connect_timeout", defaults.connect),
        read: deadline("read_timeout", defaults.read),
        sts: deadline("sts_timeout", defaults.sts),
        process: deadline("process_timeout", defaults.process),
        source: deadline("source_timeout", defaults.source),
        mfa_process: deadline("mfa_process_timeout", defaults.mfa_process),
    };
    let source = SourceConfig {
        profile: plain(table.string("profile", &not_empty)),
        region: plain(table.string("region", &validate::region)),
        sts_endpoint: plain(table.string("sts_endpoint", &validate::sts_endpoint)),
        federation_endpoint: plain(
            table.string("federation_endpoint", &validate::federation_endpoint),
        ),
        mfa_session: plain(table.duration("mfa_session", &validate::mfa_session)),
        remember_mfa: table.bool("remember_mfa"),
        mfa_session_file: table
            .string("mfa_session_file", &not_empty)
            .map(|path| expand_home(path.get_ref())),
        deadlines,
        keys: None,
        keyring: crate::keys::KeyringSettings::default(),
    };
    let source = SourceConfig {
        keys: keys_source(&mut table),
        keyring: keyring(&mut table),
        ..source
    };
    table.finish();
    source
}

/// `[source] keys`: stored keys as the source of every role without its
/// own. One source at a time: `profile` names another.
fn keys_source(table: &mut TableReader<'_>) -> Option<String> {
    let keys = table.string("keys", &validate::key_name)?;
    if table.key_span("profile").is_some() {
        table.report(
            keys.span(),
            "keys and profile are mutually exclusive in [source]: the roles are signed by one or the other",
        );
    }
    Some(keys.into_inner())
}

/// `keyring`, `keyring_file`, `keyring_passphrase_file`: where stored keys
/// live. The file settings mean something only to the file backend, so
/// they are refused with another: a setting that silently does nothing is
/// a setting the user thinks is in force.
fn keyring(table: &mut TableReader<'_>) -> crate::keys::KeyringSettings {
    use crate::keys::{BackendKind, KeyringSettings};
    let backend = table.string("keyring", &validate::keyring);
    let file = table.string("keyring_file", &validate::keyring_path("keyring_file"));
    let passphrase_file = table.string(
        "keyring_passphrase_file",
        &validate::keyring_path("keyring_passphrase_file"),
    );
    let kind = backend
        .as_ref()
        .and_then(|text| BackendKind::parse(text.get_ref()))
        .unwrap_or_else(BackendKind::platform_default);
    if kind != BackendKind::File {
        let set = [
            ("keyring_file", &file),
            ("keyring_passphrase_file", &passphrase_file),
        ];
        for (key, setting) in set {
            if let Some(setting) = setting {
                table.report(
                    setting.span(),
                    format!("{key} needs keyring = \"file\": the {kind} keyring does not use it"),
                );
            }
        }
    }
    KeyringSettings {
        backend: kind,
        file: file.map(|path| expand_home(path.get_ref())),
        passphrase_file: passphrase_file.map(|path| expand_home(path.get_ref())),
    }
}

/// One `[roles.NAME]` table, and its `via` with position for the chain check.
fn role(
    name: &Spanned<String>,
    mut table: TableReader<'_>,
    listeners: &mut Vec<Listener>,
) -> (RoleConfig, Option<Spanned<String>>) {
    let role_arn = plain(table.string("role_arn", &validate::role_arn));
    let profile = table.string("profile", &not_empty);
    let source_profile = table.string("source_profile", &not_empty);
    let source_keys = table.string("source_keys", &validate::key_name);
    let via = table.string("via", &anything);
    // A chained session over 1h is clamped by the daemon (with a warning), as
    // the AWS CLI does, rather than refused here.
    let duration = table.duration("duration", &validate::session_duration);
    let tags = tags(&mut table);
    let transitive_tag_keys = transitive_tag_keys(&mut table, &tags);
    let policy_arns = policy_arns(&mut table);
    role_or_profile(name, &table, role_arn.is_some(), profile.as_ref());
    let (mfa_serial, mfa_process) = mfa(&mut table);
    if let (Some(via), Some(_)) = (&via, &source_profile) {
        table.report(via.span(), "via and source_profile are mutually exclusive: a role is assumed from one or the other");
    }
    if let Some(keys) = &source_keys {
        let other = [
            ("source_profile", source_profile.is_some()),
            ("via", via.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key));
        if let Some(other) = other {
            table.report(
                keys.span(),
                format!("source_keys and {other} are mutually exclusive: a role is assumed from one or the other"),
            );
        }
    }

    let role = RoleConfig {
        role_arn,
        profile: plain(profile),
        session_name: plain(table.string("session_name", &validate::session_name)),
        duration: plain(duration),
        external_id: plain(table.string("external_id", &validate::external_id)).map(Secret::new),
        mfa_serial,
        mfa_process,
        source_profile: plain(source_profile),
        source_keys: plain(source_keys),
        via: via.as_ref().map(|via| via.get_ref().clone()),
        policy: plain(table.string("policy", &validate::policy)),
        policy_arns,
        tags,
        transitive_tag_keys,
        source_identity: plain(table.string("source_identity", &validate::source_identity)),
        region: plain(table.string("region", &validate::region)),
        sts_endpoint: plain(table.string("sts_endpoint", &validate::sts_endpoint)),
        prefetch: table.bool("prefetch").unwrap_or(false),
        imds_listen: table
            .socket_addr("imds_listen")
            .map(|addr| listener(addr, "imds_listen", listeners)),
        notify_on_use: table.bool("notify_on_use").unwrap_or(false),
        confirm: confirm(&mut table),
        imported: None,
    };
    table.finish();
    (role, via)
}

/// A role is assumed (`role_arn`) or serves a profile's own credentials
/// (`profile`): exactly one of the two, and a profile role takes no STS options.
fn role_or_profile(
    name: &Spanned<String>,
    table: &TableReader<'_>,
    has_role_arn: bool,
    profile: Option<&Spanned<String>>,
) {
    match (has_role_arn, profile) {
        (false, None) => table.report(
            name.span(),
            format!("role \"{}\" needs role_arn or profile", name.get_ref()),
        ),
        (true, Some(profile)) => table.report(profile.span(), "set role_arn or profile, not both"),
        (false, Some(_)) => assume_role_keys_unused(table),
        (true, None) => {}
    }
}

/// `mfa_serial`, and the `mfa_process` that prints codes for that device.
fn mfa(table: &mut TableReader<'_>) -> (Option<String>, Option<String>) {
    let mfa_serial = table.string("mfa_serial", &validate::mfa_serial);
    let mfa_process = table.string("mfa_process", &not_empty);
    if let (Some(process), None) = (&mfa_process, &mfa_serial) {
        table.report(
            process.span(),
            "mfa_process needs mfa_serial: the code it prints is for that device",
        );
    }
    (plain(mfa_serial), plain(mfa_process))
}

fn transitive_tag_keys(
    table: &mut TableReader<'_>,
    tags: &BTreeMap<String, String>,
) -> Vec<String> {
    strings(
        table.string_list("transitive_tag_keys", &|key| match tags.contains_key(key) {
            true => Ok(()),
            false => Err(format!(
                "transitive_tag_keys entry \"{key}\" is not a key of tags"
            )),
        }),
    )
}

fn policy_arns(table: &mut TableReader<'_>) -> Vec<String> {
    let policy_arns = table.string_list("policy_arns", &validate::policy_arn);
    if let Some(extra) = policy_arns
        .as_ref()
        .and_then(|arns| arns.get_ref().get(MAX_POLICY_ARNS))
    {
        table.report(
            extra.span(),
            format!("policy_arns has more than {MAX_POLICY_ARNS} entries, the most STS accepts"),
        );
    }
    strings(policy_arns)
}

fn tags(table: &mut TableReader<'_>) -> BTreeMap<String, String> {
    let entries = table.string_map("tags");
    if let Some(span) = table.key_span("tags").filter(|_| entries.len() > MAX_TAGS) {
        table.report(
            span,
            format!(
                "tags has {} entries; STS accepts at most {MAX_TAGS}",
                entries.len()
            ),
        );
    }
    for (key, value) in &entries {
        if !(1..=128).contains(&key.get_ref().chars().count()) {
            table.report(key.span(), "tag keys must be 1-128 characters");
        }
        if value.get_ref().chars().count() > 256 {
            table.report(
                value.span(),
                format!("tag \"{}\" is longer than 256 characters", key.get_ref()),
            );
        }
    }
    entries
        .into_iter()
        .map(|(key, value)| (key.into_inner(), value.into_inner()))
        .collect()
}

/// A `profile` role serves the profile's own credentials: STS options make no sense there.
fn assume_role_keys_unused(table: &TableReader<'_>) {
    for key in ASSUME_ROLE_ONLY {
        if let Some(span) = table.key_span(key) {
            table.report(
                span,
                format!(
                    "{key} needs role_arn: a profile role serves the profile's own credentials"
                ),
            );
        }
    }
}

fn listener(
    addr: Spanned<std::net::SocketAddr>,
    key: &'static str,
    listeners: &mut Vec<Listener>,
) -> std::net::SocketAddr {
    listeners.push(Listener {
        addr: *addr.get_ref(),
        span: addr.span(),
        key,
    });
    addr.into_inner()
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn plain<T>(value: Option<Spanned<T>>) -> Option<T> {
    value.map(Spanned::into_inner)
}

fn strings(list: Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
    list.map(|list| {
        list.into_inner()
            .into_iter()
            .map(Spanned::into_inner)
            .collect()
    })
    .unwrap_or_default()
}
