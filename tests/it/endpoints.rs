//! Every role, configured in the TOML or imported from `~/.aws/config`, finds
//! STS where the user's SDK would (docs/aws-config.md, "Where STS calls go"):
//! for each way of saying where, both kinds of role are served through the
//! proxy named that way, and `status --json` and `doctor` name the endpoint
//! and the setting. Every other endpoint a case configures is a loopback
//! port nobody listens on, so a role that followed the wrong one fails.

use crate::harness::daemon::{base_env, binary};
use crate::harness::netns::{self, Netns};
use crate::harness::{Daemon, Options, StsProxy, free_port, run};

/// A `[roles]` entry with no `source_profile`: the default chain signs
/// (the daemon's environment keys), `[default]`'s endpoint settings count.
const CONFIGURED: &str =
    "[roles.configured]\nrole_arn = \"arn:aws:iam::111111111111:role/configured\"\n";

/// The user's own keys, in `~/.aws/credentials`.
const CREDENTIALS: &str =
    "[default]\naws_access_key_id = AKIAUSERDEFAULT00001\naws_secret_access_key = user-secret\n";

/// One way of configuring the endpoint.
struct Case {
    name: &'static str,
    /// Lines of `[default]`, of `[profile imported]` (beyond its role_arn and
    /// `source_profile = default`), and other sections of `~/.aws/config`.
    default: String,
    imported: String,
    sections: String,
    /// The daemon's environment.
    env: Vec<(&'static str, String)>,
    /// `[source] sts_endpoint` (empty: none) and extra `[roles.configured]` lines.
    source_endpoint: String,
    configured: String,
    /// The roles this way applies to, each with the setting status must name.
    expect: Vec<(&'static str, String)>,
}

fn aws_config(case: &Case) -> String {
    format!(
        "[default]\nregion = us-east-1\n{}\n\
         [profile imported]\nrole_arn = arn:aws:iam::222222222222:role/imported\n\
         source_profile = default\n{}\n{}\n",
        case.default, case.imported, case.sections
    )
}

fn cases(proxy: &str, dead: &str) -> Vec<Case> {
    let both = |from: &str| {
        vec![
            ("configured", from.to_owned()),
            ("imported", from.to_owned()),
        ]
    };
    let case = |name| Case {
        name,
        default: String::new(),
        imported: String::new(),
        sections: String::new(),
        env: Vec::new(),
        source_endpoint: String::new(),
        configured: String::new(),
        expect: Vec::new(),
    };
    vec![
        Case {
            default: format!("endpoint_url = {dead}"),
            env: vec![("AWS_ENDPOINT_URL_STS", proxy.into())],
            expect: both("AWS_ENDPOINT_URL_STS"),
            ..case("AWS_ENDPOINT_URL_STS beats every profile setting")
        },
        Case {
            default: format!("endpoint_url = {dead}"),
            env: vec![("AWS_ENDPOINT_URL", proxy.into())],
            expect: both("AWS_ENDPOINT_URL"),
            ..case("AWS_ENDPOINT_URL beats every profile setting")
        },
        Case {
            default: format!("endpoint_url = {proxy}"),
            expect: both("endpoint_url of profile default"),
            ..case("[default] endpoint_url, the source profile's")
        },
        Case {
            default: format!("endpoint_url = {dead}\nservices = local"),
            sections: format!("[services local]\nsts =\n  endpoint_url = {proxy}\n"),
            expect: both("the sts endpoint_url of [services local] (profile default)"),
            ..case("the services section beats the profile's endpoint_url")
        },
        Case {
            default: format!("endpoint_url = {dead}"),
            env: vec![
                ("AWS_ENDPOINT_URL_STS", dead.into()),
                ("AWS_ENDPOINT_URL", dead.into()),
            ],
            source_endpoint: proxy.into(),
            expect: both("[source] sts_endpoint"),
            ..case("[source] sts_endpoint beats environment and profiles")
        },
        Case {
            env: vec![("AWS_ENDPOINT_URL_STS", dead.into())],
            source_endpoint: dead.into(),
            configured: format!("sts_endpoint = \"{proxy}\"\n"),
            expect: vec![("configured", "[roles.configured] sts_endpoint".into())],
            ..case("a [roles] entry's own sts_endpoint beats [source] and the environment")
        },
        Case {
            default: format!("endpoint_url = {dead}"),
            imported: format!("endpoint_url = {proxy}"),
            expect: vec![("imported", "endpoint_url of profile imported".into())],
            ..case("an imported profile's own endpoint_url beats its source profile's")
        },
    ]
}

#[tokio::test]
async fn every_role_follows_each_way_of_configuring_the_sts_endpoint() {
    let proxy = StsProxy::start().await;
    // Nothing listens there: a role that went there would fail.
    let dead = format!("http://127.0.0.1:{}", free_port());
    for case in cases(&proxy.url(), &dead) {
        let name = case.name;
        let mut options = Options::new(
            &case.source_endpoint,
            &format!("{CONFIGURED}{}", case.configured),
        )
        .aws_files(&aws_config(&case), CREDENTIALS);
        for (variable, value) in &case.env {
            options = options.env(variable, value);
        }
        let daemon = Daemon::start_with(options).await;
        for (role, from) in &case.expect {
            let before = proxy.count("AssumeRole");
            let answer = daemon.get(&format!("/role/{role}")).await;
            assert_eq!(
                answer.status,
                200,
                "{name}: role {role}: {}\n{}",
                answer.body,
                daemon.log()
            );
            assert_eq!(
                proxy.count("AssumeRole"),
                before + 1,
                "{name}: role {role} was assumed through the proxy"
            );
            let status = status_json(&daemon).await;
            let endpoint = role_endpoint(&status, role);
            assert_eq!(endpoint["url"], proxy.url(), "{name}: {role}: {status}");
            assert_eq!(endpoint["from"], from.as_str(), "{name}: {role}: {status}");
            let doctor = run(daemon.cli().args(["doctor", role, "--json"])).await;
            let report = String::from_utf8_lossy(&doctor.stdout);
            let named = format!("STS endpoint {} (from {from})", proxy.url());
            assert!(
                report.contains(&named),
                "{name}: doctor names {named:?} for {role}: {report}"
            );
        }
    }
}

/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` skips the environment's and the
/// profiles' endpoints (not the daemon's own settings): the roles go to the
/// SDK's regional endpoint, which in this namespace (loopback only) nothing
/// answers, so no packet leaves it, and never to the configured proxy.
#[tokio::test]
async fn ignoring_configured_endpoints_sends_no_role_to_them() {
    let Some(netns) = netns::or_skip(Netns::create(), "ignore_configured_endpoint_urls test")
    else {
        return;
    };
    let proxy = StsProxy::start_in(&netns).await;
    let url = proxy.url();
    let case = Case {
        name: "ignored",
        default: format!("endpoint_url = {url}\nservices = local"),
        imported: String::new(),
        sections: format!("[services local]\nsts =\n  endpoint_url = {url}\n"),
        env: Vec::new(),
        source_endpoint: String::new(),
        configured: String::new(),
        expect: Vec::new(),
    };
    let mut options = Options::new("", CONFIGURED)
        .aws_files(&aws_config(&case), CREDENTIALS)
        .env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
        .env("AWS_ENDPOINT_URL_STS", &url)
        .env("AWS_ENDPOINT_URL", &url);
    options.netns = Some(netns.name().to_owned());
    let daemon = Daemon::start_with(options).await;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.port));
    let token = daemon.token();
    for role in ["configured", "imported"] {
        let (status, body) = netns
            .http_get(
                address,
                &format!("/role/{role}"),
                &[("authorization", &token)],
            )
            .await
            .expect("the daemon answers inside the namespace");
        assert_ne!(status, 200, "{role} cannot have been assumed: {body}");
    }
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "no role reached the configured proxy"
    );
    let (_, body) = netns
        .http_get(address, "/admin/status", &[("authorization", &token)])
        .await
        .expect("status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    for role in ["configured", "imported"] {
        let endpoint = role_endpoint(&status, role);
        assert_eq!(
            endpoint["url"], "https://sts.us-east-1.amazonaws.com",
            "{status}"
        );
        let from = endpoint["from"].as_str().unwrap_or_default();
        assert!(
            from.contains("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true"),
            "{role}: {from}"
        );
    }
    let doctor = run(netns
        .command(binary())
        .arg("--config")
        .arg(&daemon.config_path)
        .args(["doctor", "imported", "--json"])
        .env_clear()
        .envs(base_env(daemon.dir.path())))
    .await;
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("STS endpoint https://sts.us-east-1.amazonaws.com (from the SDK's regional endpoint (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true"),
        "{report}"
    );
    assert_eq!(proxy.count("AssumeRole"), 0);
}

async fn status_json(daemon: &Daemon) -> serde_json::Value {
    let output = run(daemon.cli().args(["status", "--json"])).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn role_endpoint<'a>(status: &'a serde_json::Value, role: &str) -> &'a serde_json::Value {
    let found = status["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["name"] == role));
    match found {
        Some(found) => &found["sts_endpoint"],
        None => panic!("no role {role} in {status}"),
    }
}
