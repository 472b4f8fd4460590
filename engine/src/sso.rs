//! Logging in through an upstream OpenID Connect provider (SSO): the authorization request
//! (state, nonce, PKCE S256), the `id_token`'s validation against the upstream's JWKS, and the
//! account it maps to — found by (issuer, subject), created at the first login when the
//! provider's `auto_create` is on. The HTTP calls to the upstream (discovery, token, JWKS) are
//! the front's; this module decides.
//!
//! A pending login is a `tickets` record `ss` ‖ SHA-256(state) (10 minutes, consumed once by the
//! callback) holding the provider, the nonce, the PKCE verifier and where to send the person
//! back. An account's upstream identities are kept in the account (`sso`) and indexed in
//! `account_names` as `o:<issuer> 0x00 <subject>` — a pointer, checked against the account.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::account::{self, Account, AccountError, Fields};
use crate::config::SsoProvider;
use crate::secret::{BearerToken, random_id, secret_hash};
use crate::store::{Batch, Cf, Millis, Store, StoreError};
use crate::web::WebError;

/// How long a started SSO login may take.
pub const PENDING_TTL_MS: Millis = 10 * 60_000;

/// An SSO login between start and callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    pub redirect_uri: String,
}

fn pending_key(state: &str) -> Vec<u8> {
    [b"ss".as_slice(), &secret_hash(state.as_bytes())].concat()
}

fn link_key(issuer: &str, subject: &str) -> Vec<u8> {
    [b"o:".as_slice(), issuer.as_bytes(), &[0], subject.as_bytes()].concat()
}

fn unavailable(e: impl std::fmt::Display) -> WebError {
    WebError::Unavailable(e.to_string())
}

/// Starts an SSO login: answers the upstream authorization URL and the state.
pub fn start(
    store: &dyn Store,
    provider: &SsoProvider,
    authorization_endpoint: &str,
    callback: &str,
    redirect_uri: &str,
    now: Millis,
) -> Result<(String, String), WebError> {
    let state = random_id().map_err(unavailable)?;
    let nonce = random_id().map_err(unavailable)?;
    let verifier = BearerToken::generate().map_err(unavailable)?.secret;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_hash(verifier.as_bytes()));
    let pending = Pending { provider: provider.name.clone(), nonce: nonce.clone(), verifier, redirect_uri: redirect_uri.to_string() };
    let mut b = Batch::new();
    b.put_expiring(Cf::Tickets, pending_key(&state), serde_json::to_vec(&pending).map_err(unavailable)?, now.saturating_add(PENDING_TTL_MS))
        .relaxed();
    store.write(b)?;
    let mut url = url::Url::parse(authorization_endpoint).map_err(|e| unavailable(format!("upstream authorization_endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", callback)
        .append_pair("scope", &provider.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok((url.to_string(), state))
}

/// Consumes the pending login `state` (once); `None` if unknown, expired or used.
pub fn take(store: &dyn Store, state: &str) -> Result<Option<Pending>, StoreError> {
    if state.is_empty() || state.len() > 256 {
        return Ok(None);
    }
    Ok(store.take(Cf::Tickets, &pending_key(state), Batch::new())?.and_then(|raw| serde_json::from_slice(&raw).ok()))
}

/// What sigil takes from a validated `id_token`.
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub preferred_username: Option<String>,
}

/// Validates an upstream `id_token`: signature by a key of the upstream's JWKS (RS256, ES256 or
/// PS256 — never `none` or HMAC), issuer, audience (our client id), expiry, and the nonce of
/// this login.
pub fn validate_id_token(
    id_token: &str,
    jwks: &jsonwebtoken::jwk::JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<Identity, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let header = jsonwebtoken::decode_header(id_token).map_err(|e| format!("id_token header: {e}"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::PS256) {
        return Err(format!("id_token algorithm {:?} is not accepted", header.alg));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None => jwks.keys.first().filter(|_| jwks.keys.len() == 1),
    }
    .ok_or("no key of the upstream's JWKS matches the id_token")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("upstream JWK: {e}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let identity = jsonwebtoken::decode::<Identity>(id_token, &key, &validation).map_err(|e| format!("id_token: {e}"))?.claims;
    if identity.nonce.as_deref() != Some(nonce) {
        return Err("id_token nonce does not match this login".into());
    }
    Ok(identity)
}

/// Adds the upstream's userinfo claims to `identity` — only if they are about the same subject
/// (OpenID Connect Core §5.3.2), and without replacing what the `id_token` said.
pub fn merge_userinfo(identity: &mut Identity, claims: &serde_json::Value) {
    if claims.get("sub").and_then(serde_json::Value::as_str) != Some(identity.sub.as_str()) {
        return;
    }
    let text = |k: &str| claims.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
    if identity.email.is_none() {
        identity.email = text("email");
        identity.email_verified = claims.get("email_verified").and_then(serde_json::Value::as_bool);
    }
    if identity.preferred_username.is_none() {
        identity.preferred_username = text("preferred_username");
    }
}

/// The issuer under which wallet logins through sigil's pages are linked to accounts: a wallet
/// is one more upstream identity, its address the subject (signed by the wallet itself).
pub const WALLET_ISSUER: &str = "urn:sigil:wallet";

/// The identity of a wallet that proved its address by signing a login phrase.
pub fn wallet_identity(address: &str) -> Identity {
    Identity {
        iss: WALLET_ISSUER.into(),
        sub: address.into(),
        nonce: None,
        email: None,
        email_verified: None,
        preferred_username: Some(address.into()),
    }
}

/// The account of upstream identity (issuer, subject): linked before, or — with `auto_create`
/// — a new account (username from the upstream's `preferred_username` or email, made unique;
/// no password: it logs in through SSO or a passkey). `None` when unknown and not created.
pub fn account_for(store: &dyn Store, auto_create: bool, identity: &Identity, now: Millis) -> Result<Option<Account>, WebError> {
    let link = link_key(&identity.iss, &identity.sub);
    let marker = format!("{}\u{0}{}", identity.iss, identity.sub);
    if let Some(guid) = store.get(Cf::AccountNames, &link)? {
        let found = account::get(store, &String::from_utf8_lossy(&guid))?;
        if let Some(a) = found.filter(|a| a.sso.contains(&marker)) {
            return Ok(Some(a));
        }
    }
    if !auto_create {
        return Ok(None);
    }
    let base = username_from(identity);
    let email = identity.email.clone().filter(|_| identity.email_verified != Some(false));
    for attempt in 0..5 {
        let username = if attempt == 0 { base.clone() } else { format!("{base}-{}", &random_id().map_err(unavailable)?[..6]) };
        let fields = Fields { username: Some(username), email: Some(email.clone().filter(|_| attempt == 0)), ..Default::default() };
        // No password: "!" is no PHC string, so a password login with it always fails.
        match account::create(store, &fields, "!sso".into(), now) {
            Ok(a) => {
                let mut pointer = Batch::new();
                pointer.put(Cf::AccountNames, link.clone(), a.guid.as_bytes().to_vec());
                store.write(pointer)?;
                let linked = account::modify(store, &a.guid, false, &mut |acc| {
                    acc.sso.push(marker.clone());
                    Ok(())
                })?;
                return Ok(Some(linked));
            }
            Err(AccountError::Exists) | Err(AccountError::Invalid { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(WebError::Unavailable("no free username for the SSO account".into()))
}

fn username_from(identity: &Identity) -> String {
    let raw = identity
        .preferred_username
        .clone()
        .or_else(|| identity.email.as_ref().and_then(|e| e.split('@').next().map(str::to_string)))
        .unwrap_or_else(|| "sso-user".into());
    // 48 keeps a 42-character Ethereum address whole, with room for a "-xxxxxx" suffix (64 max).
    let clean: String = raw.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(48).collect();
    if clean.len() < 3 { format!("sso-{clean}") } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_fills_claims_of_the_same_subject_only() {
        let mut id = Identity { iss: "i".into(), sub: "s1".into(), nonce: None, email: None, email_verified: None, preferred_username: None };
        merge_userinfo(&mut id, &serde_json::json!({"sub": "other", "email": "x@example.com"}));
        assert_eq!(id.email, None);
        merge_userinfo(&mut id, &serde_json::json!({"sub": "s1", "email": "a@example.com", "email_verified": true, "preferred_username": "a"}));
        assert_eq!((id.email.as_deref(), id.email_verified, id.preferred_username.as_deref()), (Some("a@example.com"), Some(true), Some("a")));
    }

    #[test]
    fn usernames_from_upstream_claims_are_cleaned() {
        let id = |u: Option<&str>, e: Option<&str>| Identity {
            iss: "i".into(),
            sub: "s".into(),
            nonce: None,
            email: e.map(str::to_string),
            email_verified: None,
            preferred_username: u.map(str::to_string),
        };
        assert_eq!(username_from(&id(Some("Ann Lee!"), None)), "AnnLee");
        assert_eq!(username_from(&id(None, Some("bob@example.com"))), "bob");
        assert_eq!(username_from(&id(None, None)), "sso-user");
        assert_eq!(username_from(&id(Some("x"), None)), "sso-x");
    }
}
