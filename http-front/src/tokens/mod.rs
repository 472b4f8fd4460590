//! The token API (`/api/auth`, spec A and C.3): access tokens for clusters and scripts.
//!
//! Handlers parse, authenticate and map errors ([`error::ApiError`]); the rules live in
//! `sigil_engine::tokens`, writes go through the session registry and the account directory,
//! password checks through the password pool.

pub mod error;
pub mod routes;

use actix_web::HttpRequest;
use sigil_actors::sessions::{self, EndSession};
use sigil_engine::account::{self, Account};
use sigil_engine::session::AccountSession;
use sigil_engine::store::now_ms;
use sigil_engine::tokens::{self, Purpose, TokenError};

use crate::accounts::AccountsState;
use error::ApiError;

/// An authenticated caller of the token API.
pub struct Caller {
    pub key: Vec<u8>,
    pub session: AccountSession,
    pub account: Account,
    /// The session's last use before this request.
    pub last_activity: u64,
}

/// The caller named by `secret`, for `purpose`: a live token (absolute and idle expiry),
/// verified unless the call is a 2fa call or logout, of an enabled account. A one-time
/// token's use ends it — exactly once, through the registry — so a second use, even a
/// concurrent one, finds nothing. Other uses move the sliding window.
pub async fn authenticate(state: &AccountsState, secret: &str, purpose: Purpose) -> Result<Caller, ApiError> {
    let now = now_ms();
    let store = state.store.as_ref();
    let (key, session, last) = tokens::lookup(store, secret, purpose, now)?;
    let account = account::get(store, &session.owner)?.filter(|a| !a.disabled).ok_or(TokenError::InvalidToken)?;
    if session.onetime && purpose == Purpose::Use {
        let ended = sessions::request(&state.registry, EndSession { key: key.clone(), owner: None }).await?;
        if ended.is_none() {
            return Err(TokenError::InvalidToken.into());
        }
    } else {
        tokens::record_use(store, &key, &session, last, now)?;
    }
    Ok(Caller { key, session, account, last_activity: last })
}

/// The caller of a route that takes `Authorization: Bearer`.
pub async fn bearer(state: &AccountsState, req: &HttpRequest, purpose: Purpose) -> Result<Caller, ApiError> {
    let secret = crate::bearer::token(req).ok_or(TokenError::InvalidToken)?;
    authenticate(state, &secret, purpose).await
}
