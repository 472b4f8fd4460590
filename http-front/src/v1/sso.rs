//! SSO through upstream OpenID Connect providers (`[[sso.providers]]`, spec B and C.4 "SSO"):
//! `POST /v1/auth/sso/start {"provider","redirect_uri"}` → `{"authorization_url","state"}`;
//! the upstream sends the browser to `GET /v1/auth/sso/callback?code&state`, which exchanges
//! the code (PKCE, client authentication), validates the `id_token` against the upstream's
//! JWKS, finds or creates the account, opens a session (cookie) and redirects to the
//! `redirect_uri` given at the start — one of `sso.allowed_redirect_uris`, exactly.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sigil_engine::config::SsoProvider;
use sigil_engine::sso;
use sigil_engine::store::now_ms;
use sigil_engine::web::{self as rules, WebError};

use super::error::V1Error;
use super::routes::open_session;
use crate::accounts::AccountsState;
use crate::json::{self, MAX_JSON_BODY};

type State = web::Data<AccountsState>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/sso/start", web::post().to(start)).route("/auth/sso/callback", web::get().to(callback));
}

fn provider<'a>(state: &'a AccountsState, name: &str) -> Option<&'a SsoProvider> {
    state.config.sso.providers.iter().find(|p| p.name == name)
}

fn callback_url(state: &AccountsState) -> String {
    format!("{}/v1/auth/sso/callback", state.config.accounts.public_url.trim_end_matches('/'))
}

fn upstream_error(what: &str, e: impl std::fmt::Display) -> V1Error {
    tracing::warn!(error = %e, "sso: {what}");
    WebError::Unavailable(format!("the identity provider could not be reached ({what})")).into()
}

fn http() -> Result<reqwest::Client, V1Error> {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().map_err(|e| upstream_error("client", e))
}

/// The upstream's discovery document.
async fn discover(p: &SsoProvider) -> Result<Value, V1Error> {
    let url = format!("{}/.well-known/openid-configuration", p.issuer.trim_end_matches('/'));
    let doc: Value = http()?.get(&url).send().await.map_err(|e| upstream_error("discovery", e))?.json().await.map_err(|e| upstream_error("discovery", e))?;
    if doc.get("issuer").and_then(Value::as_str) != Some(p.issuer.as_str()) {
        return Err(upstream_error("discovery", "the discovery document names another issuer"));
    }
    Ok(doc)
}

fn endpoint<'a>(doc: &'a Value, name: &str) -> Result<&'a str, V1Error> {
    doc.get(name).and_then(Value::as_str).ok_or_else(|| upstream_error("discovery", format!("no {name}")))
}

#[derive(Deserialize)]
struct StartBody {
    provider: String,
    redirect_uri: String,
}

/// `POST /v1/auth/sso/start {"provider","redirect_uri"}` → `{"authorization_url","state"}`.
async fn start(req: HttpRequest, payload: web::Payload, state: State) -> Result<HttpResponse, V1Error> {
    let body: StartBody = json::read(&req, payload, MAX_JSON_BODY).await?;
    state.hit_per_ip("login_per_ip", "sso-ip", &req, state.config.limits.login_per_ip).map_err(WebError::RateLimited)?;
    let p = provider(&state, &body.provider).ok_or_else(|| WebError::InvalidForm(vec![("provider".into(), "unknown provider".into())]))?;
    if !state.config.sso.allowed_redirect_uris.iter().any(|u| u == &body.redirect_uri) {
        return Err(WebError::InvalidForm(vec![("redirect_uri".into(), "not an allowed redirect URI".into())]).into());
    }
    let doc = discover(p).await?;
    let (url, sso_state) =
        sso::start(state.store.as_ref(), p, endpoint(&doc, "authorization_endpoint")?, &callback_url(&state), &body.redirect_uri, now_ms())?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(json!({"authorization_url": url, "state": sso_state})))
}

#[derive(Deserialize)]
struct CallbackQuery {
    state: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `GET /v1/auth/sso/callback?code&state` (the upstream redirects the browser here).
async fn callback(req: HttpRequest, state: State) -> Result<HttpResponse, V1Error> {
    let q = web::Query::<CallbackQuery>::from_query(req.query_string())
        .map_err(|e| WebError::InvalidForm(vec![("query".into(), e.to_string())]))?
        .into_inner();
    let outcome = |o: &str| state.metrics.logins.with_label_values(&["v1", "sso", o]).inc();
    let pending = sso::take(state.store.as_ref(), &q.state)?.ok_or_else(|| {
        outcome("invalid");
        WebError::InvalidForm(vec![("state".into(), "unknown, expired or used".into())])
    })?;
    let p = provider(&state, &pending.provider).ok_or(WebError::Unauthorized)?;
    let Some(code) = q.code.filter(|_| q.error.is_none()) else {
        outcome("denied");
        return Err(WebError::Unauthorized.into());
    };
    let doc = discover(p).await?;
    // The code, with our PKCE verifier and client authentication.
    let mut token_req = http()?.post(endpoint(&doc, "token_endpoint")?).form(&[
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", callback_url(&state).as_str()),
        ("code_verifier", pending.verifier.as_str()),
        ("client_id", p.client_id.as_str()),
    ]);
    if let Some(secret) = &p.client_secret {
        token_req = token_req.basic_auth(&p.client_id, Some(secret));
    }
    let tokens: Value = token_req.send().await.map_err(|e| upstream_error("token", e))?.json().await.map_err(|e| upstream_error("token", e))?;
    let Some(id_token) = tokens.get("id_token").and_then(Value::as_str) else {
        outcome("invalid");
        let answer = tokens.get("error").and_then(Value::as_str).unwrap_or("no id_token").to_string();
        tracing::info!(%answer, "sso: the upstream refused the code");
        return Err(WebError::Unauthorized.into());
    };
    let jwks: jsonwebtoken::jwk::JwkSet =
        http()?.get(endpoint(&doc, "jwks_uri")?).send().await.map_err(|e| upstream_error("jwks", e))?.json().await.map_err(|e| upstream_error("jwks", e))?;
    let mut identity = sso::validate_id_token(id_token, &jwks, &p.issuer, &p.client_id, &pending.nonce).map_err(|why| {
        outcome("invalid");
        tracing::warn!(error = %why, "sso: id_token refused");
        WebError::Unauthorized
    })?;
    // Many providers put the scope claims (email, preferred_username) in userinfo only
    // (OpenID Connect Core §5.4): ask for them there, for the same subject.
    if identity.email.is_none() || identity.preferred_username.is_none() {
        let userinfo = doc.get("userinfo_endpoint").and_then(Value::as_str);
        if let (Some(url), Some(access)) = (userinfo, tokens.get("access_token").and_then(Value::as_str)) {
            let claims: Value = http()?.get(url).bearer_auth(access).send().await.map_err(|e| upstream_error("userinfo", e))?.json().await.map_err(|e| upstream_error("userinfo", e))?;
            sso::merge_userinfo(&mut identity, &claims);
        }
    }
    let account = sso::account_for(state.store.as_ref(), p.auto_create, &identity, now_ms())?.ok_or_else(|| {
        outcome("unknown");
        WebError::Unauthorized
    })?;
    rules::admit(state.store.as_ref(), &account, state.client_ip(&req)).inspect_err(|_| outcome("disabled"))?;
    let opened = open_session(&state, &account, &state.origin(&req)).await?;
    outcome("success");
    // The session cookie (and body) of a login, but as a redirect to where the person started.
    let mut res = HttpResponse::Found();
    res.insert_header((header::LOCATION, pending.redirect_uri.clone()));
    for cookie in opened.cookies() {
        res.cookie(cookie.into_owned());
    }
    Ok(res.finish())
}
