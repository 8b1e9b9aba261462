//! The docker-compose recipe (docs/docker-compose.md) without Docker: the
//! compose network is rebuilt from Linux network namespaces, and real SDKs
//! and CLIs in an "app container" namespace get credentials from the daemon
//! at 169.254.170.2 the way ECS tasks do.
//!
//! ```text
//!  ns "daemon": br0 169.254.170.2/24 ─┬─ veth ─ ns peer 0 (169.254.170.3, or .130 and .1)
//!   assumed serve on 169.254.170.2:80 └─ veth ─ ns peer 1 …
//!   + STS proxy on its 127.0.0.1       out0 169.254.171.1/24 ─ veth ─ ns "outsider" 169.254.171.5
//! ```
//!
//! The STS proxies listen on 127.0.0.1 *inside* the daemon's and the app's
//! namespaces and forward to moto from the test process, so nothing leaves
//! loopback or these namespaces. Namespaces need root: CI has it, and there a
//! missing namespace is a failure; elsewhere the topology tests say why they
//! did not run and pass.

use std::net::SocketAddr;

use crate::harness::daemon::{base_env, binary};
use crate::harness::netns::{self, veth};
use crate::harness::{Daemon, Netns, Options, StsProxy, free_port, python, run};

use crate::harness::{DEV_ALICE as DEV, DEV_ALICE_ARN as ASSUMED_DEV};
const FULL_URI: &str = "http://169.254.170.2/role/dev";

fn ecs_address() -> SocketAddr {
    SocketAddr::from(([169, 254, 170, 2], 80))
}

fn repo_path(relative: &str) -> String {
    format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// The compose network: the daemon's namespace with the bridge, app
/// "containers" on it, and one namespace outside it that is routed in.
struct Network {
    peers: Vec<Netns>,
    outsider: Netns,
    // Last: deleted after the namespaces that hang off it.
    daemon: Netns,
}

fn build_network(peer_addresses: &[&str]) -> Result<Network, String> {
    let daemon = Netns::create()?;
    daemon.ip(&["link", "add", "br0", "type", "bridge"])?;
    daemon.ip(&["addr", "add", "169.254.170.2/24", "dev", "br0"])?;
    daemon.ip(&["link", "set", "br0", "up"])?;
    let mut peers = Vec::new();
    for (index, address) in peer_addresses.iter().enumerate() {
        let peer = Netns::create()?;
        let port = format!("port{index}");
        veth(&daemon, &port, &peer, "eth0")?;
        daemon.ip(&["link", "set", &port, "master", "br0"])?;
        peer.ip(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        peers.push(peer);
    }
    let outsider = Netns::create()?;
    veth(&daemon, "out0", &outsider, "eth0")?;
    daemon.ip(&["addr", "add", "169.254.171.1/24", "dev", "out0"])?;
    outsider.ip(&["addr", "add", "169.254.171.5/24", "dev", "eth0"])?;
    outsider.ip(&["route", "add", "169.254.170.0/24", "via", "169.254.171.1"])?;
    Ok(Network {
        peers,
        outsider,
        daemon,
    })
}

/// The network, or `None` where namespaces cannot be made (outside CI).
fn network_or_skip(peer_addresses: &[&str]) -> Option<Network> {
    netns::or_skip(build_network(peer_addresses), "compose topology test")
}

/// The daemon in its namespace, on 169.254.170.2:80 besides the harness's
/// loopback port, with STS through a proxy inside that namespace.
async fn start_daemon(network: &Network, sts: &StsProxy, server: &str) -> Daemon {
    let mut options = Options::new(&sts.url(), DEV).server(server);
    options.extra_listen = Some(ecs_address().to_string());
    options.netns = Some(network.daemon.name().to_owned());
    Daemon::start_with(options).await
}

/// A clean client environment for a process in an app namespace: STS at
/// that namespace's proxy, plus `vars` (replacing any of the same name).
fn app_env(daemon: &Daemon, sts: &StsProxy, vars: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = base_env(daemon.dir.path());
    env.push(("AWS_ENDPOINT_URL_STS".into(), sts.url()));
    for (name, value) in vars {
        env.retain(|(existing, _)| existing != name);
        env.push(((*name).to_owned(), (*value).to_owned()));
    }
    env
}

/// Runs `command` (already pointed at an app namespace) and returns the
/// caller ARN and the whole JSON it printed; panics with its output on failure.
async fn caller(what: &str, command: &mut tokio::process::Command) -> serde_json::Value {
    let output = run(command).await;
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {output:?}"))
}

/// From `netns`, `/role/dev` takes the token and nothing else: none is a
/// 401, a wrong one a 403, the right one a 200.
async fn assert_token_is_the_barrier(netns: &Netns, token: &str) {
    let from = netns.name();
    assert_eq!(
        status(netns, "/role/dev", &[]).await,
        401,
        "{from}: no token"
    );
    let guess = status(netns, "/role/dev", &[("Authorization", "guess")]).await;
    assert_eq!(guess, 403, "{from}: a wrong token");
    let right = status(netns, "/role/dev", &[("Authorization", token)]).await;
    assert_eq!(right, 200, "{from}: the token");
}

async fn status(netns: &Netns, path: &str, headers: &[(&str, &str)]) -> u16 {
    let (status, body) = netns
        .http_get(ecs_address(), path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path} from {}: {e}", netns.name()));
    if status != 200 {
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("refusal is not JSON ({e}): {body:?}"));
        assert!(json["code"].is_string(), "{json}");
    }
    status
}

#[tokio::test]
async fn compose_network_serves_boto3_and_both_aws_clis_with_the_token() {
    let Some(network) = network_or_skip(&["169.254.170.3"]) else {
        return;
    };
    let app = &network.peers[0];
    let daemon_sts = StsProxy::start_in(&network.daemon).await;
    let app_sts = StsProxy::start_in(app).await;
    let daemon = start_daemon(
        &network,
        &daemon_sts,
        "expose = true\ndefault_role = \"dev\"",
    )
    .await;
    let token = daemon.token();
    let token_file = daemon.token_path.display().to_string();
    let whoami = repo_path("tests/clients/whoami.py");

    // A client in the app's namespace with only the app's environment and `vars`.
    let in_app = async |what: &str, program: &str, args: &[&str], vars: &[(&str, &str)]| {
        let mut command = app.command(program);
        command
            .args(args)
            .env_clear()
            .envs(app_env(&daemon, &app_sts, vars));
        caller(what, &mut command).await
    };
    let cli_args = [
        "sts",
        "get-caller-identity",
        "--output",
        "json",
        "--endpoint-url",
        &app_sts.url(),
    ];

    // boto3 with what ECS itself sets: RELATIVE_URI (resolved against
    // 169.254.170.2:80), plus the token file from the shared volume.
    let boto3 = in_app(
        "boto3 (RELATIVE_URI)",
        &python(),
        &[&whoami],
        &[
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/role/dev"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
        ],
    )
    .await;
    assert_eq!(boto3["arn"], ASSUMED_DEV);
    assert_eq!(boto3["method"], "container-role");

    // AWS CLI v1 with FULL_URI at the ECS address and the token file.
    let v1 = in_app(
        "aws v1 (FULL_URI + token file)",
        &python(),
        &[&["-m", "awscli"][..], &cli_args].concat(),
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", FULL_URI),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_file),
        ],
    )
    .await;
    assert_eq!(v1["Arn"], ASSUMED_DEV);

    // Debian's AWS CLI 2.9 reads only AWS_CONTAINER_AUTHORIZATION_TOKEN.
    let v2 = in_app(
        "Debian aws 2.9 (FULL_URI + token)",
        "/usr/bin/aws",
        &cli_args,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", FULL_URI),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &token),
        ],
    )
    .await;
    assert_eq!(v2["Arn"], ASSUMED_DEV);

    // The IMDS variant: default_role through AWS_EC2_METADATA_SERVICE_ENDPOINT.
    let imds = in_app(
        "boto3 (IMDS)",
        &python(),
        &[&whoami],
        &[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.170.2/"),
        ],
    )
    .await;
    assert_eq!(imds["arn"], ASSUMED_DEV);
    assert_eq!(imds["method"], "iam-role");

    // By default the token is needed on the compose network too.
    assert_eq!(status(app, "/role/dev", &[]).await, 401);
    // From outside the network: no token, no credentials.
    // With expose = true the token is the barrier (docs/security.md).
    let outsider = &network.outsider;
    assert_eq!(status(outsider, "/creds", &[]).await, 401);
    assert_token_is_the_barrier(outsider, &token).await;
    // A container holding the token gets credentials, not the admin endpoints.
    assert_eq!(
        status(app, "/admin/status", &[("Authorization", &token)]).await,
        403
    );
    assert_eq!(
        status(app, "/admin/console/dev", &[("Authorization", &token)]).await,
        403,
        "nor the console's credentials"
    );
    // A service name as Host is refused (DNS rebinding guard): reach the
    // daemon by address, or list the name in allowed_hosts.
    assert_eq!(status(outsider, "/healthz", &[]).await, 200);
    assert_eq!(
        status(outsider, "/healthz", &[("Host", "assumed")]).await,
        403
    );
    assert_eq!(
        daemon_sts.count("AssumeRole"),
        1,
        "four clients, one STS call"
    );

    // Served, and in `status` under their addresses: processes in other
    // namespaces cannot be named from the daemon's.
    let clients = dev_clients(&network, &daemon).await;
    for address in ["169.254.170.3", "169.254.171.5"] {
        let client = clients
            .iter()
            .find(|client| client["address"] == address)
            .unwrap_or_else(|| panic!("no client at {address}: {clients:#?}"));
        assert_eq!(client["process"], "unknown process", "{client}");
        assert!(client["pid"].is_null(), "{client}");
    }
    let app_requests = clients
        .iter()
        .find(|client| client["address"] == "169.254.170.3")
        .and_then(|client| client["requests"].as_u64());
    assert_eq!(
        app_requests,
        Some(4),
        "boto3 twice, both CLIs: {clients:#?}"
    );
}

/// `dev`'s `clients` from `/admin/status`, asked on the daemon's own loopback
/// (the admin endpoints answer nowhere else).
async fn dev_clients(network: &Network, daemon: &Daemon) -> Vec<serde_json::Value> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], daemon.port));
    let (status, body) = network
        .daemon
        .http_get(
            loopback,
            "/admin/status",
            &[("Authorization", &daemon.token())],
        )
        .await
        .expect("status from the daemon's namespace");
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    answer["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|role| role["name"] == "dev"))
        .and_then(|role| role["clients"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn trust_subnet_serves_its_peers_without_a_token_and_no_one_else() {
    // .130 is inside trust_subnet; .1 is where the Docker host sits (the bridge gateway).
    let Some(network) = network_or_skip(&["169.254.170.130", "169.254.170.1"]) else {
        return;
    };
    let (app, gateway, outsider) = (&network.peers[0], &network.peers[1], &network.outsider);
    let daemon_sts = StsProxy::start_in(&network.daemon).await;
    let app_sts = StsProxy::start_in(app).await;
    let daemon = start_daemon(
        &network,
        &daemon_sts,
        "expose = true\ntrust_subnet = \"169.254.170.128/25\"",
    )
    .await;
    let token = daemon.token();

    // An unmodified SDK with RELATIVE_URI and no token at all.
    let boto3 = caller(
        "boto3 (RELATIVE_URI, no token)",
        app.command(&python())
            .arg(repo_path("tests/clients/whoami.py"))
            .env_clear()
            .envs(app_env(
                &daemon,
                &app_sts,
                &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/role/dev")],
            )),
    )
    .await;
    assert_eq!(boto3["arn"], ASSUMED_DEV);
    assert_eq!(status(app, "/role/dev", &[]).await, 200);
    // What a trusted peer sends in Authorization is not looked at.
    assert_eq!(
        status(app, "/role/dev", &[("Authorization", "stale")]).await,
        200
    );
    // trust_subnet is about the container endpoint only: IMDS still wants its session token.
    assert_eq!(
        status(app, "/latest/meta-data/iam/security-credentials/", &[]).await,
        401
    );

    // Same /24, outside the trusted /25: the token as always.
    assert_token_is_the_barrier(gateway, &token).await;
    // Routed in from another subnet: the same.
    assert_token_is_the_barrier(outsider, &token).await;
    assert!(
        daemon
            .log()
            .contains("peers in this subnet get credentials without the token"),
        "the daemon warns about token-less access:\n{}",
        daemon.log()
    );

    // Revoking it takes a reload, not a restart.
    let config = std::fs::read_to_string(&daemon.config_path).expect("config");
    let without = config.replace("trust_subnet = \"169.254.170.128/25\"", "");
    assert_ne!(config, without);
    std::fs::write(&daemon.config_path, without).expect("write config");
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_log("trust_subnet removed").await;
    assert_eq!(status(app, "/role/dev", &[]).await, 401);
    assert_eq!(
        status(app, "/role/dev", &[("Authorization", &token)]).await,
        200
    );
}

/// `docker compose config` where a compose client is installed; the
/// structural checks of tests/compose/check_compose.py always.
#[tokio::test]
async fn example_compose_file_is_valid_and_follows_the_recipe() {
    let file = repo_path("examples/compose/docker-compose.yml");
    if compose_client_installed().await {
        let config = run(tokio::process::Command::new("docker")
            .args(["compose", "-f", &file, "config", "--quiet"])
            .env("ASSUMED_UID", "1000")
            .env("ASSUMED_GID", "1000"))
        .await;
        assert!(
            config.status.success(),
            "docker compose config: {}",
            String::from_utf8_lossy(&config.stderr)
        );
    } else {
        eprintln!("NOTICE: no compose client (docker compose); checking the YAML structure only");
    }
    let output = run(tokio::process::Command::new(python())
        .arg(repo_path("tests/compose/check_compose.py"))
        .arg(&file)
        .args(["--dockerfile", &repo_path("Dockerfile")]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for variant in ["RELATIVE_URI", "FULL_URI", "IMDS"] {
        assert!(stdout.contains(variant), "{variant} variant: {stdout}");
    }
}

/// `docker compose version` answers (a docker CLI without the compose plugin does not).
async fn compose_client_installed() -> bool {
    let probe = tokio::process::Command::new("docker")
        .args(["compose", "version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(30), probe).await,
        Ok(Ok(status)) if status.success()
    )
}

/// The checker is only worth something if it catches a broken recipe.
#[tokio::test]
async fn compose_check_rejects_files_that_break_the_recipe() {
    let original = std::fs::read_to_string(repo_path("examples/compose/docker-compose.yml"))
        .expect("example compose file");
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "ipv4_address: 169.254.170.2",
            "ipv4_address: 169.254.170.9",
            "169.254.170.2",
        ),
        (
            "subnet: 169.254.170.0/24",
            "subnet: 10.0.0.0/24",
            "169.254.170.0/24",
        ),
        (
            "condition: service_healthy",
            "condition: service_started",
            "service_healthy",
        ),
        (FULL_URI, "http://assumed/role/dev", "not allowed"),
        (
            "assumed-token:/run/assumed:ro",
            "assumed-token:/run/assumed",
            "read-only",
        ),
        ("healthcheck:", "x-no-healthcheck:", "healthcheck"),
    ];
    for (from, to, expected) in cases {
        assert!(original.contains(from), "the example has {from:?}");
        let broken = dir.path().join("docker-compose.yml");
        std::fs::write(&broken, original.replacen(from, to, 1)).expect("write");
        let output = run(tokio::process::Command::new(python())
            .arg(repo_path("tests/compose/check_compose.py"))
            .arg(&broken))
        .await;
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{from} -> {to}: {text}");
        assert!(text.contains(expected), "{from} -> {to}: {text}");
    }
}

#[tokio::test]
async fn env_compose_prints_a_services_environment() {
    let config = repo_path("examples/compose/assumed.toml");
    let check = run(tokio::process::Command::new(binary())
        .args(["check", "--config", &config])
        .env_clear())
    .await;
    assert!(check.status.success(), "{check:?}");

    let output = run(tokio::process::Command::new(binary())
        .args([
            "env",
            "dev",
            "--format",
            "dotenv",
            "--compose",
            "--config",
            &config,
        ])
        .env_clear())
    .await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2/role/dev",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/run/assumed/token",
        ]
    );
    assert!(
        stdout.contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        "dotenv names what must not be set: {stdout}"
    );
    // The example compose file hands out exactly these values.
    let compose = std::fs::read_to_string(repo_path("examples/compose/docker-compose.yml"))
        .expect("compose file");
    assert!(compose.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI: http://169.254.170.2/role/dev"));
    assert!(compose.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: /run/assumed/token"));

    let imds_too = run(tokio::process::Command::new(binary())
        .args(["env", "dev", "--compose", "--imds", "--config", &config])
        .env_clear())
    .await;
    assert!(
        !imds_too.status.success(),
        "--compose is for the container endpoint"
    );
}

#[tokio::test]
async fn healthcheck_exits_zero_only_while_the_daemon_answers() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), DEV).await;
    let healthy = run(daemon.cli().arg("healthcheck")).await;
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = [\"127.0.0.1:{}\"]\n", free_port()),
    )
    .expect("write");
    let down = run(tokio::process::Command::new(binary())
        .arg("healthcheck")
        .arg("--config")
        .arg(&config)
        .env_clear())
    .await;
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot reach the daemon"),
        "{down:?}"
    );
}
