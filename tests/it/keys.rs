//! `assumed keys add|list|remove` against a real Secret Service
//! (gnome-keyring on a private bus, `harness/keyring.rs`) and a real STS
//! (moto, whose IAM issues the user's keys, behind the counting proxy).

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::harness::daemon::{base_env, binary};
use crate::harness::{Fault, StsProxy, TestKeyring, moto_url, python, run, run_ok};

/// An IAM user's long-term key pair, made by moto's IAM.
pub(crate) struct IamKey {
    pub(crate) user_arn: String,
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// A user with one access key, in moto's IAM (unique per call: moto is
/// shared by every test).
pub(crate) async fn iam_user() -> IamKey {
    let script = r#"
import boto3, json, sys, uuid
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="AKIDADMIN", aws_secret_access_key="admin-secret")
name = "keys-" + uuid.uuid4().hex[:12]
user = iam.create_user(UserName=name)["User"]
key = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps({"arn": user["Arn"], "id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#;
    let output = run_ok(
        Command::new(python())
            .args(["-c", script])
            .arg(moto_url().await),
    )
    .await;
    let made: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON from boto3");
    IamKey {
        user_arn: made["arn"].as_str().expect("arn").to_owned(),
        id: made["id"].as_str().expect("id").to_owned(),
        secret: made["secret"].as_str().expect("secret").to_owned(),
    }
}

/// The keyring, the STS proxy and a HOME with a config that points
/// `[source]` at the proxy.
struct Setup {
    keyring: TestKeyring,
    proxy: StsProxy,
    home: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    async fn new() -> Setup {
        let keyring = TestKeyring::start().await;
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
        Setup {
            keyring,
            proxy,
            home,
            config,
        }
    }

    /// `assumed --config … keys ARGS` in the user's HOME, on the test bus.
    fn keys(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&self.config)
            .arg("keys")
            .args(args)
            .env_clear()
            .envs(base_env(self.home.path()))
            .envs(self.keyring.env());
        command
    }

    /// `keys add NAME --stdin EXTRA…` given `id` and `secret` as two lines.
    async fn add(&self, name: &str, key: &IamKey, extra: &[&str]) -> Output {
        let mut args = vec!["add", name, "--stdin"];
        args.extend_from_slice(extra);
        let mut child = self
            .keys(&args)
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

    async fn list_json(&self) -> serde_json::Value {
        let output = run_ok(&mut self.keys(&["list", "--json"])).await;
        serde_json::from_slice(&output.stdout).expect("keys list --json is JSON")
    }

    /// Our items in the keyring, by their `assumed-key` attribute.
    async fn stored_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .keyring
            .items(&[("application", "assumed")])
            .await
            .into_iter()
            .map(|(_, attributes)| attributes["assumed-key"].clone())
            .collect();
        names.sort();
        names
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_secret(output: &Output, secret: &str) {
    for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
        assert!(
            !text(bytes).contains(secret),
            "the secret is on {stream}: {}",
            text(bytes)
        );
    }
}

#[tokio::test]
async fn add_list_remove_round_trip_in_gnome_keyring() {
    let setup = Setup::new().await;
    let key = iam_user().await;

    let added = setup.add("work", &key, &[]).await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_no_secret(&added, &key.secret);
    let said = text(&added.stdout);
    assert!(
        said.contains(&key.user_arn) && said.contains("secret-service"),
        "{said}"
    );
    // One check, signed by the key being added, at [source]'s STS.
    let checks: Vec<_> = setup
        .proxy
        .calls()
        .into_iter()
        .filter(|call| call.action == "GetCallerIdentity")
        .collect();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].access_key_id.as_deref(), Some(key.id.as_str()));

    // In gnome-keyring: one item of ours, labelled for a person.
    let items = setup.keyring.items(&[("application", "assumed")]).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].0, "assumed: work");
    assert_eq!(items[0].1["assumed-key"], "work");

    let listed = setup.list_json().await;
    assert_eq!(listed["keyring"], "secret-service");
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{listed}");
    assert_eq!(keys[0]["name"], "work");
    assert_eq!(keys[0]["key_id_last4"], key.id[key.id.len() - 4..]);
    assert_eq!(keys[0]["user_arn"], key.user_arn.as_str());
    assert_eq!(keys[0]["backend"], "secret-service");
    assert!(
        keys[0]["age_seconds"].as_u64().expect("age") < 120,
        "{listed}"
    );

    let table = run_ok(&mut setup.keys(&["list"])).await;
    let table_text = text(&table.stdout);
    assert!(
        table_text.starts_with("Keyring: secret-service (this platform's default)\n"),
        "{table_text}"
    );
    let row = table_text
        .lines()
        .find(|line| line.starts_with("work "))
        .unwrap_or_else(|| panic!("no row for work: {table_text}"));
    assert!(
        row.contains(&format!("…{}", &key.id[key.id.len() - 4..])),
        "{row}"
    );
    assert!(row.contains(&key.user_arn), "{row}");
    assert_no_secret(&table, &key.secret);

    // No terminal and no --yes: nothing is removed.
    let refused = run(&mut setup.keys(&["remove", "work"])).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("--yes"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(setup.stored_names().await, ["work"]);

    let removed = run_ok(&mut setup.keys(&["remove", "work", "--yes"])).await;
    assert!(
        text(&removed.stdout).contains("Removed work"),
        "{}",
        text(&removed.stdout)
    );
    assert!(setup.stored_names().await.is_empty());
    assert_eq!(setup.list_json().await["keys"], serde_json::json!([]));
    let again = run(&mut setup.keys(&["remove", "work", "--yes"])).await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("no keys are stored as work"),
        "{}",
        text(&again.stderr)
    );
}

#[tokio::test]
async fn a_secret_sts_refuses_is_not_stored() {
    let setup = Setup::new().await;
    let key = iam_user().await;
    // moto checks no signature: the proxy answers as STS does when the
    // secret does not belong to the key id.
    setup.proxy.set_fault(Some(Fault::SignatureDoesNotMatch));

    let added = setup.add("work", &key, &[]).await;
    assert!(!added.status.success());
    let said = text(&added.stderr);
    assert!(
        said.contains("nothing was stored") && said.contains("SignatureDoesNotMatch"),
        "{said}"
    );
    assert!(said.contains("--no-check"), "{said}");
    assert_no_secret(&added, &key.secret);
    assert_eq!(setup.proxy.count("GetCallerIdentity"), 1);
    assert!(setup.stored_names().await.is_empty());
}

#[tokio::test]
async fn no_check_stores_without_asking_sts() {
    let setup = Setup::new().await;
    let key = iam_user().await;
    setup.proxy.set_fault(Some(Fault::SignatureDoesNotMatch));

    let added = setup.add("offline", &key, &["--no-check"]).await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(
        text(&added.stdout).contains("not checked"),
        "{}",
        text(&added.stdout)
    );
    assert_eq!(setup.proxy.count("GetCallerIdentity"), 0);
    assert_eq!(setup.stored_names().await, ["offline"]);
    let listed = setup.list_json().await;
    assert_eq!(
        listed["keys"][0]["user_arn"],
        serde_json::Value::Null,
        "{listed}"
    );
}

/// While `keys add` waits for the secret, neither its argv nor its
/// environment holds it; afterwards neither its output nor gnome-keyring's
/// files (encrypted with the login password) do.
#[tokio::test]
async fn the_secret_is_never_in_argv_environment_output_or_keyring_files() {
    let setup = Setup::new().await;
    let key = iam_user().await;
    let mut child = setup
        .keys(&["add", "work", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start keys add");
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("piped");
    // The key id only: the process now waits for the secret's line.
    stdin
        .write_all(format!("{}\n", key.id).as_bytes())
        .await
        .expect("write");
    stdin.flush().await.expect("flush");
    wait_until_reading_stdin(pid).await;
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).expect("read /proc");
        assert!(
            !text(&bytes).contains(&key.secret),
            "the secret is in {file}"
        );
    }
    stdin
        .write_all(format!("{}\n", key.secret).as_bytes())
        .await
        .expect("write");
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("keys add finishes")
        .expect("output");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_no_secret(&output, &key.secret);

    assert_eq!(setup.stored_names().await, ["work"]);
    for entry in walk(&setup.keyring.data_dir()) {
        let bytes = std::fs::read(&entry).expect("read keyring file");
        assert!(
            !text(&bytes).contains(&key.secret) && !text(&bytes).contains(&key.id),
            "{} holds the key in clear",
            entry.display()
        );
    }
}

/// A locked keyring with nobody to answer its prompt, then no keyring at
/// all: each is an error that says what to do, at once, never a hang.
#[tokio::test]
async fn a_locked_or_absent_keyring_is_a_clear_error() {
    let mut setup = Setup::new().await;
    let key = iam_user().await;
    let added = setup.add("work", &key, &["--no-check"]).await;
    assert!(added.status.success(), "{}", text(&added.stderr));

    setup.keyring.lock().await;
    let started = Instant::now();
    let locked = run(&mut setup.keys(&["list"])).await;
    assert!(!locked.status.success());
    let said = text(&locked.stderr);
    assert!(said.contains("keyring is locked"), "{said}");
    assert!(said.contains("Passwords and Keys"), "{said}");
    // The prompt fails at once here (nothing can show it); well inside the
    // unlock deadline.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(setup.keyring.is_locked().await);

    setup.keyring.unlock().await;
    assert_eq!(setup.list_json().await["keys"][0]["name"], "work");

    setup.keyring.stop_service().await;
    let absent = run(&mut setup.keys(&["list"])).await;
    assert!(!absent.status.success());
    let said = text(&absent.stderr);
    assert!(
        said.contains("not available") && said.contains("org.freedesktop.secrets"),
        "{said}"
    );
}

/// Blocks until `pid` sleeps in a read of its standard input (its
/// `wchan`/state says it waits, and fd 0's position has not reached EOF):
/// polled to a deadline.
async fn wait_until_reading_stdin(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        // read(2) is syscall 0 on x86-64, 63 on aarch64; fd 0 is the first argument.
        let in_read = syscall.starts_with("0 0x0 ") || syscall.starts_with("63 0x0 ");
        if state == Some(Some('S')) && in_read {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "keys add never waited for stdin: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The backend itself, as the daemon uses it (through `Keyring`'s
/// deadlines): what it stores reads back whole, a locked collection is
/// `Locked` for every call but the unlock, and `lock_state` never prompts.
#[tokio::test]
async fn the_secret_service_backend_reads_what_it_wrote_and_reports_a_lock() {
    use assumed::keys::secret_service::SecretService;
    use assumed::keys::{BackendKind, Keyring, KeyringError, LockState, StoredKey};
    use std::sync::Arc;
    use std::time::SystemTime;

    let test_keyring = TestKeyring::start().await;
    let keyring = Keyring::new(Arc::new(SecretService::on_bus(test_keyring.bus_address())));
    let key = StoredKey {
        name: "work".into(),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: zeroize::Zeroizing::new(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        ),
        user_arn: Some("arn:aws:iam::123456789012:user/alice".into()),
        added_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        rotation: None,
    };
    assert_eq!(keyring.lock_state().await, Ok(LockState::Unlocked));
    assert_eq!(keyring.read("work").await, Ok(None));
    keyring.write(key.clone()).await.expect("write");
    // Written twice: still one item (the name is the item).
    keyring.write(key.clone()).await.expect("write again");
    assert_eq!(keyring.read("work").await, Ok(Some(key.clone())));
    let listed = keyring.list().await.expect("list");
    assert_eq!(listed, vec![key.info(BackendKind::SecretService)]);

    test_keyring.lock().await;
    assert_eq!(keyring.lock_state().await, Ok(LockState::Locked));
    for outcome in [
        keyring.read("work").await.map(|_| ()),
        keyring.list().await.map(|_| ()),
        keyring.write(key.clone()).await,
        keyring.delete("work").await.map(|_| ()),
        // Nothing can show gnome-keyring's prompt here: dismissed at once.
        keyring.unlock().await,
    ] {
        assert!(
            matches!(outcome, Err(KeyringError::Locked { .. })),
            "{outcome:?}"
        );
    }
    // None of that unlocked it, or prompted it open.
    assert!(test_keyring.is_locked().await);

    test_keyring.unlock().await;
    assert_eq!(keyring.lock_state().await, Ok(LockState::Unlocked));
    assert_eq!(keyring.delete("work").await, Ok(true));
    assert_eq!(keyring.delete("work").await, Ok(false));
    assert_eq!(keyring.list().await, Ok(Vec::new()));
}

/// A keyring that keeps its bus name but answers nothing (stopped, or stuck
/// behind something): the command ends within the keyring deadline with a
/// timeout, and works again once the keyring does.
#[tokio::test]
async fn a_keyring_that_does_not_answer_is_a_timeout_not_a_hang() {
    let setup = Setup::new().await;
    setup.keyring.freeze();
    let started = Instant::now();
    let stuck = run(&mut setup.keys(&["list"])).await;
    let waited = started.elapsed();
    setup.keyring.thaw();
    assert!(!stuck.status.success());
    let said = text(&stuck.stderr);
    assert!(said.contains("did not answer within"), "{said}");
    // The 5 s keyring deadline, and the process start around it.
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert_eq!(setup.list_json().await["keys"], serde_json::json!([]));
}

/// On a terminal (a pty from util-linux `script`): `keys add` asks for both
/// halves with echo off, so neither shows on the screen, and `keys remove`
/// asks before it deletes.
#[tokio::test]
async fn on_a_terminal_add_asks_without_echo_and_remove_asks_first() {
    let setup = Setup::new().await;
    let key = iam_user().await;

    let mut add = setup.on_terminal(&["add", "work"]);
    add.expect("Access key id").await;
    add.wait_for_echo_off().await;
    add.type_line(&key.id).await;
    add.expect("Secret access key").await;
    add.wait_for_echo_off().await;
    add.type_line(&key.secret).await;
    let screen = add.finish().await;
    assert!(screen.contains("Stored work"), "{screen}");
    assert!(
        !screen.contains(&key.secret),
        "the secret was echoed: {screen}"
    );
    assert!(!screen.contains(&key.id), "the key id was echoed: {screen}");
    assert_eq!(setup.stored_names().await, ["work"]);

    let mut remove = setup.on_terminal(&["remove", "work"]);
    remove.expect("[y/N]").await;
    remove.type_line("n").await;
    let screen = remove.finish().await;
    assert!(screen.contains("Nothing removed"), "{screen}");
    assert_eq!(setup.stored_names().await, ["work"]);

    let mut remove = setup.on_terminal(&["remove", "work"]);
    remove.expect("[y/N]").await;
    remove.type_line("y").await;
    let screen = remove.finish().await;
    assert!(screen.contains("Removed work"), "{screen}");
    assert!(setup.stored_names().await.is_empty());
}

/// A command running on a pseudo-terminal, and what it has shown so far.
struct Terminal {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::process::ChildStdout,
    screen: String,
}

impl Setup {
    /// `assumed keys ARGS` on a pty of its own (`script -c`), typed into
    /// through `script`'s standard input.
    fn on_terminal(&self, args: &[&str]) -> Terminal {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = vec![
            quote(binary()),
            "--config".into(),
            quote(&self.config.display().to_string()),
            "keys".into(),
        ];
        line.extend(args.iter().map(|arg| quote(arg)));
        let mut child = Command::new("script")
            .args(["--quiet", "--return", "--flush", "--command"])
            .arg(line.join(" "))
            .arg("/dev/null")
            .env_clear()
            .envs(base_env(self.home.path()))
            .envs(self.keyring.env())
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start script (util-linux)");
        Terminal {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            child,
            screen: String::new(),
        }
    }
}

impl Terminal {
    /// Reads the screen until `text` shows (to a deadline): the command now
    /// waits for an answer, with the terminal set up for it.
    async fn expect(&mut self, text: &str) {
        use tokio::io::AsyncReadExt;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.screen.contains(text) {
            let mut chunk = [0u8; 1024];
            let read = tokio::time::timeout_at(deadline.into(), self.stdout.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("{text:?} never showed: {}", self.screen))
                .expect("read the terminal");
            assert!(read > 0, "{text:?} never showed: {}", self.screen);
            self.screen
                .push_str(&String::from_utf8_lossy(&chunk[..read]));
        }
    }

    /// Waits until the command has turned its terminal's echo off (it reads
    /// the terminal's settings, as `stty` would): a prompt shows a moment
    /// before, and what is typed in that moment the terminal still echoes.
    async fn wait_for_echo_off(&mut self) {
        let script = self.child.id().expect("script runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if echo_is_off(script) == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "echo never went off: {}",
                self.screen
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("typing");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("type");
        stdin.flush().await.expect("flush");
    }

    /// Waits for the command to end; everything the terminal showed.
    async fn finish(mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), self.stdout.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("the command never ended: {}", self.screen))
            .expect("read the terminal");
        self.screen.push_str(&String::from_utf8_lossy(&rest));
        drop(self.stdin.take());
        let status = self.child.wait().await.expect("wait");
        assert!(
            status.success() || self.screen.contains("Nothing removed"),
            "{status}: {}",
            self.screen
        );
        self.screen
    }
}

/// An item of ours whose secret is not a record (another version wrote it,
/// or it was edited by hand): `keys list` names it and the way out, and
/// `keys remove` removes it.
#[tokio::test]
async fn an_unreadable_item_is_named_and_can_be_removed() {
    let setup = Setup::new().await;
    let service = setup.keyring.service().await;
    let collection = service.get_default_collection().await.expect("default");
    collection
        .create_item(
            "assumed: broken",
            std::collections::HashMap::from([
                ("application", "assumed"),
                ("assumed-key", "broken"),
            ]),
            b"not a record",
            true,
            "text/plain",
        )
        .await
        .expect("create an item");

    let listed = run(&mut setup.keys(&["list"])).await;
    assert!(!listed.status.success());
    let said = text(&listed.stderr);
    assert!(
        said.contains("\"assumed: broken\"") && said.contains("assumed keys remove broken"),
        "{said}"
    );
    let removed = run_ok(&mut setup.keys(&["remove", "broken", "--yes"])).await;
    assert!(
        text(&removed.stdout).contains("Removed broken (unreadable)"),
        "{}",
        text(&removed.stdout)
    );
    assert!(setup.stored_names().await.is_empty());
    assert_eq!(setup.list_json().await["keys"], serde_json::json!([]));
}

/// Whether the terminal of the `assumed` that `script` (pid `ancestor`)
/// runs has echo off; `None` while there is no such process yet.
fn echo_is_off(ancestor: u32) -> Option<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let parent_of = |pid: u32| -> Option<(u32, String)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(") ")?;
        let comm = head.split_once(" (")?.1.to_owned();
        let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
        Some((ppid, comm))
    };
    let pid = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| {
            let Some((mut parent, comm)) = parent_of(pid) else {
                return false;
            };
            if comm != "assumed" {
                return false;
            }
            while parent > 1 {
                if parent == ancestor {
                    return true;
                }
                parent = parent_of(parent).map_or(0, |(p, _)| p);
            }
            false
        })?;
    let tty = std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(tty)
        .ok()?;
    // SAFETY: tcgetattr fills a termios for an open descriptor.
    let mut settings: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(file.as_raw_fd(), &mut settings) } != 0 {
        return None;
    }
    Some(settings.c_lflag & libc::ECHO == 0)
}
