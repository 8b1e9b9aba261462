//! A real Secret Service for one test: a private D-Bus session bus
//! (`dbus-daemon`) and `gnome-keyring-daemon` on it, its login collection
//! created and unlocked from [`TestKeyring::PASSWORD`], its files in a
//! temporary directory. Point the program under test at it with
//! [`TestKeyring::env`] (`DBUS_SESSION_BUS_ADDRESS`); lock and unlock the
//! default collection with [`TestKeyring::lock`] / [`TestKeyring::unlock`]
//! (the unlock is gnome-keyring's own password call, not a prompt: nobody is
//! there to answer one). Everything stops when it is dropped.
//!
//! The bus has no service directories, so nothing is ever D-Bus-activated on
//! it: when gnome-keyring is stopped ([`TestKeyring::stop_service`]) there is
//! no Secret Service at all, and a prompt (which would need `gcr-prompter`)
//! fails at once instead of waiting for a person.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use secret_service::{EncryptionType, SecretService};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use zbus::zvariant::{OwnedObjectPath, Value};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const SECRETS: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";

pub struct TestKeyring {
    dir: tempfile::TempDir,
    bus: Child,
    keyring: Option<Child>,
    address: String,
}

impl TestKeyring {
    /// The login collection's password.
    pub const PASSWORD: &'static str = "assumed-test-keyring-password";

    /// Starts the bus and gnome-keyring and returns once the default
    /// collection answers, unlocked. Panics (with what the daemons printed)
    /// if either does not start.
    pub async fn start() -> TestKeyring {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["home", "data", "runtime"] {
            std::fs::create_dir(dir.path().join(sub)).expect("keyring dirs");
        }
        set_mode(&dir.path().join("runtime"), 0o700);
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&dir.path().join("bus"))).expect("bus config");

        let mut bus = Command::new("dbus-daemon");
        bus.arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_this_thread(&mut bus);
        let mut bus = bus
            .spawn()
            .expect("start dbus-daemon (scripts/test installs it)");
        // Its printed address is its readiness: it listens before printing.
        let mut lines = BufReader::new(bus.stdout.take().expect("piped")).lines();
        let address = match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if !line.trim().is_empty() => line.trim().to_owned(),
            other => panic!(
                "dbus-daemon printed no address ({other:?}): {}",
                stderr_of(&mut bus).await
            ),
        };

        let mut keyring = TestKeyring {
            dir,
            bus,
            keyring: None,
            address,
        };
        keyring.start_service().await;
        keyring
    }

    /// `DBUS_SESSION_BUS_ADDRESS` for the program under test.
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    /// The environment a process needs to find this Secret Service.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone())]
    }

    /// Where gnome-keyring keeps its files (`keyrings/login.keyring`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A new connection to this bus.
    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the test bus")
    }

    /// The `secret-service` crate's client on this bus (plain transfer: it
    /// never leaves the machine), for tests that read or write items
    /// themselves, e.g. as another program would have stored them.
    pub async fn service(&self) -> SecretService<'static> {
        SecretService::connect_with_existing(EncryptionType::Plain, self.connect().await)
            .await
            .expect("a Secret Service session on the test bus")
    }

    /// Locks the default collection, as a screen lock or `secret-tool lock`
    /// would.
    pub async fn lock(&self) {
        let service = self.service().await;
        let collection = service.get_default_collection().await.expect("default");
        collection
            .lock()
            .await
            .expect("lock the default collection");
        assert!(self.is_locked().await, "the collection stays unlocked");
    }

    /// Unlocks the default collection with [`Self::PASSWORD`], through
    /// gnome-keyring's password call (what its own prompt does once a person
    /// typed the password).
    pub async fn unlock(&self) {
        let conn = self.connect().await;
        let collection = default_collection(&conn).await;
        let (_, session): (zbus::zvariant::OwnedValue, OwnedObjectPath) = call(
            &conn,
            "org.freedesktop.Secret.Service",
            "OpenSession",
            &("plain", Value::from("")),
        )
        .await;
        let master = (
            session,
            Vec::<u8>::new(),
            Self::PASSWORD.as_bytes().to_vec(),
            "text/plain",
        );
        let () = call(
            &conn,
            "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
            "UnlockWithMasterPassword",
            &(collection, master),
        )
        .await;
        assert!(!self.is_locked().await, "the collection stays locked");
    }

    pub async fn is_locked(&self) -> bool {
        let conn = self.connect().await;
        let collection = default_collection(&conn).await;
        let reply = conn
            .call_method(
                Some(SECRETS),
                collection.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.Secret.Collection", "Locked"),
            )
            .await
            .expect("read Locked");
        let value: zbus::zvariant::OwnedValue = reply.body().deserialize().expect("a variant");
        bool::try_from(value).expect("Locked is a boolean")
    }

    /// The items in the default collection whose attributes include all of
    /// `attributes`: each one's label and attributes (not its secret).
    pub async fn items(
        &self,
        attributes: &[(&str, &str)],
    ) -> Vec<(String, HashMap<String, String>)> {
        let service = self.service().await;
        let collection = service.get_default_collection().await.expect("default");
        let found = collection
            .search_items(attributes.iter().copied().collect())
            .await
            .expect("search the default collection");
        let mut items = Vec::new();
        for item in found {
            let label = item.get_label().await.expect("label");
            let attributes = item.get_attributes().await.expect("attributes");
            items.push((label, attributes));
        }
        items
    }

    /// Stops gnome-keyring: from now on there is no Secret Service on the
    /// bus (nothing activates one). [`Self::start_service`] starts it again
    /// on the same files.
    pub async fn stop_service(&mut self) {
        if let Some(mut child) = self.keyring.take() {
            let _ = child.kill().await;
        }
    }

    /// Freezes gnome-keyring (SIGSTOP): it keeps its bus name and answers
    /// nothing, as a keyring stuck behind a prompt or a hung peer would.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen gnome-keyring go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self
            .keyring
            .as_ref()
            .and_then(Child::id)
            .expect("gnome-keyring runs");
        // SAFETY: kill(2) on our own child, which has not been reaped.
        let done = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(done, 0, "signal gnome-keyring");
    }

    /// Starts gnome-keyring on the bus, unlocking (or first creating) its
    /// login collection with [`Self::PASSWORD`] from standard input, and
    /// waits until the Secret Service answers with that collection unlocked
    /// as the default.
    pub async fn start_service(&mut self) {
        assert!(self.keyring.is_none(), "gnome-keyring runs already");
        let conn = self.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("bus proxy");
        // Subscribed before the start, so the name's arrival cannot be missed.
        let mut owner_changes = dbus
            .receive_name_owner_changed_with_args(&[(0, SECRETS)])
            .await
            .expect("watch the Secret Service name");

        let root = self.dir.path();
        let mut command = Command::new("gnome-keyring-daemon");
        command
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_RUNTIME_DIR", root.join("runtime"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_this_thread(&mut command);
        let mut child = command
            .spawn()
            .expect("start gnome-keyring-daemon (scripts/test installs gnome-keyring)");
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(Self::PASSWORD.as_bytes())
            .await
            .expect("give gnome-keyring its password");
        drop(stdin); // the end of the password

        let deadline = Instant::now() + READY_TIMEOUT;
        let owned = dbus
            .name_has_owner(SECRETS.try_into().expect("a bus name"))
            .await
            .expect("NameHasOwner");
        if !owned {
            let arrived = tokio::select! {
                change = owner_changes.next() => change.is_some(),
                _ = tokio::time::sleep_until(deadline.into()) => false,
                _ = child.wait() => false,
            };
            if !arrived {
                panic!(
                    "gnome-keyring-daemon did not take {SECRETS} within {READY_TIMEOUT:?}: {}",
                    stderr_of(&mut child).await
                );
            }
        }
        self.keyring = Some(child);
        // The name comes before the login collection is made the default and
        // unlocked; that takes a few round trips, polled to the deadline.
        loop {
            if let Some(path) = read_default_alias(&conn).await {
                if !self.is_locked_at(&conn, &path).await {
                    return;
                }
            }
            if Instant::now() > deadline {
                let child = self.keyring.as_mut().expect("started");
                panic!(
                    "gnome-keyring's default collection is not unlocked within {READY_TIMEOUT:?}: {}",
                    stderr_of(child).await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn is_locked_at(&self, conn: &zbus::Connection, path: &OwnedObjectPath) -> bool {
        let Ok(reply) = conn
            .call_method(
                Some(SECRETS),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.freedesktop.Secret.Collection", "Locked"),
            )
            .await
        else {
            return true;
        };
        reply
            .body()
            .deserialize::<zbus::zvariant::OwnedValue>()
            .ok()
            .and_then(|value| bool::try_from(value).ok())
            .unwrap_or(true)
    }
}

/// A session bus that activates nothing: no `<servicedir>`, no includes.
fn bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

async fn read_default_alias(conn: &zbus::Connection) -> Option<OwnedObjectPath> {
    let reply = conn
        .call_method(
            Some(SECRETS),
            SERVICE_PATH,
            Some("org.freedesktop.Secret.Service"),
            "ReadAlias",
            &("default",),
        )
        .await
        .ok()?;
    let path: OwnedObjectPath = reply.body().deserialize().ok()?;
    (path.as_str() != "/").then_some(path)
}

async fn default_collection(conn: &zbus::Connection) -> OwnedObjectPath {
    read_default_alias(conn)
        .await
        .expect("gnome-keyring has a default collection")
}

/// Calls `method` of `interface` on the Secret Service's root object.
async fn call<B, R>(conn: &zbus::Connection, interface: &str, method: &str, body: &B) -> R
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let reply = conn
        .call_method(Some(SECRETS), SERVICE_PATH, Some(interface), method, body)
        .await
        .unwrap_or_else(|e| panic!("{interface}.{method}: {e}"));
    reply
        .body()
        .deserialize()
        .unwrap_or_else(|e| panic!("{interface}.{method} answered: {e}"))
}

/// What a failed daemon printed on stderr, without waiting long for it.
async fn stderr_of(child: &mut Child) -> String {
    let _ = child.start_kill();
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut text)).await;
    }
    text
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// SIGKILL the child when the thread that started it ends, so a test that
/// panics or is killed leaves no bus or keyring behind (drop kills them
/// otherwise). A fixture lives within one test, on that test's thread.
fn die_with_this_thread(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_unlocked_locks_unlocks_and_stops() {
        let mut keyring = TestKeyring::start().await;
        assert!(keyring.bus_address().starts_with("unix:path="));
        assert!(!keyring.is_locked().await);

        // An item written by a client survives a lock and an unlock.
        let service = keyring.service().await;
        let collection = service.get_default_collection().await.expect("default");
        collection
            .create_item(
                "fixture check",
                HashMap::from([("application", "assumed-test")]),
                b"not a real secret",
                true,
                "text/plain",
            )
            .await
            .expect("create an item");
        keyring.lock().await;
        assert!(keyring.is_locked().await);
        keyring.unlock().await;
        assert!(!keyring.is_locked().await);
        let items = keyring.items(&[("application", "assumed-test")]).await;
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].0, "fixture check");

        // Stopped, nothing answers for the Secret Service; started again on
        // the same files, the item is still there.
        keyring.stop_service().await;
        let conn = keyring.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("bus proxy");
        assert!(
            !dbus
                .name_has_owner(SECRETS.try_into().expect("name"))
                .await
                .expect("NameHasOwner")
        );
        keyring.start_service().await;
        assert_eq!(
            keyring
                .items(&[("application", "assumed-test")])
                .await
                .len(),
            1
        );
        assert!(keyring.data_dir().join("keyrings/login.keyring").exists());
    }
}
