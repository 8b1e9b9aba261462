//! The one error shape every endpoint answers with: `Content-Type:
//! application/json` exactly and `{"code","message"}` in lowercase, which is
//! what the Go and Java SDKs parse.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::cache::CacheError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "MissingToken",
            "send the token from AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE in the Authorization header",
        )
    }

    pub fn wrong_token() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidToken",
            "the Authorization token is not valid",
        )
    }

    /// Deliberately names no role: callers must not learn which roles exist.
    pub fn unknown_role() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "RoleNotFound",
            "no such role is configured",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint")
    }

    pub fn unavailable(code: &str, message: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// A role the cache could not serve: 503 with STS's code, and which role
    /// it was in the message.
    pub fn no_credentials(role: &str, error: CacheError) -> Self {
        ApiError::from(error).context(format_args!("credentials for role {role} are unavailable"))
    }

    /// Puts `context` (which role, what was tried) before a 503's message.
    /// Other errors keep their wording: the 404 names no role on purpose.
    pub fn context(mut self, context: impl std::fmt::Display) -> Self {
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            self.message = format!("{context}: {}", self.message);
        }
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A `confirm` role's refusals: 403 `NotApproved` (denied, lapsed, or the
/// program cannot be identified), 503 `ApprovalPending` (asked, not yet
/// answered: every SDK retries a 503).
impl From<crate::approval::Refusal> for ApiError {
    fn from(refusal: crate::approval::Refusal) -> Self {
        use crate::approval::Refusal;
        match refusal {
            Refusal::NotApproved(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "NotApproved", message)
            }
            Refusal::Pending(message) => ApiError::unavailable("ApprovalPending", &message),
        }
    }
}

/// The one mapping from the cache's refusals to HTTP: a role it does not
/// know is the 404 that names no role, one it cannot get credentials for a
/// 503 carrying STS's code and message.
impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> Self {
        match error {
            CacheError::UnknownRole => ApiError::unknown_role(),
            CacheError::Unavailable(error) => ApiError::unavailable(&error.code, &error.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: &self.code,
            message: &self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        // Json already sets this; say it explicitly because clients match it exactly.
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
