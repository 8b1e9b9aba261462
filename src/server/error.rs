//! The one error shape every endpoint answers with: `Content-Type:
//! application/json` exactly and `{"code","message"}` in lowercase, which is
//! what the Go and Java SDKs parse.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

    pub fn status(&self) -> StatusCode {
        self.status
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
