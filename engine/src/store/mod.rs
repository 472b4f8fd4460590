//! Persistence: the [`Store`] trait, its embedded RocksDB implementation (one node) and its
//! Redis Cluster implementation (cluster mode, `redis.rs`, which restates these guarantees
//! per hash slot).
//!
//! The store is a set of key/value column families ([`Cf`]) with four guarantees the domain
//! builds on:
//! - a [`Batch`] commits atomically, so a record and its secondary-index entries (e.g. a
//!   session and its "sessions of this owner" entry) never disagree;
//! - [`Store::take`] consumes a key and commits a batch in one step, with exactly one winner
//!   among any number of concurrent takers (single-use phrases, tickets, challenges);
//! - a record written with an expiry reads as absent from that instant on, and the backend
//!   reclaims its space later (RocksDB when it next compacts the record's file, Redis by its
//!   own key expiry);
//! - a write that returned `Ok` survives `kill -9` (see [`Durability`]).

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "rocksdb")]
mod rocks;
mod observed;

#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_NAMESPACE, RedisOptions, RedisStore};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksOptions, RocksStore};
pub use observed::{Observed, StoreObserver};

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the store's and the wire's unit of time.
pub type Millis = u64;

/// Now, in [`Millis`].
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// The kinds of record, one column family each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// Issued, not yet used login phrases (Flux `activeloginphrases`).
    Phrases,
    /// Wallet sessions by credential (Flux `loggedusers`).
    Sessions,
    /// Index: owner ‖ 0x00 ‖ session key → empty.
    SessionsByOwner,
    /// Signatures handed over by `/id/providesign` (Flux `activesignatures`).
    Signatures,
    /// App name → owner identity.
    AppOwners,
    /// Store metadata (schema version, readiness probe).
    Meta,
    /// A login's signature for the websocket push, for 60 s after the login.
    LoginSignatures,
    /// Accounts by guid.
    Accounts,
    /// Index: `u:` lowercase username or `e:` lowercase email → account guid (uniqueness).
    AccountNames,
    /// Authentication groups by name.
    Groups,
    /// Index: a session's public id → its key in [`Cf::Sessions`] (account sessions only).
    SessionIds,
    /// A session's last authenticated use (u64 BE millis), written without fsync.
    SessionActivity,
    /// Rate-limit and failure counters (fixed windows), shared by every front.
    Counters,
    /// Short-lived single-use tickets by SHA-256 of their secret (`/v1` MFA tickets).
    Tickets,
    /// The OAuth2 provider: clients, authorization codes, consents, refresh-token families.
    OAuth,
}

impl Cf {
    pub const ALL: [Cf; 15] = [
        Cf::Phrases,
        Cf::Sessions,
        Cf::SessionsByOwner,
        Cf::Signatures,
        Cf::AppOwners,
        Cf::Meta,
        Cf::LoginSignatures,
        Cf::Accounts,
        Cf::AccountNames,
        Cf::Groups,
        Cf::SessionIds,
        Cf::SessionActivity,
        Cf::Counters,
        Cf::Tickets,
        Cf::OAuth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Phrases => "phrases",
            Cf::Sessions => "sessions",
            Cf::SessionsByOwner => "sessions_by_owner",
            Cf::Signatures => "signatures",
            Cf::AppOwners => "app_owners",
            Cf::Meta => "meta",
            Cf::LoginSignatures => "login_signatures",
            Cf::Accounts => "accounts",
            Cf::AccountNames => "account_names",
            Cf::Groups => "groups",
            Cf::SessionIds => "session_ids",
            Cf::SessionActivity => "session_activity",
            Cf::Counters => "counters",
            Cf::Tickets => "tickets",
            Cf::OAuth => "oauth",
        }
    }
}

/// How hard a commit is pushed to disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Every commit is fsynced before it returns: it survives `kill -9` and power loss.
    /// Concurrent commits share one fsync (RocksDB's write groups), which is the group commit.
    #[default]
    Fsync,
    /// Commits reach the write-ahead log in the OS page cache before they return: they survive
    /// `kill -9` of sigil but not a crash of the machine. The WAL is fsynced every second.
    Buffered,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("the store is closed (sigil is shutting down)")]
    Closed,
    #[error("corrupt record in {cf}: {what}")]
    Corrupt { cf: &'static str, what: &'static str },
}

/// One write inside a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { cf: Cf, key: Vec<u8>, value: Vec<u8>, expires_at: Option<Millis> },
    Delete { cf: Cf, key: Vec<u8> },
}

/// Writes that commit together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
    relaxed: bool,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a record that never expires.
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into(), expires_at: None });
        self
    }

    /// Writes a record that reads as absent from `expires_at` on.
    pub fn put_expiring(
        &mut self,
        cf: Cf,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        expires_at: Millis,
    ) -> &mut Self {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into(), expires_at: Some(expires_at) });
        self
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(Op::Delete { cf, key: key.into() });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Commit without waiting for fsync, whatever the store's [`Durability`]: the write is
    /// in the WAL in the OS page cache when the commit returns, so it survives `kill -9` but
    /// not a power cut. For records whose loss costs a retry, never a user's state (an issued
    /// login phrase: the client just asks for another).
    pub fn relaxed(&mut self) -> &mut Self {
        self.relaxed = true;
        self
    }

    pub fn is_relaxed(&self) -> bool {
        self.relaxed
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

/// What an [`Store::update`] decides, given the key's current live value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write nothing.
    Keep,
    /// Replace the value (with this expiry) and commit `then` in the same atomic write.
    Put { value: Vec<u8>, expires_at: Option<Millis>, then: Batch },
    /// Delete the key and commit `then` in the same atomic write.
    Delete { then: Batch },
}

/// The current live value of a key and its expiry, as an [`Store::update`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub value: Vec<u8>,
    pub expires_at: Option<Millis>,
}

/// A key and its (live) value, as returned by scans.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A store read that an async caller awaits (see [`Store::get_async`]).
pub type StoreFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>;

/// The persistence layer every actor talks to.
pub trait Store: Send + Sync + 'static {
    /// The live value under `key`, or `None` if absent or expired.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// [`Store::get`] for the hot read path of async handlers ("is this session valid?"). By
    /// default the answer is computed at once (RocksDB answers from memory in microseconds);
    /// a networked store returns a future that waits for the server without holding the
    /// caller's thread, so one worker serves many requests in flight.
    fn get_async(&self, cf: Cf, key: &[u8]) -> StoreFuture<Option<Vec<u8>>> {
        let answer = self.get(cf, key);
        Box::pin(std::future::ready(answer))
    }

    /// Commits `batch` atomically and durably (per the store's [`Durability`]).
    fn write(&self, batch: Batch) -> Result<(), StoreError>;

    /// Commits each of `batches` atomically (each as [`Store::write`] would), together where
    /// the backend can: RocksDB writes them as one group (one log append), a networked store
    /// sends them concurrently. For independent records written at once (a queue of login
    /// phrases). On an error, any of them may or may not have been written.
    fn write_each(&self, batches: Vec<Batch>) -> Result<(), StoreError> {
        batches.into_iter().try_for_each(|b| self.write(b))
    }

    /// If `key` holds a live value, deletes it and commits `then` in the same atomic write,
    /// and returns the value; otherwise writes nothing and returns `None`. Of any number of
    /// concurrent `take`s of one key, exactly one gets `Some`.
    fn take(&self, cf: Cf, key: &[u8], then: Batch) -> Result<Option<Vec<u8>>, StoreError> {
        let mut taken = self.take_each(cf, vec![(key.to_vec(), then)])?;
        Ok(taken.pop().flatten())
    }

    /// [`Store::take`] for many keys in one atomic, durable write (group commit): each key that
    /// holds a live value is deleted with its `then` batch; the answer says, in order, which
    /// were taken. A key named twice is taken by its first item only. The write is relaxed
    /// only if every `then` batch is.
    fn take_each(&self, cf: Cf, items: Vec<(Vec<u8>, Batch)>) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Reads `key`'s live value, lets `decide` choose a [`Change`], and commits it, all
    /// under the key's lock: no other `update`, `take` or `insert_new` of that key runs in
    /// between, so read-modify-write (counters, single-use codes kept inside a record, a flag
    /// that must flip once) is atomic. A deleted or expired key is seen as `None`, so an
    /// update never brings back a record that was revoked. Returns what `decide` chose.
    fn update(
        &self,
        cf: Cf,
        key: &[u8],
        relaxed: bool,
        decide: &mut dyn FnMut(Option<&Current>) -> Change,
    ) -> Result<Change, StoreError>;

    /// Commits `batch` only if none of the `absent` keys holds a live value (uniqueness:
    /// usernames, emails, group names); returns whether it committed.
    fn insert_new(&self, absent: &[(Cf, Vec<u8>)], batch: Batch) -> Result<bool, StoreError>;

    /// Live entries whose key starts with `prefix`, in key order, at most `limit` of them.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// About how many records `cf` holds (cheap; may count expired and recently deleted
    /// records until they are reclaimed).
    fn approximate_count(&self, cf: Cf) -> Result<u64, StoreError>;

    /// Makes every write committed so far, relaxed ones included, as durable as the store's
    /// [`Durability`] promises (with `Fsync`: one fsync of the log). This lets a group
    /// committer apply group N+1 while group N's fsync runs, acknowledging each group only
    /// after its `persist`.
    fn persist(&self) -> Result<(), StoreError>;

    /// Proves the store can still commit (for `/readyz`).
    fn ping(&self) -> Result<(), StoreError>;
}

/// On disk a value is `expires_at` (u64 BE, 0 = never) followed by the payload.
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
pub(crate) mod envelope {
    use super::Millis;

    pub const HEADER: usize = 8;

    pub fn wrap(value: &[u8], expires_at: Option<Millis>) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + value.len());
        out.extend_from_slice(&expires_at.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The expiry (if any) and payload of a stored value; `None` if it is too short.
    pub fn open(raw: &[u8]) -> Option<(Option<Millis>, &[u8])> {
        let (head, payload) = raw.split_first_chunk::<HEADER>()?;
        let at = u64::from_be_bytes(*head);
        Some(((at != 0).then_some(at), payload))
    }

    pub fn is_live(expires_at: Option<Millis>, now: Millis) -> bool {
        expires_at.is_none_or(|at| at > now)
    }
}


/// Key of a secondary-index entry: `owner ‖ 0x00 ‖ primary key`. Owners never contain NUL.
pub fn index_key(owner: &[u8], primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(owner.len() + 1 + primary.len());
    out.extend_from_slice(owner);
    out.push(0);
    out.extend_from_slice(primary);
    out
}

/// The scan prefix that lists every index entry of `owner`.
pub fn index_prefix(owner: &[u8]) -> Vec<u8> {
    let mut out = owner.to_vec();
    out.push(0);
    out
}

/// The primary key inside an index entry's key, given the owner it was listed under.
pub fn index_primary<'a>(index_key: &'a [u8], owner: &[u8]) -> Option<&'a [u8]> {
    index_key.get(owner.len() + 1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let raw = envelope::wrap(b"abc", Some(42));
        assert_eq!(envelope::open(&raw), Some((Some(42), &b"abc"[..])));
        let raw = envelope::wrap(b"", None);
        assert_eq!(envelope::open(&raw), Some((None, &b""[..])));
        assert_eq!(envelope::open(b"short"), None);
        assert!(envelope::is_live(None, u64::MAX));
        assert!(envelope::is_live(Some(10), 9));
        assert!(!envelope::is_live(Some(10), 10));
    }
}
