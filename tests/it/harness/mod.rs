//! Test harness: a real STS (`moto_server`), a counting and fault-injecting
//! proxy in front of it ([`StsProxy`]), and small process/time helpers.
//! See tests/README.md for how the pieces fit together.

// Each test uses only part of the harness, and re-exports are there for tests to come.
#![allow(dead_code, unused_imports)]

pub mod chromium;
pub mod clients;
pub mod daemon;
pub mod federation_stub;
// A Secret Service on D-Bus (zbus, secret-service: Linux-only dependencies).
#[cfg(target_os = "linux")]
pub mod keyring;
pub mod moto;
pub mod netns;
pub mod served;
pub mod signin_stub;
pub mod sso_stub;
pub mod sts_proxy;

pub use daemon::{Answer, Daemon, Options};
#[cfg(target_os = "linux")]
pub use keyring::TestKeyring;
pub use moto::{fake_sigv4, moto_url};
pub use netns::Netns;
pub use sts_proxy::{Fault, Stall, StsCall, StsProxy};

/// Role `dev` as most tests configure it: session `alice`, so a client that
/// took it is [`DEV_ALICE_ARN`].
pub const DEV_ALICE: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
session_name = "alice"
"#;
pub const DEV_ALICE_ARN: &str = "arn:aws:sts::111111111111:assumed-role/dev/alice";

use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;

/// How long [`run`] lets a command take (python and the AWS CLI start in ~1 s).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A loopback TCP port that was free a moment ago. The OS may hand it out
/// again before the caller binds it, so keep the gap short.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// The Python interpreter that has boto3, awscli (v1) and moto installed.
pub fn python() -> String {
    "python3".to_owned()
}

/// Runs `cmd` to completion (stdin closed, stdout and stderr captured) within
/// [`RUN_TIMEOUT`]. Panics, with everything the command printed so far, if it
/// cannot be started or does not finish in time. A non-zero exit is returned,
/// not a panic: the caller asserts on it.
pub async fn run(cmd: &mut tokio::process::Command) -> Output {
    run_with_timeout(cmd, RUN_TIMEOUT).await
}

/// [`run`] with an explicit time limit.
/// [`run`], and the command must succeed (else a panic with its output).
pub async fn run_ok(cmd: &mut tokio::process::Command) -> Output {
    let output = run(cmd).await;
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub async fn run_with_timeout(cmd: &mut tokio::process::Command, limit: Duration) -> Output {
    let what = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut out_pipe = child.stdout.take().expect("stdout is piped");
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    // Read into buffers owned out here so a timeout still has the partial output.
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let finished = tokio::time::timeout(limit, async {
        let (out, err, status) = tokio::join!(
            out_pipe.read_to_end(&mut stdout),
            err_pipe.read_to_end(&mut stderr),
            child.wait()
        );
        out.and(err).and(status)
    })
    .await;
    match finished {
        Ok(Ok(status)) => Output {
            status,
            stdout,
            stderr,
        },
        Ok(Err(e)) => panic!("reading from {what}: {e}"),
        Err(_) => {
            let _ = child.start_kill();
            panic!(
                "{what} did not finish within {limit:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            )
        }
    }
}

/// `t` as UTC `YYYY-MM-DDTHH:MM:SSZ` (whole seconds), the form STS and the
/// credential endpoints use.
pub fn utc_timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .expect("time after 1970")
        .as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (the fraction is dropped), e.g.
/// moto's `<Expiration>` or the daemon's `Expiration`. `None` for anything else,
/// including offsets such as `+00:00`, which SDKs reject.
pub fn parse_utc_timestamp(s: &str) -> Option<SystemTime> {
    let body = s.strip_suffix('Z')?;
    let (whole, fraction) = body.split_once('.').unwrap_or((body, "0"));
    let b = whole.as_bytes();
    let shape_ok = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && fraction.bytes().all(|c| c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| whole[r].parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(i64::from(y), mo, d)).ok()?;
    let secs = days * 86_400 + u64::from(h * 3600 + mi * 60 + se);
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian, days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A raw HTTP exchange on a fresh connection, for requests no client library
/// would send (odd Host headers, huge heads, bytes that are not UTF-8).
/// Returns the status code (0 if the server closed without answering) and the body.
pub async fn raw_request(port: u16, request: &[u8]) -> (u16, String) {
    raw_answer(raw_send(port, request).await).await
}

/// The first half of [`raw_request`]: returns once all of `request` is
/// written (on loopback: in the server's receive queue).
pub async fn raw_send(port: u16, request: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("send");
    stream
}

/// The second half of [`raw_request`]: the status and body of the answer.
pub async fn raw_answer(mut stream: tokio::net::TcpStream) -> (u16, String) {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(RUN_TIMEOUT, stream.read_to_end(&mut answer)).await;
    read.expect("answer in time").ok();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `systemd-analyze verify` accepts `dir`'s assumed.socket and
/// assumed.service without a word on stderr.
pub async fn assert_units_verify(dir: &std::path::Path) {
    let verify = run(tokio::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("assumed.socket"))
        .arg(dir.join("assumed.service")))
    .await;
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_and_parse_known_dates() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_timestamp(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(at(4_102_444_799)), "2099-12-31T23:59:59Z");
        assert_eq!(
            parse_utc_timestamp("2026-11-23T09:32:37.772905Z"),
            Some(at(1_795_426_357))
        );
        assert_eq!(parse_utc_timestamp("2026-11-23T09:32:37+00:00"), None);
        assert_eq!(parse_utc_timestamp("2026-13-01T00:00:00Z"), None);
        // Round trip over a spread of days, leap years included.
        for secs in (0..4_102_444_800u64).step_by(86_400 * 97 + 3_607) {
            assert_eq!(
                parse_utc_timestamp(&utc_timestamp(at(secs))),
                Some(at(secs))
            );
        }
    }

    #[tokio::test]
    async fn run_returns_output_and_exit_status() {
        let out = run(tokio::process::Command::new(python()).args([
            "-c",
            "import sys; print('to stdout'); print('to stderr', file=sys.stderr); sys.exit(3)",
        ]))
        .await;
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "to stdout\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "to stderr\n");
    }

    #[tokio::test]
    #[should_panic(expected = "said why on stderr")]
    async fn run_ok_panics_with_the_output_of_a_failed_command() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo said why on stderr >&2; exit 1"]);
        run_ok(&mut cmd).await;
    }

    #[tokio::test]
    #[should_panic(expected = "partial output")]
    async fn run_timeout_panics_with_the_output_so_far() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo partial output; exec sleep 30"]);
        run_with_timeout(&mut cmd, Duration::from_secs(1)).await;
    }
}
