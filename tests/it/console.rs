//! `assumed console ROLE`: credentials from the daemon, a sign-in token from
//! the federation endpoint (a recording stand-in on loopback), and the login
//! URL printed or handed to `$BROWSER`; with `--isolate`, opened in a real
//! (headless) Chromium with a profile of the role's own.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use crate::harness::chromium::Chromium;
use crate::harness::federation_stub::{FederationStub, SESSION_COOKIE};
use crate::harness::{Daemon, Options, StsProxy, run};

use crate::harness::DEV_ALICE as DIRECT;

const CHAINED: &str = r#"
[roles.hub]
role_arn = "arn:aws:iam::111111111111:role/hub"

[roles.dev]
role_arn = "arn:aws:iam::222222222222:role/dev"
via = "hub"
"#;

async fn start(proxy: &StsProxy, stub: &FederationStub, roles: &str) -> Daemon {
    Daemon::start_with(console_options(proxy, stub, roles)).await
}

fn console_options(proxy: &StsProxy, stub: &FederationStub, roles: &str) -> Options {
    let mut options = Options::new(&proxy.url(), roles)
        .source(&format!("federation_endpoint = \"{}\"", stub.url()));
    // Debug: the log must hold no secret even at a chatty level.
    options.rust_log = "debug".into();
    options
}

async fn console(daemon: &Daemon, args: &[&str]) -> Output {
    run(daemon.cli().arg("console").args(args)).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The query of a URL, decoded.
fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("not a URL ({e}): {url:?}"))
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn console_print_signs_in_with_exactly_the_credentials_the_daemon_serves() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;
    let served = daemon.get("/role/dev").await.json();

    let output = console(&daemon, &["dev", "--print"]).await;
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}\n{}", daemon.log());

    let calls = stub.calls();
    assert_eq!(calls.len(), 1, "one getSigninToken: {calls:?}");
    assert_eq!(calls[0].params["Action"], "getSigninToken");
    assert_eq!(
        calls[0].session(),
        serde_json::json!({
            "sessionId": served["AccessKeyId"],
            "sessionKey": served["SecretAccessKey"],
            "sessionToken": served["Token"],
        }),
        "the Session is exactly what the daemon serves for dev"
    );
    assert!(!calls[0].params.contains_key("SessionDuration"));
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "the CLI made no AssumeRole of its own"
    );

    let url = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the URL: {stdout:?}");
    assert!(url.starts_with(&format!("{}?", stub.url())), "{url}");
    let login = query(url);
    assert_eq!(login["Action"], "login");
    assert_eq!(login["SigninToken"], FederationStub::token(1));
    assert!(!login["Issuer"].is_empty(), "{login:?}");
    assert_eq!(
        login["Destination"],
        "https://us-east-1.console.aws.amazon.com/console/home?region=us-east-1"
    );
    assert_eq!(login.len(), 4, "nothing else in the URL: {login:?}");

    let secrets = [
        served["SecretAccessKey"].as_str().expect("key"),
        served["Token"].as_str().expect("token"),
        login["SigninToken"].as_str(),
    ];
    let log = daemon.log();
    assert!(log.contains("DEBUG"), "the daemon logged at debug:\n{log}");
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "a secret in the daemon's log:\n{log}"
        );
        assert!(!stderr.contains(secret), "a secret on stderr: {stderr}");
    }
    assert!(
        !url.contains(secrets[0]),
        "the URL never carries the secret key"
    );
}

#[tokio::test]
async fn console_with_duration_on_a_direct_role_sends_session_duration() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;
    let output = console(
        &daemon,
        &[
            "dev",
            "--print",
            "--duration",
            "2h",
            "--destination",
            "s3",
            "--region",
            "eu-west-1",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let calls = stub.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].params["SessionDuration"], "7200");
    let login = query(text(&output.stdout).trim());
    assert_eq!(
        login["Destination"],
        "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1"
    );
}

#[tokio::test]
async fn console_on_a_chained_role_sends_no_session_duration_and_refuses_duration() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, CHAINED).await;

    let output = console(&daemon, &["dev", "--print"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let calls = stub.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        !calls[0].params.contains_key("SessionDuration"),
        "never for a chained role: {:?}",
        calls[0].params.keys()
    );
    assert_eq!(
        calls[0].session()["sessionId"],
        daemon.get("/role/dev").await.json()["AccessKeyId"],
        "dev's own session, not hub's"
    );

    let refused = console(&daemon, &["dev", "--print", "--duration", "1h"]).await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("--duration cannot be used with role dev")
            && stderr.contains("chained")
            && stderr.contains("via = \"hub\"")
            && stderr.contains("SessionDuration"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());
    assert_eq!(stub.calls().len(), 1, "nothing was sent");
}

#[tokio::test]
async fn console_duration_on_a_source_profile_chain_says_why_it_cannot() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let aws_config = "\
[profile base]
region = us-east-1

[profile p1]
role_arn = arn:aws:iam::111111111111:role/p1
source_profile = base

[profile p2]
role_arn = arn:aws:iam::222222222222:role/p2
source_profile = p1
";
    let credentials =
        "[base]\naws_access_key_id = AKIABASEEXAMPLE\naws_secret_access_key = base-secret\n";
    let options = console_options(&proxy, &stub, "").aws_files(aws_config, credentials);
    let daemon = Daemon::start_with(options).await;

    let refused = console(&daemon, &["p2", "--print", "--duration", "1h"]).await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("source_profile p1 is itself a role"),
        "{stderr}\n{}",
        daemon.log()
    );
    assert!(stub.calls().is_empty());

    let direct = console(&daemon, &["p1", "--print", "--duration", "1h"]).await;
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert_eq!(stub.calls()[0].params["SessionDuration"], "3600");
}

#[tokio::test]
async fn console_hands_the_url_to_browser() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;
    let scripts = tempfile::tempdir().expect("dir");
    let received = scripts.path().join("received");
    let browser = scripts.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", received.display()),
    )
    .expect("script");
    std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let output = run(daemon
        .cli()
        .args(["console", "dev"])
        .env("BROWSER", &browser))
    .await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "opened, not printed");
    assert!(stderr.contains("opened the AWS console"), "{stderr}");
    let url = std::fs::read_to_string(&received).expect("the browser was given a URL");
    assert!(url.starts_with(&stub.url()), "{url}");
    let login = query(&url);
    assert_eq!(login["Action"], "login");
    assert_eq!(login["SigninToken"], FederationStub::token(1));
}

#[tokio::test]
async fn console_without_a_browser_prints_the_url_and_says_so() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;
    let empty = tempfile::tempdir().expect("dir");
    let output = run(daemon
        .cli()
        .args(["console", "dev"])
        .env("PATH", empty.path()))
    .await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no browser could be opened"), "{stderr}");
    assert_eq!(
        query(text(&output.stdout).trim())["SigninToken"],
        FederationStub::token(1)
    );
}

/// A CONNECT proxy on loopback that records the targets it was asked for
/// and relays the bytes.
async fn connect_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let address = listener.local_addr().expect("address");
    let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = targets.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                client.read_line(&mut line).await.expect("request line");
                let target = line.split(' ').nth(1).unwrap_or_default().to_owned();
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.expect("header");
                    if header == "\r\n" || header.is_empty() {
                        break;
                    }
                }
                recorded.lock().expect("lock").push(line.trim().to_owned());
                let mut upstream = tokio::net::TcpStream::connect(&target)
                    .await
                    .expect("connect upstream");
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .expect("answer CONNECT");
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (format!("http://{address}"), targets)
}

#[tokio::test]
async fn console_reaches_the_federation_endpoint_through_a_proxy_from_the_environment() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;
    let (proxy_url, targets) = connect_proxy().await;
    let output = run(daemon
        .cli()
        .args(["console", "dev", "--print"])
        .env("HTTP_PROXY", &proxy_url)
        .env("NO_PROXY", ""))
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stub_authority = stub.url().replace("http://", "").replace("/federation", "");
    assert_eq!(
        *targets.lock().expect("lock"),
        vec![format!("CONNECT {stub_authority} HTTP/1.1")],
        "one tunnel, to the federation endpoint only"
    );
    assert_eq!(stub.calls().len(), 1);
}

#[tokio::test]
async fn console_for_a_role_that_needs_mfa_says_what_to_run() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let roles = format!("{DIRECT}mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"\n");
    let daemon = start(&proxy, &stub, &roles).await;
    let output = console(&daemon, &["dev", "--print"]).await;
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("needs an MFA code; run: assumed mfa dev <code>"),
        "{stderr}"
    );
    assert!(stub.calls().is_empty());
    assert_eq!(proxy.count("AssumeRole"), 0);
}

#[tokio::test]
async fn console_reports_unknown_roles_refusals_and_bad_input() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let daemon = start(&proxy, &stub, DIRECT).await;

    let without_token = daemon.get_with("/admin/console/dev", &[]).await;
    assert_eq!(without_token.status, 401, "{}", without_token.body);

    let unknown = console(&daemon, &["nope", "--print"]).await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no such role is configured"),
        "{}",
        text(&unknown.stderr)
    );

    for (args, expected) in [
        (&["dev/../x"][..], "no role named \"dev/../x\""),
        (
            &["dev", "--duration", "5m"][..],
            "outside what the console accepts",
        ),
        (&["dev", "--region", "EU"][..], "--region"),
        (
            &["dev", "--destination", "http://example.com/"][..],
            "https://",
        ),
        (&["dev", "--region", "cn-north-1"][..], "partition aws-cn"),
    ] {
        let output = console(&daemon, args).await;
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(stub.calls().is_empty(), "bad input sends nothing");

    stub.refuse(400, "Session duration not allowed for these credentials");
    let refused = console(&daemon, &["dev", "--print"]).await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("refused the sign-in (400)")
            && stderr.contains("Session duration not allowed for these credentials"),
        "{stderr}"
    );
    assert!(refused.stdout.is_empty());
}

/// Two roles in two accounts, and the browser `assumed console` starts.
fn two_accounts(browser: &std::path::Path, isolate: &str) -> String {
    format!(
        r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"

[roles.prod]
role_arn = "arn:aws:iam::222222222222:role/prod"

[console]
browser = "{}"
{isolate}
"#,
        browser.display()
    )
}

#[tokio::test]
async fn isolated_consoles_keep_each_roles_session_in_its_own_chromium_profile() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let chromium = Chromium::install();
    let daemon = start(&proxy, &stub, &two_accounts(&chromium.command(), "")).await;
    let profiles = daemon
        .dir
        .path()
        .join(".local/share/assumed/console-profiles/chromium");
    let mut keys = HashMap::new();
    for role in ["dev", "prod"] {
        let served = daemon.get(&format!("/role/{role}")).await.json();
        keys.insert(
            role,
            served["AccessKeyId"].as_str().expect("a key").to_owned(),
        );
    }
    assert_ne!(keys["dev"], keys["prod"]);

    for (n, role) in ["dev", "prod"].into_iter().enumerate() {
        let output = console(&daemon, &[role, "--isolate"]).await;
        let stderr = text(&output.stderr);
        assert!(output.status.success(), "{stderr}\n{}", daemon.log());
        let profile = profiles.join(role);
        assert!(
            stderr.contains(&format!("in its own profile {}", profile.display())),
            "{stderr}"
        );
        let runs = chromium.runs(n + 1).await;
        let browser = &runs[n];
        assert_eq!(browser.status, "0", "chromium failed for {role}");
        assert_eq!(
            browser.args[0],
            format!("--user-data-dir={}", profile.display()),
            "{:?}",
            browser.args
        );
        let url = browser.args.last().expect("a URL");
        assert!(url.starts_with(&stub.url()), "{url}");
        assert_eq!(query(url)["Action"], "login");
        assert!(browser.page.contains("signed in"), "{}", browser.page);
        let mode = std::fs::metadata(&profile)
            .expect("profile")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{role}'s profile is the user's alone");
    }

    // Each profile sends its own role's session, and only that one.
    for (role, other) in [("dev", "prod"), ("prod", "dev")] {
        let page = chromium
            .visit(&profiles.join(role), &stub.whoami_url())
            .await;
        assert!(
            page.contains(&format!("{SESSION_COOKIE}={}", keys[role])),
            "{role}'s profile: {page}"
        );
        assert!(
            !page.contains(&keys[other]),
            "{role}'s profile holds {other}'s session: {page}"
        );
    }
}

#[tokio::test]
async fn console_isolation_is_checked_before_any_sign_in_and_printed_for_containers() {
    let proxy = StsProxy::start().await;
    let stub = FederationStub::start().await;
    let chromium = Chromium::install();
    let daemon = start(
        &proxy,
        &stub,
        &two_accounts(&chromium.command(), "isolate = \"container\""),
    )
    .await;

    // Containers are Firefox's: a Chromium cannot hold one, and nothing is signed in for it.
    let refused = console(&daemon, &["dev"]).await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("is not Firefox"), "{stderr}");
    let unknown = console(&daemon, &["dev", "--isolate", "--browser", "true"]).await;
    let stderr = text(&unknown.stderr);
    assert!(!unknown.status.success());
    assert!(stderr.contains("give a profile of its own"), "{stderr}");
    assert!(
        stub.calls().is_empty(),
        "no sign-in token for a console that cannot open"
    );

    // --print hands the container URL on, as granted prints it for Firefox.
    let printed = console(&daemon, &["prod", "--print"]).await;
    assert!(printed.status.success(), "{}", text(&printed.stderr));
    let line = text(&printed.stdout);
    let container = line
        .trim()
        .strip_prefix("ext+granted-containers:")
        .unwrap_or_else(|| panic!("not a container URL: {line}"));
    let params: HashMap<String, String> = url::form_urlencoded::parse(container.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(params["name"], "prod");
    assert!(params["url"].starts_with(&stub.url()), "{params:?}");
    assert_eq!(
        query(&params["url"])["SigninToken"],
        FederationStub::token(1)
    );

    // --no-isolate: the shared browser, whatever the config says.
    let shared = console(&daemon, &["prod", "--no-isolate"]).await;
    assert!(shared.status.success(), "{}", text(&shared.stderr));
    let runs = chromium.runs(1).await;
    assert!(
        !runs[0]
            .args
            .iter()
            .any(|arg| arg.starts_with("--user-data-dir")),
        "{:?}",
        runs[0].args
    );
    assert!(
        runs[0].args[0].starts_with(&stub.url()),
        "{:?}",
        runs[0].args
    );
}
