//! Who may have credentials: the request must carry the token, raw, in
//! `Authorization` (no `Bearer`), as every SDK sends it for FULL_URI and
//! RELATIVE_URI alike.

use axum::http::{HeaderMap, header};

use super::error::ApiError;
use crate::token::Token;

pub fn authorize(token: &Token, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut presented = headers.get_all(header::AUTHORIZATION).iter();
    match (presented.next(), presented.next()) {
        (None, _) => Err(ApiError::missing_token()),
        (Some(value), None) if token.matches(value.as_bytes()) => Ok(()),
        // A second Authorization header is never what an SDK sends.
        _ => Err(ApiError::wrong_token()),
    }
}
