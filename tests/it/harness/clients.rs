//! The real clients the tests run, as unmodified programs: each asks STS who
//! it is (`GetCallerIdentity`) with credentials its own default chain found,
//! and prints JSON with the ARN (`arn`, or the CLI's `Arn`).

use std::path::PathBuf;

use tokio::process::Command;

use super::python;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Boto3,
    /// Debian's AWS CLI v2 (2.9): predates `..._TOKEN_FILE` and `endpoint_url`.
    CliV2,
    CliV1,
    Js,
    Rust,
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::Boto3,
        Client::CliV2,
        Client::CliV1,
        Client::Js,
        Client::Rust,
    ];

    /// The command line. `sts` is given to the CLIs as `--endpoint-url`;
    /// without it they find STS as the other clients do (the environment or
    /// the profile's `endpoint_url`).
    pub fn argv(self, sts: Option<&str>) -> Vec<String> {
        let mut cli: Vec<String> = ["sts", "get-caller-identity", "--output", "json"]
            .map(String::from)
            .to_vec();
        if let Some(sts) = sts {
            cli.extend(["--endpoint-url".to_owned(), sts.to_owned()]);
        }
        let path = |p: PathBuf| p.display().to_string();
        match self {
            Client::Boto3 => vec![python(), path(clients_dir().join("whoami.py"))],
            Client::CliV2 => [vec!["/usr/bin/aws".to_owned()], cli].concat(),
            Client::CliV1 => [vec![python(), "-m".into(), "awscli".into()], cli].concat(),
            Client::Js => vec!["node".into(), path(clients_dir().join("node/whoami.mjs"))],
            Client::Rust => vec![path(rust_whoami())],
        }
    }

    pub fn command(self, sts: Option<&str>) -> Command {
        let argv = self.argv(sts);
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        command
    }
}

/// The ARN a client printed.
pub fn arn_of(stdout: &[u8]) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let arn = answer.get("arn").or_else(|| answer.get("Arn"))?;
    arn.as_str().map(str::to_owned)
}

pub fn clients_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
}

/// `examples/rust_whoami.rs`, built by `cargo test` next to the test binary.
pub fn rust_whoami() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let example = target.join("examples/rust_whoami");
    assert!(
        example.exists(),
        "{} is missing: run the tests with `cargo test` (scripts/test does)",
        example.display()
    );
    example
}
