//! sigil as an OAuth2 / OpenID Connect provider (spec B and C.4 "OAuth2"): discovery, JWKS,
//! client registration (admin), the authorization endpoint with consent, the token endpoint
//! (`authorization_code` with PKCE S256, `client_credentials`), revocation (RFC 7009),
//! introspection (RFC 7662) and userinfo. Errors are RFC 6749 JSON (`{"error",
//! "error_description"}`) with the RFC's status codes; token responses carry `Cache-Control:
//! no-store`. The rules live in `sigil_engine::oauth2`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sigil_actors::sessions::{self, EndSession, OpenAccountSession, RotateRefresh};
use sigil_engine::account;
use sigil_engine::oauth2::refresh::Claim;
use sigil_engine::oauth2::{self as rules, AuthorizeError, AuthorizeRequest, Issuing, OAuthError};
use sigil_engine::session;
use sigil_engine::store::{Batch, now_ms};

use crate::accounts::AccountsState;
use crate::ui::Ui;
use crate::v1::authenticate;
use crate::v1::error::V1Error;

type State = web::Data<AccountsState>;

/// `GET /.well-known/openid-configuration` (outside `/v1`).
pub fn configure_root(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/openid-configuration", web::get().to(discovery));
}

/// The provider's routes inside the `/v1` scope.
pub fn configure_v1(cfg: &mut web::ServiceConfig) {
    // A form that does not parse is an RFC 6749 invalid_request, not actix's plain-text 400.
    let forms = || {
        web::FormConfig::default()
            .limit(16 * 1024)
            .error_handler(|e, _| OAuthReply::from(OAuthError::InvalidRequest(e.to_string())).into())
    };
    cfg.route("/oauth2/jwks", web::get().to(jwks))
        .route("/oauth2/applications", web::post().to(register))
        .service(web::resource("/oauth2/authorize").app_data(forms()).get(authorize).post(authorize_answer))
        .service(web::resource("/oauth2/token").app_data(forms()).post(token))
        .service(web::resource("/oauth2/revoke").app_data(forms()).post(revoke))
        .service(web::resource("/oauth2/introspect").app_data(forms()).post(introspect))
        .service(web::resource("/oauth2/userinfo").get(userinfo).post(userinfo));
}

/// An OAuth2 error as the RFC shapes it; `basic`: the client tried HTTP Basic (a 401 then
/// names the scheme in `WWW-Authenticate`).
#[derive(Debug)]
pub struct OAuthReply {
    error: OAuthError,
    basic: bool,
}

impl From<OAuthError> for OAuthReply {
    fn from(error: OAuthError) -> Self {
        OAuthReply { error, basic: false }
    }
}

impl From<sigil_engine::store::StoreError> for OAuthReply {
    fn from(e: sigil_engine::store::StoreError) -> Self {
        OAuthError::from(e).into()
    }
}

impl std::fmt::Display for OAuthReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl ResponseError for OAuthReply {
    fn status_code(&self) -> StatusCode {
        match self.error {
            OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let OAuthError::Unavailable(why) = &self.error {
            tracing::warn!(error = %why, "oauth2 endpoint unavailable");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
        if matches!(self.error, OAuthError::InvalidClient) {
            let scheme = if self.basic { "Basic realm=\"sigil\"" } else { "Basic realm=\"sigil\", error=\"invalid_client\"" };
            res.insert_header((header::WWW_AUTHENTICATE, scheme));
        }
        res.json(json!({"error": self.error.code(), "error_description": self.error.description()}))
    }
}

fn issuer(state: &AccountsState) -> String {
    state.config.accounts.public_url.trim_end_matches('/').to_string()
}

async fn discovery(state: State) -> HttpResponse {
    let iss = issuer(&state);
    HttpResponse::Ok().json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/v1/oauth2/authorize"),
        "token_endpoint": format!("{iss}/v1/oauth2/token"),
        "userinfo_endpoint": format!("{iss}/v1/oauth2/userinfo"),
        "jwks_uri": format!("{iss}/v1/oauth2/jwks"),
        "revocation_endpoint": format!("{iss}/v1/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/v1/oauth2/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": rules::SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username", "email"],
    }))
}

async fn jwks(state: State) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(state.oauth_keys.jwks())
}

#[derive(Deserialize)]
struct Registration {
    name: String,
    redirect_uris: Vec<String>,
    #[serde(default)]
    confidential: bool,
    #[serde(default)]
    scopes: Vec<String>,
}

/// `POST /v1/oauth2/applications` (admin: `X-Internal-Secret` or an admin's token) →
/// `201 {"client_id", "client_secret"?, …}`.
async fn register(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, actix_web::Error> {
    crate::admin::require_admin(&req, &state).await?;
    let body: Registration = crate::json::read(&req, payload, crate::json::MAX_JSON_BODY).await.map_err(V1Error::from)?;
    let store = state.store.clone();
    let registered = web::block(move || {
        rules::register_client(store.as_ref(), &body.name, &body.redirect_uris, body.confidential, &body.scopes, now_ms())
    })
    .await
    .map_err(|e| OAuthReply::from(OAuthError::Unavailable(e.to_string())))?
    .map_err(OAuthReply::from)?;
    let (client, secret) = registered;
    let mut out = json!({
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "confidential": client.confidential,
        "scopes": client.scopes,
    });
    if let (Some(secret), Some(map)) = (secret, out.as_object_mut()) {
        map.insert("client_secret".into(), secret.into());
    }
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(out))
}

/// Where an authorization request goes wrong: shown to the person, or redirected.
fn authorize_error(e: AuthorizeError) -> HttpResponse {
    match e {
        AuthorizeError::NoRedirect(why) => {
            HttpResponse::BadRequest().json(json!({"error": "invalid_request", "error_description": why}))
        }
        AuthorizeError::Redirect { redirect_uri, error, state } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("error", error.code()).append_pair("error_description", &error.description());
            if let Some(s) = &state {
                q.append_pair("state", s);
            }
            redirect(&redirect_uri, &q.finish())
        }
    }
}

fn redirect(uri: &str, query: &str) -> HttpResponse {
    let sep = if uri.contains('?') { '&' } else { '?' };
    HttpResponse::Found().insert_header((header::LOCATION, format!("{uri}{sep}{query}"))).finish()
}

/// The authorization request in the query, checked (RFC 6749 §4.1.1): the request, its client
/// and the scopes it asks for — or where the error goes (shown, or back to the client).
fn checked_request(req: &HttpRequest, state: &AccountsState) -> Result<(AuthorizeRequest, rules::Client, Vec<String>), AuthorizeError> {
    let request = web::Query::<AuthorizeRequest>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| AuthorizeError::NoRedirect(e.to_string()))?;
    let (client, scopes) = rules::check_authorize(state.store.as_ref(), &request)?;
    Ok((request, client, scopes))
}

/// The code for `request`, sent to its redirect URI.
async fn grant_code(state: &AccountsState, account: &str, request: AuthorizeRequest, scopes: Vec<String>, auth_time: u64) -> HttpResponse {
    let (store, ttl, account) = (state.store.clone(), state.config.oauth2.code_ttl.as_millis(), account.to_string());
    let r = request.clone();
    let code = web::block(move || rules::issue_code(store.as_ref(), &account, &r, &scopes, auth_time, ttl, now_ms())).await;
    match code {
        Ok(Ok(code)) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("code", &code);
            if let Some(s) = &request.state {
                q.append_pair("state", s);
            }
            redirect(&request.redirect_uri, &q.finish())
        }
        Ok(Err(e)) => OAuthReply::from(e).error_response(),
        Err(e) => OAuthReply::from(OAuthError::Unavailable(e.to_string())).error_response(),
    }
}

/// Whether this authorization request is a browser that gets sigil's pages (`Accept:
/// text/html` and `ui.enabled`) rather than the JSON consent request.
fn as_page(state: &AccountsState, req: &HttpRequest) -> bool {
    state.config.ui.enabled && crate::ui::wants_html(req)
}

/// A request that cannot go back to its client, as a page.
fn bad_request_page(ui: &Ui, why: &str) -> HttpResponse {
    let text = format!("The application sent a sign-in request that cannot be accepted ({why}). Go back to the application and try again.");
    crate::ui::message(ui, StatusCode::BAD_REQUEST, "This sign-in link is not valid", &text, None)
}

/// The checked authorization request — or the answer to a broken one: a page for a browser,
/// else the RFC 6749 error (shown, or sent back to the client).
fn checked_or_reply(req: &HttpRequest, state: &AccountsState, ui: &Ui, page: bool) -> Result<(AuthorizeRequest, rules::Client, Vec<String>), Box<HttpResponse>> {
    checked_request(req, state).map_err(|e| match e {
        AuthorizeError::NoRedirect(why) if page => Box::new(bad_request_page(ui, &why)),
        e => Box::new(authorize_error(e)),
    })
}

#[derive(askama::Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    product: &'a str,
    client_name: &'a str,
    username: &'a str,
    scopes: Vec<&'static str>,
    redirect_host: &'a str,
    action: &'a str,
    consent_token: &'a str,
}

/// What a scope lets the client do, in words.
fn scope_words(scope: &str) -> &'static str {
    match scope {
        "openid" => "Confirm who you are",
        "identify" => "Know your username",
        "email" => "See your email address",
        "profile" => "See your name and profile",
        "offline_access" => "Keep access while you are away (until you sign out of it)",
        _ => "Use your account in another way it asked for",
    }
}

/// `GET /v1/oauth2/authorize?…` with a session (cookie or Bearer): a client consented before
/// for these scopes gets its code at once (302); otherwise the consent request
/// `{"client", "scopes", "consent_token"}` — or, for a browser, the consent page (and without
/// a session, the login page that comes back here).
async fn authorize(req: HttpRequest, state: State, ui: web::Data<Ui>) -> Result<HttpResponse, V1Error> {
    let page = as_page(&state, &req);
    let (request, client, scopes) = match checked_or_reply(&req, &state, &ui, page) {
        Ok(checked) => checked,
        Err(reply) => return Ok(*reply),
    };
    let caller = match authenticate(&state, &req).await {
        Ok(caller) => caller,
        Err(V1Error::Web(sigil_engine::web::WebError::Unauthorized)) if page => return Ok(crate::ui::to_login(&crate::ui::here(&req))),
        Err(e) => return Err(e),
    };
    let guid = caller.account.guid.clone();
    if rules::has_consent(state.store.as_ref(), &guid, &client.client_id, &scopes)? {
        return Ok(grant_code(&state, &guid, request, scopes, caller.session.created_at).await);
    }
    let consent_token = rules::ask_consent(state.store.as_ref(), &guid, &request, now_ms()).map_err(|e| sigil_engine::web::WebError::Unavailable(e.to_string()))?;
    if page {
        // The form posts here and is redirected to the client: the policy must allow that.
        let client_origin = crate::ui::headers::origin_of(&request.redirect_uri);
        let action = crate::ui::here(&req);
        let consent = ConsentPage {
            product: &ui.product,
            client_name: &client.name,
            username: &caller.account.username,
            scopes: scopes.iter().map(|s| scope_words(s)).collect(),
            redirect_host: client_origin.as_deref().unwrap_or(&request.redirect_uri),
            action: &action,
            consent_token: &consent_token,
        };
        return Ok(crate::ui::render(StatusCode::OK, &consent, client_origin.as_deref()));
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({
        "client": {"client_id": client.client_id, "name": client.name},
        "scopes": scopes,
        "consent_token": consent_token,
    })))
}

#[derive(Deserialize)]
struct ConsentAnswer {
    consent_token: String,
    #[serde(default)]
    approve: Option<String>,
}

/// `POST /v1/oauth2/authorize?…` (form: `consent_token`, `approve=true`) with the session that
/// saw the consent request: 302 to the client with a code, or with `error=access_denied`.
async fn authorize_answer(req: HttpRequest, form: web::Form<ConsentAnswer>, state: State, ui: web::Data<Ui>) -> Result<HttpResponse, V1Error> {
    let page = as_page(&state, &req);
    let (request, client, scopes) = match checked_or_reply(&req, &state, &ui, page) {
        Ok(checked) => checked,
        Err(reply) => return Ok(*reply),
    };
    let caller = match authenticate(&state, &req).await {
        Ok(caller) => caller,
        Err(e) if page => return Ok(crate::ui::error_page(&ui, &e)),
        Err(e) => return Err(e),
    };
    let guid = caller.account.guid.clone();
    let valid = rules::answer_consent(state.store.as_ref(), &form.consent_token, &guid, &request)
        .map_err(|e| sigil_engine::web::WebError::Unavailable(e.to_string()))?;
    if !valid {
        if page {
            return Ok(bad_request_page(&ui, "this consent was already answered or has expired"));
        }
        return Ok(HttpResponse::BadRequest().json(json!({"error": "invalid_request", "error_description": "unknown, used or foreign consent_token"})));
    }
    if form.approve.as_deref() != Some("true") {
        return Ok(authorize_error(AuthorizeError::Redirect { redirect_uri: request.redirect_uri, error: OAuthError::AccessDenied, state: request.state }));
    }
    rules::remember_consent(state.store.as_ref(), &guid, &client.client_id, &scopes)?;
    Ok(grant_code(&state, &guid, request, scopes, caller.session.created_at).await)
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    refresh_token: Option<String>,
}

/// The client of a token-endpoint request: HTTP Basic (`client_secret_basic`), or the form's
/// `client_id` (+ `client_secret`: `client_secret_post`) — never both.
fn client_of(req: &HttpRequest, form_id: Option<&str>, form_secret: Option<&str>, state: &AccountsState) -> Result<rules::Client, OAuthReply> {
    let basic = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    match (basic, form_id) {
        (Some(_), Some(_)) if form_secret.is_some() => Err(OAuthError::InvalidRequest("use one client authentication method".into()).into()),
        (Some(b64), _) => {
            let fail = || OAuthReply { error: OAuthError::InvalidClient, basic: true };
            let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| fail())?;
            let text = String::from_utf8(raw).map_err(|_| fail())?;
            let (id, secret) = text.split_once(':').ok_or_else(fail)?;
            // RFC 6749 §2.3.1: both are form-urlencoded before the Basic encoding.
            let decode = |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            let (id, secret) = (decode(id).ok_or_else(fail)?, decode(secret).ok_or_else(fail)?);
            rules::authenticate_client(state.store.as_ref(), &id, Some(&secret)).map_err(|_| fail())
        }
        (None, Some(id)) => Ok(rules::authenticate_client(state.store.as_ref(), id, form_secret)?),
        (None, None) => Err(OAuthError::InvalidClient.into()),
    }
}

/// `POST /v1/oauth2/token` (form).
async fn token(req: HttpRequest, form: web::Form<TokenForm>, state: State) -> Result<HttpResponse, OAuthReply> {
    let form = form.into_inner();
    let client = client_of(&req, form.client_id.as_deref(), form.client_secret.as_deref(), &state)?;
    let outcome = |grant: &str, o: &str| state.metrics.oauth_grants.with_label_values(&[grant, o]).inc();
    let keys = state.oauth_keys.clone();
    let (iss, access_ttl) = (issuer(&state), state.config.oauth2.access_ttl.as_millis());
    let refresh_ttl = state.config.oauth2.refresh_ttl.as_millis();
    let store = state.store.clone();
    let grant = form.grant_type.clone();
    let issued = match form.grant_type.as_str() {
        "authorization_code" => {
            let code = form.code.ok_or(OAuthError::InvalidRequest("code is required".into()))?;
            let redirect_uri = form.redirect_uri.ok_or(OAuthError::InvalidRequest("redirect_uri is required".into()))?;
            let verifier = form.code_verifier;
            web::block(move || {
                let issuing = Issuing { issuer: &iss, access_ttl_ms: access_ttl, refresh_ttl_ms: refresh_ttl, keys: &keys };
                rules::redeem_code(store.as_ref(), &issuing, &client, &code, &redirect_uri, verifier.as_deref(), now_ms())
                    .map(|(r, key, s)| (r, Some((key, s))))
            })
            .await
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?
        }
        "refresh_token" => {
            let token = form.refresh_token.ok_or(OAuthError::InvalidRequest("refresh_token is required".into()))?;
            // The claim reads and marks the token on this thread (store calls of microseconds);
            // the rotation is written by the session registry's committer, grouped with the others
            // that queued meanwhile and answered after their shared fsync.
            let issuing = Issuing { issuer: &iss, access_ttl_ms: access_ttl, refresh_ttl_ms: refresh_ttl, keys: &keys };
            match rules::refresh::claim(store.as_ref(), &issuing, &client, &token, form.scope.as_deref(), now_ms()) {
                Err(e) => Err(e),
                Ok(Claim::Reused(reuse)) => {
                    let error = web::block(move || reuse.revoke(store.as_ref())).await.map_err(|e| OAuthError::Unavailable(e.to_string()))?;
                    Err(error)
                }
                Ok(Claim::Rotation(mut rotation)) => {
                    if rotation.wants_id_token() {
                        let (iss, keys) = (iss.clone(), keys.clone());
                        rotation = web::block(move || {
                            let issuing = Issuing { issuer: &iss, access_ttl_ms: access_ttl, refresh_ttl_ms: refresh_ttl, keys: &keys };
                            rotation.sign_id_token(&issuing, now_ms()).map(|()| rotation)
                        })
                        .await
                        .map_err(|e| OAuthError::Unavailable(e.to_string()))??;
                    }
                    sessions::request(&state.registry, RotateRefresh(rotation)).await.map(|r| (r, None))
                }
            }
        }
        "client_credentials" => {
            rules::client_credentials(&client, form.scope.as_deref().unwrap_or(""), access_ttl, now_ms()).map(|(r, key, s)| (r, Some((key, s))))
        }
        _ => Err(OAuthError::UnsupportedGrantType),
    };
    let (response, to_open) = issued.inspect_err(|e| outcome(&grant, e.code()))?;
    // A refresh opened its session with the rotation; the other grants open theirs here.
    if let Some((key, session)) = to_open {
        let mut writes = Batch::new();
        session::open_writes(&mut writes, &key, &session)?;
        sessions::request(&state.registry, OpenAccountSession { writes })
            .await
            .map_err(|e| OAuthError::Unavailable(e.to_string()))?;
    }
    outcome(&grant, "success");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(response))
}

#[derive(Deserialize)]
struct TokenOnly {
    token: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// `POST /v1/oauth2/revoke` (RFC 7009, client authentication): the client's own token ends at
/// once; an unknown token is not an error (200 either way).
async fn revoke(req: HttpRequest, form: web::Form<TokenOnly>, state: State) -> Result<HttpResponse, OAuthReply> {
    let client = client_of(&req, form.client_id.as_deref(), form.client_secret.as_deref(), &state)?;
    // A refresh token: its whole family ends.
    if let Some(family) = rules::refresh::family_of(state.store.as_ref(), &form.token, &client.client_id)? {
        let store = state.store.clone();
        web::block(move || rules::refresh::revoke_family(store.as_ref(), &family))
            .await
            .map_err(|e| OAuthError::Unavailable(e.to_string()))??;
    } else if let Some(s) = rules::access_token(state.store.as_ref(), &form.token)?
        && s.oauth.as_ref().is_some_and(|g| g.client_id == client.client_id)
    {
        let key = session::account_key(&form.token);
        sessions::request(&state.registry, EndSession { key, owner: None }).await.map_err(|e| OAuthError::Unavailable(e.to_string()))?;
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

/// `POST /v1/oauth2/introspect` (RFC 7662, client authentication): `{"active": false}` for
/// anything but a live token issued to this client.
async fn introspect(req: HttpRequest, form: web::Form<TokenOnly>, state: State) -> Result<HttpResponse, OAuthReply> {
    let client = client_of(&req, form.client_id.as_deref(), form.client_secret.as_deref(), &state)?;
    let found = rules::access_token(state.store.as_ref(), &form.token)?;
    let body = match found {
        Some(s) if s.oauth.as_ref().is_some_and(|g| g.client_id == client.client_id) => {
            let grant = s.oauth.clone().unwrap_or_else(|| sigil_engine::session::OAuthGrant { client_id: String::new(), scopes: Vec::new(), family: None });
            let mut out = json!({
                "active": true,
                "scope": grant.scopes.join(" "),
                "client_id": grant.client_id,
                "token_type": "Bearer",
                "exp": s.expire_at / 1000,
                "iat": s.created_at / 1000,
                "iss": issuer(&state),
            });
            if !s.owner.starts_with("client:")
                && let Some(map) = out.as_object_mut()
            {
                map.insert("sub".into(), s.owner.clone().into());
                if let Some(a) = account::get(state.store.as_ref(), &s.owner)? {
                    map.insert("username".into(), a.username.into());
                }
            }
            out
        }
        _ => match rules::refresh::is_active(state.store.as_ref(), &form.token, &client.client_id)? {
            Some(scopes) => json!({"active": true, "scope": scopes.join(" "), "client_id": client.client_id, "token_type": "refresh_token", "iss": issuer(&state)}),
            None => json!({"active": false}),
        },
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// `GET|POST /v1/oauth2/userinfo` with an access token (RFC 6750 Bearer).
async fn userinfo(req: HttpRequest, state: State) -> HttpResponse {
    let unauthorized = |error: &str| {
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, format!("Bearer realm=\"sigil\", error=\"{error}\"")))
            .json(json!({"error": error}))
    };
    let Some(secret) = crate::bearer::token(&req) else {
        return HttpResponse::Unauthorized().insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"sigil\"")).finish();
    };
    let found = match rules::access_token(state.store.as_ref(), &secret) {
        Ok(found) => found,
        Err(e) => return OAuthReply::from(e).error_response(),
    };
    let Some(s) = found else { return unauthorized("invalid_token") };
    let scopes = s.oauth.map(|g| g.scopes).unwrap_or_default();
    if !scopes.iter().any(|x| x == "openid" || x == "identify") {
        return HttpResponse::Forbidden()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"sigil\", error=\"insufficient_scope\", scope=\"openid\""))
            .json(json!({"error": "insufficient_scope"}));
    }
    match account::get(state.store.as_ref(), &s.owner) {
        Ok(Some(a)) if !a.disabled => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(rules::userinfo(&a, &scopes)),
        Ok(_) => unauthorized("invalid_token"),
        Err(e) => OAuthReply::from(e).error_response(),
    }
}
