//! The administration API (`/api/admin`, spec C.1): accounts, groups and the message outbox.
//!
//! Authenticated by `X-Internal-Secret` (compared in constant time with
//! `accounts.internal_secret`) or by a Bearer token whose account has the `admin` scope.
//! Errors use the token API's shape.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sigil_actors::accounts::{CreateAccount, CreateGroup, DeleteAccount, DeleteGroup, EnrolTotp, PatchAccount, PatchGroup};
use sigil_actors::sessions::{self, EndSessionsOf};
use sigil_engine::account::{self, Fields, Group, factors, password};
use sigil_engine::secret::constant_time_eq;
use sigil_engine::tokens::{Purpose, TokenError};

use crate::accounts::AccountsState;
use crate::json::{self, MAX_JSON_BODY};
use crate::tokens::error::ApiError;

type State = web::Data<AccountsState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/admin")
            .route("/users", web::post().to(create_user))
            .route("/users", web::get().to(list_users))
            .route("/users/{guid}", web::get().to(get_user))
            .route("/users/{guid}", web::patch().to(patch_user))
            .route("/users/{guid}", web::delete().to(delete_user))
            .route("/users/{guid}/2fa/totp", web::post().to(enrol_totp))
            .route("/groups", web::post().to(create_group))
            .route("/groups", web::get().to(list_groups))
            .route("/groups/{name}", web::patch().to(patch_group))
            .route("/groups/{name}", web::delete().to(delete_group))
            .route("/outbox", web::get().to(outbox))
            .default_service(web::to(unknown)),
    );
}

/// [`admin`] for the other fronts (OAuth2 client registration).
pub async fn require_admin(req: &HttpRequest, state: &AccountsState) -> Result<(), ApiError> {
    admin(req, state).await
}

/// Lets the request through if it carries the internal secret or an admin's token.
async fn admin(req: &HttpRequest, state: &AccountsState) -> Result<(), ApiError> {
    if let Some(presented) = req.headers().get("x-internal-secret") {
        let configured = state.config.accounts.internal_secret.as_deref().filter(|s| !s.is_empty());
        return match configured {
            Some(secret) if constant_time_eq(presented.as_bytes(), secret.as_bytes()) => Ok(()),
            _ => Err(TokenError::InvalidToken.into()),
        };
    }
    // A Bearer token of either dialect: an `/api/auth` token, or a `/v1` session token.
    let account = match crate::tokens::bearer(state, req, Purpose::Use).await {
        Ok(caller) => caller.account,
        Err(ApiError::Token(TokenError::InvalidToken)) => {
            let secret = crate::bearer::token(req).ok_or(TokenError::InvalidToken)?;
            let (_, session, _) = sigil_engine::web::lookup(state.store.as_ref(), &secret).map_err(|_| TokenError::InvalidToken)?;
            account::get(state.store.as_ref(), &session.owner)?.filter(|a| !a.disabled).ok_or(TokenError::InvalidToken)?
        }
        Err(e) => return Err(e),
    };
    if account.is_admin() { Ok(()) } else { Err(TokenError::Insufficient.into()) }
}

/// The password of a create or patch, checked and hashed on the password pool.
async fn hashed(state: &AccountsState, password: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(p) = password else { return Ok(None) };
    password::check_new(p).map_err(|m| TokenError::Validation(format!("password: {m}")))?;
    Ok(Some(state.passwords.hash(p.to_string()).await?))
}

async fn create_user(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let fields: Fields = json::read(&req, payload, MAX_JSON_BODY).await?;
    if fields.username.is_none() {
        return Err(TokenError::Validation("username: is required".into()).into());
    }
    let Some(phc) = hashed(&state, fields.password.as_deref()).await? else {
        return Err(TokenError::Validation("password: is required".into()).into());
    };
    let created = state.directory.send(CreateAccount { fields, password_phc: phc }).await??;
    Ok(HttpResponse::Created().json(created.public()))
}

async fn list_users(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let all: Vec<_> = account::list(state.store.as_ref())?.iter().map(account::Account::public).collect();
    Ok(HttpResponse::Ok().json(all))
}

async fn get_user(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let a = account::get(state.store.as_ref(), &path)?.ok_or(ApiError::NotFound)?;
    Ok(HttpResponse::Ok().json(a.public()))
}

async fn patch_user(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let fields: Fields = json::read(&req, payload, MAX_JSON_BODY).await?;
    let password_phc = hashed(&state, fields.password.as_deref()).await?;
    let guid = path.into_inner();
    let changed_password = password_phc.is_some();
    let updated = state.directory.send(PatchAccount { guid: guid.clone(), fields, password_phc }).await??;
    // A disabled account, or one whose password was reset, keeps no session.
    if updated.disabled || changed_password {
        sessions::request(&state.registry, EndSessionsOf { owner: guid }).await?;
    }
    Ok(HttpResponse::Ok().json(updated.public()))
}

async fn delete_user(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let deleted = state.directory.send(DeleteAccount { guid: path.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(json!({"guid": deleted.guid})))
}

async fn enrol_totp(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    // The body is `{}` (nothing to say yet); anything else is still read and checked as JSON.
    let _: serde_json::Value = json::read(&req, payload, MAX_JSON_BODY).await?;
    let guid = path.into_inner();
    let a = account::get(state.store.as_ref(), &guid)?.ok_or(ApiError::NotFound)?;
    let (secret, codes) = state.directory.send(EnrolTotp { guid, secret: None, used_step: 0 }).await??;
    let uri = factors::otpauth_uri(&secret, &a.username).unwrap_or_default();
    Ok(HttpResponse::Ok().json(json!({"secret": secret, "otpauth_uri": uri, "recovery_codes": codes})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    name: String,
    #[serde(default = "yes")]
    login_allowed: bool,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(default)]
    require_2fa: bool,
}

fn yes() -> bool {
    true
}

async fn create_group(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let g: NewGroup = json::read(&req, payload, MAX_JSON_BODY).await?;
    let group = Group { name: g.name, login_allowed: g.login_allowed, ip_allowlist: g.ip_allowlist, require_2fa: g.require_2fa };
    let created = state.directory.send(CreateGroup(group)).await??;
    Ok(HttpResponse::Created().json(created))
}

async fn list_groups(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    Ok(HttpResponse::Ok().json(account::groups(state.store.as_ref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupChange {
    login_allowed: Option<bool>,
    ip_allowlist: Option<Vec<String>>,
    require_2fa: Option<bool>,
}

async fn patch_group(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let c: GroupChange = json::read(&req, payload, MAX_JSON_BODY).await?;
    let msg = PatchGroup { name: path.into_inner(), login_allowed: c.login_allowed, ip_allowlist: c.ip_allowlist, require_2fa: c.require_2fa };
    Ok(HttpResponse::Ok().json(state.directory.send(msg).await??))
}

async fn delete_group(req: HttpRequest, path: web::Path<String>, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    let deleted = state.directory.send(DeleteGroup { name: path.into_inner() }).await??;
    Ok(HttpResponse::Ok().json(json!({"name": deleted.name})))
}

/// Messages the `log` sender kept, oldest first; 404 with any other sender. `?to=` filters by
/// recipient; a `+` left unencoded (read as a space in query strings) is taken as the `+` of
/// an E.164 number.
async fn outbox(req: HttpRequest, state: State) -> Result<HttpResponse, ApiError> {
    admin(&req, &state).await?;
    if !state.sender.keeps_outbox() {
        return Err(ApiError::NotFound);
    }
    let to = form_urlencoded::parse(req.query_string().as_bytes()).find(|(k, _)| k == "to").map(|(_, v)| {
        let v = v.into_owned();
        match v.strip_prefix(' ') {
            Some(rest) if rest.bytes().all(|b| b.is_ascii_digit()) => format!("+{rest}"),
            _ => v,
        }
    });
    Ok(HttpResponse::Ok().json(state.sender.outbox(to.as_deref())))
}

async fn unknown() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
