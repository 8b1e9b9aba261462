//! Errors a person can read: for each way a role can fail, the 503 answer's
//! `message`, `status --json`, `doctor` and the daemon's log at info and
//! above carry one sentence naming what was tried and what failed, and no
//! Rust `Debug` rendering; the SDK's full error is in debug lines only.
//! Every failure is made on loopback, or in a network namespace with only
//! loopback (DNS).

use std::os::unix::fs::PermissionsExt;

use crate::harness::daemon::{base_env, binary};
use crate::harness::netns::{self, Netns};
use crate::harness::{Daemon, Fault, Options, Stall, StsProxy, free_port, run};

/// What a `Debug` rendering leaves in text (a struct, an io::Error's
/// payload, an Option, the SDK's error enum).
const DEBUG_MARKS: [&str; 4] = ["{ ", "Custom {", "Some(", "DispatchFailure("];

const DEV_ARN: &str = "arn:aws:iam::111111111111:role/dev";

/// Short deadlines: a silent STS ends in an error within seconds.
const QUICK: &str = "connect_timeout = \"1s\"\nread_timeout = \"1s\"\nsts_timeout = \"2s\"\n";

/// What a message must say.
enum Wording {
    Is(String),
    StartsWith(String),
}

impl Wording {
    fn matches(&self, text: &str) -> bool {
        match self {
            Wording::Is(expected) => text == expected,
            Wording::StartsWith(prefix) => text.starts_with(prefix.as_str()),
        }
    }

    fn core(&self) -> &str {
        match self {
            Wording::Is(text) | Wording::StartsWith(text) => text,
        }
    }
}

fn assert_readable(place: &str, text: &str) {
    for mark in DEBUG_MARKS {
        assert!(
            !text.contains(mark),
            "{place} shows a Debug rendering ({mark:?}):\n{text}"
        );
    }
}

/// The log's lines at info and above.
fn info_and_above(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| !line.contains(" DEBUG ") && !line.contains(" TRACE "))
        .collect()
}

/// What each place said about role `dev`.
struct Seen {
    status: u16,
    body: String,
    status_json: String,
    doctor_json: String,
    log: String,
}

impl Seen {
    /// Asserts the wording everywhere a person meets it, and no Debug anywhere.
    fn assert_says(&self, case: &str, wording: &Wording, full_chain_logged: bool) {
        assert_eq!(self.status, 503, "{case}: {}", self.body);
        let body: serde_json::Value = serde_json::from_str(&self.body).expect("JSON error");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message
                .strip_prefix("credentials for role dev are unavailable: ")
                .is_some_and(|said| wording.matches(said)),
            "{case}: the 503 message is {message:?}, wanted {:?}",
            wording.core()
        );
        assert_readable(&format!("{case}: the 503 body"), &self.body);

        let status: serde_json::Value =
            serde_json::from_str(&self.status_json).expect("status JSON");
        let dev = status["roles"]
            .as_array()
            .and_then(|roles| roles.iter().find(|r| r["name"] == "dev"))
            .unwrap_or_else(|| panic!("{case}: no role dev in {status}"));
        let last_error = dev["last_error"].as_str().unwrap_or_default();
        assert!(
            wording.matches(last_error),
            "{case}: status says {last_error:?}, wanted {:?}",
            wording.core()
        );
        assert_readable(&format!("{case}: status"), last_error);

        let doctor: serde_json::Value =
            serde_json::from_str(&self.doctor_json).unwrap_or_else(|e| {
                panic!("{case}: doctor printed no JSON ({e}): {}", self.doctor_json)
            });
        let findings = doctor["findings"].as_array().cloned().unwrap_or_default();
        let role = findings
            .iter()
            .find(|f| f["check"] == "role")
            .and_then(|f| f["message"].as_str())
            .unwrap_or_default();
        // Its first line; the next names where STS calls go (tests/it/endpoints.rs).
        let role = role.lines().next().unwrap_or_default();
        assert!(
            role.strip_prefix("role dev: ")
                .and_then(|rest| rest.split_once(": "))
                .is_some_and(|(_state, said)| wording.matches(said)),
            "{case}: doctor says {role:?}, wanted {:?}",
            wording.core()
        );
        for finding in &findings {
            let text = format!("{} {}", finding["message"], finding["next"]);
            assert_readable(&format!("{case}: doctor"), &text);
        }

        let lines = info_and_above(&self.log);
        assert!(
            lines.iter().any(|line| line.contains(wording.core())),
            "{case}: no log line at info or above says {:?}:\n{}",
            wording.core(),
            self.log
        );
        for line in &lines {
            assert_readable(&format!("{case}: the log"), line);
        }
        if full_chain_logged {
            assert!(
                self.log
                    .lines()
                    .any(|line| line.contains(" DEBUG ") && line.contains("STS call failed")),
                "{case}: the full error is in a debug line:\n{}",
                self.log
            );
        }
    }
}

/// Asks for role `dev`, then what `status` and `doctor` say, and the log.
async fn seen(daemon: &Daemon) -> Seen {
    let answer = daemon.get("/role/dev").await;
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let doctor = run(daemon.cli().args(["doctor", "dev", "--json"])).await;
    Seen {
        status: answer.status,
        body: answer.body,
        status_json: String::from_utf8_lossy(&status.stdout).into_owned(),
        doctor_json: String::from_utf8_lossy(&doctor.stdout).into_owned(),
        log: daemon.log(),
    }
}

/// An executable shell script at `dir/name`.
fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

fn dev(extra: &str) -> String {
    format!("[roles.dev]\nrole_arn = \"{DEV_ARN}\"\n{extra}")
}

/// How one failure is made.
enum Setup {
    /// The proxy answers every call with this STS error.
    Fault(Fault),
    /// The proxy never answers.
    Hang,
    /// `sts_endpoint` is a loopback port nothing listens on.
    ClosedPort,
    /// `sts_endpoint` is `https://` to the (plain HTTP) proxy.
    TlsToPlainHttp,
    /// The role's source profile runs a credential_process that fails.
    FailingCredentialProcess,
    /// The role's source profile has no credentials (aws-config's profile
    /// provider, whose own lines print `Debug`, says so).
    EmptySourceProfile,
    /// The role has an `mfa_serial` and nothing gives a code.
    NoMfaCode,
    /// The role's `mfa_process` fails (the device is locked).
    LockedMfa,
}

/// A failure: its name, how it is made, the wording for an endpoint URL,
/// and whether an STS call failed (so the SDK's full error has its debug line).
type Case = (&'static str, Setup, fn(&str) -> Wording, bool);

#[tokio::test]
async fn every_failure_reads_as_one_sentence_everywhere_a_person_sees_it() {
    let scripts = tempfile::tempdir().expect("dir");
    let cases: Vec<Case> = vec![
        (
            "connection refused",
            Setup::ClosedPort,
            // Retried; with these short deadlines the call's own may end it.
            |url| Wording::StartsWith(format!("could not reach STS at {url}: connection refused")),
            true,
        ),
        (
            "TLS",
            Setup::TlsToPlainHttp,
            |url| {
                Wording::StartsWith(format!(
                    "could not reach STS at {url}: TLS handshake failed: the server answered something other than TLS ("
                ))
            },
            true,
        ),
        (
            "timeout",
            Setup::Hang,
            // The read deadline or the whole call's, whichever ends it.
            |url| Wording::StartsWith(format!("could not reach STS at {url}: no answer within ")),
            true,
        ),
        (
            "AccessDenied",
            Setup::Fault(Fault::AccessDenied),
            |url| {
                Wording::Is(format!(
                    "STS at {url} refused AssumeRole: AccessDenied: User: arn:aws:iam::123456789012:user/test is not authorized to perform: sts:AssumeRole on resource: {DEV_ARN}"
                ))
            },
            true,
        ),
        (
            "expired token",
            Setup::Fault(Fault::ExpiredToken),
            |url| {
                Wording::Is(format!(
                    "STS at {url} refused AssumeRole: ExpiredToken: The security token included in the request is expired; the credentials that signed it have expired"
                ))
            },
            true,
        ),
        (
            "invalid token",
            Setup::Fault(Fault::InvalidClientTokenId),
            |url| {
                Wording::Is(format!(
                    "STS at {url} refused AssumeRole: InvalidClientTokenId: The security token included in the request is invalid; the credentials that signed it are not valid"
                ))
            },
            true,
        ),
        (
            "throttling",
            Setup::Fault(Fault::Throttling),
            // Retried by the SDK; the call's own deadline may end it.
            |url| {
                Wording::StartsWith(format!(
                    "STS at {url} is throttling AssumeRole (Throttling: Rate exceeded); "
                ))
            },
            true,
        ),
        (
            "failing credential_process",
            Setup::FailingCredentialProcess,
            |_| {
                Wording::Is(
                    "the credential_process of profile vault (the source of role dev) exited with exit status: 1; the daemon's log has its output".into(),
                )
            },
            false,
        ),
        (
            "source profile without credentials",
            Setup::EmptySourceProfile,
            |_| {
                Wording::Is(
                    "role dev: the credentials of profile empty could not be loaded; see the daemon's log".into(),
                )
            },
            false,
        ),
        (
            "no MFA code",
            Setup::NoMfaCode,
            |_| Wording::Is("role dev needs an MFA code; run: assumed mfa dev <code>".into()),
            false,
        ),
        (
            "locked MFA device",
            Setup::LockedMfa,
            |_| {
                Wording::Is(
                    "role dev: mfa_process exited with exit status: 2 (its stderr is in the daemon's log); fix it, or run: assumed mfa dev <code>".into(),
                )
            },
            false,
        ),
    ];
    for (case, setup, wording, full_chain_logged) in cases {
        eprintln!("case: {case}");
        let proxy = StsProxy::start().await;
        let closed = format!("http://127.0.0.1:{}", free_port());
        let tls = proxy.url().replace("http://", "https://");
        let (endpoint, roles, aws_config) = match &setup {
            Setup::ClosedPort => (closed, dev(""), String::new()),
            Setup::TlsToPlainHttp => (tls, dev(""), String::new()),
            Setup::FailingCredentialProcess => {
                let process = script(
                    scripts.path(),
                    "vault",
                    "echo 'the vault is locked' >&2; exit 1",
                );
                (
                    proxy.url(),
                    dev("source_profile = \"vault\"\n"),
                    format!("[profile vault]\ncredential_process = {process}\n"),
                )
            }
            Setup::EmptySourceProfile => (
                proxy.url(),
                dev("source_profile = \"empty\"\n"),
                "[profile empty]\nregion = eu-west-1\n".to_owned(),
            ),
            Setup::NoMfaCode => (
                proxy.url(),
                dev("mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"\n"),
                String::new(),
            ),
            Setup::LockedMfa => {
                let process = script(
                    scripts.path(),
                    "code",
                    "echo 'the device is locked' >&2; exit 2",
                );
                (
                    proxy.url(),
                    dev(&format!(
                        "mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"\nmfa_process = '{process}'\n"
                    )),
                    String::new(),
                )
            }
            Setup::Fault(_) | Setup::Hang => (proxy.url(), dev(""), String::new()),
        };
        match setup {
            Setup::Fault(fault) => proxy.set_fault(Some(fault)),
            Setup::Hang => proxy.set_stall(Some(Stall::Hang)),
            _ => {}
        }
        let mut options = Options::new(&endpoint, &roles)
            .source(QUICK)
            .aws_files(&aws_config, "");
        // Debug for our own crate only, so the test sees the full error's line.
        options.rust_log = "info,assumed=debug".into();
        let daemon = Daemon::start_with(options).await;
        let seen = seen(&daemon).await;
        seen.assert_says(case, &wording(&endpoint), full_chain_logged);
        if let Setup::FailingCredentialProcess | Setup::LockedMfa = setup {
            assert!(
                !seen.body.contains("is locked"),
                "{case}: the process's stderr stays out of the answer"
            );
            assert!(seen.log.contains("is locked"), "{case}: but is logged");
        }
    }
}

/// The endpoint a user's config names, with no route anywhere: the DNS
/// lookup fails inside a namespace with only loopback, whose resolver asks
/// 127.0.0.1 there (see `Netns::resolve_nowhere`).
#[tokio::test]
async fn an_unresolvable_sts_host_says_the_dns_lookup_failed_for_that_endpoint() {
    let Some(netns) = netns::or_skip(
        Netns::create().and_then(|netns| netns.resolve_nowhere().map(|()| netns)),
        "DNS failure test",
    ) else {
        return;
    };
    let endpoint = "https://sts.eu-west-1.amazonaws.com";
    let mut options = Options::new(endpoint, &dev("")).source(QUICK);
    options.rust_log = "info,assumed=debug".into();
    options.netns = Some(netns.name().to_owned());
    let daemon = Daemon::start_with(options).await;

    let address = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.port));
    let token = daemon.token();
    let (status, body) = netns
        .http_get(address, "/role/dev", &[("authorization", &token)])
        .await
        .expect("GET inside the namespace");
    let cli = |args: &[&str]| {
        let mut command = netns.command(binary());
        command
            .arg("--config")
            .arg(&daemon.config_path)
            .args(args)
            .env_clear()
            .envs(base_env(daemon.dir.path()));
        command
    };
    let status_json = run(&mut cli(&["status", "--json"])).await;
    let doctor_json = run(&mut cli(&["doctor", "dev", "--json"])).await;
    let seen = Seen {
        status,
        body,
        status_json: String::from_utf8_lossy(&status_json.stdout).into_owned(),
        doctor_json: String::from_utf8_lossy(&doctor_json.stdout).into_owned(),
        log: daemon.log(),
    };
    seen.assert_says(
        "DNS",
        &Wording::StartsWith(format!(
            "could not reach STS at {endpoint}: DNS lookup failed ("
        )),
        true,
    );
    // The doctor's own GetCallerIdentity says the same of its endpoint.
    assert!(
        seen.doctor_json.contains(&format!(
            "does not work: could not reach STS at {endpoint}: DNS lookup failed ("
        )),
        "{}",
        seen.doctor_json
    );
}
