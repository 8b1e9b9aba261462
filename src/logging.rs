//! Log setup. Whatever `RUST_LOG` says, the crates that could print request
//! or response bodies (and with them secret keys and session tokens) are held
//! at `info`: no secret reaches a log at any level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

const HELD_AT_INFO: [&str; 6] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_sigv4",
    "hyper",
    "hyper_util",
];

/// Crates whose own warnings print the SDK's `DisplayErrorContext` (the
/// error's causes, then a `Debug` dump of all of it) and whose info lines
/// print `Debug` (aws-config's profile chain): the daemon reports the same
/// failures itself, in one readable line. Unless `RUST_LOG` asks for `debug`
/// or `trace`, they speak only at `error`.
const QUIET_UNLESS_DEBUGGING: [&str; 3] =
    ["aws_config", "aws_smithy_runtime", "aws_smithy_http_client"];

/// Whether `target` is quieted: `RUST_LOG` (`asked`) neither names it nor
/// sets every crate to `debug` or `trace`.
fn quiet(asked: &str, target: &str) -> bool {
    !asked.split(',').map(str::trim).any(|directive| {
        matches!(directive.to_lowercase().as_str(), "debug" | "trace")
            || directive.starts_with(target)
    })
}

/// How `serve` logs: human-readable, or JSON lines for journald and collectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in HELD_AT_INFO {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    for target in QUIET_UNLESS_DEBUGGING
        .into_iter()
        .filter(|t| quiet(&asked, t))
    {
        if let Ok(directive) = format!("{target}=error").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::quiet;

    #[test]
    fn the_sdk_s_own_lines_are_quiet_unless_asked_for() {
        assert!(quiet("", "aws_config"));
        assert!(quiet("info,assumed=debug", "aws_config"));
        assert!(!quiet("debug", "aws_config"));
        assert!(!quiet("info, TRACE", "aws_config"));
        assert!(!quiet("info,aws_config=warn", "aws_config"));
    }
}
