//! sigil as an OAuth2 / OpenID Connect provider (RFC 6749, 6750, 7636; OpenID Connect Core):
//! client registration, the authorization-code grant with consent and PKCE (S256 only), the
//! token endpoint's rules, userinfo. Access tokens are account sessions of
//! [`Dialect::OAuth`] in the one session registry (so they are revoked like any session and
//! accepted as Bearer on `/v1`); `id_token`s are RS256 JWTs signed with the key of [`keys`].
//!
//! Records live in the `oauth` family, keyed by purpose:
//! `a` ‖ client id (a registered client), `c` ‖ SHA-256(code) (a code not yet redeemed, its
//! lifetime `oauth2.code_ttl`), `u` ‖ SHA-256(code) (a redeemed code: what it issued, so a
//! second redemption revokes it, RFC 6749 §4.1.2), `k` ‖ account ‖ 0 ‖ client (the scopes the
//! account consented to), `t` ‖ SHA-256(consent token) (a consent request waiting for the
//! person's answer), `r` ‖ SHA-256(refresh token) and `f` ‖ family id (refresh tokens, see
//! [`refresh`]).

pub mod keys;

pub mod refresh;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::account::{self, Account};
use crate::secret::{BearerToken, constant_time_eq, random_id, secret_hash};
use crate::session::{self, AccountSession, Dialect, OAuthGrant, Origin, Session};
use crate::store::{Batch, Cf, Millis, Store, StoreError};

/// The scopes sigil grants (spec C.4).
pub const SCOPES: [&str; 5] = ["identify", "email", "openid", "profile", "offline_access"];

/// RFC 6749 error codes, with the RFC's meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed (401; `WWW-Authenticate` when Basic was tried).
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    #[error("access_denied")]
    AccessDenied,
    #[error("unsupported_response_type")]
    UnsupportedResponseType,
    #[error("temporarily_unavailable: {0}")]
    Unavailable(String),
}

impl OAuthError {
    /// The RFC 6749 `error` value.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    /// The `error_description`.
    pub fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::InvalidScope(d) => d.clone(),
            OAuthError::InvalidClient => "client authentication failed".into(),
            OAuthError::UnsupportedGrantType => "grant_type is not supported".into(),
            OAuthError::AccessDenied => "the resource owner denied the request".into(),
            OAuthError::UnsupportedResponseType => "only response_type=code is supported".into(),
            OAuthError::Unavailable(_) => "the server is unavailable, try again later".into(),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::Unavailable(e.to_string())
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> OAuthError {
    OAuthError::Unavailable(e.to_string())
}

/// A registered client application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// Exact redirect URIs (compared byte for byte).
    pub redirect_uris: Vec<String>,
    /// Confidential clients authenticate with a secret; public ones must use PKCE.
    pub confidential: bool,
    /// hex SHA-256 of the client secret (confidential clients).
    pub secret_hash: Option<String>,
    /// The scopes it may ask for.
    pub scopes: Vec<String>,
    pub created_at: Millis,
}

fn client_key(id: &str) -> Vec<u8> {
    [b"a".as_slice(), id.as_bytes()].concat()
}

pub(crate) fn hashed(prefix: &[u8], secret: &str) -> Vec<u8> {
    [prefix, &secret_hash(secret.as_bytes())].concat()
}

fn consent_key(account: &str, client: &str) -> Vec<u8> {
    [b"k".as_slice(), account.as_bytes(), &[0], client.as_bytes()].concat()
}

/// Splits a space-separated scope parameter; unknown scopes are an error.
pub fn parse_scopes(scope: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !SCOPES.contains(&s) {
            return Err(OAuthError::InvalidScope(format!("unknown scope {s:?}")));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URL: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    if !matches!(url.scheme(), "https" | "http") && !url.scheme().contains('.') {
        return Err(format!("{uri:?}: use https, http (loopback) or a private-use scheme (reverse domain)"));
    }
    Ok(())
}

/// Registers a client; answers it and, for a confidential client, its secret (shown once;
/// only its hash is kept).
pub fn register_client(
    store: &dyn Store,
    name: &str,
    redirect_uris: &[String],
    confidential: bool,
    scopes: &[String],
    now: Millis,
) -> Result<(Client, Option<String>), OAuthError> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(OAuthError::InvalidRequest("name: 1 to 100 characters".into()));
    }
    if redirect_uris.is_empty() || redirect_uris.len() > 20 {
        return Err(OAuthError::InvalidRequest("redirect_uris: 1 to 20 URIs".into()));
    }
    for uri in redirect_uris {
        check_redirect_uri(uri).map_err(OAuthError::InvalidRequest)?;
    }
    let scopes = if scopes.is_empty() { SCOPES.iter().map(|s| s.to_string()).collect() } else { parse_scopes(&scopes.join(" "))? };
    let client_id = random_id().map_err(unavailable)?.chars().take(32).collect::<String>();
    let secret = if confidential { Some(BearerToken::generate().map_err(unavailable)?.secret) } else { None };
    let client = Client {
        client_id: client_id.clone(),
        name: name.trim().to_string(),
        redirect_uris: redirect_uris.to_vec(),
        confidential,
        secret_hash: secret.as_ref().map(|s| hex::encode(secret_hash(s.as_bytes()))),
        scopes,
        created_at: now,
    };
    let mut b = Batch::new();
    b.put(Cf::OAuth, client_key(&client_id), serde_json::to_vec(&client).map_err(unavailable)?);
    store.write(b)?;
    Ok((client, secret))
}

pub fn client(store: &dyn Store, client_id: &str) -> Result<Option<Client>, StoreError> {
    if client_id.is_empty() || client_id.len() > 128 {
        return Ok(None);
    }
    Ok(store.get(Cf::OAuth, &client_key(client_id))?.and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// The client that authenticates with `client_id` and `secret` (a confidential client must
/// present its secret; a public one must not claim one). Compared in constant time.
pub fn authenticate_client(store: &dyn Store, client_id: &str, secret: Option<&str>) -> Result<Client, OAuthError> {
    let c = client(store, client_id)?.ok_or(OAuthError::InvalidClient)?;
    match (&c.secret_hash, secret) {
        (Some(expected), Some(given)) => {
            let given = hex::encode(secret_hash(given.as_bytes()));
            if constant_time_eq(expected.as_bytes(), given.as_bytes()) { Ok(c) } else { Err(OAuthError::InvalidClient) }
        }
        (None, None) => Ok(c),
        _ => Err(OAuthError::InvalidClient),
    }
}

/// An authorization request (`GET`/`POST /v1/oauth2/authorize`), as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuthorizeRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub code_challenge: Option<String>,
    #[serde(default)]
    pub code_challenge_method: Option<String>,
    #[serde(default)]
    pub nonce: Option<String>,
}

/// Where an authorization request's error goes: to the person (the client or its redirect URI
/// cannot be trusted: never redirect), or back to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Unknown client, or a redirect URI that is not registered: shown, never redirected to.
    NoRedirect(String),
    /// Redirect to `redirect_uri?error=…&state=…`.
    Redirect { redirect_uri: String, error: OAuthError, state: Option<String> },
}

/// Checks an authorization request: answers the client and the scopes it asks for.
pub fn check_authorize(store: &dyn Store, r: &AuthorizeRequest) -> Result<(Client, Vec<String>), AuthorizeError> {
    let c = client(store, &r.client_id)
        .map_err(|e| AuthorizeError::NoRedirect(e.to_string()))?
        .ok_or_else(|| AuthorizeError::NoRedirect("unknown client_id".into()))?;
    if !c.redirect_uris.iter().any(|u| u == &r.redirect_uri) {
        return Err(AuthorizeError::NoRedirect("redirect_uri is not registered for this client".into()));
    }
    let back = |error: OAuthError| AuthorizeError::Redirect { redirect_uri: r.redirect_uri.clone(), error, state: r.state.clone() };
    if r.response_type != "code" {
        return Err(back(OAuthError::UnsupportedResponseType));
    }
    let scopes = parse_scopes(&r.scope).map_err(back)?;
    if scopes.is_empty() {
        return Err(back(OAuthError::InvalidScope("scope is required".into())));
    }
    if let Some(s) = scopes.iter().find(|s| !c.scopes.contains(s)) {
        return Err(back(OAuthError::InvalidScope(format!("{s} is not allowed for this client"))));
    }
    match (&r.code_challenge, r.code_challenge_method.as_deref()) {
        (Some(ch), Some("S256")) if is_pkce_challenge(ch) => {}
        (Some(_), _) => return Err(back(OAuthError::InvalidRequest("code_challenge_method must be S256 with a 43-character code_challenge".into()))),
        (None, _) if !c.confidential => return Err(back(OAuthError::InvalidRequest("public clients must use PKCE (S256)".into()))),
        (None, _) => {}
    }
    if r.nonce.as_ref().is_some_and(|n| n.len() > 512) || r.state.as_ref().is_some_and(|s| s.len() > 1024) {
        return Err(back(OAuthError::InvalidRequest("state or nonce too long".into())));
    }
    Ok((c, scopes))
}

fn is_pkce_challenge(ch: &str) -> bool {
    ch.len() == 43 && ch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `account` consented to `client` for (at least) `scopes` before.
pub fn has_consent(store: &dyn Store, account: &str, client: &str, scopes: &[String]) -> Result<bool, StoreError> {
    let Some(raw) = store.get(Cf::OAuth, &consent_key(account, client))? else { return Ok(false) };
    let granted: Vec<String> = serde_json::from_slice(&raw).unwrap_or_default();
    Ok(scopes.iter().all(|s| granted.contains(s)))
}

/// Remembers that `account` consented to `client` for `scopes` (added to what it granted).
pub fn remember_consent(store: &dyn Store, account: &str, client: &str, scopes: &[String]) -> Result<(), StoreError> {
    let key = consent_key(account, client);
    let mut granted: Vec<String> = store.get(Cf::OAuth, &key)?.and_then(|raw| serde_json::from_slice(&raw).ok()).unwrap_or_default();
    for s in scopes {
        if !granted.contains(s) {
            granted.push(s.clone());
        }
    }
    let mut b = Batch::new();
    b.put(Cf::OAuth, key, serde_json::to_vec(&granted).map_err(|_| StoreError::Corrupt { cf: "oauth", what: "consent" })?);
    store.write(b)
}

#[derive(Serialize, Deserialize)]
struct PendingConsent {
    account: String,
    request: AuthorizeRequest,
}

/// A consent request waiting for the person's answer (5 minutes, single use, bound to the
/// account that saw it). Answers the consent token.
pub fn ask_consent(store: &dyn Store, account: &str, request: &AuthorizeRequest, now: Millis) -> Result<String, OAuthError> {
    let token = random_id().map_err(unavailable)?;
    let value = serde_json::to_vec(&PendingConsent { account: account.to_string(), request: request.clone() }).map_err(unavailable)?;
    let mut b = Batch::new();
    b.put_expiring(Cf::OAuth, hashed(b"t", &token), value, now.saturating_add(5 * 60_000)).relaxed();
    store.write(b)?;
    Ok(token)
}

/// Takes the consent request `token` (once) if it was made for `account` and this very
/// authorization request.
pub fn answer_consent(store: &dyn Store, token: &str, account: &str, request: &AuthorizeRequest) -> Result<bool, OAuthError> {
    let Some(raw) = store.take(Cf::OAuth, &hashed(b"t", token), Batch::new())? else { return Ok(false) };
    let pending: PendingConsent = serde_json::from_slice(&raw).map_err(unavailable)?;
    Ok(pending.account == account && &pending.request == request)
}

/// A code not yet redeemed.
#[derive(Serialize, Deserialize)]
struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    account: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    nonce: Option<String>,
    auth_time: Millis,
}

/// What a redeemed code issued (to revoke it if the code comes again).
#[derive(Serialize, Deserialize)]
struct RedeemedCode {
    sessions: Vec<String>,
    #[serde(default)]
    family: Option<String>,
}

/// Issues an authorization code (256 bits, `code_ttl`, single use) for `account`.
pub fn issue_code(
    store: &dyn Store,
    account: &str,
    request: &AuthorizeRequest,
    scopes: &[String],
    auth_time: Millis,
    ttl_ms: Millis,
    now: Millis,
) -> Result<String, OAuthError> {
    let code = BearerToken::generate().map_err(unavailable)?.secret;
    let grant = CodeGrant {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        account: account.to_string(),
        scopes: scopes.to_vec(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        auth_time,
    };
    let mut b = Batch::new();
    b.put_expiring(Cf::OAuth, hashed(b"c", &code), serde_json::to_vec(&grant).map_err(unavailable)?, now.saturating_add(ttl_ms));
    store.write(b)?;
    Ok(code)
}

/// The token endpoint's answer (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// Lifetimes and issuer for the grants.
pub struct Issuing<'a> {
    pub issuer: &'a str,
    pub access_ttl_ms: Millis,
    pub refresh_ttl_ms: Millis,
    pub keys: &'a keys::SigningKey,
}

/// Redeems an authorization code for `client` (authenticated already): exact redirect URI,
/// PKCE verifier (S256), single use. A code that comes a second time revokes the access token
/// it issued (RFC 6749 §4.1.2) and is refused.
pub fn redeem_code(
    store: &dyn Store,
    issuing: &Issuing<'_>,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    now: Millis,
) -> Result<(TokenResponse, Vec<u8>, Session), OAuthError> {
    let Some(raw) = store.take(Cf::OAuth, &hashed(b"c", code), Batch::new())? else {
        // Unknown, expired — or used before: then revoke what it issued.
        if let Some(raw) = store.take(Cf::OAuth, &hashed(b"u", code), Batch::new())?
            && let Ok(used) = serde_json::from_slice::<RedeemedCode>(&raw)
        {
            for key in used.sessions {
                if let Ok(key) = hex::decode(key) {
                    session::end(store, &key, &|_| true)?;
                }
            }
            if let Some(family) = used.family {
                refresh::revoke_family(store, &family)?;
            }
            tracing::warn!(client = %client.client_id, "an authorization code was used twice: its tokens are revoked");
        }
        return Err(OAuthError::InvalidGrant("unknown, expired or used code".into()));
    };
    let grant: CodeGrant = serde_json::from_slice(&raw).map_err(unavailable)?;
    if grant.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the code was issued to another client".into()));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(OAuthError::InvalidGrant("redirect_uri differs from the authorization request's".into()));
    }
    match (&grant.code_challenge, verifier) {
        (Some(challenge), Some(v)) => {
            if !(43..=128).contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Err(OAuthError::InvalidGrant("malformed code_verifier".into()));
            }
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_hash(v.as_bytes()));
            if !constant_time_eq(computed.as_bytes(), challenge.as_bytes()) {
                return Err(OAuthError::InvalidGrant("code_verifier does not match code_challenge".into()));
            }
        }
        (Some(_), None) => return Err(OAuthError::InvalidGrant("code_verifier is required".into())),
        (None, Some(_)) => return Err(OAuthError::InvalidGrant("no code_challenge was sent for this code".into())),
        (None, None) => {}
    }
    let account = account::get(store, &grant.account)?.filter(|a| !a.disabled).ok_or(OAuthError::InvalidGrant("the account is gone or disabled".into()))?;
    // A refresh token (offline_access) starts a new family, which its access tokens name.
    let family = if grant.scopes.iter().any(|s| s == "offline_access") { Some(random_id().map_err(unavailable)?) } else { None };
    let (token, key, s) = mint_access(&account.guid, &client.client_id, &grant.scopes, family.as_deref(), issuing.access_ttl_ms, now)?;
    let id_token = if grant.scopes.iter().any(|s| s == "openid") {
        Some(issuing.keys.id_token(issuing.issuer, &account, &client.client_id, grant.nonce.as_deref(), grant.auth_time, now, issuing.access_ttl_ms, &grant.scopes).map_err(unavailable)?)
    } else {
        None
    };
    let family = match family {
        Some(family) => Some((family.clone(), refresh::start_family(store, issuing, &family, &account.guid, &client.client_id, &grant.scopes, now)?)),
        None => None,
    };
    // Remember what the code issued, for as long as the code could be replayed.
    let mut b = Batch::new();
    let used = RedeemedCode { sessions: vec![hex::encode(&key)], family: family.as_ref().map(|(f, _)| f.clone()) };
    b.put_expiring(Cf::OAuth, hashed(b"u", code), serde_json::to_vec(&used).map_err(unavailable)?, now.saturating_add(issuing.access_ttl_ms));
    store.write(b)?;
    let response = TokenResponse {
        access_token: token.secret,
        token_type: "Bearer",
        expires_in: issuing.access_ttl_ms / 1000,
        scope: grant.scopes.join(" "),
        id_token,
        refresh_token: family.map(|(_, r)| r),
    };
    Ok((response, key, Session::Account(s)))
}

/// An access token session (not yet written: the registry opens it).
pub(crate) fn mint_access(
    owner: &str,
    client_id: &str,
    scopes: &[String],
    family: Option<&str>,
    ttl_ms: Millis,
    now: Millis,
) -> Result<(BearerToken, Vec<u8>, AccountSession), OAuthError> {
    let origin = Origin { ip: String::new(), user_agent: format!("oauth2 client {client_id}") };
    let (token, key, mut s) = AccountSession::mint(owner, Dialect::OAuth, &origin, ttl_ms, None, true, now).map_err(unavailable)?;
    s.oauth = Some(OAuthGrant { client_id: client_id.to_string(), scopes: scopes.to_vec(), family: family.map(str::to_string) });
    Ok((token, key, s))
}

/// `client_credentials`: a token for the (confidential) client itself, no account.
pub fn client_credentials(client: &Client, scope: &str, access_ttl_ms: Millis, now: Millis) -> Result<(TokenResponse, Vec<u8>, Session), OAuthError> {
    if !client.confidential {
        return Err(OAuthError::UnauthorizedClient("client_credentials needs a confidential client".into()));
    }
    let scopes = parse_scopes(scope)?;
    if let Some(s) = scopes.iter().find(|s| !client.scopes.contains(s) || matches!(s.as_str(), "openid" | "offline_access")) {
        return Err(OAuthError::InvalidScope(format!("{s} cannot be granted to the client itself")));
    }
    let (token, key, s) = mint_access(&format!("client:{}", client.client_id), &client.client_id, &scopes, None, access_ttl_ms, now)?;
    let response = TokenResponse {
        access_token: token.secret,
        token_type: "Bearer",
        expires_in: access_ttl_ms / 1000,
        scope: scopes.join(" "),
        id_token: None,
        refresh_token: None,
    };
    Ok((response, key, Session::Account(s)))
}

/// The live access token `secret` (an OAuth2 session), if any.
pub fn access_token(store: &dyn Store, secret: &str) -> Result<Option<AccountSession>, StoreError> {
    match session::get(store, &session::account_key(secret))? {
        Some(Session::Account(s)) if s.dialect == Dialect::OAuth => Ok(Some(s)),
        _ => Ok(None),
    }
}

/// `GET /v1/oauth2/userinfo`: the claims the token's scopes allow.
pub fn userinfo(account: &Account, scopes: &[String]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), account.guid.clone().into());
    out.insert("username".into(), account.username.clone().into());
    if scopes.iter().any(|s| s == "profile") {
        out.insert("preferred_username".into(), account.username.clone().into());
        let name = format!("{} {}", account.firstname, account.lastname).trim().to_string();
        if !name.is_empty() {
            out.insert("name".into(), name.into());
        }
    }
    if scopes.iter().any(|s| s == "email")
        && let Some(e) = &account.email
    {
        out.insert("email".into(), e.clone().into());
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_strictly() {
        assert_eq!(parse_scopes("openid  email openid").unwrap(), vec!["openid", "email"]);
        assert!(matches!(parse_scopes("openid admin"), Err(OAuthError::InvalidScope(_))));
        assert!(parse_scopes("").unwrap().is_empty());
    }

    #[test]
    fn redirect_uris_must_be_absolute_without_fragment() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(check_redirect_uri("com.example.app:/cb").is_ok());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("https://app.example/cb#x").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
    }

    #[test]
    fn pkce_challenges_are_43_base64url_characters() {
        assert!(is_pkce_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!is_pkce_challenge("short"));
        assert!(!is_pkce_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
    }
}
