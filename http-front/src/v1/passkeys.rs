//! The passkey routes of `/v1` (spec B, C.4 "WebAuthn"): registration and management (sudo),
//! passwordless login, and a passkey as the second factor of an MFA ticket. Options answer
//! `{"publicKey": …}` in WebAuthn Level 3 JSON; credentials arrive as the browser's
//! `credential.toJSON()` under `"credential"`. The ceremonies run in `sigil_engine::passkeys`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sigil_actors::accounts::{
    EditPasskey, FinishPasskeyLogin, FinishPasskeyRegistration, StartPasskeyLogin, StartPasskeyRegistration,
    StartPasskeySecondFactor,
};
use sigil_actors::sessions::{self, RedeemMfaPasskey};
use sigil_engine::web::{self as rules, WebError};
use sigil_engine::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::authenticate;
use super::error::V1Error;
use super::routes::{open_session, opened, require_sudo, session_ttl_ms};
use crate::accounts::AccountsState;
use crate::json::{self, MAX_JSON_BODY};

type State = web::Data<AccountsState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/@me/passkeys/options", web::post().to(register_options))
        .route("/users/@me/passkeys", web::post().to(register))
        .route("/users/@me/passkeys", web::get().to(list))
        .route("/users/@me/passkeys/{id}", web::patch().to(rename))
        .route("/users/@me/passkeys/{id}", web::delete().to(delete))
        .route("/auth/webauthn/authenticate/options", web::post().to(login_options))
        .route("/auth/webauthn/authenticate", web::post().to(login))
        .route("/auth/mfa/webauthn/options", web::post().to(mfa_options))
        .route("/auth/mfa/webauthn", web::post().to(mfa));
}

fn directory_error(e: actix::MailboxError) -> V1Error {
    WebError::Unavailable(e.to_string()).into()
}

/// `POST /v1/users/@me/passkeys/options` (sudo) → `{"publicKey": PublicKeyCredentialCreationOptionsJSON}`.
async fn register_options(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let msg = StartPasskeyRegistration { account: caller.account, session_key: caller.key, rp: state.passkeys.clone() };
    let options = state.directory.send(msg).await.map_err(directory_error)??;
    Ok(HttpResponse::Ok().json(json!({"publicKey": options})))
}

#[derive(Deserialize)]
struct RegisterBody {
    credential: Box<RegisterPublicKeyCredential>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /v1/users/@me/passkeys {"credential", "name"?}` (sudo) → `201 {"id","name","created_at","last_used_at"}`.
async fn register(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let body: RegisterBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let msg = FinishPasskeyRegistration {
        guid: caller.account.guid,
        session_key: caller.key,
        credential: body.credential,
        name: body.name,
        rp: state.passkeys.clone(),
    };
    let result = state.directory.send(msg).await.map_err(directory_error)?;
    state.metrics.second_factor.with_label_values(&["v1", "passkey_registration", if result.is_ok() { "success" } else { "invalid" }]).inc();
    Ok(HttpResponse::Created().json(result?.public()))
}

/// `GET /v1/users/@me/passkeys` → `[{"id","name","created_at","last_used_at"}]`.
async fn list(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    let items: Vec<_> = caller.account.passkeys.iter().map(|p| p.public()).collect();
    Ok(HttpResponse::Ok().json(items))
}

#[derive(Deserialize)]
struct RenameBody {
    name: String,
}

/// `PATCH /v1/users/@me/passkeys/{id} {"name"}` (sudo) → 204; unknown id → 404.
async fn rename(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let body: RenameBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let msg = EditPasskey { guid: caller.account.guid, id: path.into_inner(), name: Some(body.name) };
    if state.directory.send(msg).await.map_err(directory_error)?? { Ok(HttpResponse::NoContent().finish()) } else { Err(V1Error::NotFound) }
}

/// `DELETE /v1/users/@me/passkeys/{id}` (sudo) → 204; unknown id → 404.
async fn delete(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, V1Error> {
    let caller = authenticate(&state, &req).await?;
    require_sudo(&state, &req, &caller)?;
    let msg = EditPasskey { guid: caller.account.guid, id: path.into_inner(), name: None };
    if state.directory.send(msg).await.map_err(directory_error)?? { Ok(HttpResponse::NoContent().finish()) } else { Err(V1Error::NotFound) }
}

/// `POST /v1/auth/webauthn/authenticate/options` → `{"publicKey": PublicKeyCredentialRequestOptionsJSON, "challenge_id"}`.
async fn login_options(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    state.hit_per_ip("login_per_ip", "passkey-ip", &req, state.config.limits.login_per_ip).map_err(WebError::RateLimited)?;
    let msg = StartPasskeyLogin { rp: state.passkeys.clone() };
    let (challenge_id, options) = state.directory.send(msg).await.map_err(directory_error)??;
    Ok(HttpResponse::Ok().json(json!({"publicKey": options, "challenge_id": challenge_id})))
}

#[derive(Deserialize)]
struct LoginBody {
    credential: Box<PublicKeyCredential>,
    challenge_id: String,
}

/// `POST /v1/auth/webauthn/authenticate {"credential","challenge_id"}` → the session, as a
/// password login opens it (cookie + `{"user_id","token"}`).
async fn login(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: LoginBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    let outcome = |o: &str| state.metrics.logins.with_label_values(&["v1", "passkey", o]).inc();
    state.hit_per_ip("login_per_ip", "passkey-ip", &req, state.config.limits.login_per_ip).map_err(WebError::RateLimited)?;
    if body.challenge_id.len() > 128 {
        outcome("invalid");
        return Err(WebError::PasskeyFailed.into());
    }
    let msg = FinishPasskeyLogin { challenge_id: body.challenge_id, credential: body.credential, rp: state.passkeys.clone() };
    let account = state.directory.send(msg).await.map_err(directory_error)?.inspect_err(|_| outcome("invalid"))?;
    rules::admit(state.store.as_ref(), &account, state.client_ip(&req)).inspect_err(|_| outcome("disabled"))?;
    let answer = open_session(&state, &account, &state.origin(&req)).await?;
    outcome("success");
    Ok(answer)
}

#[derive(Deserialize)]
struct TicketOnly {
    ticket: String,
}

/// `POST /v1/auth/mfa/webauthn/options {"ticket"}` → `{"publicKey": …}` for that ticket's
/// account's passkeys.
async fn mfa_options(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: TicketOnly = json::read(&req, payload, MAX_JSON_BODY).await?;
    state.hit_per_ip("mfa_per_ip", "mfa-ip", &req, state.config.limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    if body.ticket.len() > 256 {
        return Err(WebError::InvalidTicket.into());
    }
    let msg = StartPasskeySecondFactor { ticket: body.ticket, rp: state.passkeys.clone() };
    let options = state.directory.send(msg).await.map_err(directory_error)??;
    Ok(HttpResponse::Ok().json(json!({"publicKey": options})))
}

#[derive(Deserialize)]
struct MfaBody {
    credential: Box<PublicKeyCredential>,
    ticket: String,
}

/// `POST /v1/auth/mfa/webauthn {"credential","ticket"}` → the session (cookie + body).
async fn mfa(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: MfaBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    state.hit_per_ip("mfa_per_ip", "mfa-ip", &req, state.config.limits.mfa_per_ip).map_err(WebError::RateLimited)?;
    if body.ticket.len() > 256 {
        return Err(WebError::InvalidTicket.into());
    }
    let msg = RedeemMfaPasskey {
        ticket: body.ticket,
        credential: body.credential,
        rp: state.passkeys.clone(),
        session_ttl_ms: session_ttl_ms(&state),
    };
    let result = sessions::request(&state.registry, msg).await;
    let label = if result.is_ok() { "success" } else { "invalid" };
    state.metrics.second_factor.with_label_values(&["v1", "webauthn", label]).inc();
    let (token, _, account) = result?;
    Ok(opened(&state, &account, &token))
}
