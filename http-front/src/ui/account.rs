//! `/account` (sessions with "sign out" each, passkeys, TOTP enrolment with a QR code, sudo
//! prompts — the actions are `/v1` calls from `account.js`), `/handoff` (approve a native
//! app's sign-in code) and `/authorize-ip` (the landing page of the new-location message).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use sigil_engine::account::factors;
use sigil_engine::flux::iso_millis;
use sigil_engine::session::agent::Agent;
use sigil_engine::store::now_ms;
use sigil_engine::web as rules;

use super::login::with_cookie;
use super::{Ui, forms, render};
use crate::accounts::AccountsState;
use crate::v1::error::V1Error;
use crate::v1::routes as api;
use crate::v1::{Caller, Via, authenticate};

type State = web::Data<AccountsState>;
type UiData = web::Data<Ui>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(account))
        .route("/handoff", web::get().to(handoff))
        .route("/handoff", web::post().to(approve_handoff))
        .route("/authorize-ip", web::get().to(location))
        .route("/authorize-ip", web::post().to(approve_location));
}

struct SessionRow {
    id: String,
    created: String,
    last_used: String,
    ip: String,
    agent: String,
    current: bool,
}

struct PasskeyRow {
    id: String,
    name: String,
    created: String,
    last_used: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    product: &'a str,
    csrf: &'a str,
    username: &'a str,
    email: &'a str,
    sessions: Vec<SessionRow>,
    passkeys: Vec<PasskeyRow>,
    totp_enabled: bool,
    totp_secret: String,
    totp_qr: String,
}

/// "2026-12-01 21:30 UTC": minutes are what a person compares.
fn when(ms: u64) -> String {
    let iso = iso_millis(ms);
    match iso.get(..16) {
        Some(head) => format!("{} UTC", head.replacen('T', " ", 1)),
        None => iso,
    }
}

fn agent_words(user_agent: &str) -> String {
    let a = Agent::parse(user_agent);
    if a.name == "UNKNOWN" {
        return "Unknown device".into();
    }
    if a.os.is_empty() || a.os == "UNKNOWN" { a.name } else { format!("{} on {}", a.name, a.os) }
}

/// The caller of a page: a cookie session (pages never take a Bearer token).
async fn page_caller(state: &AccountsState, req: &HttpRequest) -> Option<Caller> {
    authenticate(state, req).await.ok().filter(|c| c.via == Via::Cookie)
}

/// `GET /account`.
async fn account(req: HttpRequest, state: State, ui: UiData) -> HttpResponse {
    let Some(caller) = page_caller(&state, &req).await else { return super::to_login("/account") };
    let (csrf, cookie) = match forms::token(&state, &req) {
        Ok(t) => t,
        Err(e) => return super::error_page(&ui, &e),
    };
    let a = &caller.account;
    let now = now_ms();
    let sessions = match rules::sessions_of(state.store.as_ref(), &a.guid) {
        Ok(list) => list
            .iter()
            .map(|(s, last)| {
                let current = s.id == caller.session.id;
                SessionRow {
                    id: s.id.clone(),
                    created: when(s.created_at),
                    last_used: when(if current { now } else { *last }),
                    ip: s.ip.clone(),
                    agent: agent_words(&s.user_agent),
                    current,
                }
            })
            .collect(),
        Err(e) => return super::error_page(&ui, &V1Error::from(e)),
    };
    let passkeys = a
        .passkeys
        .iter()
        .map(|p| PasskeyRow {
            id: p.id.clone(),
            name: p.name.clone(),
            created: when(p.created_at),
            last_used: p.last_used_at.map(when).unwrap_or_else(|| "never".into()),
        })
        .collect();
    let totp_enabled = a.totp.is_some();
    // A new secret for each view of the page: enrolment sends it back with a code that proves
    // the authenticator has it; nothing is stored until then.
    let (totp_secret, totp_qr) = if totp_enabled {
        (String::new(), String::new())
    } else {
        match factors::new_totp_secret() {
            Ok(secret) => {
                let uri = factors::otpauth_uri(&secret, &a.username).unwrap_or_default();
                let qr = super::qr_svg(&uri);
                (secret, qr)
            }
            Err(e) => return super::error_page(&ui, &V1Error::Web(sigil_engine::web::WebError::Unavailable(e.to_string()))),
        }
    };
    let page = AccountPage {
        product: &ui.product,
        csrf: &csrf,
        username: &a.username,
        email: a.email.as_deref().unwrap_or(""),
        sessions,
        passkeys,
        totp_enabled,
        totp_secret,
        totp_qr,
    };
    with_cookie(render(StatusCode::OK, &page, None), cookie)
}

#[derive(Template)]
#[template(path = "handoff.html")]
struct HandoffPage<'a> {
    product: &'a str,
    csrf: &'a str,
    username: &'a str,
    code: &'a str,
    error: &'a str,
}

#[derive(serde::Deserialize)]
struct CodeQuery {
    code: Option<String>,
}

fn code_query(req: &HttpRequest) -> String {
    web::Query::<CodeQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().code)
        .filter(|c| c.len() <= 64)
        .unwrap_or_default()
}

/// `GET /handoff[?code=XXXX-XXXX]`: a signed-in browser approves a native app's code.
async fn handoff(req: HttpRequest, state: State, ui: UiData) -> HttpResponse {
    let Some(caller) = page_caller(&state, &req).await else { return super::to_login(&super::here(&req)) };
    let (csrf, cookie) = match forms::token(&state, &req) {
        Ok(t) => t,
        Err(e) => return super::error_page(&ui, &e),
    };
    let code = code_query(&req);
    let page = HandoffPage { product: &ui.product, csrf: &csrf, username: &caller.account.username, code: &code, error: "" };
    with_cookie(render(StatusCode::OK, &page, None), cookie)
}

/// `POST /handoff` (csrf, code).
async fn approve_handoff(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let Some(caller) = page_caller(&state, &req).await else { return super::to_login("/handoff") };
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let code = form.take("code");
    match api::complete_handoff(&state, &req, code.clone(), caller.account.guid.clone()).await {
        Ok(()) => super::message(&ui, StatusCode::OK, "App signed in", "Go back to your app: it is signed in now.", Some(("/account", "Your account"))),
        Err(e) => {
            let (status, words) = super::plain_words(&e);
            let page = HandoffPage { product: &ui.product, csrf: form.get("csrf"), username: &caller.account.username, code: &code, error: &words };
            render(status, &page, None)
        }
    }
}

#[derive(Template)]
#[template(path = "authorize_ip.html")]
struct LocationPage<'a> {
    product: &'a str,
    csrf: &'a str,
    code: &'a str,
    error: &'a str,
}

/// `GET /authorize-ip[?code=]`: the link in the new-location message.
async fn location(req: HttpRequest, state: State, ui: UiData) -> HttpResponse {
    let (csrf, cookie) = match forms::token(&state, &req) {
        Ok(t) => t,
        Err(e) => return super::error_page(&ui, &e),
    };
    let code = code_query(&req);
    with_cookie(render(StatusCode::OK, &LocationPage { product: &ui.product, csrf: &csrf, code: &code, error: "" }, None), cookie)
}

/// `POST /authorize-ip` (csrf, code): approves; the waiting sign-in moves on by itself.
async fn approve_location(req: HttpRequest, payload: web::Payload, state: State, ui: UiData) -> HttpResponse {
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let code = form.take("code");
    match api::approve_ip(&state, &req, code.clone()).await {
        Ok(()) => super::message(
            &ui,
            StatusCode::OK,
            "Location approved",
            "The sign-in continues in the window where it started. You can close this page.",
            None,
        ),
        Err(e) => {
            let (status, words) = super::plain_words(&e);
            render(status, &LocationPage { product: &ui.product, csrf: form.get("csrf"), code: &code, error: &words }, None)
        }
    }
}
