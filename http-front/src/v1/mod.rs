//! The account API (`/v1`, spec B and C.4): password login with an HttpOnly session cookie
//! (and the same token for native clients as Bearer), MFA tickets, sessions, internal checks.
//!
//! Handlers parse, authenticate and map errors ([`error::V1Error`]); the rules live in
//! `sigil_engine::web`, writes go through the session registry, passwords through the pool.

pub mod error;
pub mod passkeys;
pub mod routes;
pub mod sso;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use sigil_engine::account::{self, Account};
use sigil_engine::session::{self, AccountSession};
use sigil_engine::store::now_ms;
use sigil_engine::web::{self, WebError};

use crate::accounts::AccountsState;
use error::V1Error;

/// How a `/v1` request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// An authenticated `/v1` caller.
pub struct Caller {
    pub key: Vec<u8>,
    pub session: AccountSession,
    pub account: Account,
    pub last_used: u64,
    pub via: Via,
}

/// The session token of the request: the session cookie, else `Authorization: Bearer`.
fn presented(state: &AccountsState, req: &HttpRequest) -> Option<(String, Via)> {
    if let Some(c) = req.cookie(&state.config.accounts.cookie_name) {
        return Some((c.value().to_string(), Via::Cookie));
    }
    crate::bearer::token(req).map(|t| (t, Via::Bearer))
}

/// Whether a cookie-authenticated state change comes from one of our origins (C.4): its
/// `Origin` is `accounts.public_url` or one of `accounts.allowed_origins`.
pub(crate) fn origin_allowed(state: &AccountsState, req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    let accounts = &state.config.accounts;
    std::iter::once(&accounts.public_url).chain(&accounts.allowed_origins).any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The caller of an authenticated `/v1` route. State-changing methods authenticated by the
/// cookie must pass the origin check; Bearer calls need none (a browser never adds them).
pub async fn authenticate(state: &AccountsState, req: &HttpRequest) -> Result<Caller, V1Error> {
    let (secret, via) = presented(state, req).ok_or(WebError::Unauthorized)?;
    let changes_state = !matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD | actix_web::http::Method::OPTIONS);
    if via == Via::Cookie && changes_state && !origin_allowed(state, req) {
        return Err(V1Error::InvalidOrigin);
    }
    let store = state.store.as_ref();
    let (key, session, last_used) = match web::lookup(store, &secret) {
        Ok(found) => found,
        // An OAuth2 access token works as Bearer (never as a cookie); it can never be in
        // sudo mode, so it cannot reach the sudo-gated calls.
        Err(WebError::Unauthorized) if via == Via::Bearer => {
            let s = sigil_engine::oauth2::access_token(store, &secret)?.ok_or(WebError::Unauthorized)?;
            let last = session::last_activity(store, &session::account_key(&secret), s.created_at)?;
            (session::account_key(&secret), s, last)
        }
        Err(e) => return Err(e.into()),
    };
    let account = account::get(store, &session.owner)?.filter(|a| !a.disabled).ok_or(WebError::Unauthorized)?;
    session::record_use(store, &key, &session, last_used, now_ms())?;
    Ok(Caller { key, session, account, last_used, via })
}

/// The cookie of a session just opened: `token`, living `accounts.session_ttl`.
pub fn new_session_cookie(state: &AccountsState, token: &str) -> Cookie<'static> {
    let max_age = i64::try_from(state.config.accounts.session_ttl.as_millis() / 1000).unwrap_or(i64::MAX);
    session_cookie(state, token, max_age)
}

/// The session cookie for `token`, living `max_age_secs` (0 clears it).
pub fn session_cookie(state: &AccountsState, token: &str, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(state.config.accounts.cookie_name.clone(), token.to_string())
        .http_only(true)
        .secure(state.config.accounts.cookie_secure)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}
