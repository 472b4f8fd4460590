//! `/login`: password → the account's second factor (or a new-location approval) → back to
//! `return_to`. Works without JavaScript; with it, the page also offers a passkey (the
//! passwordless `/v1/auth/webauthn/*` calls) and listens for a new-location approval on the
//! `/v1/auth/authorize-ip/ws` websocket.

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use sigil_actors::sessions::{self, EndSession};
use sigil_engine::web::{self as rules, TicketFactor, WebError};

use super::{Ui, forms, headers, render, return_to};
use crate::accounts::AccountsState;
use crate::v1::error::V1Error;
use crate::v1::routes::{self as api, PasswordStep};
use crate::v1::{authenticate, new_session_cookie, session_cookie};

type State = web::Data<AccountsState>;
type UiData = web::Data<Ui>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(show))
        .route("/login", web::post().to(submit))
        .route("/login/mfa", web::post().to(second_factor))
        .route("/login/mfa/sms", web::post().to(send_sms))
        .route("/login/authorize-ip", web::post().to(approve_location))
        .route("/login/session", web::post().to(adopt))
        .route("/logout", web::post().to(logout));
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    product: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    error: &'a str,
    login: &'a str,
    wallet: bool,
    /// Where sigil is set up (`accounts.public_url`) and the origins its forms accept: the
    /// page's script warns when the browser opened it anywhere else (the form would be refused).
    public_url: &'a str,
    origins: &'a str,
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage<'a> {
    product: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    ticket: &'a str,
    error: &'a str,
    notice: &'a str,
    totp: bool,
    sms: bool,
    webauthn: bool,
}

#[derive(Template)]
#[template(path = "ip_wait.html")]
struct IpWaitPage<'a> {
    product: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    ticket: &'a str,
    error: &'a str,
}

/// Adds the CSRF cookie when the page minted a new token.
pub(super) fn with_cookie(mut resp: HttpResponse, cookie: Option<Cookie<'static>>) -> HttpResponse {
    if let Some(c) = cookie {
        // Adding a cookie to a response we built cannot fail for a valid cookie.
        let _ = resp.add_cookie(&c);
    }
    resp
}

/// The login page, with `error` shown (and its status).
fn login_page(ui: &Ui, state: &AccountsState, req: &HttpRequest, status: StatusCode, back: &str, error: &str, login: &str) -> HttpResponse {
    let (csrf, cookie) = match forms::token(state, req) {
        Ok(t) => t,
        Err(e) => return super::error_page(ui, &e),
    };
    let accounts = &state.config.accounts;
    let origins = super::our_origins(accounts).join(" ");
    let public_url = accounts.public_url.trim_end_matches('/');
    let page = LoginPage { product: &ui.product, csrf: &csrf, return_to: back, error, login, wallet: ui.wallet_login, public_url, origins: &origins };
    with_cookie(render(status, &page, None), cookie)
}

/// The hidden fields a second-factor page carries from step to step.
struct Step<'a> {
    csrf: &'a str,
    back: &'a str,
    ticket: &'a str,
}

fn mfa_page(ui: &Ui, step: Step<'_>, methods: &[&str], error: &str, notice: &str, status: StatusCode) -> HttpResponse {
    let has = |m: &str| methods.contains(&m);
    let page = MfaPage {
        product: &ui.product,
        csrf: step.csrf,
        return_to: step.back,
        ticket: step.ticket,
        error,
        notice,
        totp: has("totp"),
        sms: has("sms"),
        webauthn: has("webauthn"),
    };
    render(status, &page, None)
}

/// The session is open: the cookie, and on to `return_to`.
pub(super) fn signed_in(state: &AccountsState, token: &str, back: &str) -> HttpResponse {
    let mut resp = headers::see_other(back);
    let _ = resp.add_cookie(&new_session_cookie(state, token));
    resp
}

#[derive(serde::Deserialize)]
struct Back {
    return_to: Option<String>,
}

/// `GET /login[?return_to=]`: the form — or straight on when the browser is signed in.
async fn show(req: HttpRequest, state: State, ui: UiData) -> HttpResponse {
    let raw = web::Query::<Back>::from_query(req.query_string()).ok().and_then(|q| q.into_inner().return_to);
    let back = return_to(&state.config.accounts, raw.as_deref());
    if req.cookie(&state.config.accounts.cookie_name).is_some() && authenticate(&state, &req).await.is_ok() {
        return headers::see_other(&back);
    }
    login_page(&ui, &state, &req, StatusCode::OK, &back, "", "")
}

/// `POST /login` (csrf, return_to, login, password).
async fn submit(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let login = form.get("login").trim().to_string();
    let password = form.take("password");
    match api::password_login(&state, &req, &login, password).await {
        Ok(PasswordStep::Session(_, token)) => signed_in(&state, &token.secret, &back),
        Ok(PasswordStep::SecondFactor { ticket, methods }) => {
            mfa_page(&ui, Step { csrf: form.get("csrf"), back: &back, ticket: &ticket }, &methods, "", "", StatusCode::OK)
        }
        Err(V1Error::Web(WebError::IpAuthorizationRequired { ticket })) => {
            let page = IpWaitPage { product: &ui.product, csrf: form.get("csrf"), return_to: &back, ticket: &ticket, error: "" };
            render(StatusCode::OK, &page, None)
        }
        Err(e) => {
            let (status, words) = super::plain_words(&e);
            login_page(&ui, &state, &req, status, &back, &words, &login)
        }
    }
}

/// The methods of a live ticket (to show the second-factor page again after a wrong code).
fn ticket_methods(state: &AccountsState, ticket: &str) -> Vec<&'static str> {
    let account = rules::ticket(state.store.as_ref(), ticket)
        .ok()
        .flatten()
        .and_then(|t| sigil_engine::account::get(state.store.as_ref(), &t.account).ok().flatten());
    account.map(|a| rules::mfa_methods(&a)).unwrap_or_default()
}

/// `POST /login/mfa` (csrf, return_to, ticket, method = totp | sms, code).
async fn second_factor(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let (ticket, code) = (form.take("ticket"), form.take("code"));
    let (factor, label) = if form.get("method") == "sms" { (TicketFactor::Sms, "sms") } else { (TicketFactor::TotpOrRecovery, "totp") };
    let tried = match api::ticket_limits(&req, &state, &ticket, &code) {
        Ok(()) => api::redeem_factor(&state, ticket.clone(), code, factor, label).await,
        Err(e) => Err(e),
    };
    match tried {
        Ok((token, _)) => signed_in(&state, &token.secret, &back),
        Err(e) => {
            let methods = ticket_methods(&state, &ticket);
            let (status, words) = super::plain_words(&e);
            if methods.is_empty() || matches!(e, V1Error::Web(WebError::InvalidTicket)) {
                // The ticket is gone (expired, used, or burned by five wrong codes): start over.
                let words = "This sign-in has expired or had too many wrong codes. Please sign in again.";
                return login_page(&ui, &state, &req, StatusCode::BAD_REQUEST, &back, words, "");
            }
            mfa_page(&ui, Step { csrf: form.get("csrf"), back: &back, ticket: &ticket }, &methods, &words, "", status)
        }
    }
}

/// `POST /login/mfa/sms` (csrf, return_to, ticket): texts a code, shows the page again.
async fn send_sms(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let ticket = form.take("ticket");
    let sent = match api::ticket_limits(&req, &state, &ticket, "") {
        Ok(()) => api::send_ticket_sms(&state, ticket.clone()).await,
        Err(e) => Err(e),
    };
    let methods = ticket_methods(&state, &ticket);
    match sent {
        Ok(()) => mfa_page(&ui, Step { csrf: form.get("csrf"), back: &back, ticket: &ticket }, &methods, "", "We sent a code to your phone.", StatusCode::OK),
        Err(e) => {
            let (status, words) = super::plain_words(&e);
            mfa_page(&ui, Step { csrf: form.get("csrf"), back: &back, ticket: &ticket }, &methods, &words, "", status)
        }
    }
}

/// `POST /login/authorize-ip` (csrf, return_to, ticket, code): the person types the code we
/// sent into the waiting page — approve the location and take the session.
async fn approve_location(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let (ticket, code) = (form.take("ticket"), form.take("code"));
    let result = match api::approve_ip(&state, &req, code).await {
        Ok(()) => api::claim(&state, &ticket).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(Some((token, _))) => signed_in(&state, &token.secret, &back),
        // Approved, but another window of this login took the session first.
        Ok(None) => super::message(&ui, StatusCode::OK, "Location approved", "Continue in the window where you signed in.", None),
        Err(e) => {
            let (status, words) = super::plain_words(&e);
            let page = IpWaitPage { product: &ui.product, csrf: form.get("csrf"), return_to: &back, ticket: &ticket, error: &words };
            render(status, &page, None)
        }
    }
}

/// `POST /login/session` (csrf, return_to, token): a page that received its new session's
/// token over a websocket (the new-location approval) turns it into the cookie. Only a live
/// `/v1` session token is taken.
async fn adopt(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let secret = form.take("token");
    if secret.len() > 256 || rules::lookup(state.store.as_ref(), &secret).is_err() {
        return super::error_page(&ui, &V1Error::Web(WebError::Unauthorized));
    }
    signed_in(&state, &secret, &back)
}

/// `POST /logout` (csrf): ends this browser's session, clears the cookie, back to `/login`.
async fn logout(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    if let Err(e) = forms::posted(&state, &req, payload).await {
        return super::error_page(&ui, &e);
    }
    if let Ok(caller) = authenticate(&state, &req).await
        && let Err(e) = sessions::request(&state.registry, EndSession { key: caller.key, owner: None }).await
    {
        return super::error_page(&ui, &V1Error::from(e));
    }
    let mut resp = headers::see_other("/login");
    let _ = resp.add_cookie(&session_cookie(&state, "", 0));
    resp
}
