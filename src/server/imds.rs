//! EC2 instance metadata (IMDSv2) emulation, read by SDKs through
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`. Like a real instance, one IMDS serves
//! one role: the default role on the main listener, or the role an
//! `imds_listen` listener belongs to. Paths are read as the real service
//! reads them (`canonical`; docs/imds.md, "Paths").

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Serialize;

use super::connection::Connection;
use super::error::ApiError;
use super::session_token::{SessionTokens, TTL_RANGE};
use super::state::AppState;
use crate::clients::NAMING_WAIT;
use crate::credentials::format_expiration;

/// The credentials route's template as `/metrics` labels it.
pub(super) const CREDENTIALS_ROUTE: &str = "/latest/meta-data/iam/security-credentials/:name";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

/// The role this IMDS answers for.
#[derive(Clone)]
pub struct Imds {
    pub app: Arc<AppState>,
    pub role: ImdsRole,
}

#[derive(Clone)]
pub enum ImdsRole {
    /// The main listener: whatever `default_role` is now (a reload may change it).
    Default,
    /// An `imds_listen` listener: its own role.
    Fixed(String),
}

impl Imds {
    fn role(&self) -> Option<String> {
        match &self.role {
            ImdsRole::Default => self.app.default_role(),
            ImdsRole::Fixed(name) => Some(name.clone()),
        }
    }
}

pub fn router(imds: Imds) -> Router {
    const CREDS: &str = "/latest/meta-data/iam/security-credentials";
    const EXTENDED: &str = "/latest/meta-data/iam/security-credentials-extended";
    // Only the canonical form of each path: `canonical` has rewritten the
    // others (trailing and doubled slashes) before the router sees them.
    let mut router = Router::new()
        .route(TOKEN_PATH, put(issue_token))
        .route(&format!("{TOKEN_PATH}/"), put(token_with_slash))
        .route(CREDS, get(role_name))
        .route(&format!("{CREDS}/{{name}}"), get(credentials))
        .route(EXTENDED, get(extended_role_name))
        .route(&format!("{EXTENDED}/{{name}}"), get(extended_credentials))
        .route("/latest/meta-data/iam/info", get(iam_info))
        .route("/latest/meta-data/placement/region", get(region))
        .route(
            "/latest/meta-data/placement/availability-zone",
            get(availability_zone),
        )
        .route(
            "/latest/dynamic/instance-identity/document",
            get(identity_document),
        );
    for &(path, entries) in LISTINGS {
        router = router.route(
            path,
            get(move |State(imds): State<Imds>, headers: HeaderMap| {
                listing(imds, headers, path, entries)
            }),
        );
    }
    router.with_state(imds)
}

const TOKEN_PATH: &str = "/latest/api/token";

/// The categories above the leaves served here, as the real service lists
/// them: one entry a line, a subcategory with a trailing `/`, no newline at
/// the end. Only what is served is listed.
const LISTINGS: &[(&str, &[&str])] = &[
    ("/", &["latest"]),
    ("/latest", &["dynamic", "meta-data"]),
    ("/latest/meta-data", &["iam/", "placement/"]),
    ("/latest/meta-data/iam", &["info", "security-credentials/"]),
    (
        "/latest/meta-data/placement",
        &["availability-zone", "region"],
    ),
    ("/latest/dynamic", &["instance-identity/"]),
    ("/latest/dynamic/instance-identity", &["document"]),
];

/// The request with its path as the real IMDS reads it, when it names an
/// IMDS path (`/`, `/latest`, or under it) in another form: a run of slashes
/// counts as one (`//latest/…`, which Java builds from an endpoint that ends
/// in `/`), and a trailing slash is ignored, on leaves and categories alike
/// (`placement/availability-zone/`, `iam/security-credentials`). The one
/// exception is the token: `PUT /latest/api/token/` stays as it is, because
/// the real service refuses it (403). Everything else (`/role/…`, `/admin/…`)
/// is left alone. docs/imds.md has the sources.
pub(super) fn canonical<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let uri = request.uri();
    let Some(path) = canonical_path(uri.path()) else {
        return request;
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = path_and_query.parse() else {
        return request;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// `path`'s canonical form, when it is an IMDS path in another form.
fn canonical_path(path: &str) -> Option<String> {
    let tail = path.len() > 1 && path.ends_with('/');
    if !tail && !path.contains("//") {
        return None;
    }
    let mut collapsed = String::with_capacity(path.len());
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        collapsed.push('/');
        collapsed.push_str(segment);
    }
    if collapsed.is_empty() {
        collapsed.push('/');
    } else if collapsed != "/latest" && !collapsed.starts_with("/latest/") {
        return None;
    }
    if tail && collapsed == TOKEN_PATH {
        collapsed.push('/');
    }
    (collapsed != path).then_some(collapsed)
}

/// A category's entries. `iam/` is there only while a role is served, as on
/// an instance without an instance profile.
async fn listing(
    imds: Imds,
    headers: HeaderMap,
    path: &str,
    entries: &[&str],
) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    let has_role = imds.role().is_some();
    if path == "/latest/meta-data/iam" && !has_role {
        role_of(&imds)?;
    }
    let entries: Vec<&str> = entries
        .iter()
        .copied()
        .filter(|entry| has_role || *entry != "iam/")
        .collect();
    Ok(text(entries.join("\n")))
}

/// The real service answers `PUT /latest/api/token/` with 403, so SDKs fall
/// back to IMDSv1 here as they would there.
async fn token_with_slash() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        "the token path is /latest/api/token, without a trailing slash",
    )
}

async fn issue_token(State(imds): State<Imds>, headers: HeaderMap) -> Result<Response, ApiError> {
    // A PUT relayed by a proxy is how SSRF reaches IMDS; real IMDS refuses it too.
    if headers.contains_key("x-forwarded-for") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "token requests through a proxy (X-Forwarded-For) are refused",
        ));
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|ttl| TTL_RANGE.contains(ttl))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{TTL_HEADER} must be a whole number of seconds from 1 to 21600"
            ))
        })?;
    let token = imds
        .app
        .session_tokens
        .issue(Duration::from_secs(ttl), SystemTime::now());
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
            (
                header::HeaderName::from_static(TTL_HEADER),
                HeaderValue::from(ttl),
            ),
        ],
        token,
    )
        .into_response())
}

/// IMDSv2: a valid session token, unless the config allows v1.
fn require_session(imds: &Imds, headers: &HeaderMap) -> Result<(), ApiError> {
    let imdsv1 = imds.app.settings().imdsv1;
    session_ok(&imds.app.session_tokens, imdsv1, headers)
}

/// The session check itself, for the handlers and the warm path.
pub(super) fn session_ok(
    tokens: &SessionTokens,
    imdsv1: bool,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    match headers.get(TOKEN_HEADER) {
        Some(token) if tokens.is_valid(token.as_bytes(), SystemTime::now()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "the IMDS session token is not valid or has expired; PUT /latest/api/token again",
        )),
        None if imdsv1 => Ok(()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "MissingToken",
            "IMDSv2 only: PUT /latest/api/token, then send X-aws-ec2-metadata-token",
        )),
    }
}

fn role_of(imds: &Imds) -> Result<String, ApiError> {
    imds.role().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoDefaultRole",
            "no default_role is configured, so IMDS serves no role",
        )
    })
}

fn text(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
        body,
    )
        .into_response()
}

fn json(body: &impl Serialize) -> Response {
    json_bytes(Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

fn json_bytes(bytes: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

/// Exactly the role name, no trailing newline (Python and Rust do not trim).
async fn role_name(State(imds): State<Imds>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    Ok(text(role_of(&imds)?))
}

async fn credentials(
    State(imds): State<Imds>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    answer(&imds, connection.as_deref(), &headers, name, false).await
}

/// Java v2 asks here first and reads `AccountId`. It falls back to the
/// legacy paths only on 404 and fails on anything else, so every problem
/// here is a 404: the legacy path then reports it properly.
async fn extended_credentials(
    State(imds): State<Imds>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    match answer(&imds, connection.as_deref(), &headers, name, true).await {
        Ok(response) => response,
        Err(_) => ApiError::not_found().into_response(),
    }
}

async fn extended_role_name(State(imds): State<Imds>, headers: HeaderMap) -> Response {
    match role_name(State(imds), headers).await {
        Ok(response) => response,
        Err(_) => ApiError::not_found().into_response(),
    }
}

async fn answer(
    imds: &Imds,
    connection: Option<&Connection>,
    headers: &HeaderMap,
    name: Result<Path<String>, PathRejection>,
    extended: bool,
) -> Result<Response, ApiError> {
    require_session(imds, headers)?;
    let role = role_of(imds)?;
    let Ok(Path(name)) = name else {
        return Err(ApiError::unknown_role());
    };
    if name != role {
        return Err(ApiError::unknown_role());
    }
    super::confirm::gate(&imds.app, connection, &role).await?;
    match imds.app.cache.get(&role).await {
        Ok(creds) => {
            if let Some(connection) = connection {
                imds.app.clients.took(&connection.client, &role);
                // As on the container endpoint (`ecs::answer`).
                connection.client.named_within(NAMING_WAIT).await;
            }
            Ok(json_bytes(if extended {
                Bytes::from(creds.imds_json(true))
            } else {
                creds.imds_body()
            }))
        }
        Err(error) => Err(ApiError::no_credentials(&role, error)),
    }
}

/// The account and region of the role, from the config alone: these answers
/// must not wait for STS.
fn placement(imds: &Imds) -> (String, String) {
    let role = imds.role().and_then(|name| imds.app.cache.role(&name));
    let account = role
        .as_ref()
        .and_then(|spec| spec.config.role_arn.as_deref())
        .and_then(crate::arn::account)
        .unwrap_or("000000000000")
        .to_owned();
    let region = role
        .and_then(|spec| spec.config.region)
        .unwrap_or_else(|| imds.app.settings().region.clone());
    (account, region)
}

async fn iam_info(State(imds): State<Imds>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    let role = role_of(&imds)?;
    let (account, _) = placement(&imds);
    Ok(json(&serde_json::json!({
        "Code": "Success",
        "LastUpdated": format_expiration(SystemTime::now()),
        "InstanceProfileArn": format!("arn:aws:iam::{account}:instance-profile/{role}"),
        "InstanceProfileId": "AIPAASSUMEDLOCALDAEMON",
    })))
}

async fn region(State(imds): State<Imds>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    Ok(text(placement(&imds).1))
}

async fn availability_zone(
    State(imds): State<Imds>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    Ok(text(format!("{}a", placement(&imds).1)))
}

async fn identity_document(
    State(imds): State<Imds>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_session(&imds, &headers)?;
    let (account, region) = placement(&imds);
    Ok(json(&serde_json::json!({
        "accountId": account,
        "region": region,
        "availabilityZone": format!("{region}a"),
        "instanceId": "i-00000000a55u3ed00",
        "instanceType": "assumed.local",
        "imageId": "ami-00000000000000000",
        "architecture": std::env::consts::ARCH,
        "privateIp": "127.0.0.1",
        "pendingTime": format_expiration(SystemTime::UNIX_EPOCH),
        "version": "2017-09-30",
    })))
}
