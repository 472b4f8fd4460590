//! Wallet sessions, login phrases, provided signatures and app owners in the [`Store`].
//!
//! A session is keyed by its login phrase (FluxOS sessions are per zelid + phrase, and the
//! phrase is what the websocket and `logoutspecificsession` look up), indexed by zelid in the
//! same write. Only the SHA-256 of the login signature is kept with the session; the plain
//! signature lives 60 s in its own expiring record for the websocket push (decision 4: a stored
//! timestamp, not a timer, so it survives a restart).

use serde::{Deserialize, Serialize};

use super::login::SignedPhrase;
use crate::secret::{constant_time_eq, random_base36, secret_hash};
use crate::session::Session;
use crate::store::{Batch, Cf, Millis, Store, StoreError, index_key};

/// How long after a login its signature is still pushed to `/ws/id/{phrase}`.
pub const PUSH_SIGNATURE_WINDOW_MS: Millis = 60_000;

/// How long a provided signature waits for `/ws/sign/{identifier}`.
pub const PROVIDED_SIGNATURE_TTL_MS: Millis = 15 * 60_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FluxSession {
    pub zelid: String,
    #[serde(rename = "p")]
    pub login_phrase: String,
    /// hex SHA-256 of the login signature.
    #[serde(rename = "h")]
    pub signature_hash: String,
    /// The phrase's timestamp (FluxOS's `createdAt`).
    #[serde(rename = "c")]
    pub created_at: Millis,
    /// `created_at` + `flux.session_ttl`.
    #[serde(rename = "e")]
    pub expire_at: Millis,
}

impl FluxSession {
    /// Whether `signature` is the one this session was opened with (constant time).
    pub fn signed_with(&self, signature: &str) -> bool {
        let presented = hex::encode(secret_hash(signature.as_bytes()));
        constant_time_eq(presented.as_bytes(), self.signature_hash.as_bytes())
    }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt { cf: "sessions", what }
}

/// A phrase waiting to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePhrase {
    pub phrase: String,
    pub created_at: Millis,
    pub expire_at: Millis,
}

/// Issues and stores `n` new login phrases, written together ([`Store::write_each`]: one log
/// append on RocksDB) but each a record of its own.
pub fn issue_phrases(store: &dyn Store, now: Millis, ttl: Millis, n: usize) -> Result<Vec<ActivePhrase>, StoreError> {
    let mut phrases = Vec::with_capacity(n);
    let mut batches = Vec::with_capacity(n);
    for _ in 0..n {
        let phrase = crate::secret::login_phrase(now).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut b = Batch::new();
        b.put_expiring(Cf::Phrases, phrase.clone().into_bytes(), now.to_be_bytes().to_vec(), now + ttl);
        // A phrase lost to a power cut costs the client one more request; it still survives
        // kill -9. Sessions, which users rely on, keep the store's full durability.
        b.relaxed();
        batches.push(b);
        phrases.push(ActivePhrase { phrase, created_at: now, expire_at: now + ttl });
    }
    store.write_each(batches)?;
    Ok(phrases)
}

fn decode_phrase(key: &[u8], raw: &[u8], ttl: Millis) -> Option<ActivePhrase> {
    let created_at = u64::from_be_bytes(raw.try_into().ok()?);
    Some(ActivePhrase { phrase: String::from_utf8(key.to_vec()).ok()?, created_at, expire_at: created_at + ttl })
}

/// The phrase, if it is issued and unused.
pub fn active_phrase(store: &dyn Store, phrase: &str, ttl: Millis) -> Result<Option<ActivePhrase>, StoreError> {
    Ok(store.get(Cf::Phrases, phrase.as_bytes())?.and_then(|raw| decode_phrase(phrase.as_bytes(), &raw, ttl)))
}

/// Every issued, unused phrase.
pub fn active_phrases(store: &dyn Store, ttl: Millis) -> Result<Vec<ActivePhrase>, StoreError> {
    Ok(store
        .scan_prefix(Cf::Phrases, b"", usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| decode_phrase(&k, &v, ttl))
        .collect())
}

/// A verified login, encoded and ready to consume its phrase ([`prepare_opening`]).
#[derive(Debug, Clone)]
pub struct Opening {
    pub session: FluxSession,
    writes: Batch,
}

/// Encodes the session a verified login opens, and its writes: the session, its owner index
/// entry and the 60 s push signature. Done by the caller, so a group committer only commits.
pub fn prepare_opening(
    login: &SignedPhrase,
    created_at: Millis,
    session_ttl: Millis,
    now: Millis,
) -> Result<Opening, StoreError> {
    let session = FluxSession {
        zelid: login.zelid.clone(),
        login_phrase: login.phrase.clone(),
        signature_hash: hex::encode(secret_hash(login.signature.as_bytes())),
        created_at,
        expire_at: created_at + session_ttl,
    };
    let key = login.phrase.as_bytes();
    let mut writes = Batch::new();
    crate::session::open_writes(&mut writes, key, &Session::Wallet(session.clone()))?;
    writes.put_expiring(Cf::LoginSignatures, key.to_vec(), login.signature.clone().into_bytes(), now + PUSH_SIGNATURE_WINDOW_MS);
    Ok(Opening { session, writes })
}

/// Consumes the phrases and writes the sessions of a group of logins in one atomic write,
/// **not yet durable**: call [`Store::persist`] before acknowledging any of them. The answer
/// is in the order of `openings`; `None` where the phrase was already used or expired (a
/// phrase named twice in the group opens only its first session).
pub fn commit_openings(store: &dyn Store, openings: Vec<Opening>) -> Result<Vec<Option<FluxSession>>, StoreError> {
    let mut sessions = Vec::with_capacity(openings.len());
    let mut items = Vec::with_capacity(openings.len());
    for Opening { session, mut writes } in openings {
        writes.relaxed();
        items.push((session.login_phrase.clone().into_bytes(), writes));
        sessions.push(session);
    }
    let taken = store.take_each(Cf::Phrases, items)?;
    Ok(sessions.into_iter().zip(taken).map(|(s, t)| t.map(|_| s)).collect())
}

/// Writes `count` synthetic sessions (random 13-digit-prefixed phrases and zelids; their
/// signature hash matches no signature) in large batches, for restart and storage benchmarks.
pub fn seed_synthetic(store: &dyn Store, count: u64, now: Millis, session_ttl: Millis) -> Result<(), StoreError> {
    const CHUNK: u64 = 10_000;
    let random = |n| random_base36(n).map_err(|e| StoreError::Backend(e.to_string()));
    let mut written = 0;
    while written < count {
        let mut b = Batch::new();
        for _ in 0..CHUNK.min(count - written) {
            let session = FluxSession {
                zelid: format!("1seed{}", random(28)?),
                login_phrase: format!("{now:013}{}", random(40)?),
                signature_hash: hex::encode(secret_hash(random(16)?.as_bytes())),
                created_at: now,
                expire_at: now + session_ttl,
            };
            let value = serde_json::to_vec(&session).map_err(|_| corrupt("unencodable session"))?;
            let key = session.login_phrase.as_bytes();
            b.put_expiring(Cf::Sessions, key.to_vec(), value, session.expire_at);
            b.put_expiring(Cf::SessionsByOwner, index_key(session.zelid.as_bytes(), key), Vec::new(), session.expire_at);
        }
        b.relaxed();
        store.write(b)?;
        written += CHUNK.min(count - written);
    }
    Ok(())
}

/// The live wallet session opened with `phrase`.
pub fn session(store: &dyn Store, phrase: &str) -> Result<Option<FluxSession>, StoreError> {
    Ok(wallet(crate::session::get(store, phrase.as_bytes())?))
}

/// [`session`] for async callers (the `zelidauth` check of every authenticated request).
pub async fn session_async(store: &dyn Store, phrase: &str) -> Result<Option<FluxSession>, StoreError> {
    Ok(wallet(crate::session::get_async(store, phrase.as_bytes()).await?))
}

fn wallet(s: Option<Session>) -> Option<FluxSession> {
    match s {
        Some(Session::Wallet(w)) => Some(w),
        _ => None,
    }
}

fn wallets(keyed: Vec<(Vec<u8>, Session)>) -> Vec<FluxSession> {
    keyed.into_iter().filter_map(|(_, s)| wallet(Some(s))).collect()
}

/// The login signature of `phrase`'s session while the 60 s push window lasts.
pub fn push_signature(store: &dyn Store, phrase: &str) -> Result<Option<String>, StoreError> {
    Ok(store.get(Cf::LoginSignatures, phrase.as_bytes())?.and_then(|raw| String::from_utf8(raw).ok()))
}

/// Every live session of `zelid`, oldest phrase first.
pub fn sessions_of(store: &dyn Store, zelid: &str) -> Result<Vec<FluxSession>, StoreError> {
    Ok(wallets(crate::session::of_owner(store, zelid)?))
}

/// Every live wallet session on this node.
pub fn all_sessions(store: &dyn Store) -> Result<Vec<FluxSession>, StoreError> {
    Ok(wallets(crate::session::all(store)?))
}

/// Ends the session opened with `phrase` (if `zelid` is given, only if it is that zelid's),
/// through the one revocation path of every session kind. Returns the session ended.
pub fn logout(store: &dyn Store, phrase: &str, zelid: Option<&str>) -> Result<Option<FluxSession>, StoreError> {
    let only = |s: &Session| matches!(s, Session::Wallet(w) if zelid.is_none_or(|z| z == w.zelid));
    Ok(wallet(crate::session::end(store, phrase.as_bytes(), &only)?))
}

/// Ends every wallet session of `zelid`; returns them.
pub fn logout_all_of(store: &dyn Store, zelid: &str) -> Result<Vec<FluxSession>, StoreError> {
    let keyed: Vec<_> = crate::session::of_owner(store, zelid)?.into_iter().filter(|(_, s)| matches!(s, Session::Wallet(_))).collect();
    crate::session::end_many(store, &keyed)?;
    Ok(wallets(keyed))
}

/// Ends every wallet session on this node (FluxOS's `logoutallusers`); returns them.
pub fn logout_everyone(store: &dyn Store) -> Result<Vec<FluxSession>, StoreError> {
    let keyed: Vec<_> = crate::session::all(store)?.into_iter().filter(|(_, s)| matches!(s, Session::Wallet(_))).collect();
    crate::session::end_many(store, &keyed)?;
    Ok(wallets(keyed))
}

/// A signature handed over through `/id/providesign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvidedSignature {
    pub signature: String,
    pub identifier: String,
    #[serde(rename = "createdAt")]
    pub created_at: Millis,
    #[serde(rename = "expireAt")]
    pub expire_at: Millis,
    /// A 24-hex id in the shape of the MongoDB `_id` FluxOS returns.
    #[serde(rename = "_id")]
    pub id: String,
}

/// Stores a provided signature under its identifier for 15 minutes (a later one replaces it).
pub fn provide_signature(store: &dyn Store, signed: &SignedPhrase, now: Millis) -> Result<ProvidedSignature, StoreError> {
    let id = random_base36(24).map_err(|e| StoreError::Backend(e.to_string()))?;
    let provided = ProvidedSignature {
        signature: signed.signature.clone(),
        identifier: super::login::sign_identifier(&signed.zelid, &signed.phrase),
        created_at: now,
        expire_at: now + PROVIDED_SIGNATURE_TTL_MS,
        id,
    };
    let value = serde_json::to_vec(&provided).map_err(|_| corrupt("unencodable signature"))?;
    let mut b = Batch::new();
    b.put_expiring(Cf::Signatures, provided.identifier.clone().into_bytes(), value, provided.expire_at);
    store.write(b)?;
    Ok(provided)
}

pub fn provided_signature(store: &dyn Store, identifier: &str) -> Result<Option<ProvidedSignature>, StoreError> {
    store
        .get(Cf::Signatures, identifier.as_bytes())?
        .map(|raw| serde_json::from_slice(&raw).map_err(|_| corrupt("undecodable signature")))
        .transpose()
}

pub fn set_app_owner(store: &dyn Store, app: &str, owner: &str) -> Result<(), StoreError> {
    let mut b = Batch::new();
    b.put(Cf::AppOwners, app.as_bytes().to_vec(), owner.as_bytes().to_vec());
    store.write(b)
}

pub fn app_owner(store: &dyn Store, app: &str) -> Result<Option<String>, StoreError> {
    Ok(store.get(Cf::AppOwners, app.as_bytes())?.and_then(|v| String::from_utf8(v).ok()))
}

pub fn app_owners(store: &dyn Store) -> Result<Vec<(String, String)>, StoreError> {
    Ok(store
        .scan_prefix(Cf::AppOwners, b"", usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| Some((String::from_utf8(k).ok()?, String::from_utf8(v).ok()?)))
        .collect())
}
