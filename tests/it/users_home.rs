//! A real user's machine, not an empty one: a home whose `~/.aws` already
//! holds the user's own credentials (keys, SSO, a credential_process, role
//! profiles, web identity, an `aws login` session), and shells with `AWS_*`
//! variables set. Under `assumed exec`, after `assumed env` in each format,
//! and with `env --imds`, every real client must get the role — never the
//! user's own identity — and keep the user's region and `endpoint_url`.
//!
//! Two STS proxies in front of moto tell the identities apart: the daemon
//! signs its AssumeRole through one; clients reach the other only through the
//! `endpoint_url` of the user's profile (Debian's CLI 2.9 predates that
//! setting, so it is given `--endpoint-url`), and the proxy records the
//! region and key each client signed with.

use std::path::Path;

use tokio::process::Command;

use crate::harness::clients::{Client, arn_of};
use crate::harness::daemon::binary;
use crate::harness::{
    DEV_ALICE as ROLES, DEV_ALICE_ARN as ROLE_IDENTITY, Daemon, Options, StsProxy, run, run_ok,
};
/// The user's own long-lived keys, which must never sign a client's call.
const USER_KEY: &str = "AKIAUSEROWNKEYS00001";
const USER_KEYS: &str =
    "aws_access_key_id = AKIAUSEROWNKEYS00001\naws_secret_access_key = user-secret\n";
const HOME_REGION: &str = "eu-west-2";
const WORK_REGION: &str = "ap-southeast-2";
const ELSEWHERE_REGION: &str = "sa-east-1";

/// What the user's machine holds before `assumed` comes along.
#[derive(Clone, Copy, Debug)]
enum Setup {
    KeysInCredentials,
    KeysInConfig,
    CredentialProcess,
    Sso,
    RoleWithSourceProfile,
    RoleWithCredentialSource,
    WebIdentity,
    LoginSession,
    AwsProfile,
    AwsDefaultProfile,
    OtherFiles,
    EnvironmentKeys,
    WebIdentityVariables,
}

/// How the shell is pointed at the role.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Exec,
    Sh,
    Fish,
    Dotenv,
    Json,
    Imds,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Exec,
        Mode::Sh,
        Mode::Fish,
        Mode::Dotenv,
        Mode::Json,
        Mode::Imds,
    ];

    /// Every client under `exec` and IMDS, and after `eval` of the sh
    /// output; the other formats only change how the same variables are
    /// written, so boto3 checks them. Debian's CLI 2.9 reads only
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, which only `exec` sets.
    fn clients(self) -> Vec<Client> {
        match self {
            Mode::Exec | Mode::Imds => Client::ALL.to_vec(),
            Mode::Sh => Client::ALL
                .into_iter()
                .filter(|c| *c != Client::CliV2)
                .collect(),
            Mode::Fish | Mode::Dotenv | Mode::Json => vec![Client::Boto3],
        }
    }

    /// The command that sets the shell up this way, then runs `argv`.
    fn command(self, argv: &[String]) -> Command {
        let (program, mut args): (&str, Vec<String>) = match self {
            Mode::Exec => (binary(), ["exec", "dev", "--"].map(String::from).to_vec()),
            Mode::Sh => sh(r#"eval "$("$ASSUMED" env dev)" && exec "$@""#),
            Mode::Imds => sh(r#"eval "$("$ASSUMED" env dev --imds)" && exec "$@""#),
            Mode::Dotenv => sh(
                r#"set -a; eval "$("$ASSUMED" env dev --format dotenv)" || exit 9; set +a; exec "$@""#,
            ),
            Mode::Fish => (
                "fish",
                vec![
                    "--no-config".into(),
                    "-c".into(),
                    r#""$ASSUMED" env dev --format fish | source; and exec $argv"#.into(),
                ],
            ),
            Mode::Json => ("python3", vec!["-c".into(), APPLY_JSON.into()]),
        };
        args.extend(argv.iter().cloned());
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn sh(script: &str) -> (&'static str, Vec<String>) {
    ("sh", vec!["-c".into(), script.into(), "sh".into()])
}

/// What a program that consumes `env --format json` does: unset, set, run.
const APPLY_JSON: &str = r#"
import json, os, subprocess, sys
doc = json.loads(subprocess.run([os.environ["ASSUMED"], "env", "dev", "--format", "json"],
                                check=True, capture_output=True, text=True).stdout)
for name in doc["unset"]:
    os.environ.pop(name, None)
os.environ.update(doc["set"])
os.execvp(sys.argv[1], sys.argv[1:])
"#;

/// The user's home: `~/.aws` as `setup` has it, and the shell's variables.
struct Home {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    region: &'static str,
}

impl Home {
    fn new(setup: Setup, client_sts: &str) -> Home {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path();
        std::fs::create_dir_all(home.join(".aws")).expect("mkdir ~/.aws");
        let settings = format!(
            "region = {HOME_REGION}\noutput = json\ncli_pager =\nendpoint_url = {client_sts}\n\
             retry_mode = standard\nmax_attempts = 2\n"
        );
        let mut config = format!("# the user's own\n[default]\n{settings}");
        let mut credentials = String::new();
        let mut env: Vec<(String, String)> = Vec::new();
        let mut region = HOME_REGION;
        let mut set = |name: &str, value: &str| env.push((name.into(), value.into()));
        match setup {
            Setup::KeysInCredentials => credentials = format!("[default]\n{USER_KEYS}"),
            Setup::KeysInConfig => config.push_str(USER_KEYS),
            Setup::CredentialProcess => {
                let script = home.join("user-keys");
                std::fs::write(
                    &script,
                    format!(
                        "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"{USER_KEY}\", \"SecretAccessKey\": \"user-secret\"}}'\n"
                    ),
                )
                .expect("write script");
                make_executable(&script);
                config.push_str(&format!("credential_process = {}\n", script.display()));
            }
            Setup::Sso => config.push_str(
                "sso_session = corp\nsso_account_id = 333333333333\nsso_role_name = Admin\n\n\
                 [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-2\n",
            ),
            Setup::RoleWithSourceProfile => config.push_str(&format!(
                "role_arn = arn:aws:iam::222222222222:role/mine\nsource_profile = base\n\n\
                 [profile base]\n{USER_KEYS}"
            )),
            Setup::RoleWithCredentialSource => {
                config.push_str(
                    "role_arn = arn:aws:iam::222222222222:role/mine\ncredential_source = Environment\n",
                );
                set("AWS_ACCESS_KEY_ID", USER_KEY);
                set("AWS_SECRET_ACCESS_KEY", "user-secret");
            }
            Setup::WebIdentity => {
                let token = home.join("web-identity.jwt");
                std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2ln").expect("token");
                config.push_str(&format!(
                    "role_arn = arn:aws:iam::222222222222:role/web\nweb_identity_token_file = {}\n",
                    token.display()
                ));
            }
            Setup::LoginSession => {
                config.push_str("login_session = arn:aws:iam::123456789012:user/me\n");
            }
            Setup::AwsProfile | Setup::AwsDefaultProfile => {
                config.push_str(&format!(
                    "\n[profile work]\nregion = {WORK_REGION}\nendpoint_url = {client_sts}\n"
                ));
                credentials = format!("[work]\n{USER_KEYS}");
                let variable = match setup {
                    Setup::AwsProfile => "AWS_PROFILE",
                    _ => "AWS_DEFAULT_PROFILE",
                };
                set(variable, "work");
                region = WORK_REGION;
            }
            Setup::OtherFiles => {
                let elsewhere = home.join("work-aws");
                std::fs::create_dir_all(&elsewhere).expect("mkdir");
                std::fs::write(
                    elsewhere.join("config"),
                    format!("[default]\nregion = {ELSEWHERE_REGION}\nendpoint_url = {client_sts}\n"),
                )
                .expect("write");
                std::fs::write(elsewhere.join("credentials"), format!("[default]\n{USER_KEYS}"))
                    .expect("write");
                set("AWS_CONFIG_FILE", &elsewhere.join("config").display().to_string());
                set(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    &elsewhere.join("credentials").display().to_string(),
                );
                region = ELSEWHERE_REGION;
            }
            Setup::EnvironmentKeys => {
                set("AWS_ACCESS_KEY_ID", USER_KEY);
                set("AWS_SECRET_ACCESS_KEY", "user-secret");
                set("AWS_SESSION_TOKEN", "user-session");
            }
            Setup::WebIdentityVariables => {
                let token = home.join("web-identity.jwt");
                std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").expect("token");
                set("AWS_WEB_IDENTITY_TOKEN_FILE", &token.display().to_string());
                set("AWS_ROLE_ARN", "arn:aws:iam::222222222222:role/web");
            }
        }
        std::fs::write(home.join(".aws/config"), config).expect("write config");
        std::fs::write(home.join(".aws/credentials"), credentials).expect("write credentials");
        Home { dir, env, region }
    }

    /// The user's shell: no test settings, only what a login gives and what
    /// the setup added. The daemon's runtime dir is the user's.
    fn shell(&self, daemon: &Daemon) -> Vec<(String, String)> {
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
            ("HOME".into(), self.dir.path().display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                daemon.dir.path().join("xdg-run").display().to_string(),
            ),
            ("LANG".into(), "C.UTF-8".into()),
            ("ASSUMED".into(), binary().to_owned()),
            (
                "ASSUMED_CONFIG".into(),
                daemon.config_path.display().to_string(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        env
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Every mode and client in `setup` gets the role, in the user's region.
async fn the_role_wins(setup: Setup) {
    let daemon_sts = StsProxy::start().await;
    let client_sts = StsProxy::start().await;
    let daemon =
        Daemon::start_with(Options::new(&daemon_sts.url(), ROLES).server("default_role = \"dev\""))
            .await;
    let home = Home::new(setup, &client_sts.url());
    for mode in Mode::ALL {
        // dotenv cannot unset, and only the key variables are harmless when
        // empty (Rust's chain stops at an empty AWS_WEB_IDENTITY_TOKEN_FILE):
        // its output says which variables must not be set (docs/clients.md).
        if matches!((setup, mode), (Setup::WebIdentityVariables, Mode::Dotenv)) {
            continue;
        }
        for client in mode.clients() {
            let endpoint = (client == Client::CliV2).then(|| client_sts.url());
            let argv = client.argv(endpoint.as_deref());
            let mut command = mode.command(&argv);
            command.env_clear().envs(home.shell(&daemon));
            let output = run(&mut command).await;
            let what = format!("{setup:?}, {mode:?}, {client:?}");
            assert!(
                output.status.success(),
                "{what} failed ({}):\n{}\n--- daemon log ---\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                daemon.log()
            );
            assert_eq!(
                arn_of(&output.stdout).as_deref(),
                Some(ROLE_IDENTITY),
                "{what}: {}",
                String::from_utf8_lossy(&output.stdout)
            );
            let call = client_sts
                .last("GetCallerIdentity")
                .unwrap_or_else(|| panic!("{what}: no call reached the user's endpoint_url"));
            assert_ne!(call.access_key_id.as_deref(), Some(USER_KEY), "{what}");
            assert_eq!(call.region.as_deref(), Some(home.region), "{what}: region");
        }
    }
    assert_eq!(
        client_sts.count("AssumeRole") + client_sts.count("AssumeRoleWithWebIdentity"),
        0,
        "no client assumed the user's own role profile"
    );
}

/// Adds `text` to the end of the file at `path`, as a user editing it would.
fn append_to(path: &std::path::Path, text: &str) {
    let mut content = std::fs::read_to_string(path).expect("read");
    content.push_str(text);
    std::fs::write(path, content).expect("write");
}

macro_rules! setups {
    ($($name:ident: $setup:ident;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                the_role_wins(Setup::$setup).await;
            }
        )*
    };
}

setups! {
    role_beats_default_keys_in_credentials_file: KeysInCredentials;
    role_beats_default_keys_in_config_file: KeysInConfig;
    role_beats_a_default_credential_process: CredentialProcess;
    role_beats_a_default_sso_profile: Sso;
    role_beats_a_default_role_with_source_profile: RoleWithSourceProfile;
    role_beats_a_default_role_with_credential_source: RoleWithCredentialSource;
    role_beats_a_default_web_identity_profile: WebIdentity;
    role_beats_a_default_login_session: LoginSession;
    role_beats_aws_profile: AwsProfile;
    role_beats_aws_default_profile: AwsDefaultProfile;
    role_beats_other_config_files: OtherFiles;
    role_beats_environment_keys: EnvironmentKeys;
    role_beats_web_identity_variables: WebIdentityVariables;
}

/// `assumed env` run again in a shell it already set up still copies the
/// user's own profile (not its own copy), and `credential-process` works
/// from a profile of that shell's files too.
#[tokio::test]
async fn env_twice_and_credential_process_from_a_set_up_shell() {
    let daemon_sts = StsProxy::start().await;
    let client_sts = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&daemon_sts.url(), ROLES)).await;
    let home = Home::new(Setup::AwsProfile, &client_sts.url());
    let script = r#"
        eval "$("$ASSUMED" env dev)" && first=$AWS_CONFIG_FILE &&
        eval "$("$ASSUMED" env dev)" && [ "$first" = "$AWS_CONFIG_FILE" ] &&
        grep -q "ap-southeast-2" "$AWS_CONFIG_FILE" && exec "$@""#;
    let mut command = Command::new("sh");
    command
        .args(["-c", script, "sh"])
        .args(Client::Boto3.argv(None))
        .env_clear()
        .envs(home.shell(&daemon));
    let output = run_ok(&mut command).await;
    assert_eq!(arn_of(&output.stdout).as_deref(), Some(ROLE_IDENTITY));

    // A profile that asks the daemon through credential_process, in the
    // user's own config next to their keys.
    append_to(
        &home.dir.path().join(".aws/config"),
        &format!(
            "\n[profile via-assumed]\nregion = {HOME_REGION}\nendpoint_url = {}\ncredential_process = {} credential-process dev\n",
            client_sts.url(),
            binary()
        ),
    );
    let mut command = Client::Boto3.command(None);
    command
        .env_clear()
        .envs(home.shell(&daemon))
        .env("AWS_PROFILE", "via-assumed");
    let output = run_ok(&mut command).await;
    assert_eq!(arn_of(&output.stdout).as_deref(), Some(ROLE_IDENTITY));
}

/// What `env` writes holds none of the user's secrets, is private, and is
/// the copy the variables name.
#[tokio::test]
async fn the_copy_holds_no_secret_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let daemon_sts = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&daemon_sts.url(), ROLES)).await;
    let home = Home::new(Setup::KeysInCredentials, "http://127.0.0.1:9");
    append_to(
        &home.dir.path().join(".aws/config"),
        "credential_process = /bin/secret-helper --token hunter2\n",
    );
    let mut command = Command::new(binary());
    command
        .args(["env", "dev", "--format", "json"])
        .env_clear()
        .envs(home.shell(&daemon));
    let output = run_ok(&mut command).await;
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let copy = doc["set"]["AWS_CONFIG_FILE"]
        .as_str()
        .expect("AWS_CONFIG_FILE");
    let empty = doc["set"]["AWS_SHARED_CREDENTIALS_FILE"]
        .as_str()
        .expect("credentials");
    let text = std::fs::read_to_string(copy).expect("copy");
    for secret in [USER_KEY, "user-secret", "hunter2", "credential_process"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("region = eu-west-2"), "{text}");
    assert_eq!(std::fs::read(empty).expect("empty"), b"");
    for file in [copy, empty] {
        let mode = std::fs::metadata(file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
        let dir = Path::new(file).parent().expect("dir");
        let mode = std::fs::metadata(dir).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
}
