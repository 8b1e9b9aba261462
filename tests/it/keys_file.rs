//! The encrypted file keyring (`--keyring file`, src/keys/file.rs) through
//! the real CLI: `keys add`, `list`, `remove` with the passphrase from a
//! file, from systemd's `$CREDENTIALS_DIRECTORY`, typed at a terminal (a
//! pseudo-terminal driven by Python), and from nowhere. The keys come from
//! moto's IAM and are checked against its STS, as a person's would be.
//! scrypt runs at its real cost here (the binary has no way to lower it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::harness::daemon::{Daemon, Options, base_env, binary};
use crate::harness::{DEV_ALICE, StsProxy, python, run, run_ok};
use crate::keys::{IamKey, iam_user};

const PASSPHRASE: &str = "tremble-gravel-orbit-lantern";

/// A HOME with a config that points `[source]` at the STS proxy, and a
/// passphrase file beside it (not in the data directory).
struct Setup {
    _proxy: StsProxy,
    home: tempfile::TempDir,
    config: PathBuf,
    passphrase: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let proxy = StsProxy::start().await;
        let home = tempfile::tempdir().expect("temp dir");
        let config = home.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\nregion = \"us-east-1\"\nsts_endpoint = \"{}\"\n",
                proxy.url()
            ),
        )
        .expect("write config");
        let passphrase = home.path().join("passphrase");
        // With the line end an editor leaves: not part of the passphrase.
        std::fs::write(&passphrase, format!("{PASSPHRASE}\n")).expect("passphrase");
        Setup {
            _proxy: proxy,
            home,
            config,
            passphrase,
        }
    }

    /// Where the keys go by default: the data directory under HOME.
    fn file(&self) -> PathBuf {
        self.home.path().join(".local/share/assumed/keys.age")
    }

    /// `assumed keys ARGS --keyring file`, in the user's HOME.
    fn keys(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&self.config)
            .arg("keys")
            .args(args)
            .args(["--keyring", "file"])
            .env_clear()
            .envs(base_env(self.home.path()));
        command
    }

    fn with_passphrase(&self, args: &[&str]) -> Command {
        let mut command = self.keys(args);
        command.arg("--passphrase-file").arg(&self.passphrase);
        command
    }

    /// `command` given `id` and `secret` as two lines (`keys add --stdin`).
    async fn feed(&self, mut command: Command, key: &IamKey) -> Output {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start assumed keys add");
        let mut stdin = child.stdin.take().expect("piped");
        let lines = format!("{}\n{}\n", key.id, key.secret);
        stdin.write_all(lines.as_bytes()).await.expect("write");
        drop(stdin);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("keys add finishes")
            .expect("keys add output")
    }

    async fn list(&self, mut command: Command) -> serde_json::Value {
        let output = run_ok(command.arg("--json")).await;
        serde_json::from_slice(&output.stdout).expect("keys list --json is JSON")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn names(listing: &serde_json::Value) -> Vec<String> {
    listing["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["name"].as_str().expect("name").to_owned())
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle)) {
            found.push(path);
        }
    }
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn keys_round_trip_through_the_encrypted_file() {
    let setup = Setup::new().await;
    let key = iam_user().await;
    let added = setup
        .feed(setup.with_passphrase(&["add", "work", "--stdin"]), &key)
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));

    // The file, where the data directory is, private, holding nothing in
    // clear: no secret, no key id, no name — and no other file under HOME
    // holds the secret (no temporary file left, no plaintext copy).
    let file = setup.file();
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("dir")), 0o700);
    let bytes = std::fs::read(&file).expect("keys.age");
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    for clear in [key.secret.as_str(), key.id.as_str(), "work", PASSPHRASE] {
        assert!(!contains(&bytes, clear), "{clear:?} in the file in clear");
    }
    assert_eq!(
        files_containing(setup.home.path(), &key.secret),
        Vec::<PathBuf>::new()
    );

    let listing = setup.list(setup.with_passphrase(&["list"])).await;
    assert_eq!(listing["keyring"], "file", "{listing}");
    assert_eq!(names(&listing), ["work"]);
    let entry = &listing["keys"][0];
    assert_eq!(
        entry["key_id_last4"],
        key.id[key.id.len() - 4..],
        "{listing}"
    );
    assert_eq!(entry["user_arn"], key.user_arn.as_str(), "{listing}");
    assert_eq!(entry["backend"], "file", "{listing}");

    // A second key: the file is replaced whole, keeping its mode.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    let other = iam_user().await;
    let added = setup
        .feed(setup.with_passphrase(&["add", "home", "--stdin"]), &other)
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_eq!(mode(&file), 0o400, "the mode the owner chose stays");
    let listing = setup.list(setup.with_passphrase(&["list"])).await;
    assert_eq!(names(&listing), ["home", "work"]);

    let removed = run_ok(&mut setup.with_passphrase(&["remove", "home", "--yes"])).await;
    assert!(removed.status.success());
    let listing = setup.list(setup.with_passphrase(&["list"])).await;
    assert_eq!(names(&listing), ["work"]);
}

#[tokio::test]
/// Neither the secret nor either passphrase is in what the commands print,
/// on the way that works or the ways that fail (the same errors are what
/// the daemon logs; its debug log is checked below).
async fn a_wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    const WRONG: &str = "tremble-gravel-orbit-lanterN";
    let setup = Setup::new().await;
    let key = iam_user().await;
    let right = std::fs::read_to_string(&setup.passphrase).expect("passphrase");
    let no_secret = |output: &Output| {
        for bytes in [&output.stdout, &output.stderr] {
            let printed = text(bytes);
            for secret in [key.secret.as_str(), right.trim_end(), WRONG] {
                assert!(!printed.contains(secret), "a secret printed: {printed}");
            }
        }
    };
    let added = setup
        .feed(setup.with_passphrase(&["add", "work", "--stdin"]), &key)
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    no_secret(&added);
    let before = std::fs::read(setup.file()).expect("keys.age");

    let wrong = setup.home.path().join("wrong");
    std::fs::write(&wrong, format!("{WRONG}\n")).expect("wrong passphrase");
    let listed = run(setup.keys(&["list"]).arg("--passphrase-file").arg(&wrong)).await;
    assert!(!listed.status.success());
    no_secret(&listed);
    let stderr = text(&listed.stderr);
    assert!(
        stderr.contains("wrong passphrase for the keyring file")
            && stderr.contains(&setup.file().display().to_string()),
        "{stderr}"
    );

    let mut add = setup.keys(&["add", "evil", "--stdin", "--no-check"]);
    add.arg("--passphrase-file").arg(&wrong);
    let added = setup.feed(add, &iam_user().await).await;
    assert!(!added.status.success(), "{}", text(&added.stdout));
    no_secret(&added);
    assert!(
        text(&added.stderr).contains("wrong passphrase"),
        "{}",
        text(&added.stderr)
    );
    let removed = run(setup
        .keys(&["remove", "work", "--yes"])
        .arg("--passphrase-file")
        .arg(&wrong))
    .await;
    assert!(!removed.status.success());

    assert_eq!(
        std::fs::read(setup.file()).expect("keys.age"),
        before,
        "the file is byte for byte what it was"
    );
    assert_eq!(
        names(&setup.list(setup.with_passphrase(&["list"])).await),
        ["work"]
    );
}

#[tokio::test]
async fn the_passphrase_comes_from_systemds_credentials_directory() {
    let setup = Setup::new().await;
    let credentials = setup.home.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    std::fs::copy(&setup.passphrase, credentials.join("assumed-keyring")).expect("credential");
    let mut add = setup.keys(&["add", "work", "--stdin"]);
    add.env("CREDENTIALS_DIRECTORY", &credentials);
    let added = setup.feed(add, &iam_user().await).await;
    assert!(added.status.success(), "{}", text(&added.stderr));

    // The same passphrase from a file opens it: it was that one.
    assert_eq!(
        names(&setup.list(setup.with_passphrase(&["list"])).await),
        ["work"]
    );
    let mut list = setup.keys(&["list"]);
    list.env("CREDENTIALS_DIRECTORY", &credentials);
    assert_eq!(names(&setup.list(list).await), ["work"]);
}

#[tokio::test]
async fn without_a_passphrase_or_a_terminal_the_error_names_the_three_ways() {
    let setup = Setup::new().await;
    // No file yet: an empty keyring, no passphrase needed to see that.
    let listing = setup.list(setup.keys(&["list"])).await;
    assert_eq!(names(&listing), Vec::<String>::new(), "{listing}");

    let added = setup
        .feed(setup.keys(&["add", "work", "--stdin"]), &iam_user().await)
        .await;
    assert!(!added.status.success());
    let stderr = text(&added.stderr);
    for way in [
        "--passphrase-file",
        "keyring_passphrase_file",
        "LoadCredential=assumed-keyring",
        "prompt",
    ] {
        assert!(stderr.contains(way), "names {way}: {stderr}");
    }
    assert!(!setup.file().exists(), "nothing written");
}

/// Runs `argv` on a pseudo-terminal (so it prompts), answering each prompt
/// that contains one of `answers`' keys with its value; everything the
/// terminal showed, and the exit code.
async fn on_a_terminal(
    argv: &[String],
    env: &[(String, String)],
    answers: &[(&str, &str)],
) -> (String, i32) {
    let script = r#"
import json, os, pty, select, sys, termios, time
argv, env, answers = (json.loads(a) for a in sys.argv[1:4])
pid, fd = pty.fork()
if pid == 0:
    os.execve(argv[0], argv, env)
seen, answered, deadline = b"", 0, time.monotonic() + 60
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 1)
    if ready:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    while answered < len(answers) and answers[answered][0].encode() in seen.split(b"\n")[-1]:
        # The prompt is printed just before echo goes off: answer once it is
        # off, as a person reading the prompt would (the master shows the
        # terminal's modes).
        if termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        os.write(fd, answers[answered][1].encode() + b"\n")
        seen += b"\n"
        answered += 1
_, status = os.waitpid(pid, 0)
print(json.dumps({"seen": seen.decode(errors="replace"), "code": os.waitstatus_to_exitcode(status)}))
"#;
    let answers: Vec<(&str, &str)> = answers.to_vec();
    let env: std::collections::BTreeMap<&str, &str> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let output = run_ok(
        Command::new(python())
            .args(["-c", script])
            .arg(serde_json::to_string(argv).expect("argv"))
            .arg(serde_json::to_string(&env).expect("env"))
            .arg(serde_json::to_string(&answers).expect("answers")),
    )
    .await;
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    (
        result["seen"].as_str().expect("seen").to_owned(),
        result["code"].as_i64().expect("code") as i32,
    )
}

#[tokio::test]
async fn on_a_terminal_the_passphrase_is_asked_without_echo() {
    let setup = Setup::new().await;
    let key = iam_user().await;
    let argv = |args: &[&str]| -> Vec<String> {
        let mut argv = vec![
            binary().to_owned(),
            "--config".into(),
            setup.config.display().to_string(),
            "keys".into(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(["--keyring".into(), "file".into()]);
        argv
    };
    let env = base_env(setup.home.path());

    // A new file: the passphrase twice, then the key (all without echo).
    let (seen, code) = on_a_terminal(
        &argv(&["add", "work"]),
        &env,
        &[
            ("New passphrase", PASSPHRASE),
            ("same passphrase again", PASSPHRASE),
            ("Access key id", &key.id),
            ("Secret access key", &key.secret),
        ],
    )
    .await;
    assert_eq!(code, 0, "{seen}");
    for typed in [PASSPHRASE, key.secret.as_str(), key.id.as_str()] {
        assert!(!seen.contains(typed), "{typed:?} echoed: {seen}");
    }
    // It was encrypted to what was typed.
    assert_eq!(
        names(&setup.list(setup.with_passphrase(&["list"])).await),
        ["work"]
    );

    // An existing file: asked once; a wrong answer is said so.
    let (seen, code) =
        on_a_terminal(&argv(&["list"]), &env, &[("Passphrase for", PASSPHRASE)]).await;
    assert_eq!(code, 0, "{seen}");
    assert!(
        seen.contains("work") && !seen.contains(PASSPHRASE),
        "{seen}"
    );
    let (seen, code) = on_a_terminal(&argv(&["list"]), &env, &[("Passphrase for", "nope")]).await;
    assert_ne!(code, 0, "{seen}");
    assert!(seen.contains("wrong passphrase"), "{seen}");
}

/// The daemon signs with keys from the file, its passphrase from systemd's
/// credentials directory (as a unit with `LoadCredential=` has it), at
/// `RUST_LOG=debug`: the role is served, and neither the stored secret, the
/// passphrase nor the session's secret is in the log.
#[tokio::test]
async fn the_daemon_reads_the_file_once_and_logs_no_secret_at_debug() {
    const ID: &str = "AKIAFILEKEYS00000001";
    const SECRET: &str = "file/secret/never+printed000000000000001";
    let setup = Setup::new().await;
    let stored = IamKey {
        user_arn: String::new(),
        id: ID.into(),
        secret: SECRET.into(),
    };
    let added = setup
        .feed(
            setup.with_passphrase(&["add", "alice", "--stdin", "--no-check"]),
            &stored,
        )
        .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    let before = std::fs::read(setup.file()).expect("keys.age");

    let credentials = setup.home.path().join("credentials");
    std::fs::create_dir(&credentials).expect("credentials dir");
    std::fs::copy(&setup.passphrase, credentials.join("assumed-keyring")).expect("credential");
    let proxy = StsProxy::start().await;
    let mut options = Options::new(&proxy.url(), DEV_ALICE)
        .source(&format!(
            "keys = \"alice\"\nkeyring = \"file\"\nkeyring_file = \"{}\"",
            setup.file().display()
        ))
        .env("CREDENTIALS_DIRECTORY", &credentials.display().to_string());
    options.rust_log = "debug".into();
    let daemon = Daemon::start_with(options).await;

    let answer = daemon.get("/role/dev").await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, daemon.log());
    let session_secret = answer.json()["SecretAccessKey"]
        .as_str()
        .expect("a session secret")
        .to_owned();
    let signed = proxy.first("AssumeRole").expect("an AssumeRole");
    assert_eq!(
        signed.access_key_id.as_deref(),
        Some(ID),
        "the stored keys sign"
    );

    let log = daemon.log();
    assert!(log.contains("read the keyring file"), "debug lines: {log}");
    for secret in [SECRET, PASSPHRASE, session_secret.as_str()] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert_eq!(
        std::fs::read(setup.file()).expect("keys.age"),
        before,
        "reading never rewrites the file"
    );
}
