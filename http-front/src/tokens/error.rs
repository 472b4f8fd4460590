//! The token dialect's error shape (spec A), also used by `/api/admin` (spec C.1):
//! `{"success": false, "error": "<CODE>"}` with the HTTP status, `details` on validation
//! errors, `Retry-After` on rate limits. Every error of these routes is mapped here, once.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use sigil_actors::ActorError;
use sigil_engine::account::AccountError;
use sigil_engine::store::StoreError;
use sigil_engine::tokens::TokenError;

use crate::json::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `409 USER_EXISTS` (admin: a taken username, email or group name).
    #[error("USER_EXISTS")]
    Exists,
    /// `404 NOT_FOUND` (admin: no such account, group or token).
    #[error("NOT_FOUND")]
    NotFound,
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Exists => ApiError::Exists,
            AccountError::NotFound => ApiError::NotFound,
            other => ApiError::Token(other.into()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Token(e.into())
    }
}

impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        ApiError::Token(e.into())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Token(TokenError::Unavailable(e.to_string()))
    }
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::Token(t) => match t {
                TokenError::InvalidToken => "INVALID_TOKEN_DATA",
                TokenError::InvalidGroup => "INVALID_AUTHENTICATION_GROUP",
                TokenError::InvalidIp => "INVALID_IP",
                TokenError::Insufficient => "INSUFFICIENT_PERMISSIONS",
                TokenError::TwoFactorRequired => "TWO_FACTOR_REQUIRED",
                TokenError::RateLimited(_) => "RATE_LIMITED",
                TokenError::Validation(_) => "VALIDATION_ERROR",
                TokenError::Unavailable(_) => "UNAVAILABLE",
            },
            ApiError::Exists => "USER_EXISTS",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::Body(_) => "VALIDATION_ERROR",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Token(t) => match t {
                TokenError::InvalidToken => StatusCode::UNAUTHORIZED,
                TokenError::InvalidGroup | TokenError::InvalidIp | TokenError::Insufficient | TokenError::TwoFactorRequired => {
                    StatusCode::FORBIDDEN
                }
                TokenError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                TokenError::Validation(_) => StatusCode::BAD_REQUEST,
                TokenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            ApiError::Exists => StatusCode::CONFLICT,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(BodyError::WrongType) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Body(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::Map::new();
        body.insert("success".into(), json!(false));
        body.insert("error".into(), json!(self.code()));
        match self {
            ApiError::Token(TokenError::Validation(d)) => {
                body.insert("details".into(), json!(d));
            }
            ApiError::Body(b) => {
                body.insert("details".into(), json!(b.to_string()));
            }
            ApiError::Token(TokenError::Unavailable(why)) => tracing::error!(reason = %why, "account route unavailable"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code()).json(body);
        if let ApiError::Token(TokenError::RateLimited(ms)) = self {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        res
    }
}
