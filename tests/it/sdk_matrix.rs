//! Unmodified clients against the daemon, one test per cell of the
//! compatibility matrix: each runs the client's `GetCallerIdentity` against
//! moto with credentials it found on its own, and checks the assumed-role ARN.
//!
//! | client              | container (FULL_URI) | IMDSv2 | credential_process |
//! |---------------------|----------------------|--------|--------------------|
//! | boto3 / botocore    | ✓                    | ✓      | ✓                  |
//! | AWS CLI v2 (Debian) | ✓ (`assumed exec`)   | ✓      | ✓                  |
//! | AWS CLI v1 (PyPI)   | ✓                    | ✓      |                    |
//! | JavaScript SDK v3   | ✓                    | ✓      | ✓                  |
//! | Rust aws-config     | ✓                    | ✓      | ✓                  |

use crate::harness::clients::Client;
use crate::harness::{Daemon, Options, StsProxy, daemon::binary, run};

use crate::harness::{DEV_ALICE as ROLES, DEV_ALICE_ARN as EXPECTED_ARN};

#[derive(Clone, Copy, Debug)]
enum Route {
    Container,
    Imds,
    CredentialProcess,
}

/// The environment for `route`; `None` means base env only.
fn route_env(daemon: &Daemon, route: Route) -> Vec<(String, String)> {
    let mut env = daemon.client_env("dev");
    match route {
        Route::Container => {}
        Route::Imds => {
            env.retain(|(name, _)| {
                !name.starts_with("AWS_CONTAINER_") && name != "AWS_EC2_METADATA_DISABLED"
            });
            env.push((
                "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
                format!("http://127.0.0.1:{}/", daemon.port),
            ));
        }
        Route::CredentialProcess => {
            env.retain(|(name, _)| !name.starts_with("AWS_CONTAINER_"));
            let profile = format!(
                "[profile dev]\nregion = us-east-1\ncredential_process = {} --config {} credential-process dev\n",
                binary(),
                daemon.config_path.display()
            );
            let path = daemon.dir.path().join("aws-config");
            std::fs::write(&path, profile).expect("write AWS config");
            env.push(("AWS_PROFILE".into(), "dev".into()));
        }
    }
    env
}

async fn assert_cell(client: Client, route: Route) {
    let proxy = StsProxy::start().await;
    let daemon =
        Daemon::start_with(Options::new(&proxy.url(), ROLES).server("default_role = \"dev\""))
            .await;
    if let Route::Imds = route {
        // Rust's and Go's IMDS clients give up after a 1 s read; the cold
        // path (an AssumeRole) is timed in scripts/bench, not here.
        assert_eq!(daemon.get("/role/dev").await.status, 200);
    }
    let mut command = match (client, route) {
        // Debian's CLI 2.9 predates the token-file variable; `assumed exec` also
        // sets AWS_CONTAINER_AUTHORIZATION_TOKEN for exactly such clients.
        (Client::CliV2, Route::Container) => {
            let mut exec = daemon.cli();
            exec.args(["exec", "dev", "--"]).arg("/usr/bin/aws").args([
                "sts",
                "get-caller-identity",
                "--output",
                "json",
                "--endpoint-url",
                &proxy.url(),
            ]);
            exec
        }
        _ => {
            let mut command = client.command(Some(&proxy.url()));
            command.env_clear().envs(route_env(&daemon, route));
            command
        }
    };
    let output = run(&mut command).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{client:?} via {route:?} failed ({}):\n{stderr}\n--- daemon log ---\n{}",
        output.status,
        daemon.log()
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{client:?} printed no JSON ({e}): {stdout}"));
    let arn = answer.get("arn").or_else(|| answer.get("Arn"));
    assert_eq!(
        arn.and_then(|a| a.as_str()),
        Some(EXPECTED_ARN),
        "{client:?} via {route:?}"
    );
    assert!(
        proxy.count("AssumeRole") >= 1,
        "the role came from the daemon's STS call"
    );
    if let Client::Boto3 = client {
        let method = match route {
            Route::Container => "container-role",
            Route::Imds => "iam-role",
            Route::CredentialProcess => "custom-process",
        };
        assert_eq!(
            answer["method"], method,
            "botocore used the intended provider"
        );
    }
}

macro_rules! cells {
    ($($name:ident: $client:ident via $route:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                assert_cell(Client::$client, Route::$route).await;
            }
        )*
    };
}

cells! {
    boto3_container: Boto3 via Container;
    boto3_imds: Boto3 via Imds;
    boto3_credential_process: Boto3 via CredentialProcess;
    cli_v2_container: CliV2 via Container;
    cli_v2_imds: CliV2 via Imds;
    cli_v2_credential_process: CliV2 via CredentialProcess;
    cli_v1_container: CliV1 via Container;
    cli_v1_imds: CliV1 via Imds;
    js_container: Js via Container;
    js_imds: Js via Imds;
    js_credential_process: Js via CredentialProcess;
    rust_container: Rust via Container;
    rust_imds: Rust via Imds;
    rust_credential_process: Rust via CredentialProcess;
}
