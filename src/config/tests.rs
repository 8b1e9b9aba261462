use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

const ROLE: &str = "[roles.dev]\nrole_arn = \"arn:aws:iam::111111111111:role/dev\"\n";

/// Every problem of `source` as "line:column: message".
fn problems(source: &str) -> Vec<String> {
    match parse(source, "t.toml") {
        Ok(_) => Vec::new(),
        Err(Diagnostics(all)) => all
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}

/// `ROLE` plus one line.
fn role(line: &str) -> String {
    format!("{ROLE}{line}\n")
}

/// `source` has exactly one problem, given as "line:column: part of the message".
fn expect_one(source: &str, expected: &str) {
    let (at, fragment) = expected.split_once(": ").unwrap_or((expected, ""));
    let found = problems(source);
    assert!(
        found.len() == 1 && found[0].starts_with(&format!("{at}: ")) && found[0].contains(fragment),
        "wanted {expected}, got {found:#?}"
    );
}

fn expect_ok(source: &str) -> Config {
    parse(source, "t.toml").unwrap_or_else(|problems| panic!("{problems}"))
}

#[test]
fn syntax_errors_are_located_one_per_line() {
    let found = problems("[server\nlisten = = 1\nx = 2\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("1:8: unclosed table"), "{found:#?}");
    assert!(found[1].starts_with("2:10: "), "{found:#?}");
}

#[test]
fn diagnostics_display_as_file_line_column() {
    let Err(diagnostics) = parse("x = 1\n", "a/config.toml") else {
        panic!("accepted an unknown key")
    };
    assert_eq!(
        diagnostics.to_string(),
        "a/config.toml:1:1: unknown key \"x\" at the top level"
    );
}

#[test]
fn unknown_keys_are_reported_everywhere_with_suggestions() {
    let found = problems(
        "[server]\nlistne = []\n[source]\nzone = \"a\"\n[roles.dev]\nprofile = \"p\"\nextra = 1\n[nope]\n",
    );
    assert_eq!(found.len(), 4, "{found:#?}");
    assert_eq!(
        found[0],
        "2:1: unknown key \"listne\" in [server]; did you mean \"listen\"?"
    );
    assert_eq!(found[1], "4:1: unknown key \"zone\" in [source]");
    assert_eq!(found[2], "7:1: unknown key \"extra\" in [roles.dev]");
    assert_eq!(found[3], "8:2: unknown key \"nope\" at the top level");
}

#[test]
fn role_entries_must_be_tables() {
    expect_one(
        "[roles]\ndev = 3\n",
        "2:7: roles.dev: expected a table, found an integer; write it as [roles.dev]",
    );
}

#[test]
fn wrong_value_types_name_both_types() {
    expect_one(
        "[server]\nexpose = \"yes\"\n",
        "2:10: expose: expected a boolean, found a string",
    );
    expect_one(
        "[server]\nlisten = [\"127.0.0.1:1\", 2]\n",
        "2:26: listen[1]: expected a string, found an integer",
    );
    expect_one(
        &role("session_name = 5"),
        "3:16: expected a string, found an integer",
    );
}

#[test]
fn role_names_must_be_url_safe() {
    expect_one(
        "[roles.\"a b\"]\nprofile = \"p\"\n",
        "1:8: role name must be 1-64 characters",
    );
    expect_ok("[roles.\"a.b@c+d=e,f-g_h\"]\nprofile = \"p\"\n");
}

#[test]
fn role_arn_shape_is_checked() {
    let with_arn = |arn: &str| format!("[roles.dev]\nrole_arn = \"{arn}\"\n");
    expect_one(
        &with_arn("dev"),
        "2:12: role_arn \"dev\": not an ARN; expected arn:aws:iam::123456789012:role/NAME",
    );
    expect_one(
        &with_arn("arn:aws:iam::1234:role/x"),
        "2:12: account \"1234\" is not 12 digits",
    );
    expect_one(
        &with_arn("arn:azure:iam::111111111111:role/x"),
        "2:12: unknown partition \"azure\"",
    );
    expect_one(
        &with_arn("arn:aws:iam::111111111111:user/x"),
        "2:12: does not start with role/",
    );
    expect_one(
        &with_arn("arn:aws:iam::111111111111:role/a b"),
        "2:12: role name \"a b\"",
    );
    for good in [
        "arn:aws-us-gov:iam::111111111111:role/p/q/x",
        "arn:aws-iso-b:iam::111111111111:role/a+b=c,d.e@f-g",
    ] {
        assert_eq!(validate::role_arn(good), Ok(()), "{good}");
    }
}

#[test]
fn a_role_needs_exactly_one_of_role_arn_or_profile() {
    expect_one(
        "[roles.dev]\nregion = \"eu-west-1\"\n",
        "1:8: role \"dev\" needs role_arn or profile",
    );
    expect_one(
        &role("profile = \"p\""),
        "3:11: set role_arn or profile, not both",
    );
}

#[test]
fn via_and_source_profile_are_exclusive() {
    let source =
        format!("{ROLE}via = \"hub\"\nsource_profile = \"x\"\n[roles.hub]\nprofile = \"h\"\n");
    expect_one(
        &source,
        "3:7: via and source_profile are mutually exclusive",
    );
}

#[test]
fn via_must_name_a_role() {
    expect_one(
        &role("via = \"hub\""),
        "3:7: via = \"hub\": no role named \"hub\"",
    );
}

#[test]
fn via_cycles_are_reported_once_per_role() {
    let arn = "role_arn = \"arn:aws:iam::111111111111:role/x\"";
    let found = problems(&format!(
        "[roles.a]\n{arn}\nvia = \"b\"\n[roles.b]\n{arn}\nvia = \"a\"\n[roles.c]\n{arn}\nvia = \"a\"\n"
    ));
    assert_eq!(
        found,
        [
            "3:7: via = \"b\" forms a cycle: a -> b -> a",
            "6:7: via = \"a\" forms a cycle: b -> a -> b"
        ]
    );
}

#[test]
fn via_and_other_sts_keys_need_role_arn() {
    let source = "[roles.hub]\nprofile = \"h\"\n[roles.dev]\nprofile = \"p\"\nvia = \"hub\"\n";
    expect_one(
        source,
        "5:1: via needs role_arn: a profile role serves the profile's own credentials",
    );
}

#[test]
fn durations_parse_and_respect_bounds() {
    expect_one(
        &role("duration = \"soon\""),
        "3:12: duration \"soon\" is not a duration",
    );
    expect_one(
        &role("duration = \"5m\""),
        "3:12: duration 5m is outside 15m..12h",
    );
    expect_one(&role("duration = \"13h\""), "3:12: outside 15m..12h");
    expect_one(
        "[server]\nrefresh_before = \"0s\"\n",
        "2:18: refresh_before must be greater than 0",
    );
    expect_one(
        "[server]\nidle_timeout = \"later\"\n",
        "2:16: idle_timeout \"later\" is not a duration",
    );
    let config = expect_ok(&format!(
        "{ROLE}duration = \"90m\"\n[server]\nidle_timeout = \"2h\"\n"
    ));
    assert_eq!(
        config.roles["dev"].duration,
        Some(Duration::from_secs(5400))
    );
    assert_eq!(config.server.idle_timeout, Duration::from_secs(7200));
}

#[test]
fn chained_sessions_over_an_hour_are_accepted_for_clamping() {
    let source = format!("{ROLE}via = \"hub\"\nduration = \"2h\"\n[roles.hub]\nprofile = \"h\"\n");
    let config = parse(&source, "t.toml").expect("valid: the daemon clamps it to 1h");
    assert_eq!(
        config.roles["dev"].duration,
        Some(Duration::from_secs(7200))
    );
}

#[test]
fn session_name_and_source_identity_use_sts_characters() {
    expect_one(
        &role("session_name = \"a\""),
        "3:16: session_name must be 2-64 characters",
    );
    expect_one(
        &role("source_identity = \"a b\""),
        "3:19: source_identity must be 2-64 characters",
    );
}

#[test]
fn external_id_is_checked_and_redacted() {
    expect_one(
        &role("external_id = \"x\""),
        "3:15: external_id must be 2-1224 characters",
    );
    let config = expect_ok(&role("external_id = \"s3cr3t:id/1\""));
    let shown = format!("{:?}", config.roles["dev"]);
    assert!(
        shown.contains("<redacted>") && !shown.contains("s3cr3t"),
        "{shown}"
    );
}

#[test]
fn mfa_serial_is_an_mfa_arn_or_a_hardware_serial() {
    expect_one(
        &role("mfa_serial = \"arn:aws:iam::111111111111:role/x\""),
        "3:14: does not start with mfa/",
    );
    expect_one(
        &role("mfa_serial = \"short\""),
        "3:14: mfa_serial must be 9-256 characters",
    );
    assert_eq!(
        validate::mfa_serial("arn:aws:iam::111111111111:mfa/alice"),
        Ok(())
    );
    assert_eq!(validate::mfa_serial("GAHT12345678"), Ok(()));
}

#[test]
fn policy_must_be_a_json_object() {
    expect_one(
        &format!("{ROLE}policy = '{{\"Version\":'\n"),
        "3:10: policy is not valid JSON",
    );
    expect_one(
        &role("policy = '[1]'"),
        "3:10: policy must be a JSON object",
    );
}

#[test]
fn policy_arns_are_policy_arns_and_at_most_ten() {
    expect_one(
        &role("policy_arns = [\"x\"]"),
        "3:16: policy_arns entry \"x\" is not a policy ARN",
    );
    let eleven = ["\"arn:aws:iam::aws:policy/P\""; 11].join(", ");
    expect_one(
        &format!("{ROLE}policy_arns = [{eleven}]\n"),
        "3:306: more than 10 entries",
    );
}

#[test]
fn tags_are_strings_within_sts_limits() {
    expect_one(
        &format!("{ROLE}tags = {{ team = 1 }}\n"),
        "3:17: tags.team: expected a string, found an integer",
    );
    expect_one(
        &format!("{ROLE}tags = {{ \"\" = \"x\" }}\n"),
        "3:10: tag keys must be 1-128 characters",
    );
    let long = "v".repeat(257);
    expect_one(
        &format!("{ROLE}tags = {{ team = \"{long}\" }}\n"),
        "3:17: longer than 256 characters",
    );
    let many: Vec<String> = (0..51).map(|i| format!("t{i} = \"v\"")).collect();
    expect_one(
        &format!("{ROLE}tags = {{ {} }}\n", many.join(", ")),
        "3:1: tags has 51 entries",
    );
    let source =
        format!("{ROLE}tags = {{ team = \"core\" }}\ntransitive_tag_keys = [\"team\", \"nope\"]\n");
    expect_one(
        &source,
        "4:32: transitive_tag_keys entry \"nope\" is not a key of tags",
    );
}

#[test]
fn region_and_sts_endpoint_are_checked() {
    expect_one(
        &role("region = \"EU\""),
        "3:10: region \"EU\" must be lowercase",
    );
    expect_one(
        "[source]\nregion = \"us_east\"\n",
        "2:10: region \"us_east\"",
    );
    expect_one(
        "[source]\nsts_endpoint = \"localhost:5000\"\n",
        "2:16: must be an http:// or https:// URL",
    );
    expect_one(
        "[source]\nsts_endpoint = \"http://\"\n",
        "2:16: with a host",
    );
    expect_ok("[source]\nsts_endpoint = \"http://127.0.0.1:5000/\"\n");
    // A role's own endpoint is checked the same way.
    expect_one(
        &role("sts_endpoint = \"sts.local\""),
        "3:16: must be an http:// or https:// URL",
    );
    let config = parse(
        &role("sts_endpoint = \"https://sts.eu-west-1.amazonaws.com\""),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(
        config.roles["dev"].sts_endpoint.as_deref(),
        Some("https://sts.eu-west-1.amazonaws.com")
    );
}

#[test]
fn federation_endpoint_is_checked() {
    expect_one(
        "[source]\nfederation_endpoint = \"signin.example\"\n",
        "2:23: federation_endpoint \"signin.example\" must be an http:// or https:// URL",
    );
    expect_one(
        "[source]\nfederation_endpoint = \"https://signin.example/federation?Action=login\"\n",
        "2:23: federation_endpoint \"https://signin.example/federation?Action=login\" must not carry a query",
    );
    let config =
        expect_ok("[source]\nfederation_endpoint = \"http://127.0.0.1:8080/federation\"\n");
    assert_eq!(
        config.source.federation_endpoint.as_deref(),
        Some("http://127.0.0.1:8080/federation")
    );
}

#[test]
fn listen_addresses_must_parse_and_stay_loopback() {
    expect_one(
        "[server]\nlisten = [\"localhost:1\"]\n",
        "2:11: listen \"localhost:1\" is not an address ip:port",
    );
    expect_one(
        "[server]\nlisten = []\n",
        "2:10: listen must name at least one address",
    );
    expect_one(
        "[server]\nlisten = [\"0.0.0.0:9911\"]\n",
        "2:11: listen 0.0.0.0:9911 is not loopback: set expose = true in [server] to serve other hosts",
    );
    expect_one(
        &role("imds_listen = \"[::]:9921\""),
        "3:15: imds_listen [::]:9921 is not loopback",
    );
    let exposed =
        expect_ok("[server]\nexpose = true\nlisten = [\"0.0.0.0:9911\", \"[::1]:9911\"]\n");
    assert_eq!(
        exposed.server.listen[1],
        "[::1]:9911".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn no_address_is_listened_on_twice() {
    expect_one(
        &role("imds_listen = \"127.0.0.1:9911\""),
        "3:15: already used by the default listen",
    );
    let source =
        format!("[server]\nlisten = [\"127.0.0.1:1\"]\n{ROLE}imds_listen = \"127.0.0.1:1\"\n");
    expect_one(
        &source,
        "5:15: imds_listen 127.0.0.1:1 is already used by listen",
    );
}

#[test]
fn default_role_must_be_configured_unless_profiles_are_imported() {
    let source = format!("[server]\ndefault_role = \"prod\"\nimport_profiles = false\n{ROLE}");
    expect_one(
        &source,
        "2:16: default_role \"prod\" is not a role in [roles]",
    );
    expect_ok(&format!("[server]\ndefault_role = \"prod\"\n{ROLE}"));
}

#[test]
fn server_strings_are_checked_and_token_file_expands_home() {
    expect_one(
        "[server]\ntoken_file = \"token\"\n",
        "2:14: must be an absolute path or start with ~/",
    );
    expect_one(
        "[server]\nallowed_hosts = [\"a b\"]\n",
        "2:18: must be a host name",
    );
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let config = expect_ok("[server]\ntoken_file = \"~/t/token\"\n");
    assert_eq!(
        config.server.token_file,
        Some(Path::new(&home).join("t/token"))
    );
}

#[test]
fn allow_uids_are_user_ids_and_notify_on_use_a_boolean() {
    let config = expect_ok(&format!(
        "[server]\nallow_uids = [1001, 0x3E9, 0]\n{ROLE}notify_on_use = true\n"
    ));
    assert_eq!(config.server.allow_uids, [1001, 1001, 0]);
    assert!(config.roles["dev"].notify_on_use);
    assert!(expect_ok(ROLE).server.allow_uids.is_empty());
    assert!(!expect_ok(ROLE).roles["dev"].notify_on_use);
    expect_one(
        "[server]\nallow_uids = [1001, -1]\n",
        "2:21: allow_uids[1] is not a user id (0 to 4294967294)",
    );
    expect_one(
        "[server]\nallow_uids = [4294967295]\n",
        "2:15: allow_uids[0] is not a user id",
    );
    expect_one(
        "[server]\nallow_uids = [\"alice\"]\n",
        "2:15: allow_uids[0]: expected a user id, found a string",
    );
    expect_one("[server]\nallow_uids = 1001\n", "2:14: expected an array");
    expect_one(&role("notify_on_use = \"yes\""), "3:17: expected a boolean");
}

#[test]
fn columns_count_characters_not_bytes() {
    expect_one(
        &format!("{ROLE}tags = {{ \"é\" = 1 }}\n"),
        "3:16: tags.é: expected a string",
    );
    expect_one("[source] # ééé\nregion = \"é\"  \n", "2:10: region");
}

#[test]
fn every_problem_is_reported_in_source_order() {
    let source = "[server]\nlisten = [\"0.0.0.0:1\"]\nbogus = 1\n[roles.dev]\nrole_arn = \"arn:aws:iam::1:role/x\"\nduration = \"1d\"\nvia = \"ghost\"\n";
    let found = problems(source);
    let at: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(at, ["2:11", "3:1", "5:12", "6:12", "7:7"], "{found:#?}");
}

#[test]
fn product_example_parses() {
    let config = expect_ok(PRODUCT_EXAMPLE);
    let dev = &config.roles["dev"];
    assert_eq!(dev.via.as_deref(), Some("hub"));
    assert_eq!(dev.tags["team"], "core");
    assert_eq!(config.roles["sso-dev"].profile.as_deref(), Some("sso-dev"));
    assert_eq!(config.server.default_role.as_deref(), Some("dev"));
}

#[test]
fn empty_file_means_defaults() {
    let config = expect_ok("");
    assert_eq!(config, Config::default());
    let server = &config.server;
    assert_eq!(
        server.listen,
        [DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        (server.refresh_before, server.idle_timeout),
        (Duration::from_secs(1800), Duration::from_secs(3600))
    );
    assert!(!server.expose && !server.imdsv1 && server.import_profiles);
    assert!(config.roles.is_empty() && config.path.is_none());
}

#[test]
fn missing_default_file_is_defaults_but_missing_given_file_is_an_error() {
    let missing = std::env::temp_dir().join(format!(
        "assumed-no-such-{}/config.toml",
        std::process::id()
    ));
    assert_eq!(
        load_if_present(Some(missing.clone())),
        Ok(Config::default())
    );
    let Err(Diagnostics(found)) = load_or_default(Some(&missing)) else {
        panic!("loaded a missing file")
    };
    assert_eq!((found[0].line, found[0].column), (1, 1));
    assert!(found[0].message.contains("No such file"), "{}", found[0]);
    assert_eq!(resolve_path(Some(&missing)), Some(missing));
}

#[test]
fn load_records_the_path_and_file_name() {
    let path =
        std::env::temp_dir().join(format!("assumed-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, format!("{ROLE}oops = 1\n")).unwrap();
    let Err(Diagnostics(found)) = load(&path) else {
        panic!("accepted an unknown key")
    };
    assert_eq!(
        found[0].to_string(),
        format!(
            "{}:3:1: unknown key \"oops\" in [roles.dev]",
            path.display()
        )
    );
    std::fs::write(&path, ROLE).unwrap();
    assert_eq!(
        load(&path).map(|config| config.path),
        Ok(Some(path.clone()))
    );
    std::fs::remove_file(&path).unwrap();
}

/// PRODUCT.md's example with its `…` filled in. It sets both `source_profile`
/// and `via`, which exclude each other, so `source_profile` is commented out.
const PRODUCT_EXAMPLE: &str = r#"[server]
listen = ["127.0.0.1:9911"]      # default; several allowed
default_role = "dev"             # served at /creds and by IMDS
# token_file = "..."             # default: runtime dir, mode 0600, new random token per start
# allowed_hosts = ["host.docker.internal"]   # extra Host header values accepted
refresh_before = "30m"           # refresh when less than this remains (see Refresh)
# expose = false                 # must be true for any non-loopback listen address
# imdsv1 = false                 # allow token-less IMDS GETs (off: IMDSv2 only)
# import_profiles = true         # also serve role profiles of ~/.aws/config

[source]                         # where the daemon's own credentials come from
profile = "default"              # any aws-config source: env, static, SSO, credential_process, web identity…
region = "us-east-1"
# sts_endpoint = "http://127.0.0.1:5000"   # VPC endpoint, FIPS, or a local STS for tests

[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
session_name = "alice"           # default: local user name, sanitised to [\w+=,.@-]{2,64}
duration = "1h"                  # 15m..12h
external_id = "example-external-id"   # optional
mfa_serial = "arn:aws:iam::111111111111:mfa/alice"   # optional: needs `assumed mfa`
# source_profile = "other"       # optional, overrides [source].profile (exclusive with via)
via = "hub"                      # optional: assume from another configured role (role chaining)
policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'     # optional session policy
policy_arns = ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
tags = { team = "core" }         # session tags
transitive_tag_keys = ["team"]
source_identity = "alice"
region = "eu-west-1"             # regional STS endpoint for this role
prefetch = false                 # assume at start instead of on first request
# imds_listen = "127.0.0.1:9921" # an extra IMDS listener that serves only this role

[roles.hub]
role_arn = "arn:aws:iam::222222222222:role/hub"

[roles.sso-dev]
profile = "sso-dev"              # no role_arn: serve a profile's own temporary credentials, re-resolved ahead of expiry
"#;

mod fuzz {
    use proptest::prelude::*;

    const EXAMPLE: &str = include_str!("../../config/example.toml");

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary text never panics the parser; it parses or explains why.
        #[test]
        fn arbitrary_text_is_parsed_or_explained(text in "\\PC{0,400}") {
            if let Err(diagnostics) = super::super::parse(&text, "fuzz.toml") {
                prop_assert!(!diagnostics.0.is_empty());
            }
        }

        /// The example config with a slice cut out or a byte replaced: every
        /// outcome is a config or located diagnostics, never a panic.
        #[test]
        fn damaged_example_configs_are_explained(cut in 0..EXAMPLE.len(), len in 0usize..40, byte in any::<u8>()) {
            let mut damaged = EXAMPLE.as_bytes().to_vec();
            let end = (cut + len).min(damaged.len());
            damaged.splice(cut..end, [byte]);
            let text = String::from_utf8_lossy(&damaged);
            if let Err(diagnostics) = super::super::parse(&text, "fuzz.toml") {
                for diagnostic in &diagnostics.0 {
                    prop_assert!(diagnostic.line >= 1 && diagnostic.column >= 1);
                }
            }
        }
    }
}

#[test]
fn mfa_process_needs_mfa_serial_and_notify_is_a_boolean() {
    let config = expect_ok(&format!(
        "[server]\nnotify = false\n[source]\nmfa_process_timeout = \"45s\"\nremember_mfa = false\nmfa_session_file = \"/run/x.json\"\n{ROLE}mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"\nmfa_process = \"ykman oath accounts code --single aws\"\n"
    ));
    assert_eq!(config.server.notify, Some(false));
    assert_eq!(
        config.source.deadlines.mfa_process,
        std::time::Duration::from_secs(45)
    );
    assert_eq!(config.source.remember_mfa, Some(false));
    assert_eq!(
        config.source.mfa_session_file.as_deref(),
        Some(std::path::Path::new("/run/x.json"))
    );
    assert_eq!(
        config.roles["dev"].mfa_process.as_deref(),
        Some("ykman oath accounts code --single aws")
    );
    assert_eq!(
        expect_ok(ROLE).server.notify,
        None,
        "default: decided at start"
    );
    expect_one(
        &role("mfa_process = \"op item get aws --otp\""),
        "3:15: mfa_process needs mfa_serial",
    );
    expect_one(
        &role("mfa_serial = \"GAHT12345678\"\nmfa_process = \"\""),
        "4:15: must not be empty",
    );
    expect_one("[server]\nnotify = \"yes\"\n", "2:10: expected a boolean");
    expect_one(
        "[source]\nmfa_process_timeout = \"0s\"\n",
        "2:23: mfa_process_timeout must be greater than 0",
    );
    assert!(
        problems(
            "[roles.p]\nprofile = \"x\"\nmfa_serial = \"GAHT12345678\"\nmfa_process = \"x\"\n"
        )
        .contains(
            &"4:1: mfa_process needs role_arn: a profile role serves the profile's own credentials"
                .to_owned()
        )
    );
}

#[test]
fn upstream_deadlines_have_defaults_and_are_checked() {
    let defaults = expect_ok("").source.deadlines;
    assert_eq!(defaults, crate::config::Deadlines::default());
    assert_eq!(defaults.sts, Duration::from_secs(20));
    assert_eq!(defaults.process, Duration::from_secs(60));
    let config = expect_ok(
        "[source]\nconnect_timeout = \"1s\"\nread_timeout = \"2s\"\nsts_timeout = \"5s\"\n\
         process_timeout = \"2m\"\nsource_timeout = \"15s\"\n",
    );
    let deadlines = config.source.deadlines;
    assert_eq!(
        (deadlines.connect, deadlines.read, deadlines.sts),
        (
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(5)
        )
    );
    assert_eq!(deadlines.process, Duration::from_secs(120));
    assert_eq!(deadlines.source, Duration::from_secs(15));
    assert!(deadlines.fetch() > deadlines.process + deadlines.sts);
    expect_one(
        "[source]\nsts_timeout = \"0s\"\n",
        "2:15: sts_timeout must be greater than 0",
    );
    expect_one(
        "[source]\nprocess_timeout = \"never\"\n",
        "2:19: process_timeout \"never\" is not a duration",
    );
}

#[test]
fn stored_keys_and_their_keyring_are_read_from_source() {
    let config = expect_ok(
        "[source]\nkeys = \"me\"\nkeyring = \"file\"\nkeyring_file = \"/k/keys.age\"\nkeyring_passphrase_file = \"/run/pass\"\n",
    );
    assert_eq!(config.source.keys.as_deref(), Some("me"));
    assert_eq!(
        config.source.keyring,
        crate::keys::KeyringSettings {
            backend: crate::keys::BackendKind::File,
            file: Some("/k/keys.age".into()),
            passphrase_file: Some("/run/pass".into()),
        }
    );
    // Unset: no stored keys, the platform's keyring.
    let config = expect_ok("[source]\n");
    assert_eq!(config.source.keys, None);
    assert_eq!(
        config.source.keyring,
        crate::keys::KeyringSettings::default()
    );
    let config = expect_ok("[source]\nkeyring = \"secret-service\"\n");
    assert_eq!(
        config.source.keyring.backend,
        crate::keys::BackendKind::SecretService
    );
}

#[test]
fn keyring_settings_are_checked_where_they_stand() {
    expect_one(
        "[source]\nkeyring = \"kwallet\"\n",
        "2:11: keyring \"kwallet\" is not a keyring: use \"secret-service\", \"keychain\" or \"file\"",
    );
    expect_one(
        "[source]\nkeys = \"a b\"\n",
        "2:8: a key name must be 1-64 characters",
    );
    expect_one("[source]\nkeys = \"\"\n", "2:8: a key name must be");
    expect_one(
        "[source]\nkeyring = \"file\"\nkeyring_file = \"keys.age\"\n",
        "3:16: keyring_file \"keys.age\" must be an absolute path or start with ~/",
    );
    expect_one(
        "[source]\nkeyring = \"secret-service\"\nkeyring_passphrase_file = \"/p\"\n",
        "3:27: keyring_passphrase_file needs keyring = \"file\": the secret-service keyring does not use it",
    );
    expect_one(
        "[source]\nprofile = \"p\"\nkeys = \"me\"\n",
        "3:8: keys and profile are mutually exclusive in [source]",
    );
}

#[test]
fn source_keys_is_a_source_of_its_own() {
    let config = expect_ok(&role("source_keys = \"ops\""));
    assert_eq!(config.roles["dev"].source_keys.as_deref(), Some("ops"));
    expect_one(
        &role("source_keys = \"ops\"\nsource_profile = \"p\""),
        "3:15: source_keys and source_profile are mutually exclusive",
    );
    expect_one(
        &format!("{ROLE}source_keys = \"ops\"\nvia = \"hub\"\n[roles.hub]\nprofile = \"h\"\n"),
        "3:15: source_keys and via are mutually exclusive",
    );
    expect_one(
        "[roles.p]\nprofile = \"p\"\nsource_keys = \"ops\"\n",
        "3:1: source_keys needs role_arn",
    );
    expect_one(&role("source_keys = 3"), "3:15: source_keys");
}

#[test]
fn console_isolation_is_a_boolean_or_its_name() {
    let isolate = |value: &str| expect_ok(&format!("[console]\nisolate = {value}\n")).console;
    assert_eq!(isolate("true").isolate, Isolation::Profile);
    assert_eq!(isolate("\"profile\"").isolate, Isolation::Profile);
    assert_eq!(isolate("\"container\"").isolate, Isolation::Container);
    assert_eq!(isolate("false").isolate, Isolation::Shared);
    assert_eq!(isolate("\"none\"").isolate, Isolation::Shared);
    assert_eq!(expect_ok(ROLE).console, ConsoleConfig::default());
    let console = expect_ok("[console]\nbrowser = \"firefox\"\n").console;
    assert_eq!(console.browser.as_deref(), Some("firefox"));

    expect_one(
        "[console]\nisolate = \"tabs\"\n",
        "2:11: isolate: expected true, false, \"profile\", \"container\" or \"none\", found a string",
    );
    expect_one("[console]\nisolate = 1\n", "2:11: found an integer");
    expect_one("[console]\nbrowser = \"\"\n", "2:11: ");
    expect_one(
        "[console]\nisolation = true\n",
        "2:1: unknown key \"isolation\" in [console]",
    );
}

#[test]
fn confirm_names_what_an_approval_covers_and_its_times_need_it() {
    let confirm = |lines: &str| expect_ok(&role(lines)).roles["dev"].confirm;
    let program = Some(Confirm {
        scope: ConfirmScope::Program,
        lasts: Confirm::DEFAULT_LASTS,
        timeout: Confirm::DEFAULT_TIMEOUT,
    });
    assert_eq!(confirm("confirm = true"), program);
    assert_eq!(confirm("confirm = \"once-per-program\""), program);
    assert_eq!(confirm("confirm = false"), None);
    assert_eq!(expect_ok(ROLE).roles["dev"].confirm, None);
    assert_eq!(
        confirm("confirm = \"each-process\"\nconfirm_for = \"1h\"\nconfirm_timeout = \"2m\""),
        Some(Confirm {
            scope: ConfirmScope::Process,
            lasts: Duration::from_secs(3600),
            timeout: Duration::from_secs(120),
        })
    );
    expect_one(
        &role("confirm = \"always\""),
        "3:11: confirm: expected true, false, \"once-per-program\" or \"each-process\", found a string",
    );
    expect_one(
        &role("confirm_for = \"8h\""),
        "3:15: confirm_for needs confirm = true in the same role",
    );
    expect_one(&role("confirm = true\nconfirm_timeout = \"0s\""), "4:19: ");
}
