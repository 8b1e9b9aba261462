//! `assumed reload` applies every setting a user can change, `[source]`
//! included, and says what it applied; what only a restart changes is named,
//! and the command then exits non-zero.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::harness::daemon::binary;
use crate::harness::{Daemon, Options, StsProxy, free_port, run};

const DEV: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
"#;

/// Writes `options`' config over the running daemon's (same port, same token).
fn rewrite(daemon: &Daemon, options: &Options) {
    std::fs::write(
        &daemon.config_path,
        options.config_text(daemon.port, &daemon.token_path),
    )
    .expect("config");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asks for `/role/dev` until it serves another access key than `old`
/// (bounded: the background fetch is answered already when this is called).
async fn wait_for_new_key(daemon: &Daemon, old: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = daemon.get("/role/dev").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let creds = answer.json();
        if creds["AccessKeyId"] != *old {
            return creds;
        }
        assert!(
            Instant::now() < deadline,
            "the old credentials are still served:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_fixed_sts_endpoint_serves_the_failing_role_without_a_restart() {
    // Nothing listens there: every AssumeRole fails to connect.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let daemon = Daemon::start(&dead, DEV).await;
    let failing = daemon.get("/role/dev").await;
    assert_eq!(failing.status, 503, "{}", failing.body);

    let proxy = StsProxy::start().await;
    rewrite(&daemon, &Options::new(&proxy.url(), DEV));
    let reload = run(daemon.cli().arg("reload")).await;
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    assert_eq!(
        text(&reload.stdout),
        "reloaded: [source] sts_endpoint changed (role dev fetched again); none added, none changed, none removed\n"
    );
    assert_eq!(text(&reload.stderr), "", "nothing waits for a restart");

    let served = daemon.get("/role/dev").await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(
        proxy.count("AssumeRole"),
        1,
        "one fetch, at the new endpoint"
    );
    assert!(
        !daemon.log().contains("next restart"),
        "nothing is left for a restart:\n{}",
        daemon.log()
    );
}

#[tokio::test]
async fn sighup_applies_a_source_change_and_logs_what_reload_prints() {
    let old_sts = StsProxy::start().await;
    let daemon = Daemon::start(&old_sts.url(), DEV).await;
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    let new_sts = StsProxy::start().await;
    rewrite(
        &daemon,
        &Options::new(&new_sts.url(), DEV).source("connect_timeout = \"7s\""),
    );
    daemon.signal(libc::SIGHUP);
    daemon
        .wait_for_log("reloaded the config: [source] sts_endpoint, connect_timeout changed (role dev fetched again); none added, none changed, none removed")
        .await;
    assert!(
        new_sts
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "{}",
        daemon.log()
    );
}

#[tokio::test]
async fn held_credentials_keep_serving_while_the_new_endpoint_is_asked() {
    let old_sts = StsProxy::start().await;
    let daemon = Daemon::start(&old_sts.url(), DEV).await;
    let held = daemon.get("/role/dev").await.json();

    let new_sts = StsProxy::start().await;
    new_sts.hold();
    rewrite(&daemon, &Options::new(&new_sts.url(), DEV));
    assert!(
        daemon
            .reload()
            .await
            .starts_with("reloaded: [source] sts_endpoint changed (role dev fetched again);")
    );
    assert!(
        new_sts
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "the role is fetched again in the background:\n{}",
        daemon.log()
    );
    // The new endpoint has not answered yet: the held credentials serve.
    let meanwhile = daemon.get("/role/dev").await;
    assert_eq!(meanwhile.status, 200, "{}", meanwhile.body);
    assert_eq!(meanwhile.json()["AccessKeyId"], held["AccessKeyId"]);

    new_sts.release();
    wait_for_new_key(&daemon, &held["AccessKeyId"]).await;
    assert_eq!(
        old_sts.count("AssumeRole"),
        1,
        "the old endpoint is not asked again"
    );
    assert_eq!(new_sts.count("AssumeRole"), 1);
}

const MFA_ROLE: &str = r#"
[roles.secure]
role_arn = "arn:aws:iam::111111111111:role/secure"
mfa_serial = "arn:aws:iam::111111111111:mfa/alice"
"#;

/// `secure`'s state as `assumed status --json` reports it.
async fn state_of_secure(daemon: &Daemon) -> String {
    let status = run(daemon.cli().args(["status", "--json"])).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    status["roles"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn an_mfa_session_from_the_old_endpoint_is_not_used_at_the_new_one() {
    let old_sts = StsProxy::start().await;
    let daemon = Daemon::start(&old_sts.url(), MFA_ROLE).await;
    assert_eq!(daemon.get("/role/secure").await.status, 503);
    run(daemon.cli().args(["mfa", "secure", "123456"])).await;
    assert_eq!(old_sts.count("GetSessionToken"), 1);
    let held = daemon.get("/role/secure").await;
    assert_eq!(held.status, 200, "{}", held.body);

    let new_sts = StsProxy::start().await;
    rewrite(&daemon, &Options::new(&new_sts.url(), MFA_ROLE));
    assert_eq!(
        daemon.reload().await,
        "reloaded: [source] sts_endpoint changed (role secure fetched again; 1 MFA session(s) forgotten, opened at the old endpoint); none added, none changed, none removed\n"
    );
    // The refetch needs a new code: it says so, and the held credentials serve.
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_of_secure(&daemon).await != "needs-mfa" {
        assert!(Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let meanwhile = daemon.get("/role/secure").await;
    assert_eq!(meanwhile.status, 200, "{}", meanwhile.body);
    assert_eq!(meanwhile.json()["AccessKeyId"], held.json()["AccessKeyId"]);
    assert!(
        new_sts.calls().is_empty(),
        "nothing signed with the old session"
    );

    run(daemon.cli().args(["mfa", "secure", "654321"])).await;
    assert_eq!(new_sts.count("GetSessionToken"), 1);
    assert_eq!(new_sts.count("AssumeRole"), 1);
    assert_eq!(old_sts.count("GetSessionToken"), 1);
}

#[tokio::test]
async fn a_changed_source_profile_signs_the_next_assume_role() {
    let aws_config = "[profile alpha]\n[profile beta]\n";
    let credentials = "[alpha]\naws_access_key_id = AKIAALPHAEXAMPLE0000\naws_secret_access_key = alpha-secret\n\
                       [beta]\naws_access_key_id = AKIABETAEXAMPLE00000\naws_secret_access_key = beta-secret\n";
    let proxy = StsProxy::start().await;
    let with_profile = |profile: &str| {
        Options::new(&proxy.url(), DEV)
            .source(&format!("profile = \"{profile}\""))
            .aws_files(aws_config, credentials)
    };
    let daemon = Daemon::start_with(with_profile("alpha")).await;
    let held = daemon.get("/role/dev").await.json();
    let signer = |proxy: &StsProxy| proxy.last("AssumeRole").and_then(|call| call.access_key_id);
    assert_eq!(signer(&proxy).as_deref(), Some("AKIAALPHAEXAMPLE0000"));

    rewrite(&daemon, &with_profile("beta"));
    assert!(
        daemon
            .reload()
            .await
            .starts_with("reloaded: [source] profile changed (role dev fetched again);")
    );
    wait_for_new_key(&daemon, &held["AccessKeyId"]).await;
    assert_eq!(signer(&proxy).as_deref(), Some("AKIABETAEXAMPLE00000"));
}

#[tokio::test]
async fn a_moved_listen_address_is_served_after_reload_and_the_old_one_closed() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let elsewhere = free_port();
    let moved = Options::new(&proxy.url(), DEV)
        .source("sts_timeout = \"45s\"")
        .server("default_role = \"dev\"");
    std::fs::write(
        &daemon.config_path,
        moved.config_text(elsewhere, &daemon.token_path),
    )
    .expect("config");
    assert_eq!(
        daemon.reload().await,
        format!(
            "reloaded: [source] sts_timeout changed (no role was in use); [server] default_role changed; [server] listen changed (now 127.0.0.1:{elsewhere}); none added, none changed, none removed\n"
        )
    );
    let creds = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{elsewhere}/creds"))
        .header("authorization", daemon.token())
        .send()
        .await
        .expect("the new address answers");
    assert_eq!(creds.status(), 200, "served there, default_role live");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", daemon.port)).is_err(),
        "the old address is closed"
    );
    // The CLI finds the daemon where it listens now.
    let status = run(daemon.cli().arg("status")).await;
    assert!(status.status.success(), "{}", text(&status.stderr));
}

#[tokio::test]
async fn a_request_in_flight_on_a_retired_listener_is_answered() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    proxy.hold();
    let (url, token) = (daemon.url("/role/dev"), daemon.token());
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .get(url)
            .header("authorization", token)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(
        proxy
            .wait_for("AssumeRole", 1, Duration::from_secs(20))
            .await,
        "the request is in flight"
    );
    let elsewhere = free_port();
    std::fs::write(
        &daemon.config_path,
        Options::new(&proxy.url(), DEV).config_text(elsewhere, &daemon.token_path),
    )
    .expect("config");
    assert!(daemon.reload().await.contains("[server] listen changed"));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", daemon.port)).is_err(),
        "the old address takes no new connection"
    );
    assert!(!slow.is_finished(), "the request is still held");
    proxy.release();
    assert_eq!(slow.await.expect("task").expect("answered"), 200);
}

#[tokio::test]
async fn a_listen_address_that_cannot_be_bound_is_named_and_the_old_one_serves_on() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("address").port();
    let moved = Options::new(&proxy.url(), DEV).server("imdsv1 = true");
    std::fs::write(
        &daemon.config_path,
        moved.config_text(taken_port, &daemon.token_path),
    )
    .expect("config");
    let reload = run(daemon.cli().arg("reload")).await;
    assert!(!reload.status.success(), "{}", text(&reload.stdout));
    // Everything else was applied, and said so.
    assert_eq!(
        text(&reload.stdout),
        "reloaded: [server] imdsv1 changed; none added, none changed, none removed\n",
        "{}\n{}",
        text(&reload.stderr),
        daemon.log()
    );
    let stderr = text(&reload.stderr);
    assert!(
        stderr.starts_with(&format!(
            "assumed: not applied: [server] listen: cannot listen on 127.0.0.1:{taken_port}: "
        )) && stderr.ends_with("; the daemon keeps listening where it was\n"),
        "{stderr}"
    );
    assert_eq!(
        daemon.get("/role/dev").await.status,
        200,
        "the old address serves on"
    );
    assert!(
        daemon
            .log()
            .contains("not applied by the reload: [server] listen"),
        "{}",
        daemon.log()
    );
    drop(taken);
}

#[tokio::test]
async fn a_moved_token_file_keeps_the_token_or_takes_the_one_it_holds() {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let token = daemon.token();
    let options = Options::new(&proxy.url(), DEV);
    let moved = daemon.dir.path().join("elsewhere/token");
    std::fs::write(
        &daemon.config_path,
        options.config_text(daemon.port, &moved),
    )
    .expect("config");
    assert_eq!(
        daemon.reload().await,
        format!(
            "reloaded: [server] token_file changed (now {}, the same token); none added, none changed, none removed\n",
            moved.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&moved).expect("token"), token);
    assert_eq!(daemon.get("/role/dev").await.status, 200);
    // The CLI reads the token where the daemon now says it is.
    let status = run(daemon.cli().arg("status")).await;
    assert!(status.status.success(), "{}", text(&status.stderr));

    // A file that already holds a token (handed out by a compose stack, say)
    // is taken as it is, as a restart would take it.
    let handed_out = daemon.dir.path().join("compose/token");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(handed_out.parent().expect("dir"))
        .expect("dir");
    let other = "0123456789abcdef0123456789abcdef";
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&handed_out)
        .expect("token file");
    std::io::Write::write_all(&mut file, other.as_bytes()).expect("write");
    std::fs::write(
        &daemon.config_path,
        options.config_text(daemon.port, &handed_out),
    )
    .expect("config");
    assert!(daemon.reload().await.contains(&format!(
        "[server] token_file changed (now {}, the token that file held: clients need it from there)",
        handed_out.display()
    )));
    let with_other = daemon
        .get_with("/role/dev", &[("authorization", other)])
        .await;
    assert_eq!(with_other.status, 200, "{}", with_other.body);
    let with_old = daemon
        .get_with("/role/dev", &[("authorization", &token)])
        .await;
    assert_eq!(with_old.status, 403, "the old token is refused");
}

/// The IMDS role names the listener at `port` serves, or why it did not answer.
async fn imds_roles(port: u16) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let token = client
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await?
        .text()
        .await?;
    client
        .get(format!("{base}/latest/meta-data/iam/security-credentials/"))
        .header("X-aws-ec2-metadata-token", token)
        .send()
        .await?
        .text()
        .await
}

#[tokio::test]
async fn an_imds_listener_moves_to_another_role_on_reload() {
    let proxy = StsProxy::start().await;
    let port = free_port();
    let ops = "[roles.ops]\nrole_arn = \"arn:aws:iam::222222222222:role/ops\"\n";
    let with_listener = |role: &str| {
        let roles = format!("{DEV}\n{ops}").replace(
            &format!("role/{role}\"\n"),
            &format!("role/{role}\"\nimds_listen = \"127.0.0.1:{port}\"\n"),
        );
        Options::new(&proxy.url(), &roles)
    };
    let daemon = Daemon::start_with(with_listener("dev")).await;
    assert_eq!(imds_roles(port).await.expect("IMDS"), "dev");

    rewrite(&daemon, &with_listener("ops"));
    let reloaded = daemon.reload().await;
    assert!(
        reloaded.contains(&format!(
            "imds_listen changed (now ops on 127.0.0.1:{port})"
        )),
        "{reloaded}"
    );
    assert_eq!(
        imds_roles(port).await.expect("IMDS"),
        "ops",
        "the same address, for ops now"
    );

    rewrite(
        &daemon,
        &Options::new(&proxy.url(), &format!("{DEV}\n{ops}")),
    );
    assert!(
        daemon
            .reload()
            .await
            .contains("imds_listen changed (now none)")
    );
    assert!(
        imds_roles(port).await.is_err(),
        "nothing listens there any more"
    );
}

/// Runs `assumed reload` against the daemon `systemd-socket-activate` started.
fn cli_for(home: &Path, config: &Path) -> Command {
    let mut command = Command::new(binary());
    command
        .arg("--config")
        .arg(config)
        .env_clear()
        .envs(crate::harness::daemon::base_env(home));
    command
}

#[tokio::test]
async fn a_socket_activated_listener_is_named_as_the_service_managers() {
    let proxy = StsProxy::start().await;
    let home = tempfile::tempdir().expect("home");
    let (passed_port, config_port) = (free_port(), free_port());
    let token = home.path().join("run/token");
    let options = Options::new(&proxy.url(), DEV);
    let config = home.path().join("config.toml");
    std::fs::write(&config, options.config_text(config_port, &token)).expect("config");
    let mut activator = Command::new("systemd-socket-activate");
    activator.arg(format!("--listen=127.0.0.1:{passed_port}"));
    for (name, value) in crate::harness::daemon::base_env(home.path()) {
        activator.arg(format!("--setenv={name}={value}"));
    }
    activator
        .args(["-E", "AWS_ACCESS_KEY_ID=AKIASOURCEEXAMPLE"])
        .args(["-E", "AWS_SECRET_ACCESS_KEY=source-secret"])
        .arg(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(home.path().join("log")).expect("log"))
        .kill_on_drop(true);
    let _activator = activator.spawn().expect("systemd-socket-activate");
    // The activator listens once it runs; the first connection starts the
    // daemon, which answers it once it has taken over the socket.
    let client = reqwest::Client::new();
    let mut health = None;
    for _ in 0..100 {
        let asked = client
            .get(format!("http://127.0.0.1:{passed_port}/healthz"))
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        if let Ok(answer) = asked {
            health = Some(answer.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = || std::fs::read_to_string(home.path().join("log")).unwrap_or_default();
    assert_eq!(health, Some(200), "{}", log());

    let elsewhere = free_port();
    std::fs::write(&config, options.config_text(elsewhere, &token)).expect("config");
    let reload = run(cli_for(home.path(), &config).arg("reload")).await;
    assert!(!reload.status.success(), "{}", text(&reload.stdout));
    assert_eq!(
        text(&reload.stdout),
        "reloaded: none added, none changed, none removed\n"
    );
    assert_eq!(
        text(&reload.stderr),
        format!(
            "assumed: not applied: [server] listen changed (127.0.0.1:{config_port} to 127.0.0.1:{elsewhere}): the daemon serves the sockets its service manager passed it (socket activation), which only the manager changes; edit the socket unit's ListenStream= and restart it\n"
        ),
        "{}",
        log()
    );
}
