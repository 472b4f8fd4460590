//! The `/v1` handlers: login, MFA tickets, logout, the caller's account and sessions, and the
//! internal session check.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sigil_actors::outbox::{Channel, Message};
use sigil_actors::accounts::{AuthorizeIp, EnrolTotp, RemoveTotp, UseSecondFactor};
use sigil_actors::sessions::{
    self, ApproveIp, ClaimIpSession, CompleteHandoff, EndSession, EndSessionsById, GrantSudo, InitiateHandoff, IssueMfaTicket,
    OpenAccountSession, PollHandoff, RedeemMfaTicket, SendTicketSms, StartIpAuthorization,
};
use sigil_engine::account::password::{MAX_PASSWORD_BYTES, Verdict};
use sigil_engine::account::{self, Account, factors};
use sigil_engine::flux::iso_millis;
use sigil_engine::secret::{BearerToken, constant_time_eq};
use sigil_engine::session::agent::Agent;
use sigil_engine::session::{self, AccountSession, Origin, Session};
use sigil_engine::store::now_ms;
use sigil_engine::web::{self as rules, HandoffStatus, TicketFactor, WebError};

use super::error::V1Error;
use super::{Caller, authenticate, new_session_cookie, session_cookie};
use crate::accounts::{AccountsState, PasswordRefusal, check_password};
use crate::json::{self, MAX_JSON_BODY};

type State = web::Data<AccountsState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            // First: the token endpoint is the hottest /v1 path, and routes with a parameter
            // below cost a regex match each for every request that passes them.
            .configure(crate::oauth2::configure_v1)
            .route("/auth/login", web::post().to(login))
            .route("/auth/mfa/totp", web::post().to(mfa_totp))
            .route("/auth/mfa/sms/send", web::post().to(mfa_sms_send))
            .route("/auth/mfa/sms", web::post().to(mfa_sms))
            .route("/auth/logout", web::post().to(logout))
            .route("/auth/sessions", web::get().to(list_sessions))
            .route("/auth/sessions/logout", web::post().to(logout_sessions))
            .route("/auth/sudo/verify", web::post().to(sudo_verify))
            .route("/auth/handoff/initiate", web::post().to(handoff_initiate))
            .route("/auth/handoff/{code}/complete", web::post().to(handoff_complete))
            .route("/auth/handoff/{code}/status", web::get().to(handoff_status))
            .route("/auth/authorize-ip", web::post().to(authorize_ip))
            .route("/auth/authorize-ip/poll", web::get().to(authorize_ip_poll))
            .route("/auth/authorize-ip/ws", web::get().to(authorize_ip_ws))
            .route("/users/@me/mfa/totp/enable", web::post().to(totp_enable))
            .route("/users/@me/mfa/totp/disable", web::post().to(totp_disable))
            .route("/users/@me", web::get().to(me))
            .configure(super::passkeys::configure)
            .configure(super::sso::configure)
            .route("/internal/sessions/validate", web::post().to(validate))
            .default_service(web::to(unknown)),
    );
}

async fn unknown() -> Result<HttpResponse, V1Error> {
    Err(V1Error::NotFound)
}

pub(crate) fn session_ttl_ms(state: &AccountsState) -> u64 {
    state.config.accounts.session_ttl.as_millis()
}

/// `{"user_id","token"}` and the session cookie: a login (or a ticket) that opened a session.
pub(super) fn opened(state: &AccountsState, account: &Account, token: &BearerToken) -> HttpResponse {
    HttpResponse::Ok().cookie(new_session_cookie(state, &token.secret)).json(json!({"user_id": account.guid, "token": token.secret}))
}

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
}

/// Where a correct password leads.
pub(crate) enum PasswordStep {
    /// A new session: the account has no second factor and the location is known.
    Session(Box<Account>, BearerToken),
    /// The account's second factor, through this MFA ticket.
    SecondFactor { ticket: String, methods: Vec<&'static str> },
}

/// A password login, for the JSON API and the login page alike: the rate limits, the password
/// check on its pool, the account's group rules, then a session, an MFA ticket, or (a new
/// location) `IP_AUTHORIZATION_REQUIRED` with the approval code sent out.
pub(crate) async fn password_login(state: &State, req: &HttpRequest, login: &str, password: String) -> Result<PasswordStep, V1Error> {
    let outcome = |o: &str| state.metrics.logins.with_label_values(&["v1", "password", o]).inc();
    let mut invalid = Vec::new();
    if login.is_empty() || login.len() > 256 {
        invalid.push(("login".to_string(), "must be 1 to 256 bytes".to_string()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        invalid.push(("password".to_string(), format!("must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if !invalid.is_empty() {
        return Err(WebError::InvalidForm(invalid).into());
    }
    let origin = state.origin(req);
    let account = check_password(state, "v1", &origin.ip, login, password).await.map_err(|r| match r {
        PasswordRefusal::RateLimited(wait) => WebError::RateLimited(wait),
        PasswordRefusal::Invalid => WebError::InvalidCredentials,
        PasswordRefusal::Unavailable(why) => WebError::Unavailable(why),
    })?;
    rules::admit(state.store.as_ref(), &account, state.client_ip(req)).inspect_err(|_| outcome("disabled"))?;

    if account.has_second_factor() {
        let ttl_ms = state.config.accounts.mfa_ticket_ttl.as_millis();
        let ticket = sessions::request(&state.registry, IssueMfaTicket { account: account.clone(), origin, ttl_ms }).await?;
        outcome("second_factor");
        return Ok(PasswordStep::SecondFactor { ticket, methods: rules::mfa_methods(&account) });
    }
    if rules::needs_ip_authorization(state.config.accounts.ip_authorization, &account, &origin.ip) {
        outcome("ip_authorization");
        return Err(ip_authorization(state, &account, origin).await?.into());
    }
    let token = open(state, &account, &origin).await?;
    outcome("success");
    Ok(PasswordStep::Session(Box::new(account), token))
}

/// `POST /v1/auth/login {"login","password"}`: a session (cookie + token) for an account
/// without a second factor, an MFA ticket for one with.
async fn login(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: LoginBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    match password_login(&state, &req, &body.login, body.password).await? {
        PasswordStep::Session(account, token) => Ok(opened(&state, &account, &token)),
        PasswordStep::SecondFactor { ticket, methods } => {
            let sms = methods.contains(&"sms");
            let webauthn = methods.contains(&"webauthn");
            Ok(HttpResponse::Ok().json(json!({"mfa": true, "ticket": ticket, "methods": methods, "sms": sms, "webauthn": webauthn})))
        }
    }
}

/// Opens a `/v1` session for `account` (a login that needs nothing more), trusts its address,
/// and answers with the cookie and `{"user_id","token"}`.
pub(super) async fn open_session(state: &AccountsState, account: &Account, origin: &Origin) -> Result<HttpResponse, V1Error> {
    let token = open(state, account, origin).await?;
    Ok(opened(state, account, &token))
}

/// Opens a `/v1` session for `account` and trusts its address; the new session's token.
pub(crate) async fn open(state: &AccountsState, account: &Account, origin: &Origin) -> Result<BearerToken, V1Error> {
    let (token, key, s) = rules::mint(account, origin, session_ttl_ms(state), now_ms())?;
    let mut writes = sigil_engine::store::Batch::new();
    session::open_writes(&mut writes, &key, &Session::Account(s))?;
    sessions::request(&state.registry, OpenAccountSession { writes }).await?;
    trust_address(state, account, &origin.ip).await?;
    Ok(token)
}

/// The first successful login of an account (and every approved new one) authorizes its
/// address for the new-location check.
pub(super) async fn trust_address(state: &AccountsState, account: &Account, ip: &str) -> Result<(), V1Error> {
    if ip.is_empty() || account.authorized_ips.iter().any(|i| i == ip) {
        return Ok(());
    }
    let msg = AuthorizeIp { guid: account.guid.clone(), ip: ip.to_string() };
    Ok(state.directory.send(msg).await.map_err(|e| WebError::Unavailable(e.to_string()))??)
}

/// Starts a new-location approval: the code goes to the account's email (else its phone);
/// the client gets the ticket to poll or listen with.
async fn ip_authorization(state: &AccountsState, account: &Account, origin: Origin) -> Result<WebError, V1Error> {
    let ttl_ms = IP_AUTHORIZATION_TTL_MS;
    let ip = origin.ip.clone();
    let msg = StartIpAuthorization { account: account.clone(), origin, ttl_ms };
    let (ticket, code) = sessions::request(&state.registry, msg).await?;
    let (to, channel) = match (&account.email, &account.phone) {
        (Some(email), _) => (email.clone(), Channel::Email),
        (None, Some(phone)) => (phone.clone(), Channel::Sms),
        (None, None) => return Err(WebError::Unavailable("no address to send the approval code to".into()).into()),
    };
    let public = &state.config.accounts.public_url;
    let link = format!("{}/authorize-ip?code={code}", public.trim_end_matches('/'));
    let body = format!("A sign-in to {public} from {ip} waits for your approval. Code: {code} (valid 15 minutes). Approve it here: {link}");
    state.sender.send(Message { to, channel, purpose: "ip-authorization".into(), body, code, at: now_ms() });
    Ok(WebError::IpAuthorizationRequired { ticket })
}

/// How long a new-location approval waits (C.4: IP-authorization codes 15 min).
const IP_AUTHORIZATION_TTL_MS: u64 = 15 * 60_000;

#[derive(Deserialize)]
struct CodeBody {
    code: String,
}

/// `POST /v1/auth/authorize-ip {"code"}` → 204: approves the address (single-use code); the
/// waiting client's poll or websocket then gets its session.
async fn authorize_ip(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: CodeBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    approve_ip(&state, &req, body.code).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Approves a new login location by its single-use code (rate-limited per IP).
pub(crate) async fn approve_ip(state: &AccountsState, req: &HttpRequest, code: String) -> Result<(), V1Error> {
    state.hit_per_ip("mfa_per_ip", "mfa-ip", req, state.config.limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    if code.len() > 128 {
        return Err(WebError::InvalidCode.into());
    }
    sessions::request(&state.registry, ApproveIp { code }).await?;
    Ok(())
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: String,
}

fn ticket_query(req: &HttpRequest) -> Result<String, V1Error> {
    web::Query::<TicketQuery>::from_query(req.query_string())
        .map(|q| q.into_inner().ticket)
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| WebError::InvalidForm(vec![("ticket".into(), "is required".into())]).into())
}

pub(crate) async fn claim(state: &AccountsState, ticket: &str) -> Result<Option<(BearerToken, Account)>, V1Error> {
    let msg = ClaimIpSession { wait_id: rules::wait_id(ticket), session_ttl_ms: session_ttl_ms(state) };
    Ok(sessions::request(&state.registry, msg).await?.map(|(token, _, account)| (token, account)))
}

/// `GET /v1/auth/authorize-ip/poll?ticket=T`: `{"completed": false}` while waiting; once
/// approved, `{"completed": true, "user_id", "token"}` and the cookie — released once.
async fn authorize_ip_poll(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let ticket = ticket_query(&req)?;
    state.hit_per_ip("mfa_per_ip", "poll-ip", &req, state.config.limits.mfa_per_ip.scaled(20)).map_err(WebError::RateLimited)?;
    Ok(match claim(&state, &ticket).await? {
        None => HttpResponse::Ok().json(json!({"completed": false})),
        Some((token, account)) => {
            HttpResponse::Ok()
                .cookie(new_session_cookie(&state, &token.secret))
                .json(json!({"completed": true, "user_id": account.guid, "token": token.secret}))
        }
    })
}

/// `GET /v1/auth/authorize-ip/ws?ticket=T`: one text frame, the poll's completed answer, the
/// moment the code is accepted (pushed through the notifier, like wallet logins); then close.
async fn authorize_ip_ws(req: HttpRequest, body: web::Payload, state: State) -> actix_web::Result<HttpResponse> {
    let ticket = ticket_query(&req)?;
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let gauge = state.actor_metrics.websockets.clone();
        gauge.inc();
        let socket = crate::flux::ws::ActixSocket(session, stream.max_frame_size(crate::flux::ws::MAX_CLIENT_FRAME));
        serve_ip_socket(&state, ticket, socket).await;
        gauge.dec();
    });
    Ok(response)
}

async fn serve_ip_socket(state: &AccountsState, ticket: String, mut socket: crate::flux::ws::ActixSocket) {
    use crate::flux::ws::{Outcome, send_and_close, wait};
    use sigil_actors::notifier::{Payload, Topic};
    let topic = Topic::IpAuthorized(rules::wait_id(&ticket));
    // Subscribe before looking, so an approval between the look and the wait is not missed.
    let (id, event) = state.notifier.subscribe(topic.clone());
    let unsubscribe = || state.notifier.unsubscribe(&topic, id);
    let frame = |claimed: Result<Option<(BearerToken, Account)>, V1Error>| match claimed {
        Ok(Some((token, account))) => Some(json!({"completed": true, "user_id": account.guid, "token": token.secret}).to_string()),
        Ok(None) => None,
        Err(_) => Some(json!({"code": "MFA_INVALID_TICKET", "message": "Unknown, expired or used ticket"}).to_string()),
    };
    if let Some(text) = frame(claim(state, &ticket).await) {
        unsubscribe();
        return send_and_close(socket, text, None).await;
    }
    let left = std::time::Duration::from_millis(IP_AUTHORIZATION_TTL_MS);
    match wait(async { event.await.ok() }, left, &mut socket).await {
        Outcome::Event(e) => {
            if matches!(e.payload, Payload::IpAuthorized) {
                let text = frame(claim(state, &ticket).await).unwrap_or_else(|| json!({"completed": false}).to_string());
                state.actor_metrics.push_latency.observe(e.committed_at.elapsed().as_secs_f64());
                send_and_close(socket, text, None).await;
            }
        }
        Outcome::Expired => {
            unsubscribe();
            send_and_close(socket, json!({"code": "MFA_INVALID_TICKET", "message": "The approval expired"}).to_string(), None).await;
        }
        Outcome::ClientGone => unsubscribe(),
    }
}

#[derive(Deserialize)]
struct TicketBody {
    ticket: String,
    #[serde(default)]
    code: String,
}

/// Reads a ticket call's body and applies the MFA limits.
async fn ticket_body(req: &HttpRequest, payload: web::Payload, state: &AccountsState) -> Result<TicketBody, V1Error> {
    let body: TicketBody = json::read(req, payload, MAX_JSON_BODY).await?;
    ticket_limits(req, state, &body.ticket, &body.code)?;
    Ok(body)
}

/// The MFA limits of a ticket call (per IP; the ticket's own five tries are counted by the
/// engine), and the bounds on what it sends.
pub(crate) fn ticket_limits(req: &HttpRequest, state: &AccountsState, ticket: &str, code: &str) -> Result<(), V1Error> {
    if ticket.len() > 256 || code.len() > 256 {
        return Err(WebError::InvalidForm(vec![("ticket".into(), "too long".into())]).into());
    }
    let limits = &state.config.limits;
    state.hit_per_ip("mfa_per_ip", "mfa-ip", req, limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    // Per account too, across all its tickets (one ticket alone allows five codes).
    if let Some(t) = rules::ticket(state.store.as_ref(), ticket)? {
        state.hit("mfa_per_account", &format!("mfa-account:{}", t.account), limits.mfa_per_account).map_err(WebError::RateLimited)?;
    }
    Ok(())
}

async fn redeem(state: &AccountsState, body: TicketBody, factor: TicketFactor, label: &str) -> Result<HttpResponse, V1Error> {
    let (token, account) = redeem_factor(state, body.ticket, body.code, factor, label).await?;
    Ok(opened(state, &account, &token))
}

/// Completes an MFA ticket with a code (the ticket counts its tries) and trusts the address:
/// the new session's token and its account.
pub(crate) async fn redeem_factor(
    state: &AccountsState,
    ticket: String,
    code: String,
    factor: TicketFactor,
    label: &str,
) -> Result<(BearerToken, Account), V1Error> {
    let msg = RedeemMfaTicket { ticket, factor, code, session_ttl_ms: session_ttl_ms(state) };
    let result = sessions::request(&state.registry, msg).await;
    let outcome = if result.is_ok() { "success" } else { "invalid" };
    state.metrics.second_factor.with_label_values(&["v1", label, outcome]).inc();
    let (token, session, account) = result?;
    trust_address(state, &account, &session.ip).await?;
    Ok((token, account))
}

/// `POST /v1/auth/mfa/totp {"code","ticket"}`: a TOTP code or a recovery code.
async fn mfa_totp(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body = ticket_body(&req, payload, &state).await?;
    redeem(&state, body, TicketFactor::TotpOrRecovery, "totp").await
}

/// `POST /v1/auth/mfa/sms/send {"ticket"}` → 204 (the code goes out by the configured sender;
/// at most one per 30 s).
async fn mfa_sms_send(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body = ticket_body(&req, payload, &state).await?;
    send_ticket_sms(&state, body.ticket).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sends the ticket's account a fresh SMS code (at most one per 30 s; a quiet no otherwise).
pub(crate) async fn send_ticket_sms(state: &AccountsState, ticket: String) -> Result<(), V1Error> {
    let sms = sessions::request(&state.registry, SendTicketSms { ticket }).await?;
    if let Some(sms) = sms {
        let text = format!("Your sigil code is {}", factors::spaced(&sms.code));
        state.sender.send(Message { to: sms.to, channel: Channel::Sms, purpose: "2fa".into(), body: text, code: sms.code, at: now_ms() });
    }
    Ok(())
}

/// `POST /v1/auth/mfa/sms {"code","ticket"}`.
async fn mfa_sms(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body = ticket_body(&req, payload, &state).await?;
    redeem(&state, body, TicketFactor::Sms, "sms").await
}

/// `POST /v1/auth/logout` → 204: the session ends at once, the cookie is cleared.
async fn logout(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    sessions::request(&state.registry, EndSession { key: caller.key, owner: None }).await?;
    Ok(HttpResponse::NoContent().cookie(session_cookie(&state, "", 0)).finish())
}

/// `GET /v1/users/@me`: the caller's account, without secrets.
async fn me(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let a = authenticate(&state, &req).await?.account;
    Ok(HttpResponse::Ok().json(json!({
        "id": a.guid,
        "username": a.username,
        "email": a.email,
        "firstname": a.firstname,
        "lastname": a.lastname,
        "language": a.language,
        "phone": a.phone,
        "scopes": a.scopes,
        "mfa_enabled": a.has_second_factor(),
        "methods": rules::mfa_methods(&a),
    })))
}

fn session_item(s: &AccountSession, last: u64, current: bool) -> Value {
    json!({
        "id": s.id,
        "created_at": iso_millis(s.created_at),
        "last_used_at": iso_millis(last),
        "ip": s.ip,
        "agent": Agent::parse(&s.user_agent),
        "current": current,
    })
}

/// `GET /v1/auth/sessions`: the caller's `/v1` sessions, oldest first. Ids are public
/// handles, never tokens.
async fn list_sessions(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    let now = now_ms();
    let items: Vec<Value> = rules::sessions_of(state.store.as_ref(), &caller.account.guid)?
        .iter()
        .map(|(s, last)| {
            let current = s.id == caller.session.id;
            session_item(s, if current { now } else { *last }, current)
        })
        .collect();
    Ok(HttpResponse::Ok().json(items))
}

#[derive(Deserialize)]
struct ValidateBody {
    token: String,
}

/// `POST /v1/internal/sessions/validate {"token"}` with `X-Internal-Secret` (constant-time
/// compare): for services that receive a user's token and ask whether it is a session.
async fn validate(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let configured = state.config.accounts.internal_secret.as_deref().filter(|s| !s.is_empty());
    let presented = req.headers().get("x-internal-secret").map(|v| v.as_bytes());
    match (configured, presented) {
        (Some(secret), Some(p)) if constant_time_eq(p, secret.as_bytes()) => {}
        _ => return Err(WebError::Unauthorized.into()),
    }
    let body: ValidateBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let store = state.store.as_ref();
    let found = match rules::lookup(store, &body.token) {
        Ok((_, s, _)) => account::get(store, &s.owner)?.filter(|a| !a.disabled).map(|a| (s, a)),
        Err(WebError::Unauthorized) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(HttpResponse::Ok().json(match found {
        Some((s, a)) => json!({"valid": true, "user_id": a.guid, "scopes": a.scopes, "expires_at": iso_millis(s.expire_at)}),
        None => json!({"valid": false}),
    }))
}

/// Passes if the request carries this session's live sudo grant: the sudo cookie or
/// `X-Sudo-Token` (C.4). Sudo-gated calls answer `403 SUDO_MODE_REQUIRED` otherwise.
pub(super) fn require_sudo(state: &AccountsState, req: &HttpRequest, caller: &Caller) -> Result<(), V1Error> {
    let cookie = req.cookie(&state.config.accounts.sudo_cookie_name).map(|c| c.value().to_string());
    let header = req.headers().get("x-sudo-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let presented = cookie.or(header);
    if rules::in_sudo(&caller.session, presented.as_deref(), now_ms()) { Ok(()) } else { Err(WebError::SudoModeRequired.into()) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SudoBody {
    password: Option<String>,
    mfa_method: Option<String>,
    code: Option<String>,
}

/// `POST /v1/auth/sudo/verify {"password"} | {"mfa_method": "totp"|"recovery", "code"}`: a
/// 15-minute sudo grant bound to this session, as the sudo cookie (HttpOnly,
/// SameSite=Strict) and as `{"sudo_token"}` for `X-Sudo-Token`.
async fn sudo_verify(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    // Sudo mode is for the person's own sessions, never for a token a client holds.
    if caller.session.dialect != session::Dialect::Web {
        return Err(WebError::Unauthorized.into());
    }
    let body: SudoBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let limits = &state.config.limits;
    state.hit_per_ip("mfa_per_ip", "mfa-ip", &req, limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    let fail_key = format!("sudo-fail:{}", caller.account.guid);
    state.peek("login_per_account", &fail_key, limits.login_per_account).map_err(WebError::RateLimited)?;
    let confirmed = match (&body.password, body.mfa_method.as_deref(), &body.code) {
        (Some(p), None, None) if p.len() <= MAX_PASSWORD_BYTES => {
            matches!(state.passwords.verify(p.clone(), Some(caller.account.password.clone())).await?, Verdict::Valid { .. })
        }
        (None, Some(method @ ("totp" | "recovery")), Some(code)) => {
            use_factor(&state, &caller.account.guid, code, method == "recovery").await?
        }
        _ => {
            let why = "give {\"password\"} or {\"mfa_method\": \"totp\"|\"recovery\", \"code\"}";
            return Err(WebError::InvalidForm(vec![(String::new(), why.to_string())]).into());
        }
    };
    if !confirmed {
        state.failed(&fail_key, limits.login_per_account);
        let err = if body.password.is_some() { WebError::InvalidCredentials } else { WebError::InvalidCode };
        return Err(err.into());
    }
    let ttl_ms = state.config.accounts.sudo_ttl.as_millis();
    let token = sessions::request(&state.registry, GrantSudo { key: caller.key, ttl_ms }).await?;
    let cookie = actix_web::cookie::Cookie::build(state.config.accounts.sudo_cookie_name.clone(), token.clone())
        .http_only(true)
        .secure(state.config.accounts.cookie_secure)
        .same_site(actix_web::cookie::SameSite::Strict)
        .path("/")
        .max_age(actix_web::cookie::time::Duration::seconds(i64::try_from(ttl_ms / 1000).unwrap_or(900)))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(json!({"sudo_token": token})))
}

#[derive(Deserialize)]
struct SessionIds {
    session_ids: Vec<String>,
}

/// `POST /v1/auth/sessions/logout {"session_ids"}` (sudo) → 204: ends the listed sessions of
/// the caller; unknown or others' ids are ignored, so a repeat is harmless.
async fn logout_sessions(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let body: SessionIds = json::read(&req, payload, MAX_JSON_BODY).await?;
    if body.session_ids.len() > 1000 {
        return Err(WebError::InvalidForm(vec![("session_ids".into(), "at most 1000".into())]).into());
    }
    sessions::request(&state.registry, EndSessionsById { owner: caller.account.guid, ids: body.session_ids }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
struct TotpEnable {
    secret: String,
    code: String,
}

/// `POST /v1/users/@me/mfa/totp/enable {"secret","code"}` (sudo): the client made the base32
/// secret and proves its authenticator with a code; answers fresh recovery codes.
async fn totp_enable(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let body: TotpEnable = json::read(&req, payload, MAX_JSON_BODY).await?;
    if factors::decode_secret(&body.secret).is_none() {
        return Err(WebError::InvalidForm(vec![("secret".into(), "must be base32 of at least 128 bits".into())]).into());
    }
    let step = factors::totp_match(&body.secret, &body.code, now_ms() / 1000).ok_or(WebError::InvalidCode)?;
    let secret = body.secret.trim().to_ascii_uppercase();
    let msg = EnrolTotp { guid: caller.account.guid, secret: Some(secret), used_step: step };
    let (_, codes) = state.directory.send(msg).await.map_err(|e| WebError::Unavailable(e.to_string()))??;
    Ok(HttpResponse::Ok().json(json!({"recovery_codes": codes})))
}

#[derive(Deserialize)]
struct TotpDisable {
    code: String,
}

/// `POST /v1/users/@me/mfa/totp/disable {"code"}` (sudo) → 204: a current TOTP code (or a
/// recovery code) removes TOTP and the recovery codes.
async fn totp_disable(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let body: TotpDisable = json::read(&req, payload, MAX_JSON_BODY).await?;
    let guid = caller.account.guid.clone();
    let recovery = factors::normalize_recovery(&body.code).is_some();
    if !use_factor(&state, &guid, &body.code, recovery).await? {
        return Err(WebError::InvalidCode.into());
    }
    state.directory.send(RemoveTotp { guid }).await.map_err(|e| WebError::Unavailable(e.to_string()))??;
    Ok(HttpResponse::NoContent().finish())
}

/// Consumes a TOTP or recovery code of the account through the account directory.
async fn use_factor(state: &AccountsState, guid: &str, code: &str, recovery: bool) -> Result<bool, V1Error> {
    let msg = UseSecondFactor { guid: guid.to_string(), code: code.to_string(), recovery };
    Ok(state.directory.send(msg).await.map_err(|e| WebError::Unavailable(e.to_string()))??)
}

/// Failed handoff lookups per client IP: a full window refuses before the lookup.
fn handoff_limit(state: &AccountsState, req: &HttpRequest) -> (String, sigil_engine::config::RateLimit) {
    (format!("handoff-fail:{}", state.client_ip_text(req)), state.config.limits.mfa_per_ip)
}

/// Counts a failed lookup when `result` is a code error, and passes it on.
fn count_handoff_failure<T>(state: &AccountsState, key: &str, limit: sigil_engine::config::RateLimit, result: Result<T, V1Error>) -> Result<T, V1Error> {
    if let Err(V1Error::Web(WebError::InvalidHandoffCode | WebError::HandoffCodeExpired)) = &result {
        state.failed(key, limit);
    }
    result
}

/// `POST /v1/auth/handoff/initiate` (the new device, not logged in) →
/// `{"code": "XXXX-XXXX", "poll_secret", "expires_at"}`; the code lives 5 minutes.
async fn handoff_initiate(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    state.hit_per_ip("mfa_per_ip", "handoff-start", &req, state.config.limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    let ttl_ms = state.config.accounts.handoff_ttl.as_millis();
    let (code, poll_secret, expires_at) = sessions::request(&state.registry, InitiateHandoff { ttl_ms }).await?;
    Ok(HttpResponse::Ok().json(json!({"code": code, "poll_secret": poll_secret, "expires_at": iso_millis(expires_at)})))
}

/// `POST /v1/auth/handoff/{code}/complete` (a logged-in device) → 204: the waiting device gets
/// a new session of this account on its next status poll.
async fn handoff_complete(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    complete_handoff(&state, &req, path.into_inner(), caller.account.guid).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Hands `account` to the device waiting on `code` (failed codes count per client IP).
pub(crate) async fn complete_handoff(state: &AccountsState, req: &HttpRequest, code: String, account: String) -> Result<(), V1Error> {
    let (key, limit) = handoff_limit(state, req);
    state.peek("handoff", &key, limit).map_err(WebError::RateLimited)?;
    let done = sessions::request(&state.registry, CompleteHandoff { code, account }).await.map_err(V1Error::from);
    count_handoff_failure(state, &key, limit, done)
}

/// `GET /v1/auth/handoff/{code}/status` with `X-Handoff-Secret` → `{"status": "pending"}`,
/// `{"status": "completed", "token", "user_id"}` (released once, with the cookie) or
/// `{"status": "expired"}`. Without the right secret nothing is released.
async fn handoff_status(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, V1Error> {
    let (key, limit) = handoff_limit(&state, &req);
    state.peek("handoff", &key, limit).map_err(WebError::RateLimited)?;
    let poll_secret = req.headers().get("x-handoff-secret").and_then(|v| v.to_str().ok()).map(str::to_string);
    let msg = PollHandoff { code: path.into_inner(), poll_secret, origin: state.origin(&req), session_ttl_ms: session_ttl_ms(&state) };
    let status = sessions::request(&state.registry, msg).await.map_err(V1Error::from);
    Ok(match count_handoff_failure(&state, &key, limit, status)? {
        HandoffStatus::Pending => HttpResponse::Ok().json(json!({"status": "pending"})),
        HandoffStatus::Expired => HttpResponse::Ok().json(json!({"status": "expired"})),
        HandoffStatus::Completed(token, account) => {
            HttpResponse::Ok()
                .cookie(new_session_cookie(&state, &token.secret))
                .json(json!({"status": "completed", "token": token.secret, "user_id": account.guid}))
        }
    })
}
