//! The pages' HTML forms: reading a urlencoded body, and CSRF safety.
//!
//! A form post must come from one of our origins (`Origin`, as for cookie-authenticated API
//! calls) *and* carry the token of the `sigil_csrf` cookie (double submit: a page of another
//! site can neither read the cookie nor set it, SameSite=Strict keeps it off cross-site
//! requests). The login form needs this too: without it another site could sign a browser in
//! to the attacker's account (login CSRF).

use std::collections::HashMap;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::web;
use futures_util::StreamExt;
use sigil_engine::secret::{constant_time_eq, random_id};
use sigil_engine::web::WebError;

use crate::accounts::AccountsState;
use crate::v1::error::V1Error;

/// The double-submit cookie.
pub const CSRF_COOKIE: &str = "sigil_csrf";

/// Bound on a form body: a login form is a few hundred bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// A posted form: the last value of each field.
pub struct Form(HashMap<String, String>);

impl Form {
    /// The field's value, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// Takes the field's value out (a password, to move it to the hashing pool).
    pub fn take(&mut self, name: &str) -> String {
        self.0.remove(name).unwrap_or_default()
    }
}

/// Reads an `application/x-www-form-urlencoded` body of at most 16 KiB.
pub async fn read(mut payload: web::Payload) -> Result<Form, V1Error> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| WebError::InvalidForm(vec![("body".into(), "could not be read".into())]))?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(WebError::InvalidForm(vec![("body".into(), "too large".into())]).into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Form(form_urlencoded::parse(&body).into_owned().collect()))
}

/// Reads a posted form and checks that it is ours ([`check`]).
pub async fn posted(state: &AccountsState, req: &HttpRequest, payload: web::Payload) -> Result<Form, V1Error> {
    let form = read(payload).await?;
    check(state, req, &form)?;
    Ok(form)
}

/// The page's CSRF token: the cookie's, or a new one with the cookie to set.
pub fn token(state: &AccountsState, req: &HttpRequest) -> Result<(String, Option<Cookie<'static>>), V1Error> {
    if let Some(c) = req.cookie(CSRF_COOKIE).filter(|c| c.value().len() == 64 && c.value().bytes().all(|b| b.is_ascii_hexdigit())) {
        return Ok((c.value().to_string(), None));
    }
    let token = random_id().map_err(|e| WebError::Unavailable(e.to_string()))?;
    let cookie = Cookie::build(CSRF_COOKIE, token.clone())
        .http_only(true)
        .secure(state.config.accounts.cookie_secure)
        .same_site(SameSite::Strict)
        .path("/")
        .finish();
    Ok((token, Some(cookie)))
}

/// Whether a posted form is ours: allowed `Origin` and the cookie's token in `csrf`.
pub fn check(state: &AccountsState, req: &HttpRequest, form: &Form) -> Result<(), V1Error> {
    if !crate::v1::origin_allowed(state, req) {
        return Err(V1Error::InvalidOrigin);
    }
    let cookie = req.cookie(CSRF_COOKIE).map(|c| c.value().to_string()).unwrap_or_default();
    let sent = form.get("csrf");
    if cookie.is_empty() || !constant_time_eq(cookie.as_bytes(), sent.as_bytes()) {
        return Err(V1Error::InvalidOrigin);
    }
    Ok(())
}
