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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
