//! A new user's first minutes (issue 27): shell completion of commands and
//! role names in a real bash and fish, the man pages as `man` renders them,
//! and what `serve` and `doctor` say when there is nothing to serve.

use std::path::Path;

use tokio::process::Command;

use crate::harness::daemon::{base_env, binary};
use crate::harness::{Daemon, Options, StsProxy, run};

const ROLES: &str = r#"
[roles.dev]
role_arn = "arn:aws:iam::111111111111:role/dev"
[roles.deploy]
role_arn = "arn:aws:iam::111111111111:role/deploy"
[roles.prod]
role_arn = "arn:aws:iam::222222222222:role/prod"
"#;

/// PATH with the `assumed` under test first: the completion scripts run
/// `assumed` from PATH at each TAB, as they do for a user.
fn path_with_binary() -> String {
    let dir = Path::new(binary()).parent().expect("binary's directory");
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// What bash completes for `line` (which ends where TAB is pressed), after
/// sourcing `assumed completions bash` as a user's ~/.bashrc would.
async fn bash_completes(home: &Path, extra_env: &[(&str, &str)], line: &str) -> Vec<String> {
    let script = r#"
set -u
source <(assumed completions bash) || exit 3
spec=$(complete -p assumed) || exit 4
func=${spec##*-F }; func=${func%% *}
read -ra COMP_WORDS <<<"$LINE"
[[ "$LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE=$LINE
COMP_POINT=${#LINE}
COMP_TYPE=9
COMPREPLY=()
"$func" assumed "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let output = run(Command::new("bash")
        .args(["--noprofile", "--norc", "-c", script])
        .env_clear()
        .envs(base_env(home))
        .env("PATH", path_with_binary())
        .env("LINE", line)
        .envs(extra_env.iter().copied()))
    .await;
    assert!(
        output.status.success(),
        "bash completion of {line:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    words(&output.stdout)
}

fn words(out: &[u8]) -> Vec<String> {
    let mut words: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words
}

#[tokio::test]
async fn bash_completes_the_running_daemons_role_names() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start(&proxy.url(), ROLES).await;
    let config = daemon.config_path.display().to_string();
    let env = [("ASSUMED_CONFIG", config.as_str())];
    let home = daemon.dir.path();

    for command in [
        "exec",
        "env",
        "console",
        "mfa",
        "credential-process",
        "doctor",
    ] {
        assert_eq!(
            bash_completes(home, &env, &format!("assumed {command} d")).await,
            ["deploy", "dev"],
            "assumed {command} d<TAB>"
        );
    }
    // An empty word offers the options too, as clap does; the roles are all there.
    let mut offered = bash_completes(home, &env, "assumed exec ").await;
    offered.retain(|word| !word.starts_with('-'));
    assert_eq!(offered, ["deploy", "dev", "prod"]);

    // The names are the daemon's: a config edited but not reloaded does not
    // change what it serves, nor what a TAB offers.
    let edited = std::fs::read_to_string(&daemon.config_path)
        .expect("config")
        .replace("[roles.deploy]", "[roles.dune]");
    std::fs::write(&daemon.config_path, edited).expect("edit config");
    assert_eq!(
        bash_completes(home, &env, "assumed exec d").await,
        ["deploy", "dev"]
    );
}

#[tokio::test]
async fn bash_completes_commands_flags_and_roles_from_the_files_without_a_daemon() {
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("config.toml");
    std::fs::write(&config, ROLES).expect("config");
    // A user's ~/.aws/config: keys-backed default, an SSO profile and a role
    // profile, which the daemon would serve too.
    std::fs::write(
        home.path().join("aws-config"),
        "[default]\nregion = eu-west-1\n\n\
         [profile sso-dev]\nsso_start_url = https://example.awsapps.com/start\nsso_region = eu-west-1\n\
         sso_account_id = 111111111111\nsso_role_name = Dev\n\n\
         [profile data-eng]\nrole_arn = arn:aws:iam::333333333333:role/data\nsource_profile = default\n",
    )
    .expect("aws config");
    std::fs::write(
        home.path().join("aws-credentials"),
        "[default]\naws_access_key_id = AKIDUSERSOWN\naws_secret_access_key = users-own-secret\n",
    )
    .expect("aws credentials");
    let config = config.display().to_string();
    let env = [("ASSUMED_CONFIG", config.as_str())];

    assert_eq!(
        bash_completes(home.path(), &env, "assumed exec d").await,
        ["data-eng", "deploy", "dev"]
    );
    let commands = bash_completes(home.path(), &env, "assumed e").await;
    assert_eq!(commands, ["env", "exec"]);
    let flags = bash_completes(home.path(), &env, "assumed console dev --d").await;
    assert!(flags.contains(&"--destination".to_owned()), "{flags:?}");
    assert!(flags.contains(&"--duration".to_owned()), "{flags:?}");
}

#[tokio::test]
async fn fish_completes_role_names() {
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("config.toml");
    std::fs::write(&config, ROLES).expect("config");
    let script = "assumed completions fish | source; or exit 3\n\
                  complete --do-complete 'assumed exec d'";
    let output = run(Command::new("fish")
        .args(["--no-config", "-c", script])
        .env_clear()
        .envs(base_env(home.path()))
        .env("PATH", path_with_binary())
        .env("ASSUMED_CONFIG", &config))
    .await;
    assert!(
        output.status.success(),
        "fish: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(words(&output.stdout), ["deploy", "dev"]);
}

#[tokio::test]
async fn zsh_script_registers_the_completer() {
    let output = run(Command::new(binary()).args(["completions", "zsh"])).await;
    assert!(output.status.success());
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(script.contains("#compdef assumed"), "{script}");
    assert!(script.contains("ASSUMED_COMPLETE"), "{script}");
}

#[tokio::test]
async fn man_renders_every_page_without_warnings() {
    let dir = tempfile::tempdir().expect("dir");
    let output = run(Command::new(binary()).arg("man").arg(dir.path())).await;
    assert!(
        output.status.success(),
        "assumed man: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "assumed.1",
        "assumed-exec.1",
        "assumed-keys-add.1",
        "assumed-completions.1",
    ] {
        assert!(
            pages.iter().any(|p| p == expected),
            "no {expected} in {pages:?}"
        );
    }
    for page in &pages {
        let output = run(Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.path().join(page))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat"))
        .await;
        let text = without_overstrike(&String::from_utf8_lossy(&output.stdout));
        let warnings = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "man -l {page}: {warnings}");
        assert!(
            warnings.trim().is_empty(),
            "man -l {page} warned: {warnings}"
        );
        assert!(
            text.contains("NAME") && text.contains("assumed"),
            "{page}: {text}"
        );
    }
    let exec = std::fs::read_to_string(dir.path().join("assumed-exec.1")).expect("page");
    assert!(exec.contains("credentials"), "{exec}");
}

/// man's bold and underline as a terminal would show them: `N\x08N` is N.
fn without_overstrike(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn serve_and_doctor_say_what_to_do_when_there_are_no_roles() {
    let proxy = StsProxy::start().await;
    let daemon = Daemon::start_with(Options::new(&proxy.url(), "")).await;
    daemon.wait_for_log("no roles to serve").await;
    let log = daemon.log();
    assert_eq!(log.matches("no roles to serve").count(), 1, "{log}");
    assert!(
        log.contains(&daemon.config_path.display().to_string()),
        "{log}"
    );

    let output = run(daemon.cli().args(["doctor", "--json"])).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("doctor --json");
    let roles = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "roles")
        .unwrap_or_else(|| panic!("no roles finding: {report}"));
    assert_eq!(roles["status"], "warn", "{roles}");
    assert!(
        roles["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no roles to serve"),
        "{roles}"
    );

    // With a role, neither says it.
    let daemon = Daemon::start(&proxy.url(), ROLES).await;
    assert!(!daemon.log().contains("no roles to serve"));
    let output = run(daemon.cli().args(["doctor", "--json"])).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("doctor --json");
    assert!(
        !report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["check"] == "roles"),
        "{report}"
    );
}

/// A user's `~/.aws`: their own keys in `[default]` with a region, role
/// profiles with and without MFA, one chained through another, one on
/// `credential_source`, and an SSO profile.
const USERS_AWS_CONFIG: &str = "\
[default]
region = eu-west-1

[profile dev]
role_arn = arn:aws:iam::111111111111:role/dev
source_profile = default

[profile prod]
role_arn = arn:aws:iam::222222222222:role/prod
source_profile = default
mfa_serial = arn:aws:iam::111111111111:mfa/alice

[profile data]
role_arn = arn:aws:iam::333333333333:role/data
source_profile = dev

[profile ci]
role_arn = arn:aws:iam::444444444444:role/ci
credential_source = Environment

[profile sso-dev]
sso_start_url = https://example.awsapps.com/start
sso_region = eu-west-1
sso_account_id = 111111111111
sso_role_name = Dev
";
const USERS_AWS_CREDENTIALS: &str =
    "[default]\naws_access_key_id = AKIDUSERSOWN\naws_secret_access_key = users-own-secret\n";

/// `assumed ARGS` in `home` (its aws files as given), with its config at
/// `home/cfg/config.toml`; the output.
async fn assumed_in(home: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(binary())
        .args(args)
        .env_clear()
        .envs(base_env(home))
        .env("ASSUMED_CONFIG", home.join("cfg/config.toml")))
    .await
}

fn home_with(aws_config: &str, aws_credentials: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join("aws-config"), aws_config).expect("aws config");
    std::fs::write(home.path().join("aws-credentials"), aws_credentials).expect("credentials");
    home
}

#[tokio::test]
async fn init_writes_the_role_profiles_a_daemon_then_serves() {
    let home = home_with(USERS_AWS_CONFIG, USERS_AWS_CREDENTIALS);
    let output = assumed_in(home.path(), &["init"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "assumed init: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for next in [
        "assumed check",
        "assumed install --systemd",
        "assumed env data",
    ] {
        assert!(stdout.contains(next), "no `{next}` in:\n{stdout}");
    }
    let written_path = home.path().join("cfg/config.toml");
    let written = std::fs::read_to_string(&written_path).expect("written config");
    for expected in [
        "[roles.dev]",
        "source_profile = \"default\"",
        "mfa_serial = \"arn:aws:iam::111111111111:mfa/alice\"",
        "[roles.data]\nrole_arn = \"arn:aws:iam::333333333333:role/data\"\nvia = \"dev\"",
        "profile = \"default\"",
        "region = \"eu-west-1\"",
    ] {
        assert!(written.contains(expected), "no {expected:?} in:\n{written}");
    }
    assert!(!written.contains("[roles.ci]"), "{written}");
    assert!(!written.contains("users-own-secret"), "{written}");

    let checked = assumed_in(home.path(), &["check"]).await;
    assert!(
        checked.status.success(),
        "assumed check of init's config: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A second init changes nothing without --force.
    let again = assumed_in(home.path(), &["init"]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&written_path).expect("config"),
        written
    );
    std::fs::write(&written_path, "# my own edits\n").expect("edit");
    let forced = assumed_in(home.path(), &["init", "--force"]).await;
    assert!(forced.status.success());
    assert_eq!(
        std::fs::read_to_string(&written_path).expect("config"),
        written
    );

    // A daemon on that file (with the test's port, token and STS) serves the
    // roles to boto3, each signed by the user's own default keys as the
    // profiles say, the chained one through dev.
    let proxy = StsProxy::start().await;
    let config = written
        .replacen(
            "[server]\n",
            "[server]\nlisten = [\"127.0.0.1:@PORT@\"]\ntoken_file = \"@TOKEN_FILE@\"\n",
            1,
        )
        .replacen(
            "[source]\n",
            &format!("[source]\nsts_endpoint = \"{}\"\n", proxy.url()),
            1,
        );
    let mut options = Options::new(&proxy.url(), "");
    options.config_file = Some(config);
    let daemon =
        Daemon::start_with(options.aws_files(USERS_AWS_CONFIG, USERS_AWS_CREDENTIALS)).await;
    let dev = whoami_under_exec(&daemon, "dev").await;
    assert!(
        dev["arn"]
            .as_str()
            .unwrap_or_default()
            .starts_with("arn:aws:sts::111111111111:assumed-role/dev/"),
        "{dev}"
    );
    let data = whoami_under_exec(&daemon, "data").await;
    assert!(
        data["arn"]
            .as_str()
            .unwrap_or_default()
            .starts_with("arn:aws:sts::333333333333:assumed-role/data/"),
        "{data}"
    );
    let signers: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter_map(|c| c.access_key_id)
        .collect();
    assert!(signers.iter().any(|k| k == "AKIDUSERSOWN"), "{signers:?}");
}

/// boto3 under `assumed exec ROLE`, as the user runs it: their own keys in
/// `[default]` must not win over the role.
async fn whoami_under_exec(daemon: &Daemon, role: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/whoami.py");
    let output = run(daemon
        .cli()
        .args(["exec", role, "--", &crate::harness::python(), script]))
    .await;
    assert!(
        output.status.success(),
        "assumed exec {role} -- whoami.py: {}\n--- daemon log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    serde_json::from_slice(&output.stdout).expect("whoami JSON")
}

#[tokio::test]
async fn init_with_only_sso_or_nothing_writes_a_valid_config_without_roles() {
    let only_sso = "[profile sso-dev]\nsso_start_url = https://example.awsapps.com/start\n\
                    sso_region = eu-west-1\nsso_account_id = 111111111111\nsso_role_name = Dev\n";
    for (aws_config, what) in [(only_sso, "only SSO"), ("", "no ~/.aws/config")] {
        let home = home_with(aws_config, "");
        let output = assumed_in(home.path(), &["init"]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("no profile in ~/.aws/config has a role_arn"),
            "{what}: {stdout}"
        );
        assert!(stdout.contains("assumed check"), "{what}: {stdout}");
        let checked = assumed_in(home.path(), &["check"]).await;
        assert!(
            checked.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}
