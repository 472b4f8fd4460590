//! Refresh tokens (`offline_access`): rotated on every use, in families. A code's redemption
//! starts a family; each refresh marks its token used and issues the next one in the same
//! family. A refresh token presented a second time — an attacker replaying a stolen one, or the
//! client after it — revokes the whole family: every refresh token and every access token it
//! issued (OAuth 2.0 Security BCP §4.14). Of concurrent uses of one token exactly one is
//! answered with tokens; a duplicate that arrives while that rotation is still being written
//! is refused without revoking (it gets nothing; once the rotation is written, any further
//! presentation revokes the family).
//!
//! `r` ‖ SHA-256(token) → [`Refresh`] (kept, marked `used`, until it expires: that is how a reuse
//! is recognised); `f` ‖ family id → [`Family`] (revoked flag and the access tokens issued).

use serde::{Deserialize, Serialize};

use super::{Client, Issuing, OAuthError, TokenResponse, hashed, mint_access, unavailable};
use crate::account;
use crate::secret::{BearerToken, random_id};
use crate::session::{self, Session};
use crate::store::{Batch, Change, Cf, Millis, Store};

#[derive(Serialize, Deserialize, Clone)]
struct Refresh {
    family: String,
    client_id: String,
    account: String,
    scopes: Vec<String>,
    /// Presented once: the next presentation is refused.
    used: bool,
    /// Its rotation completed (the next token exists): a presentation now is a reuse, and
    /// revokes the family. A duplicate that arrives while the rotation is still running is
    /// refused without revoking, so of concurrent uses exactly one gets tokens.
    #[serde(default)]
    rotated: bool,
}

#[derive(Serialize, Deserialize, Default)]
struct Family {
    revoked: bool,
    /// hex keys of the access-token sessions the family issued.
    access: Vec<String>,
}

fn family_key(id: &str) -> Vec<u8> {
    [b"f".as_slice(), id.as_bytes()].concat()
}

fn put_refresh(b: &mut Batch, token: &str, r: &Refresh, expires_at: Millis) -> Result<(), OAuthError> {
    b.put_expiring(Cf::OAuth, hashed(b"r", token), serde_json::to_vec(r).map_err(unavailable)?, expires_at);
    Ok(())
}

/// A new family for a redeemed code: answers (family id, refresh token).
pub(super) fn start_family(
    store: &dyn Store,
    issuing: &Issuing<'_>,
    account: &str,
    client_id: &str,
    scopes: &[String],
    access_key: &[u8],
    now: Millis,
) -> Result<(String, String), OAuthError> {
    let family = random_id().map_err(unavailable)?;
    let token = BearerToken::generate().map_err(unavailable)?.secret;
    let expires_at = now.saturating_add(issuing.refresh_ttl_ms);
    let mut b = Batch::new();
    let f = Family { revoked: false, access: vec![hex::encode(access_key)] };
    b.put_expiring(Cf::OAuth, family_key(&family), serde_json::to_vec(&f).map_err(unavailable)?, expires_at);
    let r = Refresh { family: family.clone(), client_id: client_id.into(), account: account.into(), scopes: scopes.to_vec(), used: false, rotated: false };
    put_refresh(&mut b, &token, &r, expires_at)?;
    store.write(b)?;
    Ok((family, token))
}

/// Ends every token of `family` and marks it revoked (its refresh tokens then refuse).
pub fn revoke_family(store: &dyn Store, family: &str) -> Result<(), OAuthError> {
    let mut access = Vec::new();
    store.update(Cf::OAuth, &family_key(family), false, &mut |current| {
        let Some(c) = current else { return Change::Keep };
        let Ok(mut f) = serde_json::from_slice::<Family>(&c.value) else { return Change::Keep };
        access = f.access.clone();
        f.revoked = true;
        match serde_json::to_vec(&f) {
            Ok(value) => Change::Put { value, expires_at: c.expires_at, then: Batch::new() },
            Err(_) => Change::Keep,
        }
    })?;
    for key in access {
        if let Ok(key) = hex::decode(key) {
            session::end(store, &key, &|_| true)?;
        }
    }
    Ok(())
}

/// `grant_type=refresh_token` for `client` (authenticated already): rotates the token and opens
/// the new access token's session (written here, with the rotation, in one durable write). A
/// used token revokes its family; a token of another client, an expired one or one of a
/// revoked family is `invalid_grant`. `scope`, if given, may only narrow the grant.
pub fn refresh(
    store: &dyn Store,
    issuing: &Issuing<'_>,
    client: &Client,
    token: &str,
    scope: Option<&str>,
    now: Millis,
) -> Result<TokenResponse, OAuthError> {
    let key = hashed(b"r", token);
    let mut found: Option<(Refresh, bool)> = None;
    store.update(Cf::OAuth, &key, false, &mut |current| {
        found = None;
        let Some(c) = current else { return Change::Keep };
        let Ok(mut r) = serde_json::from_slice::<Refresh>(&c.value) else { return Change::Keep };
        if r.client_id != client.client_id {
            found = Some((r, false));
            return Change::Keep;
        }
        let first = !r.used;
        r.used = true;
        let value = serde_json::to_vec(&r).unwrap_or_default();
        found = Some((r, first));
        if first { Change::Put { value, expires_at: c.expires_at, then: Batch::new() } } else { Change::Keep }
    })?;
    let Some((r, first)) = found else { return Err(OAuthError::InvalidGrant("unknown or expired refresh token".into())) };
    if r.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    if !first {
        if !r.rotated {
            return Err(OAuthError::InvalidGrant("refresh token already being used".into()));
        }
        tracing::warn!(client = %client.client_id, "a refresh token was used twice: its family is revoked");
        revoke_family(store, &r.family)?;
        return Err(OAuthError::InvalidGrant("refresh token already used; every token of its grant is revoked".into()));
    }
    let scopes = match scope.filter(|s| !s.trim().is_empty()) {
        None => r.scopes.clone(),
        Some(s) => {
            let asked = super::parse_scopes(s)?;
            if let Some(x) = asked.iter().find(|x| !r.scopes.contains(x)) {
                return Err(OAuthError::InvalidScope(format!("{x} was not granted")));
            }
            asked
        }
    };
    let account = account::get(store, &r.account)?.filter(|a| !a.disabled).ok_or(OAuthError::InvalidGrant("the account is gone or disabled".into()))?;
    let (access, access_key, s) = mint_access(&account.guid, &client.client_id, &scopes, issuing.access_ttl_ms, now)?;
    // One atomic, durable write: the family records the new access token (unless it was revoked
    // meanwhile), the rotated refresh token is stored, and the access token's session opens.
    let next = BearerToken::generate().map_err(unavailable)?.secret;
    let mut then = Batch::new();
    let rotated = Refresh { used: false, rotated: false, ..r.clone() };
    put_refresh(&mut then, &next, &rotated, now.saturating_add(issuing.refresh_ttl_ms))?;
    // The presented token is now rotated: from here on its reuse revokes the family. (Only this
    // request writes it: the others saw it used and wrote nothing.)
    let done = Refresh { used: true, rotated: true, ..r.clone() };
    put_refresh(&mut then, token, &done, now.saturating_add(issuing.refresh_ttl_ms))?;
    let session = Session::Account(s);
    session::open_writes(&mut then, &access_key, &session)?;
    let mut alive = false;
    store.update(Cf::OAuth, &family_key(&r.family), false, &mut |current| {
        alive = false;
        let Some(c) = current else { return Change::Keep };
        let Ok(mut f) = serde_json::from_slice::<Family>(&c.value) else { return Change::Keep };
        if f.revoked {
            return Change::Keep;
        }
        f.access.push(hex::encode(&access_key));
        alive = true;
        match serde_json::to_vec(&f) {
            Ok(value) => Change::Put { value, expires_at: c.expires_at, then: then.clone() },
            Err(_) => Change::Keep,
        }
    })?;
    if !alive {
        return Err(OAuthError::InvalidGrant("the grant was revoked".into()));
    }
    let id_token = if scopes.iter().any(|s| s == "openid") {
        Some(issuing.keys.id_token(issuing.issuer, &account, &client.client_id, None, now, now, issuing.access_ttl_ms, &scopes).map_err(unavailable)?)
    } else {
        None
    };
    let response = TokenResponse {
        access_token: access.secret,
        token_type: "Bearer",
        expires_in: issuing.access_ttl_ms / 1000,
        scope: scopes.join(" "),
        id_token,
        refresh_token: Some(next),
    };
    Ok(response)
}

/// The family of refresh token `token` issued to `client_id`, if it is one (for revocation).
pub fn family_of(store: &dyn Store, token: &str, client_id: &str) -> Result<Option<String>, OAuthError> {
    let Some(raw) = store.get(Cf::OAuth, &hashed(b"r", token))? else { return Ok(None) };
    Ok(serde_json::from_slice::<Refresh>(&raw).ok().filter(|r| r.client_id == client_id).map(|r| r.family))
}

/// Whether refresh token `token` of `client_id` is still usable (introspection).
pub fn is_active(store: &dyn Store, token: &str, client_id: &str) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(raw) = store.get(Cf::OAuth, &hashed(b"r", token))? else { return Ok(None) };
    let Ok(r) = serde_json::from_slice::<Refresh>(&raw) else { return Ok(None) };
    if r.used || r.client_id != client_id {
        return Ok(None);
    }
    let revoked = store.get(Cf::OAuth, &family_key(&r.family))?.and_then(|raw| serde_json::from_slice::<Family>(&raw).ok()).is_none_or(|f| f.revoked);
    Ok((!revoked).then_some(r.scopes))
}
