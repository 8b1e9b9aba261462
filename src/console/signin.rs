//! The federation endpoint's two calls: `getSigninToken` exchanges temporary
//! credentials for a sign-in token, and the `Action=login` URL spends it in
//! a browser. Both the token and the URL sign a person in for their short
//! life, so they are `Secret`s here, and no error message quotes a URL.

use std::time::Duration;

use axum::http::{Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use url::Url;

use crate::credentials::Secret;

/// The whole exchange, connection included, gets this long.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A sign-in token is a few hundred bytes; an error page a few kilobytes.
const MAX_ANSWER: usize = 64 * 1024;
/// What the console shows as where the session came from.
pub const ISSUER: &str = "assumed";

/// The credentials of the `Session` parameter.
pub struct Session<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a Secret,
    pub session_token: &'a Secret,
}

impl Session<'_> {
    /// The `Session` JSON: `sessionId`, `sessionKey`, `sessionToken`.
    fn json(&self) -> Secret {
        Secret::new(
            serde_json::json!({
                "sessionId": self.access_key_id,
                "sessionKey": self.secret_access_key.expose(),
                "sessionToken": self.session_token.expose(),
            })
            .to_string(),
        )
    }
}

/// The `getSigninToken` request URL (it carries the secret key).
fn token_request(endpoint: &Url, session: &Session<'_>, duration: Option<Duration>) -> Secret {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("Action", "getSigninToken");
        if let Some(duration) = duration {
            query.append_pair("SessionDuration", &duration.as_secs().to_string());
        }
        query.append_pair("Session", session.json().expose());
    }
    Secret::new(String::from(url))
}

/// The `Action=login` URL that signs the browser in and lands on `destination`.
pub fn login_url(endpoint: &Url, destination: &str, token: &Secret) -> Secret {
    let mut url = endpoint.clone();
    url.query_pairs_mut()
        .append_pair("Action", "login")
        .append_pair("Issuer", ISSUER)
        .append_pair("Destination", destination)
        .append_pair("SigninToken", token.expose());
    Secret::new(String::from(url))
}

/// Asks `endpoint` for a sign-in token for `session`, with `SessionDuration`
/// when `duration` is given.
pub fn signin_token(
    endpoint: &Url,
    session: &Session<'_>,
    duration: Option<Duration>,
) -> Result<Secret, String> {
    let request = token_request(endpoint, session, duration);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, get(request))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", TIMEOUT.as_secs())))
    });
    let (status, body) =
        outcome.map_err(|problem| format!("the federation endpoint {endpoint}: {problem}"))?;
    if status != 200 {
        return Err(format!(
            "the federation endpoint {endpoint} refused the sign-in ({status}): {}",
            refusal_message(&body)
        ));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        format!("the federation endpoint {endpoint} answered 200 without a JSON SigninToken")
    })?;
    match answer["SigninToken"].as_str() {
        Some(token) if !token.is_empty() => Ok(Secret::new(token)),
        _ => Err(format!(
            "the federation endpoint {endpoint} answered without a SigninToken"
        )),
    }
}

/// One GET, over HTTPS with the system's roots (or plain HTTP for a local
/// stand-in), through the proxy `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` name
/// unless `NO_PROXY` exempts the host, as curl and aws-vault do; the status
/// and at most `MAX_ANSWER` bytes of body.
async fn get(url: Secret) -> Result<(u16, Bytes), String> {
    let uri: Uri = url
        .expose()
        .parse()
        .map_err(|_| "the request URL is not valid".to_owned())?;
    let request = Request::get(uri.clone())
        .header(
            header::USER_AGENT,
            concat!("assumed/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|_| "the request could not be built".to_owned())?;
    let mut direct = HttpConnector::new();
    direct.enforce_http(false);
    match Matcher::from_env().intercept(&uri) {
        None => send(tls(direct)?, request).await,
        Some(proxy) if proxy.uri().scheme_str() != Some("http") => Err(format!(
            "the proxy {} from the environment is not an http:// proxy, the only kind this command speaks",
            proxy.uri()
        )),
        Some(proxy) => {
            // A CONNECT tunnel for http:// too: the query holds the secret
            // key, and a proxy must not read it.
            let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            send(tls(tunnel)?, request)
                .await
                .map_err(|problem| format!("{problem} (through the proxy {})", proxy.uri()))
        }
    }
}

/// `connector` with TLS on top for https:// (aws-lc-rs, the system's roots).
fn tls<C>(connector: C) -> Result<HttpsConnector<C>, String> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("no TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector))
}

async fn send<C>(connector: C, request: Request<Empty<Bytes>>) -> Result<(u16, Bytes), String>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let client: Client<C, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach it: {}", crate::error_chain::readable(&e)))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("its answer could not be read: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// The endpoint's reason, from a JSON `message`/`Message` or the plain body,
/// cut short: an HTML error page is not a message.
fn refusal_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|json| {
            ["message", "Message", "error", "Error"]
                .iter()
                .find_map(|key| json[*key].as_str().map(str::to_owned))
        });
    let message = from_json.unwrap_or_else(|| text.trim().to_owned());
    let message: String = message.chars().take(300).collect();
    if message.is_empty() {
        "no reason given".into()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(url: &Secret) -> Vec<(String, String)> {
        Url::parse(url.expose())
            .expect("url")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The secret parts of a test session, which a `Session` borrows.
    struct Keys {
        secret: Secret,
        token: Secret,
    }

    impl Keys {
        fn new(secret: &str, token: &str) -> Self {
            Keys {
                secret: Secret::new(secret),
                token: Secret::new(token),
            }
        }

        fn session(&self) -> Session<'_> {
            Session {
                access_key_id: "ASIAEXAMPLE",
                secret_access_key: &self.secret,
                session_token: &self.token,
            }
        }
    }

    #[test]
    fn the_token_request_carries_the_session_and_duration_only_when_asked() {
        let endpoint = Url::parse("https://signin.aws.amazon.com/federation").unwrap();
        let keys = Keys::new("secret/key+=", "token&more");
        let session = keys.session();
        let pairs = query(&token_request(&endpoint, &session, None));
        assert_eq!(pairs[0], ("Action".into(), "getSigninToken".into()));
        assert_eq!(pairs.len(), 2, "no SessionDuration: {pairs:?}");
        let json: serde_json::Value = serde_json::from_str(&pairs[1].1).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sessionId": "ASIAEXAMPLE", "sessionKey": "secret/key+=", "sessionToken": "token&more"})
        );
        let timed = query(&token_request(
            &endpoint,
            &session,
            Some(Duration::from_secs(7200)),
        ));
        assert!(timed.contains(&("SessionDuration".into(), "7200".into())));
    }

    #[test]
    fn the_login_url_has_action_issuer_destination_and_token_but_no_key() {
        let endpoint = Url::parse("https://eu-west-1.signin.aws.amazon.com/federation").unwrap();
        let url = login_url(
            &endpoint,
            "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1",
            &Secret::new("tok+en/="),
        );
        assert!(
            url.expose()
                .starts_with("https://eu-west-1.signin.aws.amazon.com/federation?Action=login&")
        );
        let pairs = query(&url);
        assert!(pairs.contains(&("Issuer".into(), ISSUER.into())));
        assert!(pairs.contains(&(
            "Destination".into(),
            "https://eu-west-1.console.aws.amazon.com/s3/home?region=eu-west-1".into()
        )));
        assert!(pairs.contains(&("SigninToken".into(), "tok+en/=".into())));
        assert_eq!(pairs.len(), 4);
    }

    #[test]
    fn an_unreachable_endpoint_is_an_error_that_quotes_no_secret() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let keys = Keys::new("the-secret-key", "the-session-token");
        let session = keys.session();
        for scheme in ["http", "https"] {
            let endpoint = Url::parse(&format!("{scheme}://127.0.0.1:{port}/federation")).unwrap();
            let error = signin_token(&endpoint, &session, None).unwrap_err();
            assert!(error.contains(endpoint.as_str()), "{error}");
            assert!(
                !error.contains("the-secret") && !error.contains("Session"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_refusal_is_told_by_its_message() {
        assert_eq!(
            refusal_message(br#"{"message":"session duration not allowed"}"#),
            "session duration not allowed"
        );
        assert_eq!(refusal_message(b"  Bad Request \n"), "Bad Request");
        assert_eq!(refusal_message(b""), "no reason given");
    }
}
