//! The user's shared AWS files (`~/.aws/config`, `~/.aws/credentials`) as an
//! SDK started in this shell would read them, line by line.
//!
//! Two commands need them this way, with line numbers and the text exactly as
//! written, which aws-config's parser does not keep:
//! * `env`/`exec` write a credential-free copy of the profile the user is in,
//!   so that the daemon's role wins over whatever that profile holds while its
//!   other settings (region, output, retries, endpoints, s3…) keep applying;
//! * `doctor` names the file and line that would win over the daemon.
//!
//! A copy records where it came from, so a shell that already points at one
//! still finds the user's own files (`assumed env` run twice, `doctor`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first line of every copy; also how a copy is recognised.
const COPY_MARK: &str = "# Written by assumed:";
const ORIGIN_CONFIG: &str = "# assumed-origin-config:";
const ORIGIN_CREDENTIALS: &str = "# assumed-origin-credentials:";
const ORIGIN_PROFILE: &str = "# assumed-origin-profile:";
const EMPTY_CREDENTIALS: &str = "aws-credentials-empty";

/// Keys that make a profile a credential source in some SDK. Kept out of a
/// copy by prefix as well as by name, so that a credential key added to the
/// SDKs later is more likely dropped than copied: a lost setting shows, a
/// wrong identity does not.
const CREDENTIAL_PREFIXES: [&str; 7] = [
    "aws_",
    "sso_",
    "role_",
    "credential_",
    "web_identity",
    "login_",
    "mfa_",
];
const CREDENTIAL_KEYS: [&str; 3] = ["source_profile", "external_id", "duration_seconds"];

/// Whether `key` (a profile setting) is about credentials rather than how a
/// program talks to AWS.
pub fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CREDENTIAL_PREFIXES.iter().any(|p| key.starts_with(p)) || CREDENTIAL_KEYS.contains(&&*key)
}

/// One `key = value` with its nested lines (`s3 =` followed by indented
/// `key = value` lines), as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// 1-based line of the key.
    pub line: usize,
    /// The key's line and its continuation lines, verbatim.
    pub text: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// What stands between the brackets, trimmed: `default`, `profile dev`,
    /// `services local`, or in the credentials file just the profile name.
    pub header: String,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// One shared file, parsed leniently the way the SDKs parse it: comments
/// (`#`, `;`) and blank lines skipped, indented lines continue the key above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IniFile {
    pub sections: Vec<Section>,
}

impl IniFile {
    pub fn parse(text: &str) -> IniFile {
        let mut sections: Vec<Section> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                sections.push(Section {
                    header: header.trim().to_owned(),
                    line,
                    entries: Vec::new(),
                });
                continue;
            }
            let Some(section) = sections.last_mut() else {
                continue;
            };
            let continues = raw.starts_with([' ', '\t']);
            match section.entries.last_mut() {
                Some(entry) if continues => entry.text.push(raw.to_owned()),
                _ => {
                    let key = trimmed.split('=').next().unwrap_or_default().trim();
                    section.entries.push(Entry {
                        key: key.to_owned(),
                        line,
                        text: vec![raw.trim_start().to_owned()],
                    });
                }
            }
        }
        IniFile { sections }
    }

    /// Reads `path`; a missing file is an empty one, as for the SDKs.
    pub fn read(path: &Path) -> io::Result<IniFile> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(IniFile::parse(&text)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(IniFile::default()),
            Err(error) => Err(error),
        }
    }

    /// Profile `name` in a config file: `[profile NAME]`, or `[default]`
    /// (`[profile default]` too). Sections of the same name merge, as in the SDKs.
    pub fn config_profile(&self, name: &str) -> Vec<&Section> {
        self.sections
            .iter()
            .filter(|s| config_profile_name(&s.header) == Some(name))
            .collect()
    }

    /// Profile `name` in a credentials file: `[NAME]`.
    pub fn credentials_profile(&self, name: &str) -> Vec<&Section> {
        self.sections.iter().filter(|s| s.header == name).collect()
    }
}

/// The profile a config-file section header names, if it names one.
fn config_profile_name(header: &str) -> Option<&str> {
    if header == "default" {
        return Some("default");
    }
    let name = header.strip_prefix("profile")?;
    name.starts_with([' ', '\t']).then(|| name.trim())
}

/// Which files and which profile an SDK started with this environment reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub config_path: PathBuf,
    pub credentials_path: PathBuf,
    pub profile: String,
    /// The variable that chose the profile (`AWS_PROFILE`, `AWS_DEFAULT_PROFILE`),
    /// or `None` for `default`.
    pub profile_from: Option<&'static str>,
}

impl Selection {
    /// As the SDKs choose: `AWS_CONFIG_FILE`/`AWS_SHARED_CREDENTIALS_FILE`,
    /// else `~/.aws/…`; `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE` (botocore
    /// and the CLI), else `default`.
    pub fn as_sdks_see_it(env: &dyn Fn(&str) -> Option<String>) -> Selection {
        let home = env("HOME").map(PathBuf::from).unwrap_or_default();
        let file = |variable: &str, default: &str| {
            env(variable)
                .filter(|v| !v.is_empty())
                .map(|v| expand_home(&v, &home))
                .unwrap_or_else(|| home.join(".aws").join(default))
        };
        let (profile, profile_from) = match (
            env("AWS_PROFILE").filter(|p| !p.is_empty()),
            env("AWS_DEFAULT_PROFILE").filter(|p| !p.is_empty()),
        ) {
            (Some(profile), _) => (profile, Some("AWS_PROFILE")),
            (None, Some(profile)) => (profile, Some("AWS_DEFAULT_PROFILE")),
            (None, None) => ("default".to_owned(), None),
        };
        Selection {
            config_path: file("AWS_CONFIG_FILE", "config"),
            credentials_path: file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            profile,
            profile_from,
        }
    }

    /// The user's own files and profile: what [`Selection::as_sdks_see_it`]
    /// says, unless that is one of our copies, whose origin it then follows.
    pub fn users_own(env: &dyn Fn(&str) -> Option<String>) -> Selection {
        let mut selection = Selection::as_sdks_see_it(env);
        if let Some(origin) = Origin::of(&selection.config_path) {
            selection.config_path = origin.config;
            if selection.credentials_path.file_name() == Some(EMPTY_CREDENTIALS.as_ref()) {
                selection.credentials_path = origin.credentials;
            }
            if selection.profile_from.is_none() {
                selection.profile = origin.profile;
            }
        }
        selection
    }

    /// The settings of the selected profile that are not about credentials:
    /// the config file's, then those only the credentials file has (botocore
    /// and aws-config read both). `region` replaces the profile's own.
    fn settings(&self, region: Option<&str>) -> io::Result<(Vec<Entry>, Vec<Section>)> {
        let config = IniFile::read(&self.config_path)?;
        let credentials = IniFile::read(&self.credentials_path)?;
        let mut kept: Vec<Entry> = Vec::new();
        let from_config = config.config_profile(&self.profile);
        let from_credentials = credentials.credentials_profile(&self.profile);
        for section in from_config.into_iter().chain(from_credentials) {
            for entry in &section.entries {
                let seen = kept.iter().any(|k| k.key.eq_ignore_ascii_case(&entry.key));
                if !seen && !is_credential_key(&entry.key) {
                    kept.push(entry.clone());
                }
            }
        }
        if let Some(region) = region {
            kept.retain(|e| !e.key.eq_ignore_ascii_case("region"));
            kept.insert(0, setting("region", region));
        }
        // `services = NAME` refers to a [services NAME] section: endpoint
        // settings only, so copied whole.
        let services = config
            .sections
            .iter()
            .filter(|s| s.header.starts_with("services ") || s.header.starts_with("services\t"))
            .cloned()
            .collect();
        Ok((kept, services))
    }
}

fn setting(key: &str, value: &str) -> Entry {
    Entry {
        key: key.to_owned(),
        line: 0,
        text: vec![format!("{key} = {value}")],
    }
}

fn expand_home(path: &str, home: &Path) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(path),
    }
}

/// Where a copy came from, as its header records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub config: PathBuf,
    pub credentials: PathBuf,
    pub profile: String,
}

impl Origin {
    /// `Some` when `path` is a copy written by [`write_copy`].
    pub fn of(path: &Path) -> Option<Origin> {
        let text = fs::read_to_string(path).ok()?;
        if !text.starts_with(COPY_MARK) {
            return None;
        }
        let value = |mark: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(mark))
                .map(|v| v.trim().to_owned())
        };
        Some(Origin {
            config: PathBuf::from(value(ORIGIN_CONFIG)?),
            credentials: PathBuf::from(value(ORIGIN_CREDENTIALS)?),
            profile: value(ORIGIN_PROFILE)?,
        })
    }
}

/// What to point an SDK at so that no profile of the user's gives it
/// credentials: the copy (`AWS_CONFIG_FILE`) and an empty credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub config: PathBuf,
    pub credentials: PathBuf,
}

/// The text of a copy of `selection`'s profile as `[default]`, with `region`
/// (a role's own) in place of the profile's when given.
pub fn copy_text(selection: &Selection, region: Option<&str>) -> io::Result<String> {
    let (settings, services) = selection.settings(region)?;
    let mut text = format!(
        "{COPY_MARK} the settings of profile {:?} without its credentials, so that\n\
         # the role `assumed` serves wins (see docs/clients.md). It holds no secret.\n\
         {ORIGIN_CONFIG} {}\n{ORIGIN_CREDENTIALS} {}\n{ORIGIN_PROFILE} {}\n\n[default]\n",
        selection.profile,
        selection.config_path.display(),
        selection.credentials_path.display(),
        selection.profile,
    );
    for entry in &settings {
        for line in &entry.text {
            text.push_str(line);
            text.push('\n');
        }
    }
    for section in &services {
        text.push_str(&format!("\n[{}]\n", section.header));
        for line in section.entries.iter().flat_map(|e| &e.text) {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(text)
}

/// Writes the copy into `dir` (the daemon's private runtime directory):
/// named by its content, so the same settings give the same file and shells
/// set up at different times never overwrite each other's.
pub fn write_copy(dir: &Path, selection: &Selection, region: Option<&str>) -> io::Result<Copy> {
    let text = copy_text(selection, region)?;
    let digest = Sha256::digest(text.as_bytes());
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let config = dir.join(format!("aws-config-{name}"));
    let credentials = dir.join(EMPTY_CREDENTIALS);
    write_private(&config, text.as_bytes())?;
    write_private(&credentials, b"")?;
    Ok(Copy {
        config,
        credentials,
    })
}

/// Leaves an identical file alone: many shells may share one copy.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|existing| existing == contents) {
        return Ok(());
    }
    crate::token::write_atomically(path, contents)
}

/// For commands that read the user's files themselves (`serve`, `roles`…):
/// when this process was started from a shell that `assumed env` set up,
/// point `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` and the profile
/// back at the user's own, so the daemon sees the user's profiles.
///
/// Must run before any other thread exists (it edits the environment).
pub fn restore_users_own_env() {
    let env = |name: &str| std::env::var(name).ok();
    let seen = Selection::as_sdks_see_it(&env);
    if Origin::of(&seen.config_path).is_none() {
        return;
    }
    let own = Selection::users_own(&env);
    // SAFETY: called from `main` before the runtime or any thread starts.
    unsafe {
        std::env::set_var("AWS_CONFIG_FILE", &own.config_path);
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &own.credentials_path);
        if own.profile != "default" && seen.profile_from.is_none() {
            std::env::set_var("AWS_PROFILE", &own.profile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# my settings
[default]
region = eu-west-2
output = table
credential_process = /usr/bin/get-keys
s3 =
  max_concurrent_requests = 20
  addressing_style = path
services = local

[profile work]
region = ap-south-1
sso_session = corp
sso_account_id = 111111111111
cli_pager =

[services local]
sts =
  endpoint_url = http://127.0.0.1:5000

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
";
    const CREDENTIALS: &str = "[default]\naws_access_key_id = AKIAUSER\naws_secret_access_key = s3cret\nretry_mode = standard\n";

    fn files(config: &str, credentials: &str) -> (tempfile::TempDir, Selection) {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("config"), config).expect("write");
        fs::write(dir.path().join("credentials"), credentials).expect("write");
        let selection = Selection {
            config_path: dir.path().join("config"),
            credentials_path: dir.path().join("credentials"),
            profile: "default".into(),
            profile_from: None,
        };
        (dir, selection)
    }

    #[test]
    fn sections_keep_lines_and_nested_settings() {
        let file = IniFile::parse(CONFIG);
        let default = file.config_profile("default");
        assert_eq!(default.len(), 1);
        assert_eq!(default[0].line, 2);
        let s3 = &default[0].entries[3];
        assert_eq!(s3.key, "s3");
        assert_eq!(s3.line, 6);
        assert_eq!(s3.text.len(), 3);
        assert_eq!(file.config_profile("work")[0].entries.len(), 4);
        assert!(
            file.config_profile("corp").is_empty(),
            "sso-session is no profile"
        );
        assert_eq!(config_profile_name("profile default"), Some("default"));
        assert_eq!(config_profile_name("profiled"), None);
    }

    #[test]
    fn credential_keys_are_recognised() {
        for key in [
            "aws_access_key_id",
            "AWS_SECRET_ACCESS_KEY",
            "aws_session_token",
            "credential_process",
            "credential_source",
            "role_arn",
            "source_profile",
            "web_identity_token_file",
            "sso_session",
            "sso_start_url",
            "login_session",
            "mfa_serial",
            "mfa_process",
        ] {
            assert!(is_credential_key(key), "{key}");
        }
        for key in [
            "region",
            "output",
            "s3",
            "services",
            "endpoint_url",
            "ca_bundle",
            "retry_mode",
            "max_attempts",
            "cli_pager",
        ] {
            assert!(!is_credential_key(key), "{key}");
        }
    }

    #[test]
    fn the_copy_keeps_settings_and_drops_every_credential() {
        let (_dir, selection) = files(CONFIG, CREDENTIALS);
        let text = copy_text(&selection, None).expect("copy");
        assert!(text.starts_with(COPY_MARK));
        assert!(text.contains("\n[default]\nregion = eu-west-2\noutput = table\n"));
        assert!(text.contains("s3 =\n  max_concurrent_requests = 20\n  addressing_style = path\n"));
        assert!(
            text.contains("retry_mode = standard\n"),
            "credentials-file setting kept"
        );
        assert!(text.contains("[services local]\nsts =\n  endpoint_url = http://127.0.0.1:5000\n"));
        for secret in [
            "AKIAUSER",
            "s3cret",
            "credential_process",
            "sso",
            "get-keys",
        ] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
        let parsed = IniFile::parse(&text);
        assert_eq!(parsed.config_profile("default").len(), 1);
    }

    #[test]
    fn a_roles_region_replaces_the_profiles() {
        let (_dir, selection) = files(CONFIG, "");
        let text = copy_text(&selection, Some("ca-central-1")).expect("copy");
        assert!(text.contains("[default]\nregion = ca-central-1\n"));
        assert!(!text.contains("eu-west-2"));
    }

    #[test]
    fn a_named_profile_becomes_default_in_the_copy() {
        let (_dir, mut selection) = files(CONFIG, CREDENTIALS);
        selection.profile = "work".into();
        let text = copy_text(&selection, None).expect("copy");
        assert!(text.contains("[default]\nregion = ap-south-1\ncli_pager =\n"));
        assert!(!text.contains("sso_account_id"));
        assert!(
            !text.contains("retry_mode"),
            "[default]'s settings are not work's"
        );
    }

    #[test]
    fn copies_are_private_named_by_content_and_remember_their_origin() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, selection) = files(CONFIG, CREDENTIALS);
        let first = write_copy(dir.path(), &selection, None).expect("write");
        let again = write_copy(dir.path(), &selection, None).expect("write");
        assert_eq!(first, again);
        let other = write_copy(dir.path(), &selection, Some("us-west-2")).expect("write");
        assert_ne!(first.config, other.config);
        let mode = fs::metadata(&first.config)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read(&first.credentials).expect("read"), b"");
        assert_eq!(
            Origin::of(&first.config),
            Some(Origin {
                config: selection.config_path.clone(),
                credentials: selection.credentials_path.clone(),
                profile: "default".into(),
            })
        );
        assert_eq!(Origin::of(&selection.config_path), None);

        // A shell already pointed at the copy still finds the user's files.
        let config = first.config.display().to_string();
        let credentials = first.credentials.display().to_string();
        let env = |name: &str| match name {
            "AWS_CONFIG_FILE" => Some(config.clone()),
            "AWS_SHARED_CREDENTIALS_FILE" => Some(credentials.clone()),
            _ => None,
        };
        assert_eq!(Selection::users_own(&env), selection);
    }

    #[test]
    fn the_profile_comes_from_aws_profile_then_aws_default_profile() {
        let env = |name: &str| match name {
            "HOME" => Some("/home/u".to_owned()),
            "AWS_DEFAULT_PROFILE" => Some("old".to_owned()),
            _ => None,
        };
        let seen = Selection::as_sdks_see_it(&env);
        assert_eq!(seen.profile, "old");
        assert_eq!(seen.profile_from, Some("AWS_DEFAULT_PROFILE"));
        assert_eq!(seen.config_path, PathBuf::from("/home/u/.aws/config"));
        let env = |name: &str| match name {
            "AWS_PROFILE" => Some("new".to_owned()),
            "AWS_DEFAULT_PROFILE" => Some("old".to_owned()),
            "AWS_CONFIG_FILE" => Some("/etc/aws".to_owned()),
            _ => None,
        };
        let seen = Selection::as_sdks_see_it(&env);
        assert_eq!(
            (seen.profile.as_str(), seen.profile_from),
            ("new", Some("AWS_PROFILE"))
        );
        assert_eq!(seen.config_path, PathBuf::from("/etc/aws"));
    }
}
