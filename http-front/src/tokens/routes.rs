//! The `/api/auth` handlers.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sigil_actors::outbox::{Channel, Message};
use sigil_actors::sessions::{self, EndSession, IssueTokenSms, OpenAccountSession, TokenSecondFactor};
use sigil_engine::account::password::MAX_PASSWORD_BYTES;
use sigil_engine::account::{self, Account, Method, factors};
use sigil_engine::session::agent::Agent;
use sigil_engine::session::{self, AccountSession};
use sigil_engine::store::now_ms;
use sigil_engine::tokens::{self, Admission, Lifetimes, LoginOptions, Purpose, SmsToSend, TokenError};

use super::error::ApiError;
use super::{Caller, authenticate, bearer};
use crate::accounts::{AccountsState, PasswordRefusal, check_password};
use crate::json::{self, MAX_JSON_BODY};

type State = web::Data<AccountsState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/auth")
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/token", web::get().to(token))
            .route("/tokens", web::get().to(list_tokens))
            .route("/tokens/{guid}", web::delete().to(revoke_token))
            .route("/2fa/resend", web::post().to(resend))
            .route("/2fa/{method}", web::post().to(second_factor))
            .default_service(web::to(unknown)),
    );
}

/// Unknown `/api/auth` paths answer in the dialect's shape.
async fn unknown() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

fn secs(ms: u64) -> u64 {
    ms / 1000
}

/// The `user` object of the dialect.
fn user(a: &Account, full: bool) -> Value {
    if full {
        json!({"username": a.username, "language": a.language, "firstname": a.firstname, "lastname": a.lastname, "code": a.code, "_meta": {"guid": a.guid}})
    } else {
        json!({"username": a.username, "firstname": a.firstname, "lastname": a.lastname, "_meta": {"guid": a.guid}})
    }
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    onetime: bool,
    #[serde(default)]
    hide_session: bool,
}

async fn login(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    let body: LoginBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let outcome = |o: &str| state.metrics.logins.with_label_values(&["token", "password", o]).inc();
    if body.username.is_empty() || body.username.len() > 256 {
        return Err(TokenError::Validation("username: 1 to 256 bytes".into()).into());
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(TokenError::Validation(format!("password: at most {MAX_PASSWORD_BYTES} bytes")).into());
    }
    let origin = state.origin(&req);
    let account = check_password(&state, "token", &origin.ip, &body.username, body.password).await.map_err(|r| match r {
        PasswordRefusal::RateLimited(wait) => TokenError::RateLimited(wait),
        PasswordRefusal::Invalid => TokenError::InvalidToken,
        PasswordRefusal::Unavailable(why) => TokenError::Unavailable(why),
    })?;
    let admission = tokens::admit(state.store.as_ref(), &account, state.client_ip(&req)).inspect_err(|e| outcome(refusal(e)))?;

    let life = Lifetimes { expiry_ms: state.config.tokens.expiry.as_millis(), renew_ms: state.config.tokens.expiry_renew.as_millis() };
    let ip_text = origin.ip.clone();
    let opts = LoginOptions { onetime: body.onetime, hide_session: body.hide_session, origin };
    let (token, key, s) = tokens::mint(&account, admission, &opts, life, now_ms())?;
    sessions::request(&state.registry, OpenAccountSession { writes: tokens::open_writes(&key, &s)? }).await?;
    outcome(if admission == Admission::Verified { "success" } else { "second_factor" });

    if admission == Admission::NeedsSecondFactor && account.default_2fa == Some(Method::Mobile) {
        let sms = sessions::request(&state.registry, IssueTokenSms { key, account: account.clone() }).await?;
        send_sms(&state, sms);
    }
    Ok(HttpResponse::Ok().json(json!({
        "access_token": token.secret,
        "expiry": secs(s.expire_at),
        "expiry_renew": secs(life.renew_ms),
        "verified": s.verified,
        "2fa": account.methods(),
        "default_2fa": account.default_2fa,
        "user": user(&account, true),
        "ip": ip_text,
    })))
}

fn refusal(e: &TokenError) -> &'static str {
    match e {
        TokenError::InvalidGroup => "group",
        TokenError::InvalidIp => "ip",
        TokenError::TwoFactorRequired => "second_factor_missing",
        _ => "invalid",
    }
}

fn send_sms(state: &AccountsState, sms: Option<SmsToSend>) -> bool {
    let Some(sms) = sms else { return false };
    let body = format!("Your sigil code is {}", factors::spaced(&sms.code));
    state.sender.send(Message { to: sms.to, channel: Channel::Sms, purpose: "2fa".into(), body, code: sms.code, at: now_ms() });
    true
}

async fn logout(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&state, &req, Purpose::Unverified).await?;
    sessions::request(&state.registry, EndSession { key: caller.key, owner: None }).await?;
    Ok(HttpResponse::Ok().json(json!({"logout": true})))
}

async fn token(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let Caller { session, account, .. } = bearer(&state, &req, Purpose::Use).await?;
    // After this use the sliding window starts again now (a one-time token is gone).
    let expire = if session.onetime { now_ms() } else { session.dies_at(now_ms()) };
    Ok(HttpResponse::Ok().json(json!({"expire": secs(expire), "user": user(&account, false), "scopes": account.scopes})))
}

fn token_item(s: &AccountSession, last: u64, owner: &Account) -> Value {
    json!({
        "onetime": s.onetime,
        "hide_session": s.hide_session,
        "verified": s.verified,
        "last_verified": s.last_verified.map(secs),
        "expiry_renew": s.idle_ms.map(secs),
        "last_activity": secs(last),
        "expire": secs(s.dies_at(last)),
        "user": user(owner, false),
        "scopes": owner.scopes,
        "agent": Agent::parse(&s.user_agent),
        "ip": s.ip,
        "_meta": {"guid": s.id},
    })
}

/// The caller's own tokens (not the hidden ones), or everyone's for the `admin` scope.
async fn list_tokens(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&state, &req, Purpose::Use).await?;
    let store = state.store.as_ref();
    let admin = caller.account.is_admin();
    let listed = tokens::tokens(store, (!admin).then_some(caller.account.guid.as_str()), now_ms())?;
    let mut owners: std::collections::HashMap<String, Option<Account>> = std::collections::HashMap::new();
    let mut items = Vec::with_capacity(listed.len());
    for (s, last) in listed {
        if s.hide_session && !admin {
            continue;
        }
        // This request's own use moved the caller's activity; list it as of now.
        let last = if s.id == caller.session.id { now_ms() } else { last };
        if !owners.contains_key(&s.owner) {
            owners.insert(s.owner.clone(), account::get(store, &s.owner)?);
        }
        if let Some(Some(owner)) = owners.get(&s.owner) {
            items.push(token_item(&s, last, owner));
        }
    }
    Ok(HttpResponse::Ok().json(items))
}

/// Revokes a token by its `_meta.guid`: the caller's own, or anyone's with the `admin` scope.
async fn revoke_token(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&state, &req, Purpose::Use).await?;
    let guid = path.into_inner();
    let store = state.store.as_ref();
    let key = session::key_of_id(store, &guid)?.ok_or(ApiError::NotFound)?;
    let target = session::get(store, &key)?.ok_or(ApiError::NotFound)?;
    let admin = caller.account.is_admin();
    if !admin && target.owner() != caller.account.guid {
        return Err(TokenError::Insufficient.into());
    }
    let owner = (!admin).then(|| caller.account.guid.clone());
    sessions::request(&state.registry, EndSession { key, owner }).await?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(json!({"guid": guid})))
}

#[derive(Deserialize)]
struct TwoFactorBody {
    access_token: String,
    #[serde(default)]
    token: String,
}

/// The token of a 2fa call (from the body, as the spec has it), with the 2fa limits applied:
/// per client IP and per account.
async fn two_factor_caller(req: &HttpRequest, payload: web::Payload, state: &AccountsState) -> Result<(Caller, String), ApiError> {
    let body: TwoFactorBody = json::read(req, payload, MAX_JSON_BODY).await?;
    if body.token.len() > 256 {
        return Err(TokenError::Validation("token: at most 256 bytes".into()).into());
    }
    let limits = &state.config.limits;
    state.hit_per_ip("mfa_per_ip", "mfa-ip", req, limits.mfa_per_ip).map_err(TokenError::RateLimited)?;
    let caller = authenticate(state, &body.access_token, Purpose::Unverified).await?;
    state
        .hit("mfa_per_account", &format!("mfa-account:{}", caller.account.guid), limits.mfa_per_account)
        .map_err(TokenError::RateLimited)?;
    Ok((caller, body.token))
}

async fn resend(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    let (caller, _) = two_factor_caller(&req, payload, &state).await?;
    let sms = sessions::request(&state.registry, IssueTokenSms { key: caller.key, account: caller.account }).await?;
    Ok(HttpResponse::Ok().json(json!({"resend": send_sms(&state, sms)})))
}

async fn second_factor(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    let method = match path.as_str() {
        "mobile" => Method::Mobile,
        "totp" => Method::Totp,
        "otp" => Method::Otp,
        _ => return Err(ApiError::NotFound),
    };
    let label = path.as_str();
    let (caller, code) = two_factor_caller(&req, payload, &state).await?;
    let verified = sessions::request(&state.registry, TokenSecondFactor { key: caller.key, method, code }).await?;
    let outcome = if verified { "success" } else { "invalid" };
    state.metrics.second_factor.with_label_values(&["token", label, outcome]).inc();
    Ok(HttpResponse::Ok().json(json!({"verified": verified})))
}
