//! The daemon with stored keys as its source (`[source] keys`): a real
//! gnome-keyring on a private bus (`harness::TestKeyring`), keys stored
//! with `assumed keys add --stdin`, a home whose `~/.aws/credentials`
//! holds other keys (and the daemon's environment a third pair), and real
//! clients. Which key signed each STS call is what StsProxy recorded.

use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::harness::daemon::{Daemon, Options, base_env, binary};
use crate::harness::{DEV_ALICE, DEV_ALICE_ARN, StsProxy, TestKeyring, python, run};

const STORED_ID: &str = "AKIASTOREDKEYS000001";
const STORED_SECRET: &str = "stored/secret/never+printed0000000000001";
/// The user's plaintext keys, which the stored ones must win over.
const PLAINTEXT_ID: &str = "AKIAPLAINTEXT0000001";
const CREDENTIALS: &str = "[default]\naws_access_key_id = AKIAPLAINTEXT0000001\naws_secret_access_key = plaintext-secret\n";

/// `assumed keys add NAME --stdin --no-check`, the two lines on stdin, into
/// `keyring`'s Secret Service, from a home of its own.
async fn store_keys(keyring: &TestKeyring, name: &str, id: &str, secret: &str) {
    let home = tempfile::tempdir().expect("home");
    let mut command = Command::new(binary());
    command
        .args(["keys", "add", name, "--stdin", "--no-check"])
        .env_clear()
        .envs(base_env(home.path()))
        .envs(keyring.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("assumed keys add");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{id}\n{secret}\n").as_bytes())
            .await
            .expect("write the keys");
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("keys add ends")
        .expect("keys add output");
    assert!(
        output.status.success(),
        "keys add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A daemon signing role `dev` with the stored keys `alice`, in a home with
/// other plaintext keys; `server` adds `[server]` lines.
fn options(proxy: &StsProxy, keyring: &TestKeyring, server: &str, roles: &str) -> Options {
    let mut options = Options::new(&proxy.url(), roles)
        .source("keys = \"alice\"\nkeyring = \"secret-service\"")
        .server(server)
        .aws_files("", CREDENTIALS);
    for (name, value) in keyring.env() {
        options = options.env(&name, &value);
    }
    options
}

async fn start(options: Options) -> Daemon {
    Daemon::start_with(options).await
}

/// What a client of role `dev` gets: the daemon's container endpoint, and
/// (as `assumed env` arranges) no plaintext keys of the daemon's home ahead
/// of it in the chain: boto3 and the CLI read ~/.aws/credentials first.
fn client_env(daemon: &Daemon) -> Vec<(String, String)> {
    let empty = daemon.dir.path().join("client-credentials");
    std::fs::write(&empty, "").expect("client credentials");
    let mut env = daemon.client_env("dev");
    env.retain(|(name, _)| name != "AWS_SHARED_CREDENTIALS_FILE");
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        empty.display().to_string(),
    ));
    env
}

/// boto3 (tests/clients/whoami.py) through the container endpoint: the ARN.
async fn boto3_arn(daemon: &Daemon) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/whoami.py");
    let output = run(Command::new(python())
        .args([script, "1"])
        .env_clear()
        .envs(client_env(daemon)))
    .await;
    assert!(
        output.status.success(),
        "boto3: {}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    crate::harness::clients::arn_of(&output.stdout).expect("an ARN")
}

#[tokio::test]
async fn stored_keys_sign_for_boto3_and_the_aws_cli_and_survive_a_restart() {
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    let daemon = start(options(&proxy, &keyring, "", DEV_ALICE)).await;

    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
    let signed = proxy.first("AssumeRole").expect("an AssumeRole");
    assert_eq!(
        signed.access_key_id.as_deref(),
        Some(STORED_ID),
        "the stored keys sign, not ~/.aws/credentials' nor the environment's"
    );
    assert!(
        proxy
            .calls()
            .iter()
            .all(|call| call.access_key_id.as_deref() != Some(PLAINTEXT_ID)),
        "{:?}",
        proxy.calls()
    );

    // The AWS CLI (v1, through boto's chain) takes the same role.
    let output = run(Command::new(python())
        .args([
            "-m",
            "awscli",
            "sts",
            "get-caller-identity",
            "--output",
            "json",
        ])
        .args(["--endpoint-url", &proxy.url()])
        .env_clear()
        .envs(client_env(&daemon)))
    .await;
    assert!(
        output.status.success(),
        "aws: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        crate::harness::clients::arn_of(&output.stdout).as_deref(),
        Some(DEV_ALICE_ARN)
    );

    // status names the keyring and the keys in memory, never the secret.
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["keyring"]["backend"], "secret-service");
    assert_eq!(status["keyring"]["state"], "unlocked");
    assert_eq!(status["keyring"]["keys"][0]["name"], "alice");
    assert_eq!(status["keyring"]["keys"][0]["key_id_last4"], "0001");
    assert!(!daemon.log().contains(STORED_SECRET));

    // A restart reads them again from the keyring.
    drop(daemon);
    let before = proxy.count("AssumeRole");
    let daemon = start(options(&proxy, &keyring, "", DEV_ALICE)).await;
    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
    assert_eq!(proxy.count("AssumeRole"), before + 1);
    let signed = proxy.last("AssumeRole").expect("an AssumeRole");
    assert_eq!(signed.access_key_id.as_deref(), Some(STORED_ID));
}

#[tokio::test]
async fn a_locked_keyring_answers_keyring_locked_at_once_and_recovers_when_unlocked() {
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    keyring.lock().await;

    // notify-send that writes what it was asked to show.
    let bin = tempfile::tempdir().expect("bin dir");
    let notifications = bin.path().join("notifications");
    let script = bin.path().join("notify-send");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\n",
            notifications.display()
        ),
    )
    .expect("notify-send");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let daemon =
        start(options(&proxy, &keyring, "notify = true", DEV_ALICE).env("PATH", &path)).await;

    let started = Instant::now();
    let answer = daemon.get("/role/dev").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the keyring's deadline, not after a hang"
    );
    assert_eq!(answer.status, 503, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["code"], "KeyringLocked", "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("locked"), "{message}");
    assert!(message.contains("assumed keys list"), "{message}");
    assert!(!message.to_lowercase().contains("missing"), "{message}");
    assert_eq!(
        proxy.count("AssumeRole"),
        0,
        "nothing signed with other keys"
    );

    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    assert_eq!(status["keyring"]["state"], "locked", "{status}");
    assert_eq!(status["roles"][0]["state"], "keyring-locked", "{status}");
    let table = run(daemon.cli().arg("status")).await;
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("Keyring: secret-service (locked)"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    // One notification for the keyring, however many requests fail.
    for _ in 0..3 {
        assert_eq!(daemon.get("/role/dev").await.status, 503);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let told = || std::fs::read_to_string(&notifications).unwrap_or_default();
    while !told().contains("keyring is locked") {
        assert!(
            Instant::now() < deadline,
            "no notification: {}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(told().lines().count(), 1, "{}", told());

    // Unlocked from elsewhere: the role recovers with no restart.
    keyring.unlock().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = daemon.get("/role/dev").await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.json()["code"], "KeyringLocked");
        assert!(
            Instant::now() < deadline,
            "no recovery after the unlock: {}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let signed = proxy.last("AssumeRole").expect("an AssumeRole");
    assert_eq!(signed.access_key_id.as_deref(), Some(STORED_ID));
    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
}

#[tokio::test]
async fn credential_process_keys_prints_a_cached_session_never_the_stored_keys() {
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    let daemon = start(options(&proxy, &keyring, "", DEV_ALICE)).await;

    let mut printed = Vec::new();
    for _ in 0..2 {
        let output = run(daemon.cli().args(["credential-process", "--keys", "alice"])).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(!text.contains(STORED_SECRET), "{text}");
        printed.push(serde_json::from_str::<serde_json::Value>(&text).expect("JSON"));
    }
    let session = &printed[0];
    assert_eq!(session["Version"], 1);
    assert_ne!(session["AccessKeyId"], STORED_ID);
    assert!(
        session["SessionToken"]
            .as_str()
            .is_some_and(|token| !token.is_empty()),
        "{session}"
    );
    assert!(session["Expiration"].as_str().is_some(), "{session}");
    assert_eq!(printed[0], printed[1], "cached in the daemon");
    assert_eq!(proxy.count("GetSessionToken"), 1);
    let call = proxy.first("GetSessionToken").expect("GetSessionToken");
    assert_eq!(call.access_key_id.as_deref(), Some(STORED_ID));

    // A profile of ~/.aws/config uses it as its credential_process.
    let config = daemon.dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile stored]\ncredential_process = {} --config {} credential-process --keys alice\n",
            binary(),
            daemon.config_path.display()
        ),
    )
    .expect("aws config");
    let output = run(Command::new(python())
        .args([
            "-m",
            "awscli",
            "sts",
            "get-caller-identity",
            "--output",
            "json",
        ])
        .args(["--profile", "stored", "--endpoint-url", &proxy.url()])
        .env_clear()
        .envs(base_env(daemon.dir.path())))
    .await;
    assert!(
        output.status.success(),
        "aws --profile stored: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let call = proxy.last("GetCallerIdentity").expect("GetCallerIdentity");
    assert_eq!(
        call.access_key_id,
        session["AccessKeyId"].as_str().map(str::to_owned)
    );
}

#[tokio::test]
async fn an_mfa_code_opens_a_session_of_the_stored_keys_that_signs_the_role() {
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    let roles = format!("{DEV_ALICE}mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"\n");
    let daemon = start(options(&proxy, &keyring, "", &roles)).await;
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.json()["code"], "MfaRequired", "{}", answer.body);

    let output = run(daemon.cli().args(["mfa", "dev", "123456"])).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let opened = proxy.first("GetSessionToken").expect("GetSessionToken");
    assert_eq!(opened.access_key_id.as_deref(), Some(STORED_ID));
    assert_eq!(
        opened.params.get("SerialNumber").map(String::as_str),
        Some("arn:aws:iam::111111111111:mfa/alice")
    );
    let assumed = proxy.last("AssumeRole").expect("AssumeRole");
    assert_ne!(assumed.access_key_id.as_deref(), Some(STORED_ID));
    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
}

#[tokio::test]
async fn keys_stored_again_are_used_at_once_when_the_daemon_is_told() {
    const NEW_ID: &str = "AKIASTOREDKEYS000002";
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    let daemon = start(options(&proxy, &keyring, "", DEV_ALICE)).await;
    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
    assert_eq!(proxy.count("AssumeRole"), 1);

    // What `keys rotate` does: new keys under the same name, then the
    // daemon is told (daemon_client::tell_keys_changed).
    store_keys(
        &keyring,
        "alice",
        NEW_ID,
        "second/secret0000000000000000000000000002",
    )
    .await;
    let client = reqwest::Client::new();
    let refused = client
        .post(daemon.url("/admin/keys/reload"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401, "admin routes take the token");
    let told = client
        .post(daemon.url("/admin/keys/reload"))
        .header("authorization", daemon.token())
        .send()
        .await
        .expect("request");
    assert_eq!(told.status(), 200);
    let told: serde_json::Value =
        serde_json::from_str(&told.text().await.expect("body")).expect("JSON");
    assert!(
        told["message"]
            .as_str()
            .is_some_and(|m| m.contains("alice (…0002)")),
        "{told}"
    );
    assert_eq!(told["refetched"], serde_json::json!(["dev"]));
    assert!(
        proxy
            .wait_for("AssumeRole", 2, Duration::from_secs(10))
            .await,
        "the role is fetched again with the new keys: {}",
        daemon.log()
    );
    let signed = proxy.last("AssumeRole").expect("AssumeRole");
    assert_eq!(signed.access_key_id.as_deref(), Some(NEW_ID));
}

#[tokio::test]
async fn a_reload_that_adds_stored_keys_names_them_and_switches_the_roles_to_them() {
    let keyring = TestKeyring::start().await;
    let proxy = StsProxy::start().await;
    store_keys(&keyring, "alice", STORED_ID, STORED_SECRET).await;
    let mut options = Options::new(&proxy.url(), DEV_ALICE).aws_files("", CREDENTIALS);
    for (name, value) in keyring.env() {
        options = options.env(&name, &value);
    }
    let daemon = start(options).await;
    assert_eq!(boto3_arn(&daemon).await, DEV_ALICE_ARN);
    let before = proxy.last("AssumeRole").expect("AssumeRole");
    assert_ne!(before.access_key_id.as_deref(), Some(STORED_ID));

    let config = std::fs::read_to_string(&daemon.config_path).expect("config");
    let config = config.replacen("[source]\n", "[source]\nkeys = \"alice\"\n", 1);
    std::fs::write(&daemon.config_path, config).expect("config");
    let said = daemon.reload().await;
    assert!(
        said.contains("[source] keys changed (role dev fetched again)"),
        "{said}"
    );
    assert!(
        said.contains("stored keys alice (…0001) read from the secret-service keyring"),
        "{said}"
    );
    assert!(
        proxy
            .wait_for("AssumeRole", 2, Duration::from_secs(10))
            .await,
        "{}",
        daemon.log()
    );
    let signed = proxy.last("AssumeRole").expect("AssumeRole");
    assert_eq!(signed.access_key_id.as_deref(), Some(STORED_ID));
}
