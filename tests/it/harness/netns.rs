//! Linux network namespaces, to rebuild a compose network without Docker:
//! each namespace stands for a container, veth pairs and a bridge for the
//! compose network. Needs root and iproute2 (`ip`).
//!
//! Namespaces are named `assumed-test-PID-N` and deleted on drop (also while
//! a failing test unwinds); ones left by a test process that was killed are
//! swept when the next one is created. Sockets are opened inside a namespace
//! from a short-lived thread that enters it with `setns`, so the test process
//! itself (its runtime, moto, the STS proxy) stays where it is.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PREFIX: &str = "assumed-test-";
/// `ip` answers in milliseconds; anything slower is stuck.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace with loopback up. `Err` says why namespaces are not
    /// available here (not root, no `ip`, no kernel support).
    pub fn create() -> Result<Netns, String> {
        sweep_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes host names unresolvable for programs run with `ip netns exec`
    /// (a daemon with `Options.netns`, [`command`](Self::command)): it
    /// bind-mounts `/etc/netns/NAME/*` over `/etc`, so their resolver asks
    /// 127.0.0.1 inside this namespace, where nothing listens, and looks in
    /// nothing but `/etc/hosts` and DNS. No query leaves the namespace's
    /// loopback. Removed with the namespace.
    pub fn resolve_nowhere(&self) -> Result<(), String> {
        let dir = etc_dir(&self.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (file, text) in [
            (
                "resolv.conf",
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            ),
            ("nsswitch.conf", "hosts: files dns\n"),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// `ip -n NAME ARGS…`
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `PROGRAM` run inside this namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's own).
    pub fn command(&self, program: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// A listening socket inside this namespace, served from wherever the
    /// caller likes (e.g. a proxy running in the test process).
    pub fn bind(&self, address: &str) -> io::Result<std::net::TcpListener> {
        let address = address.to_owned();
        inside(&self.name, move || std::net::TcpListener::bind(address))
    }

    /// A GET from inside this namespace (see [`http_get`]).
    pub async fn http_get(
        &self,
        to: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> io::Result<(u16, String)> {
        http_get(&self.name, to, path, headers).await
    }
}

/// Where `ip netns exec` finds files to put over `/etc` for `netns`.
fn etc_dir(netns: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns").join(netns)
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(etc_dir(&self.name));
        if let Err(error) = ip(&["netns", "delete", &self.name]) {
            eprintln!("cannot delete network namespace {}: {error}", self.name);
        }
    }
}

/// Joins `a` and `b` with a veth pair, `a_end` in `a` and `b_end` in `b`,
/// both up. Names are per namespace, so they cannot clash between tests.
pub fn veth(a: &Netns, a_end: &str, b: &Netns, b_end: &str) -> Result<(), String> {
    a.ip(&[
        "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_end, "up"])?;
    b.ip(&["link", "set", b_end, "up"])
}

/// A raw HTTP/1.1 GET from inside namespace `netns` to `to`, with `Host:` the
/// address itself as SDKs send it (unless `headers` has one), and `Connection: close`. Returns the
/// status and the body. Bounded: connect 2 s, answer 30 s.
pub async fn http_get(
    netns: &str,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<(u16, String)> {
    let mut stream = connect(netns, to).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {}\r\n", host_header(to)));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, stream.read_to_end(&mut answer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))??;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

/// `169.254.170.2` for port 80 (what SDKs send), `ip:port` otherwise.
fn host_header(to: SocketAddr) -> String {
    match to.port() {
        80 => to.ip().to_string(),
        _ => to.to_string(),
    }
}

/// A TCP connection opened from inside namespace `netns`.
async fn connect(netns: &str, to: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let name = netns.to_owned();
    // A thread of its own: connect blocks, and a pool thread would go on to
    // run other work inside the namespace.
    std::thread::spawn(move || {
        let stream = enter(&name).and_then(|()| {
            let stream = std::net::TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        });
        let _ = sender.send(stream);
    });
    let stream = receiver
        .await
        .map_err(|_| io::Error::other("the connecting thread died"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// Runs `work` on a new thread inside namespace `netns`. A socket keeps the
/// namespace it was created in, whoever uses it afterwards.
fn inside<T: Send + 'static>(
    netns: &str,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let name = netns.to_owned();
    std::thread::spawn(move || enter(&name).and_then(|()| work()))
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Moves the calling thread (only it) into namespace `netns`.
#[cfg(target_os = "linux")]
fn enter(netns: &str) -> io::Result<()> {
    let handle = File::open(format!("/var/run/netns/{netns}"))?;
    // SAFETY: setns only changes this thread's network namespace; the fd is open.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Network namespaces are Linux's: elsewhere the tests that need them fail
/// here, with this reason, before anything else (no `ip netns` either).
#[cfg(not(target_os = "linux"))]
fn enter(netns: &str) -> io::Result<()> {
    Err(io::Error::other(format!(
        "cannot enter network namespace {netns}: Linux only"
    )))
}

/// Runs `ip ARGS…` to completion within [`IP_TIMEOUT`].
fn ip(args: &[&str]) -> Result<(), String> {
    let what = format!("ip {}", args.join(" "));
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot run ip ({e}); install iproute2"))?;
    let deadline = Instant::now() + IP_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no answer within {IP_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("{what}: {e}")),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: {} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

/// Deletes namespaces of earlier test processes that no longer run (killed
/// before their drops ran). Namespaces of live processes are left alone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(etc_dir(&name));
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

/// `made`, or `None` (with a notice naming `test`) where namespaces cannot
/// be made outside CI. In CI (`CI` set) that is a failure, never a silent skip.
pub fn or_skip<T>(made: Result<T, String>, test: &str) -> Option<T> {
    match made {
        Ok(made) => Some(made),
        Err(why) if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) => panic!(
            "the {test} needs Linux network namespaces (root and iproute2), \
             which CI must provide, but creating them failed: {why}"
        ),
        Err(why) => {
            eprintln!(
                "NOTICE: {test} not run: network namespaces are unavailable \
                 here ({why}). It runs as root, as in CI."
            );
            None
        }
    }
}
