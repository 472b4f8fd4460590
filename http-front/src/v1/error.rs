//! The account API's error shape (spec B): `{"code", "message"}` with the HTTP status;
//! `INVALID_FORM_BODY` with `errors: [{"path", "message"}]`; `RATE_LIMITED` with
//! `retry_after` (seconds) and `Retry-After`. Every error of `/v1` is mapped here, once.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use sigil_actors::ActorError;
use sigil_engine::account::AccountError;
use sigil_engine::store::StoreError;
use sigil_engine::web::WebError;

use crate::json::BodyError;

#[derive(Debug, thiserror::Error)]
pub enum V1Error {
    #[error(transparent)]
    Web(#[from] WebError),
    /// A cookie-authenticated state change from an origin that is not ours (C.4).
    #[error("INVALID_ORIGIN")]
    InvalidOrigin,
    #[error("NOT_FOUND")]
    NotFound,
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl From<StoreError> for V1Error {
    fn from(e: StoreError) -> Self {
        V1Error::Web(e.into())
    }
}

impl From<AccountError> for V1Error {
    fn from(e: AccountError) -> Self {
        V1Error::Web(e.into())
    }
}

impl From<ActorError> for V1Error {
    fn from(e: ActorError) -> Self {
        V1Error::Web(e.into())
    }
}

impl V1Error {
    fn code_and_message(&self) -> (&'static str, String) {
        let (code, message) = match self {
            V1Error::Web(w) => match w {
                WebError::Unauthorized => ("UNAUTHORIZED", "Unauthorized"),
                WebError::InvalidCredentials => ("INVALID_CREDENTIALS", "Invalid login or password"),
                WebError::AccountDisabled => ("ACCOUNT_DISABLED", "This account may not log in"),
                WebError::InvalidTicket => ("MFA_INVALID_TICKET", "Unknown, expired or used MFA ticket"),
                WebError::InvalidCode => ("INVALID_CODE", "Invalid code"),
                WebError::SudoModeRequired => ("SUDO_MODE_REQUIRED", "Confirm your password or second factor first (sudo mode)"),
                WebError::InvalidHandoffCode => ("INVALID_HANDOFF_CODE", "Unknown handoff code"),
                WebError::HandoffCodeExpired => ("HANDOFF_CODE_EXPIRED", "The handoff code has expired"),
                WebError::IpAuthorizationRequired { .. } => {
                    ("IP_AUTHORIZATION_REQUIRED", "New login location: approve it with the code we sent you")
                }
                WebError::RateLimited(_) => ("RATE_LIMITED", "Too many requests, try again later"),
                WebError::PasskeyFailed => ("PASSKEY_AUTHENTICATION_FAILED", "The passkey could not be verified"),
                WebError::InvalidForm(_) => ("INVALID_FORM_BODY", "Input Validation Error"),
                WebError::Unavailable(_) => ("UNAVAILABLE", "The service is unavailable, try again later"),
            },
            V1Error::InvalidOrigin => ("INVALID_ORIGIN", "Cross-origin request refused"),
            V1Error::NotFound => ("NOT_FOUND", "Unknown route"),
            V1Error::Body(_) => ("INVALID_FORM_BODY", "Input Validation Error"),
        };
        (code, message.to_string())
    }

    /// The `errors` of an `INVALID_FORM_BODY`.
    fn form_errors(&self) -> Option<Vec<serde_json::Value>> {
        let pairs = match self {
            V1Error::Web(WebError::InvalidForm(pairs)) => pairs.clone(),
            V1Error::Body(b) => {
                let text = b.to_string();
                // "field: what is wrong" from the body reader names the field.
                let (path, message) = match (b, text.split_once(": ")) {
                    (BodyError::Malformed(_), Some((p, m))) if !p.contains(' ') => (p.to_string(), m.to_string()),
                    _ => (String::new(), text.clone()),
                };
                vec![(path, message)]
            }
            _ => return None,
        };
        Some(pairs.into_iter().map(|(path, message)| json!({"path": path, "message": message})).collect())
    }
}

impl ResponseError for V1Error {
    fn status_code(&self) -> StatusCode {
        match self {
            V1Error::Web(w) => match w {
                WebError::Unauthorized | WebError::PasskeyFailed => StatusCode::UNAUTHORIZED,
                WebError::InvalidCredentials
                | WebError::InvalidTicket
                | WebError::InvalidCode
                | WebError::InvalidForm(_)
                | WebError::InvalidHandoffCode
                | WebError::HandoffCodeExpired => {
                    StatusCode::BAD_REQUEST
                }
                WebError::AccountDisabled | WebError::SudoModeRequired | WebError::IpAuthorizationRequired { .. } => {
                    StatusCode::FORBIDDEN
                }
                WebError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            V1Error::InvalidOrigin => StatusCode::FORBIDDEN,
            V1Error::NotFound => StatusCode::NOT_FOUND,
            V1Error::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            V1Error::Body(BodyError::WrongType) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            V1Error::Body(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, message) = self.code_and_message();
        let mut body = serde_json::Map::new();
        body.insert("code".into(), json!(code));
        body.insert("message".into(), json!(message));
        if let Some(errors) = self.form_errors() {
            body.insert("errors".into(), json!(errors));
        }
        let retry = match self {
            V1Error::Web(WebError::RateLimited(ms)) => Some(ms.div_ceil(1000).max(1)),
            _ => None,
        };
        if let Some(secs) = retry {
            body.insert("retry_after".into(), json!(secs));
        }
        if let V1Error::Web(WebError::IpAuthorizationRequired { ticket }) = self {
            body.insert("ticket".into(), json!(ticket));
            body.insert("resend_available_in".into(), json!(30));
        }
        if let V1Error::Web(WebError::Unavailable(why)) = self {
            tracing::error!(reason = %why, "/v1 route unavailable");
        }
        let mut res = HttpResponse::build(self.status_code()).json(body);
        if let Some(secs) = retry
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            res.headers_mut().insert(RETRY_AFTER, v);
        }
        res
    }
}
