//! `assumed init`: a first config, written from what the user already has.
//! Each role profile of `~/.aws/config` becomes a `[roles]` entry (read by
//! `profiles`, so exactly as the daemon would import it), `[source]` names the
//! profile the standard chain would pick, and every other setting is shown
//! commented out at its default. The file goes where every other command
//! reads it, is checked before it is written, and is never overwritten
//! without `--force`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, RoleConfig};
use crate::profiles::AwsProfiles;

pub fn run(config_arg: Option<&Path>, force: bool) -> Result<ExitCode, String> {
    let path = config::resolve_path(config_arg)
        .ok_or("cannot find the config directory (no home?); name a file with --config")?;
    if path.exists() && !force {
        return Err(format!(
            "{} exists, and nothing was written; `assumed init --force` replaces it",
            path.display()
        ));
    }
    let profiles = AwsProfiles::load_blocking()?;
    let source = source_profile(&profiles);
    let roles = profiles.roles();
    let text = render(&roles, source.as_deref(), &profiles);
    // What init writes must be what `check` accepts; a failure here is ours.
    config::parse(&text, &path.display().to_string())
        .map_err(|d| format!("the config init made does not validate (a bug):\n{d}"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::token::write_atomically(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;

    let shown = path.display();
    let written: Vec<&str> = roles
        .iter()
        .filter(|(_, role)| !stays_imported(role))
        .map(|(name, _)| name.as_str())
        .collect();
    if roles.is_empty() {
        println!(
            "wrote {shown}: no profile in ~/.aws/config has a role_arn, so it has no roles yet;\n\
             add a [roles.NAME] with role_arn (config/example.toml shows every key)"
        );
    } else {
        println!(
            "wrote {shown}: {} role(s) from ~/.aws/config ({})",
            written.len(),
            written.join(", ")
        );
    }
    let kept = roles.len() - written.len();
    if kept > 0 {
        println!(
            "{kept} more served from ~/.aws/config as they are (their source has no config key)"
        );
    }
    let manager = if cfg!(target_os = "macos") {
        "--launchd"
    } else {
        "--systemd"
    };
    let role = written.first().copied().unwrap_or("ROLE");
    println!("next:");
    println!("  assumed check                    # validate it");
    println!("  assumed install {manager}       # run the daemon as a service");
    println!("  eval \"$(assumed env {role})\"       # point this shell at a role");
    Ok(ExitCode::SUCCESS)
}

/// The profile the daemon's own credentials come from, as the standard
/// chain picks it (and `doctor` explains): `AWS_PROFILE`, else `default`.
fn source_profile(profiles: &AwsProfiles) -> Option<String> {
    std::env::var("AWS_PROFILE")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            profiles
                .has_profile("default")
                .then(|| "default".to_owned())
        })
}

/// The config text. Pure, so the format is unit-tested.
pub fn render(
    roles: &BTreeMap<String, RoleConfig>,
    source: Option<&str>,
    profiles: &AwsProfiles,
) -> String {
    let mut out = String::from(
        "# assumed config, written by `assumed init` from ~/.aws/config.\n\
         # config/example.toml describes every key; `assumed check` validates this file\n\
         # and `assumed reload` applies it to a running daemon.\n\n\
         [server]\n\
         # listen = [\"127.0.0.1:9911\"]\n\
         # The role served at /creds and by the IMDS emulation.\n",
    );
    match roles.keys().next() {
        Some(first) => writeln!(out, "# default_role = {}", quote(first)),
        None => writeln!(out, "# default_role = \"dev\""),
    }
    .ok();
    out.push_str(
        "# Profiles with a role_arn added to ~/.aws/config later are served too,\n\
         # under their own names, unless this is false.\n\
         # import_profiles = true\n\n\
         [source]\n\
         # What signs AssumeRole for roles without a source_profile of their own:\n\
         # a profile of ~/.aws/config (keys, SSO, credential_process…), or keys\n\
         # stored with `assumed keys add NAME` (keys = \"NAME\").\n",
    );
    match source {
        Some(profile) => writeln!(out, "profile = {}", quote(profile)),
        None => writeln!(out, "# profile = \"default\""),
    }
    .ok();
    match source.and_then(|p| profiles.region(p)) {
        Some(region) => writeln!(out, "region = {}", quote(region)),
        None => writeln!(out, "# region = \"us-east-1\""),
    }
    .ok();
    for (name, role) in roles {
        out.push('\n');
        write_role(&mut out, name, role);
    }
    out
}

/// A role whose source (`credential_source`, a web identity token) has no
/// TOML key: it stays an imported profile, which the daemon serves as is.
fn stays_imported(role: &RoleConfig) -> bool {
    role.imported
        .as_ref()
        .is_some_and(|i| i.credential_source.is_some() || i.web_identity_token_file.is_some())
}

fn write_role(out: &mut String, name: &str, role: &RoleConfig) {
    let profile = role
        .imported
        .as_ref()
        .map(|i| i.profile.as_str())
        .unwrap_or(name);
    if stays_imported(role) {
        writeln!(
            out,
            "# [profile {profile}] is served from ~/.aws/config as it is: its source\n\
             # (credential_source or web_identity_token_file) is read from there."
        )
        .ok();
        return;
    }
    writeln!(out, "# From ~/.aws/config [profile {profile}].").ok();
    writeln!(out, "[roles.{}]", table_key(name)).ok();
    let mut line = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            writeln!(out, "{key} = {}", quote(&value)).ok();
        }
    };
    line("role_arn", role.role_arn.clone());
    line("source_profile", role.source_profile.clone());
    line("via", role.via.clone());
    line("mfa_serial", role.mfa_serial.clone());
    line("mfa_process", role.mfa_process.clone());
    line("region", role.region.clone());
    line("session_name", role.session_name.clone());
    line(
        "external_id",
        role.external_id.as_ref().map(|id| id.expose().to_owned()),
    );
    line(
        "duration",
        role.duration
            .map(|d| humantime::format_duration(d).to_string()),
    );
}

/// A TOML basic string.
fn quote(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A role name as a table key: bare when TOML allows it, else quoted.
fn table_key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        quote(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rendered(aws_config: &str, source: Option<&str>) -> (String, config::Config) {
        let profiles = AwsProfiles::from_config_text(aws_config).await;
        let text = render(&profiles.roles(), source, &profiles);
        let parsed = config::parse(&text, "init.toml")
            .unwrap_or_else(|d| panic!("{d}\n--- the text ---\n{text}"));
        (text, parsed)
    }

    #[tokio::test]
    async fn role_profiles_become_roles_with_their_settings() {
        let (text, config) = rendered(
            "[default]\nregion = eu-west-1\n\
             [profile dev]\nrole_arn = arn:aws:iam::111111111111:role/dev\nsource_profile = default\n\
             [profile prod]\nrole_arn = arn:aws:iam::222222222222:role/prod\nsource_profile = default\n\
             mfa_serial = arn:aws:iam::111111111111:mfa/alice\nregion = us-west-2\n\
             duration_seconds = 7200\nexternal_id = shared-id\n\
             [profile chained]\nrole_arn = arn:aws:iam::333333333333:role/c\nsource_profile = dev\n\
             [profile ci]\nrole_arn = arn:aws:iam::444444444444:role/ci\ncredential_source = Environment\n\
             [profile sso]\nsso_start_url = https://x.awsapps.com/start\nsso_region = eu-west-1\n",
            Some("default"),
        )
        .await;
        assert_eq!(
            config.roles.keys().collect::<Vec<_>>(),
            ["chained", "dev", "prod"],
            "{text}"
        );
        let prod = &config.roles["prod"];
        assert_eq!(prod.source_profile.as_deref(), Some("default"));
        assert_eq!(
            prod.mfa_serial.as_deref(),
            Some("arn:aws:iam::111111111111:mfa/alice")
        );
        assert_eq!(prod.region.as_deref(), Some("us-west-2"));
        assert_eq!(prod.duration, Some(std::time::Duration::from_secs(7200)));
        assert_eq!(
            prod.external_id.as_ref().map(|s| s.expose()),
            Some("shared-id")
        );
        assert_eq!(config.roles["chained"].via.as_deref(), Some("dev"));
        assert_eq!(config.source.profile.as_deref(), Some("default"));
        assert_eq!(config.source.region.as_deref(), Some("eu-west-1"));
        assert!(
            text.contains("[profile ci] is served from ~/.aws/config"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn with_nothing_to_read_it_is_still_a_valid_config() {
        let (text, config) = rendered("", None).await;
        assert!(config.roles.is_empty());
        assert!(config.source.profile.is_none());
        assert!(text.contains("# profile = \"default\""), "{text}");
    }

    #[test]
    fn names_toml_cannot_take_bare_are_quoted() {
        assert_eq!(table_key("dev-1_a"), "dev-1_a");
        assert_eq!(table_key("a.b@c"), "\"a.b@c\"");
    }
}
