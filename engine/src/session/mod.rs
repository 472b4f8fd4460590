//! The one session record every dialect shares.
//!
//! A wallet login (Flux), an `/api/auth` token and a `/v1` cookie session are kinds of one
//! [`Session`], kept in one column family ([`Cf::Sessions`]), listed through one owner index
//! ([`Cf::SessionsByOwner`]: owner ‖ 0 ‖ key), expired by one mechanism (the record's store
//! expiry, plus an idle window read from [`Cf::SessionActivity`]) and ended by one function
//! ([`end`]). The dialects differ only in how a credential names its record:
//!
//! - a wallet session is keyed by its login phrase (FluxOS's credential is zelid + phrase +
//!   signature; the signature is checked against a stored hash);
//! - an account session (token or cookie) is keyed by [`account_key`]: a marker byte and the
//!   SHA-256 of the bearer secret, so the store never holds the secret. Its public handle
//!   (`_meta.guid`, `/v1` session id) is a separate random id, indexed in [`Cf::SessionIds`].
//!
//! On disk a wallet record is its JSON object (as before accounts existed) and an account
//! record is `b'a'` followed by JSON, so one byte tells the kinds apart.

pub mod agent;

use serde::{Deserialize, Serialize};

use crate::flux::session::FluxSession;
use crate::secret::secret_hash;
use crate::store::{Batch, Change, Cf, Millis, Store, StoreError, index_key, index_prefix, index_primary};

/// First byte of an account session's key: never the first byte of a login phrase (digits).
const ACCOUNT_KEY_MARKER: u8 = 0xff;
/// First byte of a stored account session.
const ACCOUNT_RECORD_MARKER: u8 = b'a';

/// Which dialect opened an account session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `/api/auth` access token.
    Token,
    /// `/v1` cookie or Bearer session.
    Web,
    /// An OAuth2 access token sigil issued to a client (accepted as Bearer on `/v1`).
    #[serde(rename = "oauth")]
    OAuth,
}

/// A pending SMS code of a session that still needs its second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsCode {
    /// hex SHA-256 of the six digits.
    pub hash: String,
    pub sent_at: Millis,
    pub expires_at: Millis,
}

impl SmsCode {
    /// The record of `code` sent at `now` (only its hash is kept).
    pub fn sent(code: &str, now: Millis) -> Self {
        use crate::account::factors;
        Self { hash: factors::code_hash(code), sent_at: now, expires_at: now + factors::SMS_CODE_TTL_MS }
    }

    /// Whether a new code may go out after `previous` (at most one per 30 s).
    pub fn may_resend(previous: Option<&SmsCode>, now: Millis) -> bool {
        previous.is_none_or(|p| now >= p.sent_at + crate::account::factors::SMS_RESEND_MS)
    }

    /// Whether `digits` (normalised) is this code and it has not expired (constant time).
    pub fn accepts(&self, digits: &str, now: Millis) -> bool {
        now < self.expires_at && crate::account::factors::code_matches(digits, &self.hash)
    }
}

/// A session opened by an account's password (token or cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSession {
    /// Public handle: listed, revoked by, logged. Never the secret.
    pub id: String,
    /// The account's guid.
    pub owner: String,
    pub dialect: Dialect,
    pub created_at: Millis,
    /// Absolute end.
    pub expire_at: Millis,
    /// Sliding idle window: dead once unused for this long. `None`: no idle limit.
    pub idle_ms: Option<Millis>,
    #[serde(default)]
    pub onetime: bool,
    #[serde(default)]
    pub hide_session: bool,
    /// False until the second factor succeeds (accounts that have one).
    pub verified: bool,
    pub last_verified: Option<Millis>,
    pub ip: String,
    /// The User-Agent header as sent (cut to 512 bytes); parsed when listed.
    pub user_agent: String,
    /// Second-factor attempts used; at [`MAX_2FA_ATTEMPTS`] the session is revoked.
    #[serde(default)]
    pub failed_2fa: u8,
    #[serde(default)]
    pub sms: Option<SmsCode>,
    /// Sudo mode (`/v1`): bound to this session by living in its record.
    #[serde(default)]
    pub sudo: Option<SudoGrant>,
    /// OAuth2 access tokens: the client and the scopes granted.
    #[serde(default)]
    pub oauth: Option<OAuthGrant>,
}

/// What an OAuth2 access token was granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthGrant {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The refresh-token family that issued it (`offline_access` grants): revoking the family
    /// ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

/// A sudo-mode grant: the hash of its token and when it lapses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SudoGrant {
    /// hex SHA-256 of the sudo token.
    pub hash: String,
    pub until: Millis,
}

/// Wrong second-factor codes a session survives.
pub const MAX_2FA_ATTEMPTS: u8 = 5;

/// Any kind of session.
// A session is a short-lived value decoded per request and moved, not stored in bulk: boxing
// the account variant would only add an allocation to every lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    Wallet(FluxSession),
    Account(AccountSession),
}

impl Session {
    pub fn owner(&self) -> &str {
        match self {
            Session::Wallet(s) => &s.zelid,
            Session::Account(s) => &s.owner,
        }
    }

    pub fn created_at(&self) -> Millis {
        match self {
            Session::Wallet(s) => s.created_at,
            Session::Account(s) => s.created_at,
        }
    }

    pub fn expire_at(&self) -> Millis {
        match self {
            Session::Wallet(s) => s.expire_at,
            Session::Account(s) => s.expire_at,
        }
    }

    /// The public id, if the kind has one apart from its key.
    fn public_id(&self) -> Option<&str> {
        match self {
            Session::Wallet(_) => None,
            Session::Account(s) => Some(&s.id),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let bad = |_| corrupt("unencodable session");
        match self {
            Session::Wallet(s) => serde_json::to_vec(s).map_err(bad),
            Session::Account(s) => {
                let mut out = vec![ACCOUNT_RECORD_MARKER];
                serde_json::to_writer(&mut out, s).map_err(bad)?;
                Ok(out)
            }
        }
    }

    pub fn decode(raw: &[u8]) -> Result<Self, StoreError> {
        match raw.split_first() {
            Some((&ACCOUNT_RECORD_MARKER, json)) => {
                serde_json::from_slice(json).map(Session::Account).map_err(|_| corrupt("undecodable account session"))
            }
            _ => serde_json::from_slice(raw).map(Session::Wallet).map_err(|_| corrupt("undecodable wallet session")),
        }
    }
}

pub(crate) fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt { cf: "sessions", what }
}

/// The store key of the account session whose bearer secret is `secret`.
pub fn account_key(secret: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(ACCOUNT_KEY_MARKER);
    key.extend_from_slice(&secret_hash(secret.as_bytes()));
    key
}

/// The writes that open `session` under `key`: the record and its index entries, all
/// expiring with the session.
pub fn open_writes(batch: &mut Batch, key: &[u8], session: &Session) -> Result<(), StoreError> {
    let at = session.expire_at();
    batch.put_expiring(Cf::Sessions, key.to_vec(), session.encode()?, at);
    batch.put_expiring(Cf::SessionsByOwner, index_key(session.owner().as_bytes(), key), Vec::new(), at);
    if let Some(id) = session.public_id() {
        batch.put_expiring(Cf::SessionIds, id.as_bytes().to_vec(), key.to_vec(), at);
    }
    Ok(())
}

/// The writes that end `session` (its record is deleted by the caller): its index entries, its
/// activity, its push signature.
fn end_writes(batch: &mut Batch, key: &[u8], session: &Session) {
    batch.delete(Cf::SessionsByOwner, index_key(session.owner().as_bytes(), key));
    batch.delete(Cf::SessionActivity, key.to_vec());
    match session {
        Session::Wallet(_) => {
            batch.delete(Cf::LoginSignatures, key.to_vec());
        }
        Session::Account(s) => {
            batch.delete(Cf::SessionIds, s.id.as_bytes().to_vec());
        }
    }
}

/// The live session under `key`.
pub fn get(store: &dyn Store, key: &[u8]) -> Result<Option<Session>, StoreError> {
    store.get(Cf::Sessions, key)?.map(|raw| Session::decode(&raw)).transpose()
}

/// [`get`] for async callers: the hot read path waits for a networked store without holding
/// a thread (see [`Store::get_async`]).
pub async fn get_async(store: &dyn Store, key: &[u8]) -> Result<Option<Session>, StoreError> {
    store.get_async(Cf::Sessions, key).await?.map(|raw| Session::decode(&raw)).transpose()
}

/// The key of the account session whose public id is `id`.
///
/// The index entry alone is not trusted: the session it names must carry that id (on a store
/// without cross-key transactions an entry can outlive, or precede, its record).
pub fn key_of_id(store: &dyn Store, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(key) = store.get(Cf::SessionIds, id.as_bytes())? else { return Ok(None) };
    Ok(get(store, &key)?.filter(|s| s.public_id() == Some(id)).map(|_| key))
}

/// Ends the session under `key` — the one revocation path of every kind. Atomic with any
/// concurrent update of the record: once this returns, no request can use or revive it.
/// Returns the session that was ended, if one was live. `only_if` may refuse (e.g. "only the
/// caller's own"), in which case nothing is written.
pub fn end(store: &dyn Store, key: &[u8], only_if: &dyn Fn(&Session) -> bool) -> Result<Option<Session>, StoreError> {
    end_with(store, key, false, only_if)
}

fn end_with(store: &dyn Store, key: &[u8], relaxed: bool, only_if: &dyn Fn(&Session) -> bool) -> Result<Option<Session>, StoreError> {
    let mut ended = None;
    let mut failure = None;
    store.update(Cf::Sessions, key, relaxed, &mut |current| {
        let Some(current) = current else { return Change::Keep };
        match Session::decode(&current.value) {
            Ok(s) if only_if(&s) => {
                let mut then = Batch::new();
                end_writes(&mut then, key, &s);
                ended = Some(s);
                Change::Delete { then }
            }
            Ok(_) => Change::Keep,
            Err(e) => {
                failure = Some(e);
                Change::Keep
            }
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(ended),
    }
}

/// Ends every session in `keyed` (bulk revocation: logout-all, account deletion), each
/// atomically as [`end`] does, with one fsync for all of them at the end. Sessions that ended
/// concurrently are skipped; returns how many this call ended.
pub fn end_many(store: &dyn Store, keyed: &[(Vec<u8>, Session)]) -> Result<usize, StoreError> {
    end_keys(store, keyed.iter().map(|(key, _)| key))
}

/// [`end_many`] by keys alone (sessions some other record lists, e.g. an OAuth2 grant's);
/// keys of sessions already gone are skipped.
pub fn end_keys<K: AsRef<[u8]>>(store: &dyn Store, keys: impl IntoIterator<Item = K>) -> Result<usize, StoreError> {
    let mut n = 0;
    for key in keys {
        n += usize::from(end_with(store, key.as_ref(), true, &|_| true)?.is_some());
    }
    store.persist()?;
    Ok(n)
}

/// Every live session of `owner` (a zelid or an account guid), oldest first, with its key.
pub fn of_owner(store: &dyn Store, owner: &str) -> Result<Vec<(Vec<u8>, Session)>, StoreError> {
    let owner_bytes = owner.as_bytes();
    let mut out = Vec::new();
    for (k, _) in store.scan_prefix(Cf::SessionsByOwner, &index_prefix(owner_bytes), usize::MAX)? {
        let Some(key) = index_primary(&k, owner_bytes) else { continue };
        // An entry is a pointer, checked against the record it names (see `key_of_id`).
        if let Some(s) = get(store, key)?
            && s.owner() == owner
        {
            out.push((key.to_vec(), s));
        }
    }
    out.sort_by_key(|(_, s)| s.created_at());
    Ok(out)
}

/// Every live session on this store, oldest first, with its key.
pub fn all(store: &dyn Store) -> Result<Vec<(Vec<u8>, Session)>, StoreError> {
    let mut out = store
        .scan_prefix(Cf::Sessions, b"", usize::MAX)?
        .into_iter()
        .map(|(k, v)| Ok((k, Session::decode(&v)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by_key(|(_, s)| s.created_at());
    Ok(out)
}

/// Every live account session (tokens and cookie sessions, not wallet sessions), oldest
/// first, with its key: their keys share the marker byte, so this scans only them.
pub fn all_accounts(store: &dyn Store) -> Result<Vec<(Vec<u8>, Session)>, StoreError> {
    let mut out = store
        .scan_prefix(Cf::Sessions, &[ACCOUNT_KEY_MARKER], usize::MAX)?
        .into_iter()
        .map(|(k, v)| Ok((k, Session::decode(&v)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by_key(|(_, s)| s.created_at());
    Ok(out)
}

/// When the session under `key` was last used: its recorded activity, or its creation.
pub fn last_activity(store: &dyn Store, key: &[u8], created_at: Millis) -> Result<Millis, StoreError> {
    Ok(store
        .get(Cf::SessionActivity, key)?
        .and_then(|raw| <[u8; 8]>::try_from(raw.as_slice()).ok())
        .map_or(created_at, u64::from_be_bytes)
        .max(created_at))
}

/// How stale a recorded activity may get before a use writes it again: a hundredth of the
/// idle window, at most a minute. A window of 14 days is then extended at most once a minute
/// per session instead of once per request, and the idle window is honoured to within 1 %.
pub fn touch_granularity(idle_ms: Millis) -> Millis {
    (idle_ms / 100).min(60_000)
}

/// Records an authenticated use of an account session (its sliding window, or, without one,
/// just its "last used" time for listings, to the minute).
pub fn record_use(store: &dyn Store, key: &[u8], s: &AccountSession, last: Millis, now: Millis) -> Result<(), StoreError> {
    touch(store, key, last, now, s.idle_ms.unwrap_or(6_000_000), s.expire_at)
}

/// Records a use of the session under `key` at `now` when the recorded one is older than the
/// granularity. Relaxed (no fsync): it survives `kill -9`; a power cut may roll it back, which
/// only makes the session lapse sooner — never later — so losing it is safe. A separate
/// record, not the session's: a use racing a logout can at worst leave an orphan activity
/// entry (expiring with the session), never revive the session.
pub fn touch(store: &dyn Store, key: &[u8], last: Millis, now: Millis, idle_ms: Millis, expire_at: Millis) -> Result<(), StoreError> {
    if now.saturating_sub(last) < touch_granularity(idle_ms).max(1) {
        return Ok(());
    }
    let mut b = Batch::new();
    b.put_expiring(Cf::SessionActivity, key.to_vec(), now.to_be_bytes().to_vec(), expire_at);
    b.relaxed();
    store.write(b)
}

/// Who opens an account session, and from where.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: String,
    pub user_agent: String,
}

impl AccountSession {
    /// A new session of `dialect` for the account `owner` and its bearer token (the record is
    /// not written: see [`open_writes`]). `verified` is false while a second factor is due.
    pub fn mint(
        owner: &str,
        dialect: Dialect,
        origin: &Origin,
        lifetime_ms: Millis,
        idle_ms: Option<Millis>,
        verified: bool,
        now: Millis,
    ) -> Result<(crate::secret::BearerToken, Vec<u8>, Self), crate::secret::RandomError> {
        let token = crate::secret::BearerToken::generate()?;
        let key = account_key(&token.secret);
        let s = AccountSession {
            id: token.id.clone(),
            owner: owner.to_string(),
            dialect,
            created_at: now,
            expire_at: now.saturating_add(lifetime_ms),
            idle_ms,
            onetime: false,
            hide_session: false,
            verified,
            last_verified: verified.then_some(now),
            ip: origin.ip.clone(),
            user_agent: agent::clip(&origin.user_agent),
            failed_2fa: 0,
            sms: None,
            sudo: None,
            oauth: None,
        };
        Ok((token, key, s))
    }

    /// Whether the session is past its idle window at `now`, given its last use.
    pub fn idle_expired(&self, last_activity: Millis, now: Millis) -> bool {
        self.idle_ms.is_some_and(|idle| now > last_activity.saturating_add(idle))
    }

    /// When the session dies if unused from `last_activity` on.
    pub fn dies_at(&self, last_activity: Millis) -> Millis {
        self.idle_ms.map_or(self.expire_at, |idle| last_activity.saturating_add(idle).min(self.expire_at))
    }
}

/// Rewrites the account session under `key` with `edit`, atomically: `edit` sees the live
/// record (or `None` if it ended) and returns what to do. Used for 2fa state changes.
pub fn update_account(
    store: &dyn Store,
    key: &[u8],
    edit: &mut dyn FnMut(Option<&mut AccountSession>) -> Edit,
) -> Result<Option<AccountSession>, StoreError> {
    let mut result = None;
    let mut failure = None;
    store.update(Cf::Sessions, key, false, &mut |current| {
        result = None;
        let decoded = current.map(|c| (Session::decode(&c.value), c.expires_at));
        match decoded {
            None => {
                let _ = edit(None);
                Change::Keep
            }
            Some((Err(e), _)) => {
                failure = Some(e);
                Change::Keep
            }
            Some((Ok(Session::Wallet(_)), _)) => {
                let _ = edit(None);
                Change::Keep
            }
            Some((Ok(Session::Account(mut s)), expires_at)) => match edit(Some(&mut s)) {
                Edit::Keep => {
                    result = Some(s);
                    Change::Keep
                }
                Edit::Save => match Session::Account(s.clone()).encode() {
                    Ok(value) => {
                        result = Some(s);
                        Change::Put { value, expires_at, then: Batch::new() }
                    }
                    Err(e) => {
                        failure = Some(e);
                        Change::Keep
                    }
                },
                Edit::End => {
                    let mut then = Batch::new();
                    let ended = Session::Account(s);
                    end_writes(&mut then, key, &ended);
                    Change::Delete { then }
                }
            },
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// What [`update_account`]'s edit decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Keep,
    Save,
    /// Revoke the session.
    End,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, RocksStore};

    fn token(owner: &str, id: &str, now: Millis) -> AccountSession {
        AccountSession {
            id: id.into(),
            owner: owner.into(),
            dialect: Dialect::Token,
            created_at: now,
            expire_at: now + 60_000,
            idle_ms: Some(10_000),
            onetime: false,
            hide_session: false,
            verified: true,
            last_verified: Some(now),
            ip: "127.0.0.1".into(),
            user_agent: String::new(),
            failed_2fa: 0,
            sms: None,
            sudo: None,
            oauth: None,
        }
    }

    #[test]
    fn every_kind_lives_in_one_registry_and_ends_one_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let now = crate::store::now_ms();
        let wallet = FluxSession {
            zelid: "1wallet".into(),
            login_phrase: format!("{now}abc"),
            signature_hash: "00".into(),
            created_at: now,
            expire_at: now + 60_000,
        };
        let token_key = account_key("secret-a");
        let mut b = Batch::new();
        open_writes(&mut b, wallet.login_phrase.as_bytes(), &Session::Wallet(wallet.clone())).unwrap();
        open_writes(&mut b, &token_key, &Session::Account(token("guid-a", "id-a", now))).unwrap();
        store.write(b).unwrap();

        assert_eq!(all(&store).unwrap().len(), 2, "one registry holds both kinds");
        assert_eq!(all_accounts(&store).unwrap().len(), 1);
        assert_eq!(of_owner(&store, "1wallet").unwrap().len(), 1);
        assert_eq!(key_of_id(&store, "id-a").unwrap(), Some(token_key.clone()));
        assert_eq!(get(&store, wallet.login_phrase.as_bytes()).unwrap(), Some(Session::Wallet(wallet)));

        touch(&store, &token_key, now, now + 5_000, 10_000, now + 60_000).unwrap();
        assert_eq!(last_activity(&store, &token_key, now).unwrap(), now + 5_000);
        let ended = end(&store, &token_key, &|s| s.owner() == "guid-a").unwrap();
        assert!(matches!(ended, Some(Session::Account(_))));
        assert_eq!(key_of_id(&store, "id-a").unwrap(), None, "the public id goes with it");
        assert_eq!(store.get(Cf::SessionActivity, &token_key).unwrap(), None, "and its activity");
        assert!(of_owner(&store, "guid-a").unwrap().is_empty());
        // An update after the end sees nothing and writes nothing: no revival.
        let after = update_account(&store, &token_key, &mut |s| if s.is_some() { Edit::Save } else { Edit::Keep }).unwrap();
        assert_eq!(after, None);
        assert_eq!(get(&store, &token_key).unwrap(), None);
    }

    #[test]
    fn touches_are_rate_limited_by_the_granularity() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let now = crate::store::now_ms();
        let key = account_key("s");
        // 10 s window: granularity 100 ms.
        assert_eq!(touch_granularity(10_000), 100);
        assert_eq!(touch_granularity(14 * 86_400_000), 60_000);
        touch(&store, &key, now, now + 50, 10_000, now + 60_000).unwrap();
        assert_eq!(last_activity(&store, &key, now).unwrap(), now, "50 ms is within the granularity: no write");
        touch(&store, &key, now, now + 150, 10_000, now + 60_000).unwrap();
        assert_eq!(last_activity(&store, &key, now).unwrap(), now + 150);
    }
}
