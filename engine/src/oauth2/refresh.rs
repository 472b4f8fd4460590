//! Refresh tokens (`offline_access`): rotated on every use, in families. A code's redemption
//! starts a family; each refresh marks its token used and issues the next one in the same
//! family. A refresh token presented a second time — an attacker replaying a stolen one, or the
//! client after it — revokes the whole family: every refresh token and every access token it
//! issued (OAuth 2.0 Security BCP §4.14). Of concurrent uses of one token exactly one is
//! answered with tokens; a duplicate that arrives while that rotation is still being written
//! is refused without revoking (it gets nothing; once the rotation is written, any further
//! presentation revokes the family).
//!
//! A refresh is two steps so that the serial part is small: [`claim`] reads and checks
//! everything, mints the new tokens and marks the presented one used (on the request's own
//! thread, in parallel with other requests); [`rotate`] writes the rotation. Both write
//! relaxed, so a group committer can apply many rotations and make them durable with one
//! fsync ([`Store::persist`]) before any of them is answered.
//!
//! `r` ‖ SHA-256(token) → [`Refresh`] (kept, marked `used`, until it expires: that is how a reuse
//! is recognised); `f` ‖ family id → [`Family`] (revoked flag and the access tokens issued).

use serde::{Deserialize, Serialize};

use super::{Client, Issuing, OAuthError, TokenResponse, hashed, mint_access, unavailable};
use crate::account::{self, Account};
use crate::secret::BearerToken;
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

/// A grant's family: small and of constant size, rewritten at every rotation. Its access
/// tokens are found through the account's sessions, which name their family
/// ([`session::OAuthGrant::family`]), so a grant refreshed for months does not drag a list of
/// every token it ever had.
#[derive(Serialize, Deserialize, Default)]
struct Family {
    revoked: bool,
    /// Every session of the family was ended after `revoked` was set (a revocation interrupted
    /// by a crash is finished by the next one; a finished one is not repeated).
    #[serde(default)]
    ended: bool,
    /// The account whose sessions hold the family's access tokens.
    #[serde(default)]
    account: String,
    /// Rotations so far.
    #[serde(default)]
    rotations: u64,
    /// hex keys of access-token sessions, as families written before sessions named their
    /// family listed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access: Vec<String>,
}

/// Read-modify-write of the JSON record under `key` in the `oauth` family, atomically (see
/// [`Store::update`]): `change` gets the live record (`None` if it is absent, expired or does
/// not decode — and it is called again if the store retries), edits it in place and answers
/// the writes to commit with it, or `None` to leave it as it is. The record keeps its expiry.
fn edit<T: Serialize + serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &[u8],
    relaxed: bool,
    change: &mut dyn FnMut(Option<&mut T>) -> Option<Batch>,
) -> Result<(), OAuthError> {
    store.update(Cf::OAuth, key, relaxed, &mut |current| {
        let mut record = current.and_then(|c| serde_json::from_slice::<T>(&c.value).ok());
        let Some(then) = change(record.as_mut()) else { return Change::Keep };
        match (record.and_then(|r| serde_json::to_vec(&r).ok()), current) {
            (Some(value), Some(c)) => Change::Put { value, expires_at: c.expires_at, then },
            _ => Change::Keep,
        }
    })?;
    Ok(())
}

fn family_key(id: &str) -> Vec<u8> {
    [b"f".as_slice(), id.as_bytes()].concat()
}

fn put_refresh(b: &mut Batch, key: Vec<u8>, r: &Refresh, expires_at: Millis) -> Result<(), OAuthError> {
    b.put_expiring(Cf::OAuth, key, serde_json::to_vec(r).map_err(unavailable)?, expires_at);
    Ok(())
}

/// Starts `family` (an id its access token already names) for a redeemed code: answers the
/// first refresh token.
pub(super) fn start_family(
    store: &dyn Store,
    issuing: &Issuing<'_>,
    family: &str,
    account: &str,
    client_id: &str,
    scopes: &[String],
    now: Millis,
) -> Result<String, OAuthError> {
    let token = BearerToken::generate().map_err(unavailable)?.secret;
    let expires_at = now.saturating_add(issuing.refresh_ttl_ms);
    let mut b = Batch::new();
    let f = Family { account: account.into(), ..Family::default() };
    b.put_expiring(Cf::OAuth, family_key(family), serde_json::to_vec(&f).map_err(unavailable)?, expires_at);
    let r = Refresh { family: family.into(), client_id: client_id.into(), account: account.into(), scopes: scopes.to_vec(), used: false, rotated: false };
    put_refresh(&mut b, hashed(b"r", &token), &r, expires_at)?;
    store.write(b)?;
    Ok(token)
}

/// Marks `family` revoked (its refresh tokens then refuse, and no rotation can add a token to
/// it) and ends every access token it issued, durably. Revoking a revoked family does nothing,
/// unless the revocation before it was cut short by a crash: then it is finished.
pub fn revoke_family(store: &dyn Store, family: &str) -> Result<(), OAuthError> {
    let mut todo = None;
    edit::<Family>(store, &family_key(family), false, &mut |f| {
        todo = None;
        let f = f.filter(|f| !f.ended)?;
        todo = Some((f.account.clone(), f.access.clone()));
        if f.revoked {
            return None;
        }
        f.revoked = true;
        Some(Batch::new())
    })?;
    let Some((account, listed)) = todo else { return Ok(()) };
    // Rotations write their session under the family's lock after checking `revoked`, so every
    // session of the family exists by now, and none can follow.
    let mut keys: Vec<Vec<u8>> = listed.iter().filter_map(|k| hex::decode(k).ok()).collect();
    if !account.is_empty() {
        let of_family = |s: &Session| matches!(s, Session::Account(a) if a.oauth.as_ref().and_then(|g| g.family.as_deref()) == Some(family));
        keys.extend(session::of_owner(store, &account)?.into_iter().filter(|(_, s)| of_family(s)).map(|(k, _)| k));
    }
    session::end_keys(store, &keys)?;
    // Finished (relaxed: if lost, the next revocation merely repeats the ends).
    edit::<Family>(store, &family_key(family), true, &mut |f| {
        f?.ended = true;
        Some(Batch::new())
    })
}

/// A `refresh_token` grant claimed and ready to commit: what [`claim`] read and minted, for
/// [`rotate`] to write.
pub struct Rotation {
    record: Refresh,
    scopes: Vec<String>,
    account: Account,
    /// The rotated-to token, the presented token marked rotated, the access token's session.
    then: Batch,
    response: TokenResponse,
}

impl Rotation {
    /// Whether the grant includes `openid`, so the answer carries an `id_token`
    /// ([`Rotation::sign_id_token`]: an RSA signature, worth keeping off latency-sensitive
    /// threads).
    pub fn wants_id_token(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }

    pub fn sign_id_token(&mut self, issuing: &Issuing<'_>, now: Millis) -> Result<(), OAuthError> {
        let client = &self.record.client_id;
        let token = issuing.keys.id_token(issuing.issuer, &self.account, client, None, now, now, issuing.access_ttl_ms, &self.scopes);
        self.response.id_token = Some(token.map_err(unavailable)?);
        Ok(())
    }
}

/// A refresh token presented again after its rotation was written: its family must be revoked
/// ([`Reuse::revoke`]: several durable writes, for a thread that may block).
pub struct Reuse {
    family: String,
    client_id: String,
}

impl Reuse {
    /// Revokes the family; answers the error for the request that reused the token.
    pub fn revoke(self, store: &dyn Store) -> OAuthError {
        tracing::warn!(client = %self.client_id, "a refresh token was used twice: its family is revoked");
        match revoke_family(store, &self.family) {
            Ok(()) => OAuthError::InvalidGrant("refresh token already used; every token of its grant is revoked".into()),
            Err(e) => e,
        }
    }
}

/// What [`claim`] found.
pub enum Claim {
    Rotation(Box<Rotation>),
    Reused(Reuse),
}

/// The first half of `grant_type=refresh_token` for `client` (authenticated already): finds
/// the token, checks its client, the narrowed `scope` (which may only narrow the grant) and the
/// account, mints the next refresh token and the access token, and then marks the presented
/// token used — once: of concurrent claims of one token exactly one gets a [`Rotation`]; one
/// that comes while that rotation is still being written is refused without revoking; one that
/// comes after it is a [`Reuse`]. The mark is a **relaxed** write, made durable with the
/// rotation's. Nothing is written before the checks pass, so an unknown or expired token,
/// another client's token or a widened scope burns nothing.
pub fn claim(store: &dyn Store, issuing: &Issuing<'_>, client: &Client, token: &str, scope: Option<&str>, now: Millis) -> Result<Claim, OAuthError> {
    let unknown = || OAuthError::InvalidGrant("unknown or expired refresh token".into());
    let key = hashed(b"r", token);
    let raw = store.get(Cf::OAuth, &key)?.ok_or_else(unknown)?;
    let record: Refresh = serde_json::from_slice(&raw).map_err(|_| unknown())?;
    if record.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant("the refresh token was issued to another client".into()));
    }
    let scopes = match scope.filter(|s| !s.trim().is_empty()) {
        None => record.scopes.clone(),
        Some(s) => {
            let asked = super::parse_scopes(s)?;
            if let Some(x) = asked.iter().find(|x| !record.scopes.contains(x)) {
                return Err(OAuthError::InvalidScope(format!("{x} was not granted")));
            }
            asked
        }
    };
    let account = account::get(store, &record.account)?.filter(|a| !a.disabled).ok_or(OAuthError::InvalidGrant("the account is gone or disabled".into()))?;
    let (access, access_key, s) = mint_access(&account.guid, &client.client_id, &scopes, Some(&record.family), issuing.access_ttl_ms, now)?;
    let next = BearerToken::generate().map_err(unavailable)?.secret;
    let refresh_until = now.saturating_add(issuing.refresh_ttl_ms);
    let mut then = Batch::new();
    put_refresh(&mut then, hashed(b"r", &next), &Refresh { used: false, rotated: false, ..record.clone() }, refresh_until)?;
    // The presented token is then rotated: from there on its reuse revokes the family. (Only
    // the request that marked it used writes this: the others saw it used and wrote nothing.)
    put_refresh(&mut then, key.clone(), &Refresh { used: true, rotated: true, ..record.clone() }, refresh_until)?;
    session::open_writes(&mut then, &access_key, &Session::Account(s))?;

    // (was it unused, was its rotation written)
    let mut seen: Option<(bool, bool)> = None;
    edit::<Refresh>(store, &key, true, &mut |r| {
        seen = r.as_ref().map(|r| (!r.used, r.rotated));
        let r = r.filter(|r| !r.used)?;
        r.used = true;
        Some(Batch::new())
    })?;
    match seen {
        None => Err(unknown()),
        Some((false, false)) => Err(OAuthError::InvalidGrant("refresh token already being used".into())),
        Some((false, true)) => Ok(Claim::Reused(Reuse { family: record.family, client_id: record.client_id })),
        Some((true, _)) => {
            let response = TokenResponse {
                access_token: access.secret,
                token_type: "Bearer",
                expires_in: issuing.access_ttl_ms / 1000,
                scope: scopes.join(" "),
                id_token: None,
                refresh_token: Some(next),
            };
            Ok(Claim::Rotation(Box::new(Rotation { record, scopes, account, then, response })))
        }
    }
}

/// The second half: unless the family was revoked meanwhile, writes the rotation (the next
/// token, the presented one marked rotated, the access token's session) with the family's
/// rotation count, in one atomic write under the family's lock. **Relaxed**: the caller makes it durable
/// ([`Store::persist`]) before it answers — a group committer does that once for many.
pub fn rotate(store: &dyn Store, rotation: Rotation) -> Result<TokenResponse, OAuthError> {
    let Rotation { record, then, response, .. } = rotation;
    let mut alive = false;
    edit::<Family>(store, &family_key(&record.family), true, &mut |f| {
        let f = f.filter(|f| !f.revoked);
        alive = f.is_some();
        f?.rotations += 1;
        Some(then.clone())
    })?;
    if !alive {
        return Err(OAuthError::InvalidGrant("the grant was revoked".into()));
    }
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
