//! Passkeys (WebAuthn): registration, passwordless login with discoverable credentials, and a
//! passkey as the second factor of an MFA ticket. `webauthn-rs` runs every ceremony (CBOR,
//! COSE, attestation, signatures, counters); this module keeps its server half in the store
//! and decides what a verified ceremony may do.
//!
//! - **Challenges** are records of the `tickets` family, 5 minutes, consumed by
//!   [`Store::take`] — exactly once under any concurrency, on any node. Their keys say what
//!   they are for, so a challenge serves only its purpose: `pr` ‖ the session key (registration
//!   by that session), `pm` ‖ the MFA ticket's hash (that ticket's account only), `pa` ‖
//!   SHA-256(challenge id) (a passwordless login).
//! - **Credentials** live in the account record (`passkeys`, at most [`MAX_PASSKEYS`]); their
//!   signature counter and backup state are written back after every use, durably.
//! - The account's WebAuthn user handle (`webauthn_id`, a UUID) is indexed in `account_names`
//!   as `w:<uuid>`, a pointer checked against the account like the name entries.
//! - Adding a passkey never turns on a second factor for password logins
//!   ([`Account::has_second_factor`] does not look at passkeys).

use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{
    CredentialID, DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::account::{self, Account, AccountError};
use crate::config::WebauthnConfig;
use crate::secret::{BearerToken, random_id, secret_hash};
use crate::session::{AccountSession, Origin};
use crate::store::{Batch, Cf, Millis, Store, StoreError};
use crate::web::{self, WebError};

/// Passkeys one account may have.
pub const MAX_PASSKEYS: usize = 10;

/// How long a ceremony's challenge lives (C: WebAuthn challenges 5 min).
pub const CHALLENGE_TTL_MS: Millis = 5 * 60_000;

/// Longest passkey name.
pub const MAX_NAME_CHARS: usize = 64;

/// A registered passkey, as the account record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPasskey {
    /// Public handle (URL-safe), for listing, renaming and deleting.
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub credential: Passkey,
}

impl StoredPasskey {
    /// `{"id","name","created_at","last_used_at"}` (C.4), times in milliseconds.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({"id": self.id, "name": self.name, "created_at": self.created_at, "last_used_at": self.last_used_at})
    }
}

/// The relying party: who the credentials are for, and which page origins may use them.
pub struct RelyingParty {
    webauthn: Webauthn,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RelyingParty")
    }
}

impl RelyingParty {
    /// From `webauthn.*`: `rp_id`, `rp_name`, and the exact origins (scheme, host and port;
    /// no wildcard ports, no subdomains) whose pages may run the ceremonies.
    pub fn new(config: &WebauthnConfig) -> Result<Self, String> {
        let mut origins = config.allowed_origins.iter().map(|o| Url::parse(o).map_err(|e| format!("webauthn.allowed_origins: {o:?}: {e}")));
        let first = origins.next().ok_or("webauthn.allowed_origins is empty")??;
        let mut builder = WebauthnBuilder::new(&config.rp_id, &first)
            .map_err(|e| format!("webauthn.rp_id {:?} does not fit origin {first}: {e}", config.rp_id))?
            .rp_name(&config.rp_name)
            .allow_subdomains(false)
            .allow_any_port(false);
        for origin in origins {
            builder = builder.append_allowed_origin(&origin?);
        }
        let webauthn = builder.build().map_err(|e| format!("webauthn: {e}"))?;
        Ok(Self { webauthn })
    }
}

/// A ceremony's server half, as stored under its challenge key.
#[derive(Serialize, Deserialize)]
enum Challenge {
    Register { account: String, user: Uuid, state: PasskeyRegistration },
    SecondFactor { account: String, state: PasskeyAuthentication },
    Login { state: DiscoverableAuthentication },
}

fn registration_key(session_key: &[u8]) -> Vec<u8> {
    [b"pr".as_slice(), session_key].concat()
}

fn second_factor_key(ticket: &str) -> Vec<u8> {
    [b"pm".as_slice(), &secret_hash(ticket.as_bytes())].concat()
}

fn login_key(challenge_id: &str) -> Vec<u8> {
    [b"pa".as_slice(), &secret_hash(challenge_id.as_bytes())].concat()
}

fn user_handle_key(user: &Uuid) -> Vec<u8> {
    format!("w:{user}").into_bytes()
}

fn unavailable(e: impl std::fmt::Display) -> WebError {
    WebError::Unavailable(e.to_string())
}

fn save(store: &dyn Store, key: Vec<u8>, challenge: &Challenge, expires_at: Millis) -> Result<(), WebError> {
    let value = serde_json::to_vec(challenge).map_err(unavailable)?;
    let mut b = Batch::new();
    // Relaxed: a challenge lost to a crash costs the browser one more options call.
    b.put_expiring(Cf::Tickets, key, value, expires_at).relaxed();
    Ok(store.write(b)?)
}

/// Consumes the challenge under `key` (exactly once); `None` if absent, expired or used.
fn take(store: &dyn Store, key: &[u8]) -> Result<Option<Challenge>, WebError> {
    Ok(store.take(Cf::Tickets, key, Batch::new())?.and_then(|raw| serde_json::from_slice(&raw).ok()))
}

fn public_key_json<T: Serialize>(options: &T) -> Result<serde_json::Value, WebError> {
    serde_json::to_value(options).map_err(unavailable)
}

/// Registration options for the account of the session under `session_key` (one pending
/// registration per session; a new call replaces it). Discoverable credential required, user
/// verification required, the account's passkeys excluded.
pub fn start_registration(
    store: &dyn Store,
    rp: &RelyingParty,
    account: &Account,
    session_key: &[u8],
    now: Millis,
) -> Result<serde_json::Value, WebError> {
    if account.passkeys.len() >= MAX_PASSKEYS {
        return Err(WebError::InvalidForm(vec![("credential".into(), format!("an account has at most {MAX_PASSKEYS} passkeys"))]));
    }
    let user = match account.webauthn_id.as_deref().map(Uuid::parse_str) {
        Some(Ok(u)) => u,
        _ => Uuid::new_v4(),
    };
    let exclude: Vec<CredentialID> = account.passkeys.iter().map(|p| p.credential.cred_id().clone()).collect();
    let display = if account.firstname.is_empty() { account.username.clone() } else { format!("{} {}", account.firstname, account.lastname).trim().to_string() };
    let (mut options, state) =
        rp.webauthn.start_passkey_registration(user, &account.username, &display, Some(exclude)).map_err(unavailable)?;
    // A passkey must be able to log in without a username: ask for a discoverable credential.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Required);
        selection.require_resident_key = true;
    }
    let challenge = Challenge::Register { account: account.guid.clone(), user, state };
    save(store, registration_key(session_key), &challenge, now.saturating_add(CHALLENGE_TTL_MS))?;
    public_key_json(&options.public_key)
}

/// Finishes the registration the session under `session_key` started: verifies the browser's
/// credential and adds the passkey to the account. A failed check consumes the challenge.
pub fn finish_registration(
    store: &dyn Store,
    rp: &RelyingParty,
    guid: &str,
    session_key: &[u8],
    credential: &RegisterPublicKeyCredential,
    name: Option<&str>,
    now: Millis,
) -> Result<StoredPasskey, WebError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Passkey");
    check_name(name)?;
    let Some(Challenge::Register { account, user, state }) = take(store, &registration_key(session_key))? else {
        return Err(WebError::PasskeyFailed);
    };
    if account != guid {
        return Err(WebError::PasskeyFailed);
    }
    let passkey = rp.webauthn.finish_passkey_registration(credential, &state).map_err(|e| {
        tracing::info!(error = %e, "passkey registration refused");
        WebError::PasskeyFailed
    })?;
    let stored = StoredPasskey {
        id: random_id().map_err(unavailable)?.chars().take(32).collect(),
        name: name.to_string(),
        created_at: now,
        last_used_at: None,
        credential: passkey,
    };
    // The user-handle pointer first (checked against the account on every use).
    let mut pointer = Batch::new();
    pointer.put(Cf::AccountNames, user_handle_key(&user), guid.as_bytes().to_vec());
    store.write(pointer)?;
    let adding = stored.clone();
    account::modify(store, guid, false, &mut |a| {
        if a.passkeys.len() >= MAX_PASSKEYS {
            return Err(AccountError::Invalid { field: "credential", message: format!("an account has at most {MAX_PASSKEYS} passkeys") });
        }
        if a.passkeys.iter().any(|p| p.credential.cred_id() == adding.credential.cred_id()) {
            return Err(AccountError::Invalid { field: "credential", message: "this passkey is registered already".into() });
        }
        a.webauthn_id.get_or_insert_with(|| user.to_string());
        a.passkeys.push(adding.clone());
        Ok(())
    })?;
    Ok(stored)
}

fn check_name(name: &str) -> Result<(), WebError> {
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(WebError::InvalidForm(vec![("name".into(), format!("at most {MAX_NAME_CHARS} characters, no control characters"))]));
    }
    Ok(())
}

/// Renames passkey `id` of the account; `false` if it has none by that id.
pub fn rename(store: &dyn Store, guid: &str, id: &str, name: &str) -> Result<bool, WebError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(WebError::InvalidForm(vec![("name".into(), "must not be empty".into())]));
    }
    check_name(name)?;
    let mut found = false;
    account::modify(store, guid, false, &mut |a| {
        found = false;
        if let Some(p) = a.passkeys.iter_mut().find(|p| p.id == id) {
            p.name = name.to_string();
            found = true;
        }
        Ok(())
    })?;
    Ok(found)
}

/// Deletes passkey `id` of the account; `false` if it has none by that id.
pub fn delete(store: &dyn Store, guid: &str, id: &str) -> Result<bool, WebError> {
    let mut found = false;
    account::modify(store, guid, false, &mut |a| {
        let before = a.passkeys.len();
        a.passkeys.retain(|p| p.id != id);
        found = a.passkeys.len() < before;
        Ok(())
    })?;
    Ok(found)
}

/// Options to answer MFA ticket `ticket` with one of its account's passkeys.
pub fn start_second_factor(store: &dyn Store, rp: &RelyingParty, ticket: &str, now: Millis) -> Result<serde_json::Value, WebError> {
    let t = web::ticket(store, ticket)?.ok_or(WebError::InvalidTicket)?;
    let account = account::get(store, &t.account)?.ok_or(WebError::InvalidTicket)?;
    if account.passkeys.is_empty() {
        return Err(WebError::PasskeyFailed);
    }
    let passkeys: Vec<Passkey> = account.passkeys.iter().map(|p| p.credential.clone()).collect();
    let (options, state) = rp.webauthn.start_passkey_authentication(&passkeys).map_err(unavailable)?;
    let challenge = Challenge::SecondFactor { account: account.guid.clone(), state };
    save(store, second_factor_key(ticket), &challenge, t.expires_at.min(now.saturating_add(CHALLENGE_TTL_MS)))?;
    public_key_json(&options.public_key)
}

/// Answers MFA ticket `ticket` with a passkey assertion: on success the ticket is consumed and
/// the session opened in one write (as for a code), and the passkey's counter written back.
pub fn finish_second_factor(
    store: &dyn Store,
    rp: &RelyingParty,
    ticket: &str,
    credential: &PublicKeyCredential,
    session_ttl_ms: Millis,
    now: Millis,
) -> Result<(BearerToken, AccountSession, Account), WebError> {
    let t = web::ticket(store, ticket)?.ok_or(WebError::InvalidTicket)?;
    let Some(Challenge::SecondFactor { account: guid, state }) = take(store, &second_factor_key(ticket))? else {
        return Err(WebError::PasskeyFailed);
    };
    if guid != t.account {
        return Err(WebError::PasskeyFailed);
    }
    let result = rp.webauthn.finish_passkey_authentication(credential, &state).map_err(|e| {
        tracing::info!(error = %e, "passkey second factor refused");
        WebError::PasskeyFailed
    })?;
    let account = record_use(store, &guid, &result, now)?;
    let origin = Origin { ip: t.ip.clone(), user_agent: t.user_agent.clone() };
    match web::consume_ticket_into_session(store, ticket, &account, &origin, session_ttl_ms, now)? {
        Some((token, s)) => Ok((token, s, account)),
        None => Err(WebError::InvalidTicket),
    }
}

/// Options for a passwordless login, and the challenge id to send back with the credential.
pub fn start_login(store: &dyn Store, rp: &RelyingParty, now: Millis) -> Result<(String, serde_json::Value), WebError> {
    let (options, state) = rp.webauthn.start_discoverable_authentication().map_err(unavailable)?;
    let id = random_id().map_err(unavailable)?;
    save(store, login_key(&id), &Challenge::Login { state }, now.saturating_add(CHALLENGE_TTL_MS))?;
    Ok((id, public_key_json(&options.public_key)?))
}

/// Verifies a passwordless login: the credential names its account (user handle), must be one
/// of that account's passkeys, and must verify the user. Returns the account (the caller
/// admits it and opens the session as for a password login).
pub fn finish_login(
    store: &dyn Store,
    rp: &RelyingParty,
    challenge_id: &str,
    credential: &PublicKeyCredential,
    now: Millis,
) -> Result<Account, WebError> {
    let Some(Challenge::Login { state }) = take(store, &login_key(challenge_id))? else {
        return Err(WebError::PasskeyFailed);
    };
    let (user, cred_id) = rp.webauthn.identify_discoverable_authentication(credential).map_err(|_| WebError::PasskeyFailed)?;
    let account = by_user_handle(store, &user)?.ok_or(WebError::PasskeyFailed)?;
    let passkey = account.passkeys.iter().find(|p| p.credential.cred_id().as_slice() == cred_id).ok_or(WebError::PasskeyFailed)?;
    let result = rp.webauthn.finish_discoverable_authentication_v2(credential, state, &passkey.credential).map_err(|e| {
        tracing::info!(error = %e, "passkey login refused");
        WebError::PasskeyFailed
    })?;
    record_use(store, &account.guid, &result, now)
}

/// The account whose WebAuthn user handle is `user` (the pointer checked against the account).
fn by_user_handle(store: &dyn Store, user: &Uuid) -> Result<Option<Account>, StoreError> {
    let Some(guid) = store.get(Cf::AccountNames, &user_handle_key(user))? else { return Ok(None) };
    let account = account::get(store, &String::from_utf8_lossy(&guid))?;
    let handle = user.to_string();
    Ok(account.filter(|a| a.webauthn_id.as_deref() == Some(handle.as_str())))
}

/// Writes back the used passkey's counter and backup state, and when it was used (durably,
/// before the login is answered: a replayed assertion then meets the higher counter).
fn record_use(store: &dyn Store, guid: &str, result: &webauthn_rs::prelude::AuthenticationResult, now: Millis) -> Result<Account, WebError> {
    let mut used = false;
    let account = account::modify(store, guid, false, &mut |a| {
        used = false;
        for p in a.passkeys.iter_mut() {
            if p.credential.update_credential(result).is_some() {
                p.last_used_at = Some(now);
                used = true;
            }
        }
        Ok(())
    })?;
    // The credential was removed while the ceremony ran: refuse.
    if used { Ok(account) } else { Err(WebError::PasskeyFailed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relying_party_takes_exact_origins_only() {
        let ok = WebauthnConfig {
            rp_id: "localhost".into(),
            rp_name: "sigil".into(),
            allowed_origins: vec!["http://localhost:16127".into(), "http://localhost:8080".into()],
        };
        assert!(RelyingParty::new(&ok).is_ok());
        let mut bad = ok.clone();
        bad.allowed_origins = vec![];
        assert!(RelyingParty::new(&bad).is_err());
        bad.allowed_origins = vec!["not a url".into()];
        assert!(RelyingParty::new(&bad).is_err());
        bad.allowed_origins = vec!["https://example.com".into()];
        assert!(RelyingParty::new(&bad).is_err(), "rp_id localhost does not fit example.com");
    }

    #[test]
    fn challenge_keys_differ_by_purpose() {
        assert_ne!(registration_key(b"k"), second_factor_key("k"));
        assert_ne!(second_factor_key("k"), login_key("k"));
        assert_eq!(user_handle_key(&Uuid::nil()), b"w:00000000-0000-0000-0000-000000000000");
    }
}
