//! `assumed console ROLE`: the AWS console as ROLE, in the browser.
//!
//! ROLE's credentials come from the running daemon (`/admin/console/ROLE`),
//! never from an AssumeRole of our own: MFA, chaining and SSO work as they do
//! for every other client, and the daemon says whether the credentials are
//! one AssumeRole (the only kind the federation endpoint takes a
//! `SessionDuration` for). Then the federation endpoint's `getSigninToken`,
//! and the `Action=login` URL, opened or printed.
//!
//! * `partition.rs` — sign-in and console hosts by partition and region;
//! * `signin.rs` — the federation endpoint's two calls;
//! * `browser.rs` — `$BROWSER`, `xdg-open`, `open`;
//! * `launch.rs` — a browser started by name, with a profile or a Firefox
//!   container of the role's own (`--isolate`, `[console]`).

mod browser;
mod launch;
mod partition;
mod signin;

use std::process::ExitCode;
use std::time::Duration;

use url::Url;

use crate::config::{Config, Isolation, validate};
use crate::credentials::Secret;
use partition::Partition;

/// What the federation endpoint accepts as `SessionDuration`.
const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
const MAX_DURATION: Duration = Duration::from_secs(12 * 60 * 60);

/// The command's arguments.
pub struct Request {
    pub role: String,
    pub print: bool,
    pub destination: Option<String>,
    pub region: Option<String>,
    pub duration: Option<Duration>,
    /// `--isolate`/`--no-isolate`; `None`: `[console] isolate`.
    pub isolate: Option<Isolation>,
    /// `--browser`; `None`: `[console] browser`.
    pub browser: Option<String>,
}

/// Where the browser lands: a whole console URL, or a service's page.
enum Destination {
    Url(String),
    Service(String),
}

impl Destination {
    fn parse(text: &str) -> Result<Destination, String> {
        if text.contains("://") {
            let url = Url::parse(text).map_err(|e| format!("--destination {text:?}: {e}"))?;
            if url.scheme() != "https" || url.host_str().is_none() {
                return Err(format!(
                    "--destination {text:?} must be an https:// console URL"
                ));
            }
            return Ok(Destination::Url(text.to_owned()));
        }
        let service = text;
        let valid = !service.is_empty()
            && service
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "--destination {text:?} is neither a service name (s3, ec2, cloudwatch…) nor an https:// console URL"
            ));
        }
        Ok(Destination::Service(service.to_owned()))
    }

    fn url(&self, partition: Partition, region: &str) -> String {
        match self {
            Destination::Url(url) => url.clone(),
            Destination::Service(service) => partition.service_url(service, region),
        }
    }
}

/// What the daemon answers at `/admin/console/ROLE`.
struct Served {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Secret,
    role_arn: String,
    region: Option<String>,
    origin_kind: String,
    origin_explanation: String,
}

impl Served {
    fn from_answer(answer: &serde_json::Value) -> Result<Served, String> {
        let credentials = &answer["credentials"];
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let missing =
            || "the daemon's answer lacks credentials; is it an older version?".to_owned();
        Ok(Served {
            access_key_id: text(&credentials["AccessKeyId"]).ok_or_else(missing)?,
            secret_access_key: Secret::new(
                text(&credentials["SecretAccessKey"]).ok_or_else(missing)?,
            ),
            session_token: Secret::new(text(&credentials["Token"]).ok_or_else(missing)?),
            role_arn: text(&credentials["RoleArn"]).unwrap_or_default(),
            region: text(&answer["region"]),
            origin_kind: text(&answer["origin"]["kind"]).unwrap_or_default(),
            origin_explanation: text(&answer["origin"]["explanation"]).unwrap_or_default(),
        })
    }
}

/// Runs the command; `ask_daemon` GETs a path from the running daemon (the
/// CLI's own, with the token) and returns its JSON or its message.
pub fn run(
    config: &Config,
    request: Request,
    ask_daemon: impl FnOnce(&str) -> Result<serde_json::Value, String>,
) -> Result<ExitCode, String> {
    // Everything the user typed is checked before anything is asked for.
    // Role names are URL-safe (config and profile import make sure of it), so
    // anything else names no role and must not reach the request line.
    let url_safe = |c: char| c.is_ascii_alphanumeric() || "_.@+=,-".contains(c);
    if request.role.is_empty() || !request.role.chars().all(url_safe) {
        return Err(format!(
            "no role named {:?} (see `assumed roles`)",
            request.role
        ));
    }
    if let Some(duration) = request.duration {
        if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
            return Err(format!(
                "--duration {} is outside what the console accepts (15m to 12h)",
                humantime::format_duration(duration)
            ));
        }
    }
    if let Some(region) = &request.region {
        validate::region(region).map_err(|problem| format!("--region: {problem}"))?;
    }
    let destination = request
        .destination
        .as_deref()
        .map(Destination::parse)
        .transpose()?;
    let isolation = request.isolate.unwrap_or(config.console.isolate);
    let browser_setting = request
        .browser
        .as_deref()
        .or(config.console.browser.as_deref());
    // A browser that cannot open the console as asked is found out before a
    // sign-in token is made for nothing.
    let browser = if request.print || (isolation == Isolation::Shared && browser_setting.is_none())
    {
        None
    } else {
        Some(launch::Browser::choose(browser_setting, isolation)?)
    };
    let endpoint_override = config
        .source
        .federation_endpoint
        .as_deref()
        .map(|text| Url::parse(text).map_err(|e| format!("federation_endpoint {text:?}: {e}")))
        .transpose()?;

    let answer = ask_daemon(&format!("/admin/console/{}", request.role)).map_err(|message| {
        if message == "no such endpoint" {
            "the running daemon predates `assumed console`; restart it with this version".into()
        } else {
            message
        }
    })?;
    let served = Served::from_answer(&answer)?;
    if request.duration.is_some() && served.origin_kind != "assume-role" {
        return Err(format!(
            "--duration cannot be used with role {}: {}. The federation endpoint accepts \
             SessionDuration only for credentials from a single AssumeRole; leave out --duration",
            request.role, served.origin_explanation
        ));
    }

    let (partition, region) = place(
        &served.role_arn,
        request.region.as_deref(),
        served.region.as_deref().or(config.source.region.as_deref()),
    )?;
    let endpoint = match endpoint_override {
        Some(url) => url,
        None => Url::parse(&partition.federation_endpoint(&region))
            .map_err(|e| format!("the federation endpoint: {e}"))?,
    };
    let destination = destination
        .unwrap_or(Destination::Service("console".into()))
        .url(partition, &region);

    let session = signin::Session {
        access_key_id: &served.access_key_id,
        secret_access_key: &served.secret_access_key,
        session_token: &served.session_token,
    };
    let token = signin::signin_token(&endpoint, &session, request.duration)?;
    let url = signin::login_url(&endpoint, &destination, &token);

    if request.print {
        let printed = match isolation {
            // What granted's `--url` prints for Firefox: a script hands it on.
            Isolation::Container => launch::container_url(&request.role, &url),
            _ => url,
        };
        println!("{}", printed.expose());
        return Ok(ExitCode::SUCCESS);
    }
    let (outcome, profile) = match browser {
        None => (browser::open(&url), None),
        Some(browser) => {
            let profiles = launch::profiles_root()?;
            let (command, profile) = browser.command(&url, &request.role, isolation, &profiles)?;
            (browser.open(command), profile)
        }
    };
    match outcome {
        browser::Outcome::Opened { with } => {
            let apart = match (isolation, profile) {
                (_, Some(profile)) => format!(", in its own profile {}", profile.display()),
                (Isolation::Container, None) => {
                    format!(" in a Firefox container named {}", request.role)
                }
                _ => String::new(),
            };
            eprintln!(
                "assumed: opened the AWS console as role {} in {region} with {with}{apart}",
                request.role
            );
        }
        browser::Outcome::NotOpened { why } => {
            eprintln!(
                "assumed: no browser could be opened ({why}); set $BROWSER or open this URL \
                 yourself. It signs in as role {} for the next 15 minutes: keep it to yourself.",
                request.role
            );
            println!("{}", url.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The partition (from the role's ARN) and the console region: `--region`,
/// else the role's or the config's region when it is in that partition, else
/// the partition's default region.
fn place(
    role_arn: &str,
    asked: Option<&str>,
    configured: Option<&str>,
) -> Result<(Partition, String), String> {
    let from_arn = Partition::of_arn(role_arn)?;
    if let Some(region) = asked {
        let of_region = Partition::of_region(region)?;
        return match from_arn {
            Some(partition) if partition != of_region => Err(format!(
                "--region {region} is in partition {}, but role {role_arn} is in {}",
                of_region.name(),
                partition.name()
            )),
            _ => Ok((of_region, region.to_owned())),
        };
    }
    let partition = match from_arn {
        Some(partition) => partition,
        None => configured
            .and_then(|region| Partition::of_region(region).ok())
            .unwrap_or(Partition::Aws),
    };
    let region = configured
        .filter(|region| Partition::of_region(region).ok() == Some(partition))
        .unwrap_or(partition.default_region());
    Ok((partition, region.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_follows_the_flag_then_the_config_within_the_roles_partition() {
        let cn = "arn:aws-cn:iam::111111111111:role/dev";
        assert_eq!(
            place(cn, None, Some("us-east-1")),
            Ok((Partition::China, "cn-north-1".into())),
            "a region of another partition is not used"
        );
        assert_eq!(
            place(cn, Some("cn-northwest-1"), None),
            Ok((Partition::China, "cn-northwest-1".into()))
        );
        let wrong = place(cn, Some("eu-west-1"), None).unwrap_err();
        assert!(wrong.contains("partition aws,"), "{wrong}");
        let gov = "arn:aws-us-gov:iam::111111111111:role/dev";
        assert_eq!(
            place(gov, None, Some("us-gov-east-1")),
            Ok((Partition::GovCloud, "us-gov-east-1".into()))
        );
        assert_eq!(
            place("", None, None),
            Ok((Partition::Aws, "us-east-1".into()))
        );
    }

    #[test]
    fn destinations_are_service_names_or_console_urls() {
        let service = Destination::parse("cloudwatch").unwrap();
        assert_eq!(
            service.url(Partition::Aws, "eu-west-1"),
            "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        );
        let url = "https://console.aws.amazon.com/iam/home#/roles";
        assert_eq!(
            Destination::parse(url).unwrap().url(Partition::Aws, "x"),
            url
        );
        assert!(Destination::parse("http://console.aws.amazon.com/").is_err());
        assert!(Destination::parse("S3 buckets").is_err());
        assert!(Destination::parse("iam/home#/roles").is_err());
    }
}
