//! `StsProxy`: an HTTP server on 127.0.0.1 that sits between the daemon and
//! moto. It forwards STS query-protocol calls, records each one, and can
//! inject errors, shorten `<Expiration>` and delay answers.

use super::netns::Netns;
use super::{moto_url, utc_timestamp};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One STS call as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsCall {
    /// `Action` parameter, e.g. `AssumeRole` (empty if there was none).
    pub action: String,
    /// Query string and form body parameters, decoded (the body wins on clashes).
    pub params: BTreeMap<String, String>,
    /// The access key in the SigV4 `Authorization: … Credential=AKID/…` header.
    pub access_key_id: Option<String>,
    /// The region of that credential scope (`Credential=AKID/DATE/REGION/sts/…`).
    pub region: Option<String>,
    /// HTTP status the proxy answered with (moto's, or the injected fault's).
    pub status: u16,
}

/// An error the proxy answers with instead of forwarding to moto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500, `InternalFailure`.
    ServerError,
    /// HTTP 400, `Throttling`.
    Throttling,
    /// HTTP 403, `AccessDenied`.
    AccessDenied,
    /// HTTP 400, `ExpiredToken`: the signing session has ended.
    ExpiredToken,
    /// HTTP 403, `InvalidClientTokenId`: the signing key is unknown to STS.
    InvalidClientTokenId,
    /// HTTP 403, `SignatureDoesNotMatch`: the key id is known but the
    /// secret that signed is not its own (moto checks no signature, so the
    /// proxy plays STS's answer to a wrong secret).
    SignatureDoesNotMatch,
}

impl Fault {
    pub fn status(self) -> u16 {
        match self {
            Fault::ServerError => 500,
            Fault::Throttling => 400,
            Fault::AccessDenied => 403,
            Fault::ExpiredToken => 400,
            Fault::InvalidClientTokenId => 403,
            Fault::SignatureDoesNotMatch => 403,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Fault::ServerError => "InternalFailure",
            Fault::Throttling => "Throttling",
            Fault::AccessDenied => "AccessDenied",
            Fault::ExpiredToken => "ExpiredToken",
            Fault::InvalidClientTokenId => "InvalidClientTokenId",
            Fault::SignatureDoesNotMatch => "SignatureDoesNotMatch",
        }
    }

    /// The query-protocol error document STS sends (AWS marks its own
    /// failures `Receiver`, the caller's `Sender`).
    fn xml(self, call: &StsCall, request_id: &str) -> String {
        let (kind, message) = match self {
            Fault::ServerError => (
                "Receiver",
                "An internal error occurred (injected)".to_owned(),
            ),
            Fault::Throttling => ("Sender", "Rate exceeded".to_owned()),
            // STS's own words for these two.
            Fault::ExpiredToken => (
                "Sender",
                "The security token included in the request is expired".to_owned(),
            ),
            Fault::InvalidClientTokenId => (
                "Sender",
                "The security token included in the request is invalid.".to_owned(),
            ),
            Fault::SignatureDoesNotMatch => (
                "Sender",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".to_owned(),
            ),
            Fault::AccessDenied => {
                let resource = call.params.get("RoleArn").map_or("*", String::as_str);
                let message = format!(
                    "User: arn:aws:iam::123456789012:user/test is not authorized to perform: sts:{} on resource: {resource}",
                    call.action
                );
                ("Sender", message)
            }
        };
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            self.code()
        )
    }
}

/// A network failure the proxy plays instead of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// Accept the request and never answer: a dead TCP connection after a
    /// Wi-Fi change or a VPN drop. The call is recorded with status 0.
    Hang,
    /// Start an answer and cut the connection in the middle of it. Recorded
    /// with status 0.
    Drop,
}

/// The proxy. Dropping it stops the server.
pub struct StsProxy {
    url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    calls: Mutex<Vec<StsCall>>,
    /// Number of recorded calls; `wait_for` wakes on its changes.
    recorded: watch::Sender<usize>,
    /// False while [`StsProxy::hold`] keeps answers back.
    open: watch::Sender<bool>,
    knobs: Mutex<Knobs>,
    request_ids: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct Knobs {
    fault: Option<Fault>,
    stall: Option<Stall>,
    expiration: Option<Duration>,
    delay: Option<Duration>,
    /// With [`StsProxy::hold_action`]: only these answers are held.
    hold_only: Option<(&'static str, usize)>,
}

impl StsProxy {
    /// A proxy in front of [`moto_url`]. Must be called inside a tokio runtime
    /// (the server runs on it).
    pub async fn start() -> StsProxy {
        StsProxy::with_upstream(&moto_url().await).await
    }

    /// A proxy in front of any STS base URL (`http://host:port`).
    pub async fn with_upstream(upstream: &str) -> StsProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the STS proxy on 127.0.0.1:0");
        StsProxy::serve(upstream, listener)
    }

    /// A proxy in front of moto that listens on `127.0.0.1` *inside* `netns`
    /// (for a daemon or client there) and still reaches moto from here.
    pub async fn start_in(netns: &Netns) -> StsProxy {
        let listener = netns
            .bind("127.0.0.1:0")
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)
            })
            .unwrap_or_else(|e| panic!("bind the STS proxy in {}: {e}", netns.name()));
        StsProxy::serve(&moto_url().await, listener)
    }

    fn serve(upstream: &str, listener: tokio::net::TcpListener) -> StsProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            calls: Mutex::new(Vec::new()),
            recorded: watch::Sender::new(0),
            open: watch::Sender::new(true),
            knobs: Mutex::new(Knobs::default()),
            request_ids: AtomicU64::new(1),
        });
        let url = format!(
            "http://{}",
            listener.local_addr().expect("proxy listener address")
        );
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("STS proxy server");
        });
        StsProxy {
            url,
            shared,
            server,
        }
    }

    /// Base URL (`http://127.0.0.1:PORT`, no trailing slash), for the daemon's
    /// `[source] sts_endpoint`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<StsCall> {
        self.shared.calls().clone()
    }

    /// The first call of `action`, if any.
    pub fn first(&self, action: &str) -> Option<StsCall> {
        self.shared
            .calls()
            .iter()
            .find(|c| c.action == action)
            .cloned()
    }

    /// The latest call of `action`, if any.
    pub fn last(&self, action: &str) -> Option<StsCall> {
        let calls = self.shared.calls();
        calls.iter().rev().find(|c| c.action == action).cloned()
    }

    /// How many calls of `action` (e.g. `"AssumeRole"`) were recorded, faulted ones included.
    pub fn count(&self, action: &str) -> usize {
        self.shared.count(action)
    }

    /// From now on, answer every call with `fault` (without asking moto), or
    /// forward again with `None`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.knobs().fault = fault;
    }

    /// From now on, hang or cut every call (see [`Stall`]), or answer again with `None`.
    pub fn set_stall(&self, stall: Option<Stall>) {
        self.shared.knobs().stall = stall;
    }

    /// From now on, rewrite `<Expiration>` of successful AssumeRole* and
    /// GetSessionToken answers to now + `lifetime` (whole seconds), or leave
    /// moto's (one hour, with microseconds) with `None`.
    pub fn set_expiration(&self, lifetime: Option<Duration>) {
        self.shared.knobs().expiration = lifetime;
    }

    /// From now on, hold every answer (faults too) this long before replying.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.knobs().delay = delay;
    }

    /// From now on, hold every answer (faults too) until [`release`](Self::release):
    /// calls pile up in flight for as long as the test needs, and
    /// [`wait_for`](Self::wait_for) tells it when they have arrived.
    pub fn hold(&self) {
        self.shared.open.send_replace(false);
    }

    /// Like [`hold`](Self::hold), for the answers of `action` only, after
    /// the first `skip` of them (counted from the proxy's start): the call a
    /// test wants to stop a client at (to kill it there), with every other
    /// call answered as usual. [`release`](Self::release) ends it.
    pub fn hold_action(&self, action: &'static str, skip: usize) {
        self.shared.knobs().hold_only = Some((action, skip));
        self.shared.open.send_replace(false);
    }

    /// Sends the held answers, and answers at once again.
    pub fn release(&self) {
        self.shared.knobs().hold_only = None;
        self.shared.open.send_replace(true);
    }

    /// Waits until at least `n` calls of `action` were recorded; false if that
    /// did not happen within `timeout`. A call is recorded as soon as its
    /// answer is known, before the [`set_delay`](Self::set_delay) or
    /// [`hold`](Self::hold), so with either this returns while the caller is
    /// still waiting for the answer.
    pub async fn wait_for(&self, action: &str, n: usize, timeout: Duration) -> bool {
        let mut recorded = self.shared.recorded.subscribe();
        let reached = recorded.wait_for(|_| self.shared.count(action) >= n);
        tokio::time::timeout(timeout, reached).await.is_ok()
    }
}

impl Drop for StsProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn calls(&self) -> MutexGuard<'_, Vec<StsCall>> {
        self.calls.lock().expect("calls lock")
    }

    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().expect("knobs lock")
    }

    fn count(&self, action: &str) -> usize {
        self.calls().iter().filter(|c| c.action == action).count()
    }

    fn record(&self, call: StsCall) {
        self.calls().push(call);
        self.recorded.send_modify(|n| *n += 1);
    }

    fn request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}

/// STS requests are a few KiB; this bounds a broken client.
const MAX_BODY: usize = 1 << 20;

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let mut call = StsCall {
        action: String::new(),
        params: parse_params(parts.uri.query(), &body),
        access_key_id: credential_scope(&parts.headers, 0),
        region: credential_scope(&parts.headers, 2),
        status: 0,
    };
    call.action = call.params.get("Action").cloned().unwrap_or_default();
    let knobs = *shared.knobs();
    if let Some(stall) = knobs.stall {
        shared.record(call);
        return match stall {
            Stall::Hang => std::future::pending().await,
            Stall::Drop => cut_off(),
        };
    }

    let mut response = match knobs.fault {
        Some(fault) => {
            let xml = fault.xml(&call, &shared.request_id());
            xml_response(fault.status(), xml)
        }
        None => forward(&shared, parts.method, &parts.uri, &parts.headers, body).await,
    };
    let rewrite = response.status() == StatusCode::OK && has_expiration(&call.action);
    if let Some(lifetime) = knobs.expiration.filter(|_| rewrite) {
        response = rewrite_expiration(response, lifetime).await;
    }
    call.status = response.status().as_u16();
    let held = match knobs.hold_only {
        Some((action, skip)) => call.action == action && shared.count(action) >= skip,
        None => true,
    };
    shared.record(call);
    if let Some(delay) = knobs.delay {
        tokio::time::sleep(delay).await;
    }
    // Never fails: `shared` (and so the sender) lives as long as this handler.
    if held {
        let _ = shared.open.subscribe().wait_for(|open| *open).await;
    }
    response
}

fn has_expiration(action: &str) -> bool {
    action.starts_with("AssumeRole") || action == "GetSessionToken"
}

/// Headers that describe one hop, not the message: the client library sets its own.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

async fn forward(
    shared: &Shared,
    method: axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = shared
        .client
        .request(method, format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in headers.iter().filter(|(n, _)| !hop_by_hop(n)) {
        request = request.header(name, value);
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("STS proxy: upstream: {e}"),
            );
        }
    };
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers().iter().filter(|(n, _)| !hop_by_hop(n)) {
        response = response.header(name, value);
    }
    match answer.bytes().await {
        Ok(body) => response.body(Body::from(body)).expect("valid response"),
        Err(e) => plain(
            StatusCode::BAD_GATEWAY,
            &format!("STS proxy: upstream body: {e}"),
        ),
    }
}

/// Replaces the text of `<Expiration>` with now + `lifetime`.
async fn rewrite_expiration(response: Response, lifetime: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .expect("buffered body");
    let mut xml = String::from_utf8_lossy(&body).into_owned();
    let start = xml.find("<Expiration>").map(|i| i + "<Expiration>".len());
    let end = start.and_then(|s| xml[s..].find("</Expiration>").map(|len| s + len));
    if let (Some(start), Some(end)) = (start, end) {
        xml.replace_range(start..end, &utc_timestamp(SystemTime::now() + lifetime));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(xml))
}

/// A 200 whose body fails at once: hyper aborts the connection mid-answer.
fn cut_off() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection cut by the STS proxy"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Body::from_stream(failing))
        .expect("valid response")
}

fn xml_response(status: u16, xml: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Body::from(xml))
        .expect("valid response")
}

fn plain(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(text.to_owned()))
        .expect("valid response")
}

/// `Credential=AKID/date/region/service/aws4_request` in a SigV4 header.
/// Part `index` of the SigV4 credential scope in `Authorization: …
/// Credential=AKID/DATE/REGION/SERVICE/aws4_request, …`.
fn credential_scope(headers: &HeaderMap, index: usize) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = value.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    let part = credential.split('/').nth(index)?;
    (!part.is_empty()).then(|| part.to_owned())
}

fn parse_params(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for form in [query.unwrap_or(""), &String::from_utf8_lossy(body)] {
        for pair in form.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            params.insert(form_decode(key), form_decode(value));
        }
    }
    params
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{fake_sigv4, free_port, parse_utc_timestamp, python, run};

    const ROLE: &str = "arn:aws:iam::111111111111:role/dev";

    /// POSTs a query-protocol form to `url` as `akid`; returns status, Content-Type, body.
    async fn post(url: &str, akid: &str, form: &str) -> (u16, String, String) {
        let answer = reqwest::Client::new()
            .post(format!("{url}/"))
            .header("Authorization", fake_sigv4(akid))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("the proxy answers");
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        (status, content_type, answer.text().await.expect("body"))
    }

    fn assume_role_form(session: &str) -> String {
        format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName={session}",
            ROLE.replace(':', "%3A").replace('/', "%2F")
        )
    }

    fn element<'a>(xml: &'a str, name: &str) -> &'a str {
        let start = xml
            .find(&format!("<{name}>"))
            .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
            + name.len()
            + 2;
        let len = xml[start..]
            .find(&format!("</{name}>"))
            .expect("closing tag");
        &xml[start..start + len]
    }

    #[tokio::test]
    async fn proxy_counts_assume_role_and_forwards_motos_answer() {
        let proxy = StsProxy::start().await;
        let (status, _, body) = post(&proxy.url(), "AKIDCALLER", &assume_role_form("alice")).await;

        assert_eq!(status, 200, "{body}");
        // moto built this from the forwarded form: the proxy passed it on intact.
        assert_eq!(
            element(&body, "Arn"),
            "arn:aws:sts::111111111111:assumed-role/dev/alice"
        );
        assert!(
            element(&body, "Expiration").contains('.'),
            "without an override moto's own <Expiration> (with microseconds) passes through"
        );
        assert_eq!(proxy.count("AssumeRole"), 1);
        assert_eq!(proxy.count("GetSessionToken"), 0);
        let call = &proxy.calls()[0];
        assert_eq!(call.action, "AssumeRole");
        assert_eq!(call.params["RoleArn"], ROLE, "form body decoded");
        assert_eq!(call.params["RoleSessionName"], "alice");
        assert_eq!(call.access_key_id.as_deref(), Some("AKIDCALLER"));
        assert_eq!(call.status, 200);
    }

    #[tokio::test]
    async fn fault_injection_returns_aws_style_xml_errors_without_forwarding() {
        // Nothing listens upstream: an answer other than 502 cannot come from there.
        let proxy = StsProxy::with_upstream(&format!("http://127.0.0.1:{}", free_port())).await;
        for fault in [Fault::ServerError, Fault::Throttling, Fault::AccessDenied] {
            proxy.set_fault(Some(fault));
            let (status, content_type, body) =
                post(&proxy.url(), "AKIDFAULT", &assume_role_form("bob")).await;
            assert_eq!(status, fault.status(), "{fault:?}");
            assert_eq!(content_type, "text/xml");
            assert!(body.starts_with(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>"
            ));
            assert_eq!(element(&body, "Code"), fault.code());
            assert!(!element(&body, "RequestId").is_empty());
            if fault == Fault::AccessDenied {
                assert!(element(&body, "Message").contains(ROLE), "{body}");
            }
        }

        proxy.set_fault(None);
        let (status, _, _) = post(&proxy.url(), "AKIDFAULT", &assume_role_form("bob")).await;
        assert_eq!(
            status, 502,
            "without a fault the call is forwarded (and fails here)"
        );
        let statuses: Vec<u16> = proxy.calls().iter().map(|c| c.status).collect();
        assert_eq!(
            statuses,
            [500, 400, 403, 502],
            "faulted calls are recorded too"
        );
        assert_eq!(proxy.count("AssumeRole"), 4);
    }

    #[tokio::test]
    async fn stalls_hang_or_cut_the_connection_and_are_recorded() {
        let proxy = StsProxy::start().await;
        let client = reqwest::Client::new();
        let send = || {
            client
                .post(format!("{}/", proxy.url()))
                .header("Authorization", fake_sigv4("AKIDSTALL"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(assume_role_form("stall"))
                .timeout(Duration::from_millis(500))
                .send()
        };
        proxy.set_stall(Some(Stall::Hang));
        let hung = send().await;
        assert!(hung.is_err_and(|e| e.is_timeout()), "no answer at all");
        proxy.set_stall(Some(Stall::Drop));
        let cut = match send().await {
            Ok(answer) => answer.bytes().await.is_err(),
            Err(error) => !error.is_timeout(),
        };
        assert!(cut, "the connection is cut, not answered");
        assert_eq!(proxy.count("AssumeRole"), 2);
        proxy.set_stall(None);
        assert_eq!(send().await.expect("answered").status(), 200);
    }

    #[tokio::test]
    async fn expiration_override_rewrites_expiration() {
        let proxy = StsProxy::start().await;
        let lifetime = Duration::from_secs(120);
        proxy.set_expiration(Some(lifetime));
        for form in [
            assume_role_form("carol"),
            "Action=GetSessionToken&Version=2011-06-15".to_owned(),
        ] {
            let before = SystemTime::now();
            let (status, _, body) = post(&proxy.url(), "AKIDEXP", &form).await;
            assert_eq!(status, 200, "{body}");
            let text = element(&body, "Expiration");
            assert_eq!(text.len(), "2026-01-02T03:04:05Z".len(), "{text}");
            let expiration = parse_utc_timestamp(text).expect("YYYY-MM-DDTHH:MM:SSZ");
            // Whole seconds: up to 1 s early; the call itself may take a moment.
            assert!(
                expiration + Duration::from_secs(1) >= before + lifetime,
                "{text}"
            );
            assert!(expiration <= SystemTime::now() + lifetime, "{text}");
            assert!(
                !element(&body, "AccessKeyId").is_empty(),
                "rest of moto's answer kept"
            );
        }
        assert_eq!(proxy.calls().len(), 2);
    }

    #[tokio::test]
    async fn delay_holds_answers_and_wait_for_sees_calls_in_flight() {
        let proxy = StsProxy::start().await;
        let delay = Duration::from_secs(2);
        proxy.set_delay(Some(delay));
        let url = proxy.url();
        let started = tokio::time::Instant::now();
        let in_flight =
            tokio::spawn(async move { post(&url, "AKIDSLOW", &assume_role_form("dave")).await });

        assert!(
            proxy
                .wait_for("AssumeRole", 1, Duration::from_secs(10))
                .await
        );
        assert!(
            started.elapsed() < delay && !in_flight.is_finished(),
            "recorded before the delay hold, while the caller still waits"
        );
        assert!(
            !proxy
                .wait_for("AssumeRole", 2, Duration::from_millis(100))
                .await
        );

        let (status, _, _) = in_flight.await.expect("request task");
        assert_eq!(status, 200);
        assert!(started.elapsed() >= delay, "the answer was held");
    }

    #[tokio::test]
    async fn hold_keeps_answers_until_release() {
        let proxy = StsProxy::start().await;
        proxy.hold();
        let url = proxy.url();
        let in_flight =
            tokio::spawn(async move { post(&url, "AKIDHELD", &assume_role_form("fay")).await });
        assert!(
            proxy
                .wait_for("AssumeRole", 1, Duration::from_secs(10))
                .await
        );
        // Held however long the test looks: a release is the only way out.
        let mut in_flight = in_flight;
        let early = tokio::time::timeout(Duration::from_millis(300), &mut in_flight).await;
        assert!(early.is_err(), "answered before the release");
        proxy.release();
        let (status, _, _) = in_flight.await.expect("request task");
        assert_eq!(status, 200);
        let (status, _, _) = post(&proxy.url(), "AKIDHELD", &assume_role_form("fay")).await;
        assert_eq!(status, 200, "answers at once after the release");
    }

    /// A real SDK parses the proxy's answers: the rewritten expiration and the
    /// injected error both reach boto3 as STS would send them.
    #[tokio::test]
    async fn boto3_reads_rewritten_expiration_and_injected_throttling() {
        let proxy = StsProxy::start().await;
        proxy.set_expiration(Some(Duration::from_secs(1800)));
        let script = r#"
import boto3, botocore.config, datetime, json, sys
sts = boto3.client("sts", endpoint_url=sys.argv[1], region_name="us-east-1",
    aws_access_key_id="AKIDBOTO", aws_secret_access_key="secret",
    config=botocore.config.Config(retries={"total_max_attempts": 1}))
try:
    creds = sts.assume_role(RoleArn=sys.argv[2], RoleSessionName="erin")["Credentials"]
    left = creds["Expiration"] - datetime.datetime.now(datetime.timezone.utc)
    print(json.dumps({"seconds_left": left.total_seconds()}))
except sts.exceptions.ClientError as e:
    print(json.dumps({"code": e.response["Error"]["Code"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}))
"#;
        let boto3 = async || {
            let out = run(tokio::process::Command::new(python()).args([
                "-c",
                script,
                &proxy.url(),
                ROLE,
            ]))
            .await;
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON from the script")
        };

        let ok = boto3().await;
        let left = ok["seconds_left"].as_f64().expect("credentials");
        assert!((1790.0..=1800.0).contains(&left), "{ok}");

        proxy.set_fault(Some(Fault::Throttling));
        let err = boto3().await;
        assert_eq!(
            err,
            serde_json::json!({"code": "Throttling", "status": 400})
        );
        let calls = proxy.calls();
        assert_eq!(calls.len(), 2, "one attempt each: {calls:?}");
        assert_eq!(calls[1].access_key_id.as_deref(), Some("AKIDBOTO"));
        assert_eq!(calls[1].params["RoleSessionName"], "erin");
    }

    #[test]
    fn form_decoding_handles_plus_percent_and_bad_escapes() {
        let params = parse_params(Some("Action=AssumeRole&X=1"), b"A=a+b%2Fc&B=%zz&C=&D");
        assert_eq!(params["Action"], "AssumeRole");
        assert_eq!(params["A"], "a b/c");
        assert_eq!(params["B"], "%zz");
        assert_eq!(params["C"], "");
        assert_eq!(params["D"], "");
    }
}
