//! What a failed STS call tells a person: one sentence naming the endpoint
//! the SDK actually called and what went wrong there (`could not reach STS at
//! https://sts.eu-west-1.amazonaws.com: DNS lookup failed (Name or service
//! not known)`, `STS at … refused AssumeRole: AccessDenied: …`). The SDK's
//! own rendering (`DisplayErrorContext`) ends in a `Debug` dump of the whole
//! error; that goes to one debug log line and nowhere else.
//!
//! The endpoint is read off the request as it leaves (an interceptor), so
//! it is the one the SDK resolved, whichever setting chose it.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sts::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sts::error::{BoxError, DisplayErrorContext, SdkError};
use parking_lot::Mutex;

use crate::config::Deadlines;
use crate::error_chain::{causes, readable};

/// One STS call: its operation, the deadlines it ran under, and what the
/// interceptor saw of its attempts.
pub(super) struct Call {
    operation: &'static str,
    watch: Watch,
}

/// The interceptor that notes where a call's request went and why each of
/// its attempts failed: when the call's own deadline ends it (in a retry's
/// backoff, say), the last attempt's cause is still the news.
#[derive(Clone, Debug)]
pub(super) struct Watch {
    deadlines: Deadlines,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    endpoint: Option<String>,
    attempts: u32,
    last_failure: Option<Failure>,
}

/// How one attempt failed.
#[derive(Clone, Debug)]
enum Failure {
    /// No answer: the network's reason, or the deadline that ended it.
    NoAnswer(String),
    /// STS's error answer (one the SDK retries: throttling, 5xx).
    Answered {
        status: u16,
        code: String,
        message: String,
    },
}

/// Whether the daemon retries this answer soon (`classify` agrees).
pub(super) fn retried(status: u16, code: &str) -> bool {
    status >= 500
        || code.contains("Throttl")
        || code == "RequestLimitExceeded"
        || code == "IDPCommunicationError"
}

impl Call {
    pub fn new(operation: &'static str, deadlines: Deadlines) -> Self {
        Call {
            operation,
            watch: Watch {
                deadlines,
                seen: Arc::default(),
            },
        }
    }

    /// Attach to the call (`.customize().interceptor(call.watch())`).
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// `https://host[:port]` the request went to, if it got that far.
    pub fn endpoint(&self) -> Option<String> {
        self.watch.seen.lock().endpoint.clone()
    }

    /// STS's error answer, in words: who answered what to which call, and
    /// for an answer worth retrying (throttling, 5xx), that the daemon will.
    pub fn service_error(&self, status: u16, code: &str, message: &str) -> String {
        let answered = self.answered(status, code, message);
        match retried(status, code) {
            true => format!("{answered}; retrying with backoff"),
            false => answered,
        }
    }

    fn answered(&self, status: u16, code: &str, message: &str) -> String {
        let at = self.at();
        let operation = self.operation;
        // STS ends some messages with a full stop, some without.
        let said = match message.trim().trim_end_matches('.') {
            "" => code.to_owned(),
            message => format!("{code}: {message}"),
        };
        if code.contains("Throttl") || code == "RequestLimitExceeded" {
            return format!("STS{at} is throttling {operation} ({said})");
        }
        if status >= 500 {
            return format!("STS{at} failed {operation} with HTTP {status} ({said})");
        }
        let hint = match code {
            "ExpiredToken" | "ExpiredTokenException" => {
                "; the credentials that signed it have expired"
            }
            "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch" => {
                "; the credentials that signed it are not valid"
            }
            _ => "",
        };
        format!("STS{at} refused {operation}: {said}{hint}")
    }

    /// A call that got no answer from STS (or none it could read), in words.
    pub fn no_answer<E, R>(&self, error: &SdkError<E, R>) -> String
    where
        E: Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let at = self.at();
        match error {
            SdkError::TimeoutError(_) => {
                let deadlines = &self.watch.deadlines;
                let ended = timed_out(error, deadlines);
                // The whole call's deadline ended it between or during
                // retries: the last attempt's failure is the cause. (Read
                // out of the lock: `answered` takes it for the endpoint.)
                let (attempts, last_failure) = {
                    let seen = self.watch.seen.lock();
                    (seen.attempts, seen.last_failure.clone())
                };
                let attempts = match attempts {
                    1 => "1 attempt".to_owned(),
                    n => format!("{n} attempts"),
                };
                let stopped = format!(
                    "stopped after {attempts} by sts_timeout ({})",
                    seconds(deadlines.sts)
                );
                match &last_failure {
                    _ if !ended.ends_with("(sts_timeout)") => {
                        format!("could not reach STS{at}: {ended}")
                    }
                    Some(Failure::NoAnswer(why)) => {
                        format!("could not reach STS{at}: {why}; {stopped}")
                    }
                    Some(Failure::Answered {
                        status,
                        code,
                        message,
                    }) => format!("{}; {stopped}", self.answered(*status, code, message)),
                    None => format!("could not reach STS{at}: {ended}"),
                }
            }
            SdkError::DispatchFailure(failure) => {
                let is_timeout = failure
                    .as_connector_error()
                    .is_some_and(|connector| connector.is_timeout());
                let why = why_no_answer(error, is_timeout, &self.watch.deadlines);
                format!("could not reach STS{at}: {why}")
            }
            SdkError::ResponseError(_) => format!(
                "STS{at} gave an answer to {} that could not be read ({})",
                self.operation,
                inner(error)
            ),
            SdkError::ConstructionFailure(_) => format!(
                "could not build the {} request to STS{at} ({})",
                self.operation,
                inner(error)
            ),
            _ => format!("could not reach STS{at}: {}", inner(error)),
        }
    }

    /// The full error, for a debug line only (it carries `Debug` dumps).
    pub fn log_full<E, R>(&self, role: &str, error: &SdkError<E, R>)
    where
        E: Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        // An answer's Debug holds the raw response, and a 200 that failed
        // to parse carries credentials: answers get their causes only.
        let full = match error {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => readable(error),
            _ => DisplayErrorContext(error).to_string(),
        };
        tracing::debug!(
            role,
            operation = self.operation,
            endpoint = self.endpoint().as_deref().unwrap_or("(not sent)"),
            error = %full,
            "STS call failed"
        );
    }

    /// ` at https://…` when the request was sent, else nothing.
    fn at(&self) -> String {
        self.endpoint()
            .map(|endpoint| format!(" at {endpoint}"))
            .unwrap_or_default()
    }
}

/// Why an attempt got no answer: which deadline ended it, or what the
/// network said.
fn why_no_answer(error: &(dyn Error + 'static), is_timeout: bool, deadlines: &Deadlines) -> String {
    match is_timeout {
        true => timed_out(error, deadlines),
        false => network(error),
    }
}

/// Which deadline ended a call or an attempt, and its configured value.
fn timed_out(error: &(dyn Error + 'static), deadlines: &Deadlines) -> String {
    let texts: Vec<String> = causes(error).map(|cause| cause.to_string()).collect();
    let said = |what: &str| texts.iter().any(|text| text.contains(what));
    let d = deadlines;
    let (what, after, key) = if said("HTTP connect timeout") {
        ("no connection", d.connect, "connect_timeout")
    } else if said("HTTP read timeout") {
        ("no answer", d.read, "read_timeout")
    } else if said("operation attempt timeout") {
        (
            "no answer to one attempt",
            d.connect + d.read,
            "connect_timeout + read_timeout",
        )
    } else {
        ("no answer", d.sts, "sts_timeout")
    };
    format!("{what} within {} ({key})", seconds(after))
}

/// A deadline as the config writes it (`1s`, `1m 30s`).
fn seconds(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// The readable causes under an SDK error (its own text is only a category).
fn inner<E, R>(error: &SdkError<E, R>) -> String
where
    E: Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match error.source() {
        Some(source) => readable(source),
        None => readable(error),
    }
}

/// Why a request never got an answer: the DNS lookup, the connection, TLS,
/// or failing those, the readable causes.
fn network(error: &(dyn Error + 'static)) -> String {
    for cause in causes(error) {
        if cause.to_string() == "dns error" {
            let reason = cause
                .source()
                .map(|why| why.to_string())
                .unwrap_or_default();
            let reason = reason
                .trim_start_matches("failed to lookup address information: ")
                .trim();
            return match reason {
                "" => "DNS lookup failed".to_owned(),
                reason => format!("DNS lookup failed ({reason})"),
            };
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidMessage(_) => format!(
                    "TLS handshake failed: the server answered something other than TLS ({tls})"
                ),
                _ => format!("TLS handshake failed ({tls})"),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let said = match io.kind() {
                ConnectionRefused => "connection refused",
                ConnectionReset => "the connection was reset",
                ConnectionAborted => "the connection was aborted",
                NetworkUnreachable => "the network is unreachable",
                HostUnreachable => "the host is unreachable",
                AddrNotAvailable => "no local address to connect from",
                UnexpectedEof => "the connection closed before STS answered",
                _ => continue,
            };
            return said.to_owned();
        }
    }
    let text = readable(error);
    if text.contains("connection closed before message completed") {
        return "the connection closed before STS answered".to_owned();
    }
    text
}

impl Intercept for Watch {
    fn name(&self) -> &'static str {
        "DescribeFailures"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut seen = self.seen.lock();
        seen.endpoint = Some(base_url(context.request().uri()));
        seen.attempts += 1;
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Err(error)) = context.output_or_error() else {
            return Ok(());
        };
        let connector = error.as_connector_error();
        let failure = if connector.is_some() || error.is_timeout_error() {
            let is_timeout = error.is_timeout_error() || connector.is_some_and(|c| c.is_timeout());
            let why = why_no_answer(error, is_timeout, &self.deadlines);
            // The whole call's deadline cut this attempt short: the one
            // before it says more, and the final error says this.
            if why.ends_with("(sts_timeout)") {
                return Ok(());
            }
            Failure::NoAnswer(why)
        } else if let Some(meta) = error.as_operation_error().and_then(|error| {
            // STS's code and message, whichever call this is.
            use aws_sdk_sts::operation::{
                assume_role::AssumeRoleError,
                assume_role_with_web_identity::AssumeRoleWithWebIdentityError as WebIdentityError,
                get_caller_identity::GetCallerIdentityError,
                get_session_token::GetSessionTokenError,
            };
            (error.downcast_ref::<AssumeRoleError>().map(|e| e.meta()))
                .or_else(|| error.downcast_ref::<WebIdentityError>().map(|e| e.meta()))
                .or_else(|| {
                    error
                        .downcast_ref::<GetSessionTokenError>()
                        .map(|e| e.meta())
                })
                .or_else(|| {
                    error
                        .downcast_ref::<GetCallerIdentityError>()
                        .map(|e| e.meta())
                })
        }) {
            Failure::Answered {
                status: context.response().map_or(0, |r| r.status().as_u16()),
                code: meta.code().unwrap_or("Unknown").to_owned(),
                message: meta.message().unwrap_or_default().to_owned(),
            }
        } else {
            return Ok(());
        };
        self.seen.lock().last_failure = Some(failure);
        Ok(())
    }
}

/// `scheme://host[:port]` of a request URI, with its path when it is not
/// `/` (an `endpoint_url` with a path); never its query.
fn base_url(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(url) => {
            let path = url.path().trim_end_matches('/');
            let origin = url.origin().ascii_serialization();
            format!("{origin}{path}")
        }
        Err(_) => uri.split('?').next().unwrap_or(uri).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        let call = Call::new("AssumeRole", Deadlines::default());
        call.watch.seen.lock().endpoint = Some("https://sts.eu-west-1.amazonaws.com".into());
        call
    }

    #[test]
    fn the_endpoint_is_the_request_s_origin_and_path() {
        assert_eq!(
            base_url("https://sts.eu-west-1.amazonaws.com/"),
            "https://sts.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            base_url("http://127.0.0.1:4566/sts/?Action=AssumeRole"),
            "http://127.0.0.1:4566/sts"
        );
    }

    #[test]
    fn service_errors_name_the_endpoint_the_call_and_sts_s_words() {
        let call = call();
        assert_eq!(
            call.service_error(403, "AccessDenied", "User: u is not authorized"),
            "STS at https://sts.eu-west-1.amazonaws.com refused AssumeRole: AccessDenied: User: u is not authorized"
        );
        assert_eq!(
            call.service_error(
                400,
                "ExpiredToken",
                "The security token included in the request is expired"
            ),
            "STS at https://sts.eu-west-1.amazonaws.com refused AssumeRole: ExpiredToken: The security token included in the request is expired; the credentials that signed it have expired"
        );
        assert_eq!(
            call.service_error(400, "Throttling", "Rate exceeded"),
            "STS at https://sts.eu-west-1.amazonaws.com is throttling AssumeRole (Throttling: Rate exceeded); retrying with backoff"
        );
        assert_eq!(
            call.service_error(500, "InternalFailure", ""),
            "STS at https://sts.eu-west-1.amazonaws.com failed AssumeRole with HTTP 500 (InternalFailure); retrying with backoff"
        );
    }

    /// What a GetCallerIdentity to `endpoint` fails with, described.
    async fn failure_at(endpoint: &str, deadlines: Deadlines) -> String {
        use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(deadlines.connect)
            .read_timeout(deadlines.read)
            .operation_timeout(deadlines.sts)
            .build();
        let config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url(endpoint)
            .timeout_config(timeouts)
            .build();
        let call = Call::new("GetCallerIdentity", deadlines);
        let error = aws_sdk_sts::Client::from_conf(config)
            .get_caller_identity()
            .customize()
            .interceptor(call.watch())
            .send()
            .await
            .expect_err("no STS there");
        call.no_answer(&error)
    }

    fn quick() -> Deadlines {
        Deadlines {
            connect: Duration::from_millis(500),
            read: Duration::from_millis(500),
            sts: Duration::from_secs(3),
            ..Deadlines::default()
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        assert_eq!(
            failure_at(&endpoint, quick()).await,
            format!("could not reach STS at {endpoint}: connection refused")
        );
    }

    #[tokio::test]
    async fn https_to_a_plain_http_server_is_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let endpoint = format!("https://127.0.0.1:{port}");
        let text = failure_at(&endpoint, quick()).await;
        assert!(
            text.starts_with(&format!(
                "could not reach STS at {endpoint}: TLS handshake failed: the server answered something other than TLS ("
            )),
            "{text}"
        );
        assert!(!text.contains("{ ") && !text.contains("Some("), "{text}");
    }

    #[tokio::test]
    async fn silence_names_the_deadline_that_ended_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let endpoint = format!("http://127.0.0.1:{port}");
        let text = failure_at(&endpoint, quick()).await;
        held.abort();
        // The read deadline ends each attempt; the call's may end the last.
        assert!(
            text == format!("could not reach STS at {endpoint}: no answer within 500ms (read_timeout)")
                || (text.starts_with(&format!("could not reach STS at {endpoint}: no answer within 500ms (read_timeout); stopped after "))
                    && text.ends_with(" attempts by sts_timeout (3s)")),
            "{text}"
        );
    }
}
