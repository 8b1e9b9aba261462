//! Moving long-term keys in (`keys import`, from `~/.aws/credentials` and
//! from aws-vault's keyring), rotating them against moto's IAM
//! (`keys rotate`, also killed half-way), and `doctor`'s warning about keys
//! left in plain text. A real gnome-keyring on a private bus holds the keys;
//! the user's home is a real one, `~/.aws` and all.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secret_service::{EncryptionType, SecretService};
use tokio::process::Command;
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::harness::daemon::binary;
use crate::harness::{
    DEV_ALICE, Daemon, Options, StsProxy, TestKeyring, free_port, moto_url, python, run,
};

/// A user's home with `~/.aws`, a config whose STS is the proxy (moto
/// behind it, which also serves IAM), and a keyring.
struct Home {
    dir: tempfile::TempDir,
    keyring: TestKeyring,
    proxy: StsProxy,
}

impl Home {
    async fn new() -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let proxy = StsProxy::start().await;
        std::fs::create_dir_all(dir.path().join(".aws")).expect("mkdir .aws");
        std::fs::create_dir_all(dir.path().join(".config/assumed")).expect("mkdir");
        std::fs::write(
            dir.path().join(".config/assumed/config.toml"),
            // A port of its own: the default one is held by scripts/test.
            format!(
                "[server]\nlisten = [\"127.0.0.1:{}\"]\n\n[source]\nsts_endpoint = \"{}\"\n",
                free_port(),
                proxy.url()
            ),
        )
        .expect("config");
        std::fs::write(
            dir.path().join(".aws/config"),
            "[default]\nregion = us-east-1\n",
        )
        .expect("aws config");
        Home {
            dir,
            keyring: TestKeyring::start().await,
            proxy,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn credentials(&self) -> PathBuf {
        self.path().join(".aws/credentials")
    }

    /// `assumed ARGS…` as the user runs it: their HOME, their files, their
    /// session bus; IAM found where an SDK finds it (AWS_ENDPOINT_URL_IAM).
    fn assumed(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(["--config"])
            .arg(self.path().join(".config/assumed/config.toml"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_RUNTIME_DIR", self.path().join("run"))
            .env("AWS_ENDPOINT_URL_IAM", self.proxy.url())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .envs(self.keyring.env())
            .kill_on_drop(true);
        command
    }

    /// Every keyring item's secret, parsed as JSON, outside aws-vault's collection.
    async fn stored(&self) -> Vec<serde_json::Value> {
        let service = self.keyring.service().await;
        let mut records = Vec::new();
        for collection in service.get_all_collections().await.expect("collections") {
            if collection.collection_path.as_str().ends_with("/awsvault") {
                continue;
            }
            for item in collection.get_all_items().await.expect("items") {
                let secret = item.get_secret().await.expect("secret");
                if let Ok(record) = serde_json::from_slice::<serde_json::Value>(&secret) {
                    records.push(record);
                }
            }
        }
        records
    }

    /// The stored record of `access_key_id`, if one is stored.
    async fn record_of(&self, access_key_id: &str) -> Option<serde_json::Value> {
        self.stored()
            .await
            .into_iter()
            .find(|r| r["access_key_id"] == access_key_id)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path);
            }
        }
    }
    found
}

const WORK_ID: &str = "AKIAWORKWORKWORK0001";
const WORK_SECRET: &str = "workSECRETworkSECRETworkSECRETwork000001";

/// Several profiles, comments, odd spacing, a CRLF section, a temporary
/// session and no newline at the end.
fn credentials_file() -> String {
    format!(
        "# my keys, do not share\n\
         [default]\n\
         aws_access_key_id = AKIADEFAULTDEFAULT01\n\
         aws_secret_access_key = defaultSECRETdefaultSECRETdefault000001\n\
         \n\
         ; work, from IT\r\n\
         [ work ]\r\n\
         region=eu-west-1\r\n\
         aws_access_key_id\t=   {WORK_ID}\r\n\
         # the secret:\r\n\
         AWS_SECRET_ACCESS_KEY={WORK_SECRET}   # rotated in May\r\n\
         output = json\r\n\
         \r\n\
         [temp]\n\
         aws_access_key_id = ASIATEMPTEMPTEMP0001\n\
         aws_secret_access_key = tempSECRET\n\
         aws_session_token = tempTOKEN\n\
         [last]\n\
         aws_access_key_id = AKIALASTLASTLAST0001\n\
         aws_secret_access_key = lastSECRET"
    )
}

#[tokio::test]
async fn import_remove_plaintext_moves_the_keys_and_leaves_every_other_byte() {
    let home = Home::new().await;
    let original = credentials_file();
    std::fs::write(home.credentials(), &original).expect("credentials");
    std::fs::set_permissions(home.credentials(), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");

    let output =
        run(&mut home.assumed(&["keys", "import", "--profile", "work", "--remove-plaintext"]))
            .await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains(WORK_SECRET) && !stderr.contains(WORK_SECRET));

    let expected = original
        .replace(&format!("aws_access_key_id\t=   {WORK_ID}\r\n"), "")
        .replace(
            &format!("AWS_SECRET_ACCESS_KEY={WORK_SECRET}   # rotated in May\r\n"),
            "",
        );
    assert_eq!(
        text(&std::fs::read(home.credentials()).expect("read")),
        expected
    );
    let mode = std::fs::metadata(home.credentials())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the mode is kept");

    let record = home
        .record_of(WORK_ID)
        .await
        .expect("stored in the keyring");
    assert_eq!(record["secret_access_key"], WORK_SECRET);
    assert_eq!(
        files_containing(home.path(), WORK_SECRET),
        Vec::<PathBuf>::new(),
        "no copy of the secret anywhere under the home"
    );

    // Doctor no longer names [work]; it still names the other plaintext keys.
    let output = run(&mut home.assumed(&["doctor", "--json"])).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&output.stderr)));
    let warned: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == "keys" && f["status"] == "warn")
        .map(|f| f["next"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        warned,
        [
            "assumed keys import --profile default --remove-plaintext",
            "assumed keys import --profile last --remove-plaintext"
        ]
    );
}

#[tokio::test]
async fn a_profile_with_a_session_token_is_refused_and_the_file_untouched() {
    let home = Home::new().await;
    std::fs::write(home.credentials(), credentials_file()).expect("credentials");
    let output =
        run(&mut home.assumed(&["keys", "import", "--profile", "temp", "--remove-plaintext"]))
            .await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("session token"), "{stderr}");
    assert!(!stderr.contains("tempSECRET") && !stderr.contains("tempTOKEN"));
    assert_eq!(
        text(&std::fs::read(home.credentials()).expect("read")),
        credentials_file()
    );
    assert!(home.record_of("ASIATEMPTEMPTEMP0001").await.is_none());
}

#[tokio::test]
async fn doctor_names_each_plaintext_key_by_file_and_line_and_the_keyring_state() {
    let home = Home::new().await;
    std::fs::write(home.credentials(), credentials_file()).expect("credentials");
    let doctor = || async {
        let output = run(&mut home.assumed(&["doctor", "--json"])).await;
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", text(&output.stderr)));
        assert!(!text(&output.stdout).contains("SECRET"));
        report["findings"].as_array().expect("findings").clone()
    };
    let findings = doctor().await;
    let path = home.credentials().display().to_string();
    let keys: Vec<(String, String)> = findings
        .iter()
        .filter(|f| f["check"] == "keys")
        .map(|f| {
            assert_eq!(f["status"], "warn", "{f}");
            (
                f["message"].as_str().unwrap_or_default().to_owned(),
                f["next"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [(3, "default"), (9, "work"), (19, "last")];
    assert_eq!(keys.len(), expected.len(), "{keys:?}");
    for ((message, next), (line, profile)) in keys.iter().zip(expected) {
        assert!(
            message.starts_with(&format!("{path}:{line}: profile [{profile}]")),
            "{message}"
        );
        assert_eq!(
            next,
            &format!("assumed keys import --profile {profile} --remove-plaintext")
        );
    }
    let keyring = findings
        .iter()
        .find(|f| f["check"] == "keyring")
        .expect("a keyring finding");
    assert_eq!(keyring["status"], "ok", "{keyring}");
    assert_eq!(keyring["message"], "secret-service: unlocked");

    home.keyring.lock().await;
    let findings = doctor().await;
    let keyring = findings
        .iter()
        .find(|f| f["check"] == "keyring")
        .expect("a keyring finding");
    assert_eq!(keyring["status"], "warn", "{keyring}");
    assert!(
        keyring["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("secret-service: locked"),
        "{keyring}"
    );
}

/// aws-vault's collection, made without a prompt (gnome-keyring's password
/// call; aws-vault's own CreateCollection would prompt for the password).
async fn aws_vault_collection(keyring: &TestKeyring) {
    let conn = keyring.connect().await;
    let (_, session): (zbus::zvariant::OwnedValue, OwnedObjectPath) = conn
        .call_method(
            Some("org.freedesktop.secrets"),
            "/org/freedesktop/secrets",
            Some("org.freedesktop.Secret.Service"),
            "OpenSession",
            &("plain", Value::from("")),
        )
        .await
        .expect("OpenSession")
        .body()
        .deserialize()
        .expect("session");
    let properties: HashMap<&str, Value> = HashMap::from([(
        "org.freedesktop.Secret.Collection.Label",
        Value::from("awsvault"),
    )]);
    let master = (
        session,
        Vec::<u8>::new(),
        b"aws-vault-password".to_vec(),
        "text/plain",
    );
    let path: OwnedObjectPath = conn
        .call_method(
            Some("org.freedesktop.secrets"),
            "/org/freedesktop/secrets",
            Some("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"),
            "CreateWithMasterPassword",
            &(properties, master),
        )
        .await
        .expect("CreateWithMasterPassword")
        .body()
        .deserialize()
        .expect("a collection path");
    assert_eq!(
        path.as_str(),
        "/org/freedesktop/secrets/collection/awsvault"
    );
}

/// An item as aws-vault v7 writes it through 99designs/keyring and
/// go-libsecret: label and attribute `profile` the item's key, content
/// type application/json, the secret a keyring.Item whose Data is base64
/// of the Go SDK's aws.Credentials.
async fn aws_vault_item(service: &SecretService<'_>, key: &str, credentials: &str) {
    use base64::Engine;
    let collections = service.get_all_collections().await.expect("collections");
    let collection = collections
        .iter()
        .find(|c| c.collection_path.as_str().ends_with("/awsvault"))
        .expect("aws-vault's collection");
    let data = base64::engine::general_purpose::STANDARD.encode(credentials);
    let item = serde_json::json!({
        "Key": key,
        "Data": data,
        "Label": format!("aws-vault ({key})"),
        "Description": "",
        "KeychainNotTrustApplication": true,
        "KeychainNotSynchronizable": false,
    });
    collection
        .create_item(
            key,
            HashMap::from([("profile", key)]),
            item.to_string().as_bytes(),
            true,
            "application/json",
        )
        .await
        .expect("create aws-vault's item");
}

fn go_credentials(id: &str, secret: &str, token: &str) -> String {
    serde_json::json!({
        "AccessKeyID": id,
        "SecretAccessKey": secret,
        "SessionToken": token,
        "Source": "",
        "CanExpire": !token.is_empty(),
        "Expires": "0001-01-01T00:00:00Z",
    })
    .to_string()
}

#[tokio::test]
async fn import_from_aws_vault_copies_long_term_keys_and_skips_its_sessions() {
    let home = Home::new().await;
    aws_vault_collection(&home.keyring).await;
    let service =
        SecretService::connect_with_existing(EncryptionType::Plain, home.keyring.connect().await)
            .await
            .expect("service");
    aws_vault_item(
        &service,
        "work",
        &go_credentials("AKIAVAULTWORK0000001", "vaultWorkSecret", ""),
    )
    .await;
    aws_vault_item(
        &service,
        "ops",
        &go_credentials("AKIAVAULTOPS00000001", "vaultOpsSecret", ""),
    )
    .await;
    // aws-vault's cached session for "work" (sessionkeyring.go's name).
    aws_vault_item(
        &service,
        "sts.GetSessionToken,d29yaw,,1900000000",
        &go_credentials("ASIAVAULTSESSION0001", "sessionSecret", "sessionToken"),
    )
    .await;

    let output = run(&mut home.assumed(&["keys", "import", "--from", "aws-vault", "work"])).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("vaultWorkSecret"));
    let record = home
        .record_of("AKIAVAULTWORK0000001")
        .await
        .expect("work copied");
    assert_eq!(record["secret_access_key"], "vaultWorkSecret");
    assert!(
        home.record_of("AKIAVAULTOPS00000001").await.is_none(),
        "only the profile asked for"
    );

    // Every profile: ops too, work again (the same key: fine), no session.
    let output = run(&mut home.assumed(&["keys", "import", "--from", "aws-vault"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(home.record_of("AKIAVAULTOPS00000001").await.is_some());
    assert!(home.record_of("ASIAVAULTSESSION0001").await.is_none());
    let ours = home.stored().await;
    assert_eq!(ours.len(), 2, "{ours:?}");

    // aws-vault told to use a backend this does not read: said, nothing read.
    let mut import = home.assumed(&["keys", "import", "--from", "aws-vault", "ops"]);
    let output = run(import.env("AWS_VAULT_BACKEND", "pass")).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("AWS_VAULT_BACKEND is \"pass\"") && stderr.contains("--stdin"),
        "{stderr}"
    );
    // The backend it does read, named: as when unset.
    let mut import = home.assumed(&["keys", "import", "--from", "aws-vault", "ops"]);
    let output = run(import.env("AWS_VAULT_BACKEND", "secret-service")).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// An IAM user in moto with one access key: its id and secret.
async fn iam_user(name: &str) -> (String, String) {
    let script = format!(
        "import boto3, json\n\
         iam = boto3.client('iam', endpoint_url='{}', region_name='us-east-1',\n\
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         iam.create_user(UserName='{name}')\n\
         key = iam.create_access_key(UserName='{name}')['AccessKey']\n\
         print(json.dumps([key['AccessKeyId'], key['SecretAccessKey']]))\n",
        moto_url().await
    );
    let output = run(Command::new(python()).args(["-c", &script])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let pair: (String, String) = serde_json::from_slice(&output.stdout).expect("a key");
    pair
}

/// The user's access key ids as IAM lists them.
async fn iam_keys(name: &str) -> Vec<String> {
    let script = format!(
        "import boto3, json\n\
         iam = boto3.client('iam', endpoint_url='{}', region_name='us-east-1',\n\
             aws_access_key_id='testing', aws_secret_access_key='testing')\n\
         keys = iam.list_access_keys(UserName='{name}')['AccessKeyMetadata']\n\
         print(json.dumps(sorted(k['AccessKeyId'] for k in keys)))\n",
        moto_url().await
    );
    let output = run(Command::new(python()).args(["-c", &script])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("key ids")
}

/// A home whose keyring holds `user`'s key under "me" (moved in from
/// ~/.aws/credentials, as a user would).
async fn home_with_stored_key(user: &str) -> (Home, String) {
    let home = Home::new().await;
    let (id, secret) = iam_user(user).await;
    std::fs::write(
        home.credentials(),
        format!("[me]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n"),
    )
    .expect("credentials");
    let output =
        run(&mut home.assumed(&["keys", "import", "--profile", "me", "--remove-plaintext"])).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let record = home.record_of(&id).await.expect("stored");
    assert_eq!(
        record["user_arn"],
        format!("arn:aws:iam::123456789012:user/{user}")
    );
    (home, id)
}

/// Exactly one key for `user` in IAM, stored here with no rotation under
/// way, and working (GetCallerIdentity says it is the user).
async fn exactly_one_working_key(home: &Home, user: &str) -> String {
    let keys = iam_keys(user).await;
    assert_eq!(keys.len(), 1, "one active key: {keys:?}");
    let record = home
        .record_of(&keys[0])
        .await
        .expect("the key in IAM is stored");
    assert!(record.get("rotation").is_none(), "{record}");
    let script = format!(
        "import boto3, sys\n\
         sts = boto3.client('sts', endpoint_url='{}', region_name='us-east-1',\n\
             aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.stdin.read())\n\
         print(sts.get_caller_identity()['Arn'])\n",
        moto_url().await
    );
    let mut python = Command::new(python());
    python
        .args(["-c", &script, &keys[0]])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = python.spawn().expect("python");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            record["secret_access_key"]
                .as_str()
                .expect("secret")
                .as_bytes(),
        )
        .await
        .expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("python ran");
    assert_eq!(
        text(&output.stdout).trim(),
        format!("arn:aws:iam::123456789012:user/{user}")
    );
    keys[0].clone()
}

#[tokio::test]
async fn rotate_puts_a_new_key_in_use_and_deletes_the_old() {
    let (home, old) = home_with_stored_key("rotating-rita").await;
    let output = run(&mut home.assumed(&["keys", "rotate", "me"])).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let new = exactly_one_working_key(&home, "rotating-rita").await;
    assert_ne!(new, old);
    assert!(home.record_of(&old).await.is_none(), "the old key is gone");
    let deleted = home.proxy.last("DeleteAccessKey").expect("DeleteAccessKey");
    assert_eq!(deleted.params["AccessKeyId"], old);
    assert_eq!(home.proxy.count("CreateAccessKey"), 1);
}

/// Killed (SIGKILL) at three points: after IAM created the key but before
/// the answer arrived (its secret is lost with the process), after the new
/// key was stored while it is being checked, and while the old key is being
/// deleted. Each re-run finishes with exactly one active key, stored and
/// working.
#[tokio::test]
async fn rotate_killed_half_way_is_finished_by_a_rerun() {
    for (user, action, nth) in [
        ("killed-at-create", "CreateAccessKey", 1),
        // The first GetCallerIdentity is the old key's, the second the new one's.
        ("killed-at-check", "GetCallerIdentity", 2),
        ("killed-at-delete", "DeleteAccessKey", 1),
    ] {
        let (home, old) = home_with_stored_key(user).await;
        let before = home.proxy.count(action);
        home.proxy.hold_action(action, before + nth - 1);
        let mut child = home
            .assumed(&["keys", "rotate", "me"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start rotate");
        assert!(
            home.proxy
                .wait_for(action, before + nth, Duration::from_secs(30))
                .await,
            "{user}: no {action}"
        );
        child.start_kill().expect("kill");
        child.wait().await.expect("reaped");
        home.proxy.release();
        if action == "DeleteAccessKey" {
            // The new key is in use; moto may have deleted the old one
            // before the kill, and the record still says to delete it.
            let stored = home.stored().await;
            assert_eq!(stored.len(), 1, "{user}: {stored:?}");
            assert_eq!(stored[0]["rotation"]["step"], "retiring", "{user}");
            assert_eq!(stored[0]["rotation"]["old_access_key_id"], old, "{user}");
        } else {
            assert_eq!(
                iam_keys(user).await.len(),
                2,
                "{user}: killed with two keys"
            );
            // The old key is still the one in use, a rotation under way.
            let record = home.record_of(&old).await.expect("old key still in use");
            assert!(record.get("rotation").is_some(), "{user}: {record}");
        }

        let output = run(&mut home.assumed(&["keys", "rotate", "me"])).await;
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{user}: {stdout}\n{stderr}");
        let new = exactly_one_working_key(&home, user).await;
        assert_ne!(new, old, "{user}");
    }
}

/// With an MFA device (`--mfa-serial`, else the `mfa_serial` of the roles
/// the keys sign for), the IAM calls are signed by a GetSessionToken
/// session opened with a code (here from standard input), not by the
/// long-term key itself.
#[tokio::test]
async fn rotate_signs_iam_with_an_mfa_session() {
    for (user, from_flag) in [("mfa-flag-mia", true), ("mfa-config-max", false)] {
        rotate_with_mfa(user, from_flag).await;
    }
}

async fn rotate_with_mfa(user: &str, from_flag: bool) {
    let (home, old) = home_with_stored_key(user).await;
    let serial = format!("arn:aws:iam::123456789012:mfa/{user}");
    let mut args = vec!["keys", "rotate", "me"];
    if from_flag {
        args.extend(["--mfa-serial", serial.as_str()]);
    } else {
        let config = home.path().join(".config/assumed/config.toml");
        let now = std::fs::read_to_string(&config).expect("config");
        std::fs::write(
            &config,
            now.replace("[source]\n", "[source]\nkeys = \"me\"\n")
                + &format!(
                    "\n[roles.dev]\nrole_arn = \"arn:aws:iam::123456789012:role/dev\"\n\
                     mfa_serial = \"{serial}\"\n"
                ),
        )
        .expect("a role with MFA signed by these keys");
    }
    let mut rotate = home.assumed(&args);
    rotate
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = rotate.spawn().expect("rotate");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"123456\n").await.expect("the code");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("rotate finished")
        .expect("rotate ran");
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );

    let session = home.proxy.last("GetSessionToken").expect("an MFA session");
    assert_eq!(session.access_key_id.as_deref(), Some(old.as_str()));
    assert_eq!(session.params["SerialNumber"], serial);
    assert_eq!(session.params["TokenCode"], "123456");
    let new = exactly_one_working_key(&home, user).await;
    assert_ne!(new, old);
    // Signed by the session's key (moto's GetSessionToken hands out a fixed
    // one), neither the old key nor the new.
    for action in ["ListAccessKeys", "CreateAccessKey", "DeleteAccessKey"] {
        let call = home
            .proxy
            .last(action)
            .unwrap_or_else(|| panic!("no {action}"));
        let signer = call.access_key_id.unwrap_or_default();
        assert!(
            !signer.is_empty() && signer != old && signer != new,
            "{action} signed by {signer}, not by the MFA session"
        );
    }
}

/// The daemon signs with the stored keys; after `keys rotate` (run as the
/// user runs it, against the daemon's own config) the daemon uses the new
/// key with no restart: the rotation tells it, and its role is fetched again.
#[tokio::test]
async fn a_rotation_reaches_the_running_daemon_without_a_restart() {
    let (home, old) = home_with_stored_key("daemon-dan").await;
    let mut options = Options::new(&home.proxy.url(), DEV_ALICE).source("keys = \"me\"");
    for (name, value) in home.keyring.env() {
        options = options.env(&name, &value);
    }
    let daemon = Daemon::start_with(options).await;
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let signer = |action: &str| {
        home.proxy
            .last(action)
            .and_then(|call| call.access_key_id)
            .unwrap_or_default()
    };
    assert_eq!(signer("AssumeRole"), old, "the stored key signs");
    let before = home.proxy.count("AssumeRole");

    let mut rotate = daemon.cli();
    rotate
        .args(["keys", "rotate", "me"])
        .envs(home.keyring.env())
        .env("AWS_ENDPOINT_URL_IAM", home.proxy.url());
    let output = run(&mut rotate).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("the running daemon took the stored keys"),
        "{stdout}"
    );
    let new = exactly_one_working_key(&home, "daemon-dan").await;

    assert!(
        home.proxy
            .wait_for("AssumeRole", before + 1, Duration::from_secs(30))
            .await,
        "the role was not fetched again"
    );
    assert_eq!(signer("AssumeRole"), new, "the new key signs");
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let record = home.record_of(&new).await.expect("stored");
    let secret = record["secret_access_key"].as_str().expect("a secret");
    assert!(!daemon.log().contains(secret), "the new secret in the log");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

/// `keys add` over a name the running daemon signs with (a key pasted
/// in from the IAM console after a manual rotation) tells the daemon, which
/// switches to it with no restart.
#[tokio::test]
async fn keys_add_over_a_name_in_use_reaches_the_running_daemon() {
    const NEW_ID: &str = "AKIAADDEDAGAIN000003";
    let (home, old) = home_with_stored_key("daemon-dora").await;
    let mut options = Options::new(&home.proxy.url(), DEV_ALICE).source("keys = \"me\"");
    for (name, value) in home.keyring.env() {
        options = options.env(&name, &value);
    }
    let daemon = Daemon::start_with(options).await;
    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        home.proxy.last("AssumeRole").and_then(|c| c.access_key_id),
        Some(old)
    );
    let before = home.proxy.count("AssumeRole");

    let mut add = daemon.cli();
    add.args(["keys", "add", "me", "--stdin", "--no-check"])
        .envs(home.keyring.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = add.spawn().expect("start keys add");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{NEW_ID}\nadded/again0000000000000000000000000003\n").as_bytes())
            .await
            .expect("write the keys");
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("keys add finishes")
        .expect("keys add output");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("the running daemon took the stored keys"),
        "{stdout}"
    );
    assert!(
        home.proxy
            .wait_for("AssumeRole", before + 1, Duration::from_secs(30))
            .await,
        "the role was not fetched again: {}",
        daemon.log()
    );
    assert_eq!(
        home.proxy.last("AssumeRole").and_then(|c| c.access_key_id),
        Some(NEW_ID.to_string()),
        "the added key signs"
    );
}

/// `AWS_SHARED_CREDENTIALS_FILE` names the file, as for the SDKs: that one
/// is rewritten, `~/.aws/credentials` (with a profile of the same name) is
/// not touched.
#[tokio::test]
async fn import_reads_the_file_aws_shared_credentials_file_names() {
    let home = Home::new().await;
    let elsewhere = home.path().join("work-credentials");
    std::fs::write(&elsewhere, credentials_file()).expect("credentials");
    let decoy = "[work]\naws_access_key_id = AKIADECOYDECOYDECOY1\naws_secret_access_key = decoy\n";
    std::fs::write(home.credentials(), decoy).expect("decoy");
    let mut import = home.assumed(&["keys", "import", "--profile", "work", "--remove-plaintext"]);
    import.env("AWS_SHARED_CREDENTIALS_FILE", &elsewhere);
    let output = run(&mut import).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(home.record_of(WORK_ID).await.is_some());
    assert!(home.record_of("AKIADECOYDECOYDECOY1").await.is_none());
    assert_eq!(
        std::fs::read_to_string(home.credentials()).expect("read"),
        decoy
    );
    let now = std::fs::read_to_string(&elsewhere).expect("read");
    assert!(!now.contains(WORK_SECRET) && now.contains("[ work ]\r\nregion=eu-west-1\r\n"));
}
