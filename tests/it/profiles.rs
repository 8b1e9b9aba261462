//! The AWS config people already have: `~/.aws/config` profiles served as
//! roles, and sources (SSO, credential_process, web identity) that need a
//! person, saying exactly what to do.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::harness::netns::{self, Netns};
use crate::harness::sso_stub::{SSO_ACCESS_KEY_ID, SsoStub};
use crate::harness::{Daemon, Options, StsProxy, python, run};

const BASE_KEY: &str = "AKIAPROFILEBASE";

const PROFILES: &str = r#"
[profile p1]
role_arn = arn:aws:iam::111111111111:role/p1
source_profile = base
role_session_name = carol

[profile p2]
role_arn = arn:aws:iam::222222222222:role/p2
source_profile = p1
external_id = ext-p2
duration_seconds = 1800

[profile not-a-role]
region = eu-west-1
"#;

fn credentials() -> String {
    format!("[base]\naws_access_key_id = {BASE_KEY}\naws_secret_access_key = base-secret\n")
}

/// Profiles only: no `[roles]`, STS reached as the profiles would (the env).
fn options(proxy: &StsProxy, aws_config: &str, credentials: &str) -> Options {
    let mut options = Options::new(&proxy.url(), "").aws_files(aws_config, credentials);
    options = options.env("AWS_ENDPOINT_URL_STS", &proxy.url());
    options
}

#[tokio::test]
async fn zero_config_serves_every_role_profile_to_boto3() {
    // No config file means the default 127.0.0.1:9911, which a contributor's
    // own daemon may hold: the daemon and its client get a loopback of
    // their own in a network namespace.
    let Some(netns) = netns::or_skip(Netns::create(), "zero-config test") else {
        return;
    };
    let proxy = StsProxy::start_in(&netns).await;
    let mut options = options(&proxy, PROFILES, &credentials());
    options.zero_config = true;
    options.netns = Some(netns.name().to_owned());
    let daemon = Daemon::start_with(options).await;
    let whoami = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/whoami.py");
    let output = run(netns
        .command(&python())
        .arg(whoami)
        .env_clear()
        .envs(daemon.client_env("p1")))
    .await;
    assert!(
        output.status.success(),
        "boto3: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("whoami JSON");
    assert_eq!(
        result["arn"],
        "arn:aws:sts::111111111111:assumed-role/p1/carol"
    );
    assert_eq!(
        proxy.calls()[0].access_key_id.as_deref(),
        Some(BASE_KEY),
        "signed by the source profile's keys"
    );
    let token = daemon.token();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], 9911));
    let (status, _) = netns
        .http_get(address, "/role/not-a-role", &[("authorization", &token)])
        .await
        .expect("GET inside the namespace");
    assert_eq!(status, 404, "only profiles with role_arn");

    let roles = run(daemon.cli().arg("roles")).await;
    let roles = String::from_utf8_lossy(&roles.stdout);
    assert!(
        roles.contains("p1") && roles.contains("~/.aws/config profile p1"),
        "{roles}"
    );
}

#[tokio::test]
async fn a_two_hop_source_profile_chain_assumes_each_hop_in_order() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(options(&proxy, PROFILES, &credentials())).await;
    let answer = daemon.get("/role/p2").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    assert_eq!(answer.json()["AccountId"], "222222222222");
    let calls = proxy.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].params["RoleArn"],
        "arn:aws:iam::111111111111:role/p1"
    );
    assert_eq!(calls[0].access_key_id.as_deref(), Some(BASE_KEY));
    assert_eq!(
        calls[1].params["RoleArn"],
        "arn:aws:iam::222222222222:role/p2"
    );
    assert_eq!(calls[1].params["ExternalId"], "ext-p2");
    assert_eq!(calls[1].params["DurationSeconds"], "1800");
    let p1_key = daemon.get("/role/p1").await.json()["AccessKeyId"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        calls[1].access_key_id, p1_key,
        "p2 is signed by p1's session"
    );
}

#[tokio::test]
async fn roles_in_the_config_win_and_import_can_be_turned_off() {
    let proxy = StsProxy::start().await;
    let own_p1 = "[roles.p1]\nrole_arn = \"arn:aws:iam::333333333333:role/mine\"\n";
    let mut with_role = options(&proxy, PROFILES, &credentials());
    with_role.roles = own_p1.into();
    let daemon = Daemon::start_with(with_role).await;
    assert_eq!(
        daemon.get("/role/p1").await.json()["RoleArn"],
        "arn:aws:iam::333333333333:role/mine"
    );
    assert_eq!(
        daemon.get("/role/p2").await.status,
        200,
        "other profiles are still imported"
    );

    let mut no_import = options(&proxy, PROFILES, &credentials()).server("import_profiles = false");
    no_import.roles = own_p1.into();
    let daemon = Daemon::start_with(no_import).await;
    assert_eq!(daemon.get("/role/p1").await.status, 200);
    assert_eq!(
        daemon.get("/role/p2").await.status,
        404,
        "import_profiles = false"
    );
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

#[tokio::test]
async fn a_credential_process_source_works_and_its_failure_is_explained() {
    let proxy = StsProxy::start().await;
    let scripts = tempfile::tempdir().expect("dir");
    let ok = script(
        scripts.path(),
        "ok.sh",
        r#"echo '{"Version":1,"AccessKeyId":"AKIAPROCESSKEY","SecretAccessKey":"process-secret"}'"#,
    );
    let failing = script(
        scripts.path(),
        "fail.sh",
        "echo 'vault is locked: run vault unlock' >&2\nexit 3",
    );
    let config = format!(
        "[profile proc]\ncredential_process = {ok}\n\n[profile broken]\ncredential_process = {failing}\n\n\
         [profile p-proc]\nrole_arn = arn:aws:iam::111111111111:role/proc\nsource_profile = proc\n\n\
         [profile p-broken]\nrole_arn = arn:aws:iam::111111111111:role/broken\nsource_profile = broken\n"
    );
    let daemon = Daemon::start_with(options(&proxy, &config, "")).await;
    assert_eq!(daemon.get("/role/p-proc").await.status, 200);
    assert_eq!(
        proxy.calls()[0].access_key_id.as_deref(),
        Some("AKIAPROCESSKEY")
    );

    let broken = daemon.get("/role/p-broken").await;
    assert_eq!(broken.status, 503);
    let json = broken.json();
    assert_eq!(json["code"], "CredentialProcessFailed");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("credential_process of profile broken")),
        "{json}"
    );
    assert!(
        !broken.body.contains("vault is locked"),
        "the script's output stays out of the HTTP answer"
    );
    assert!(
        daemon.log().contains("vault is locked: run vault unlock"),
        "but is in the log:\n{}",
        daemon.log()
    );
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let broken = status["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["name"] == "p-broken")
        .cloned();
    assert_eq!(broken.expect("listed")["state"], "needs-login");
}

const SSO_CONFIG: &str = r#"
[profile sso-src]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = Developer
region = us-east-1

[sso-session corp]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1

[profile p-sso]
role_arn = arn:aws:iam::111111111111:role/from-sso
source_profile = sso-src

[profile legacy-sso]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 111111111111
sso_role_name = Developer

[profile p-legacy]
role_arn = arn:aws:iam::111111111111:role/from-legacy-sso
source_profile = legacy-sso
"#;

fn write_sso_token(home: &std::path::Path, expires_in: i64) {
    let cache = home.join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).expect("mkdir");
    let expires = std::time::SystemTime::now()
        .checked_add(Duration::from_secs(expires_in.max(0) as u64))
        .and_then(|t| t.checked_sub(Duration::from_secs((-expires_in).max(0) as u64)))
        .expect("time");
    let token = serde_json::json!({
        "startUrl": "https://example.awsapps.com/start",
        "region": "us-east-1",
        "accessToken": "valid-sso-token",
        "expiresAt": crate::harness::utc_timestamp(expires),
    });
    // The cache file of an sso-session is named by the SHA-1 of the session name ("corp").
    std::fs::write(
        cache.join("ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
        token.to_string(),
    )
    .expect("token");
}

#[tokio::test]
async fn an_expired_sso_login_names_the_command_and_a_new_login_is_picked_up() {
    let proxy = StsProxy::start().await;
    let sso = SsoStub::start("valid-sso-token").await;
    let mut with_sso = options(&proxy, SSO_CONFIG, "").env("AWS_ENDPOINT_URL_SSO", &sso.url());
    with_sso.roles = "[roles.sso-dev]\nprofile = \"sso-src\"\n".into();
    let daemon = Daemon::start_with(with_sso).await;
    write_sso_token(daemon.dir.path(), -3600);

    let expired = daemon.get("/role/p-sso").await;
    assert_eq!(expired.status, 503, "{}", expired.body);
    let json = expired.json();
    assert_eq!(json["code"], "SsoLoginRequired");
    assert!(
        json["message"]
            .as_str()
            .is_some_and(|m| m.contains("run: aws sso login --sso-session corp")),
        "{json}"
    );
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let p_sso = status["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|r| r["name"] == "p-sso")
        .cloned();
    assert_eq!(p_sso.expect("listed")["state"], "needs-login");
    assert_eq!(proxy.count("AssumeRole"), 0);

    let legacy = daemon.get("/role/p-legacy").await.json();
    assert!(
        legacy["message"]
            .as_str()
            .is_some_and(|m| m.contains("run: aws sso login --profile legacy-sso")),
        "{legacy}"
    );

    // The user logs in: a fresh token in the cache, no restart, and no wait
    // for the failure's hold to pass (the login is seen at once).
    write_sso_token(daemon.dir.path(), 8 * 3600);
    let answer = daemon.get("/role/p-sso").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    let assume = proxy.first("AssumeRole").expect("AssumeRole");
    assert_eq!(
        assume.access_key_id.as_deref(),
        Some(SSO_ACCESS_KEY_ID),
        "signed with the SSO role credentials"
    );

    // A profile that is not a role is served as its own temporary credentials.
    let own = daemon.get("/role/sso-dev").await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["AccessKeyId"], SSO_ACCESS_KEY_ID);
    assert_eq!(
        own.json()["RoleArn"],
        "arn:aws:iam::111111111111:role/Developer"
    );
}

#[tokio::test]
async fn web_identity_profiles_are_assumed_with_their_token() {
    let proxy = StsProxy::start().await;
    let tokens = tempfile::tempdir().expect("dir");
    let token = tokens.path().join("token.jwt");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.sig").expect("token");
    let config = format!(
        "[profile wi]\nrole_arn = arn:aws:iam::111111111111:role/wi\nweb_identity_token_file = {}\n\n\
         [profile wi-missing]\nrole_arn = arn:aws:iam::111111111111:role/wi\nweb_identity_token_file = {}\n",
        token.display(),
        tokens.path().join("absent.jwt").display()
    );
    let daemon = Daemon::start_with(options(&proxy, &config, "")).await;
    let answer = daemon.get("/role/wi").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    let call = &proxy.calls()[0];
    assert_eq!(call.action, "AssumeRoleWithWebIdentity");
    assert_eq!(
        call.params["WebIdentityToken"],
        "eyJhbGciOiJSUzI1NiJ9.e30.sig"
    );
    let missing = daemon.get("/role/wi-missing").await;
    assert_eq!(missing.status, 503);
    assert_eq!(missing.json()["code"], "WebIdentityTokenUnavailable");
}

#[tokio::test]
async fn a_changed_aws_config_is_picked_up_on_reload() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(options(&proxy, PROFILES, &credentials())).await;
    assert_eq!(daemon.get("/role/p3").await.status, 404);
    let more = format!(
        "{PROFILES}\n[profile p3]\nrole_arn = arn:aws:iam::111111111111:role/p3\nsource_profile = base\n"
    );
    std::fs::write(daemon.dir.path().join("aws-config"), more).expect("write");
    assert!(daemon.reload().await.contains("p3 added"));
    assert_eq!(daemon.get("/role/p3").await.status, 200);
}

#[tokio::test]
async fn credential_source_environment_signs_with_the_daemons_environment() {
    let proxy = StsProxy::start().await;
    let config = "[profile p-env]\nrole_arn = arn:aws:iam::111111111111:role/env\ncredential_source = Environment\n\n\
                  [profile p-bad]\nrole_arn = arn:aws:iam::111111111111:role/bad\ncredential_source = Somewhere\n";
    let daemon = Daemon::start_with(options(&proxy, config, "")).await;
    assert_eq!(daemon.get("/role/p-env").await.status, 200);
    assert_eq!(
        proxy.calls()[0].access_key_id.as_deref(),
        Some(crate::harness::daemon::SOURCE_KEY_ID)
    );
    assert_eq!(
        daemon.get("/role/p-bad").await.status,
        404,
        "an unsupported credential_source is skipped"
    );
    assert!(
        daemon
            .log()
            .contains("credential_source \"Somewhere\" is not supported")
    );
}
