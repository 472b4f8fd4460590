//! The embedded RocksDB implementation of [`Store`].

use std::collections::hash_map::DefaultHasher;
use std::ffi::CStr;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use rocksdb::compaction_filter::{CompactionFilter, Decision};
use rocksdb::compaction_filter_factory::{CompactionFilterContext, CompactionFilterFactory};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::{Batch, Change, Cf, Current, Durability, Entry, Millis, Op, Store, StoreError, envelope, now_ms};

/// Version of the on-disk layout, kept in `meta/schema`. Bump it with a migration.
const SCHEMA_VERSION: &[u8] = b"1";

/// Lock stripes that serialise conflicting writes to one key (take vs. take, update vs. take).
const STRIPES: usize = 64;

/// The family where stores written before 2026-12-02 kept an expiry schedule (time ‖ family ‖
/// key → empty, walked by a sweeper thread). Expired records are now dropped by compaction
/// instead ([`ExpiredRecords`]); an old store's schedule is dropped when it is opened.
const LEGACY_EXPIRY_SCHEDULE: &str = "expiry";

/// Families nothing writes with an expiry (accounts, their names, groups, app owners, the
/// store's metadata): no periodic rewrite for them. Were an expiring record written there, it
/// would still read as absent at once and be dropped by the next ordinary compaction.
const NEVER_EXPIRE: [Cf; 5] = [Cf::Accounts, Cf::AccountNames, Cf::Groups, Cf::AppOwners, Cf::Meta];

/// How the embedded store is opened.
#[derive(Debug, Clone, Copy)]
pub struct RocksOptions {
    pub durability: Durability,
    /// The longest a table file keeps records that expired before RocksDB rewrites it without
    /// them (RocksDB's periodic compaction). Files that take part in the ordinary compactions
    /// of a busy store are rewritten much sooner; this bounds the rest.
    pub reclaim_period: Duration,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self { durability: Durability::Fsync, reclaim_period: Duration::from_secs(3600) }
    }
}

/// Drops expired records whenever RocksDB compacts their file, so an expiring record costs one
/// write over its life (no schedule entry, no sweeper reading and deleting it later).
///
/// Reads already treat an expired record as absent; this only reclaims space. A removed record
/// becomes a tombstone until the bottom level, so an older version below it cannot reappear
/// (RocksDB's compaction_iterator.cc turns a removed entry into a deletion).
///
/// Stateless on purpose: RocksDB may call `create` from several compaction threads at once.
struct ExpiredRecords;

impl CompactionFilterFactory for ExpiredRecords {
    type Filter = ExpiredAt;

    fn create(&mut self, _context: CompactionFilterContext) -> ExpiredAt {
        // One instant per compaction: a record is judged against the time its compaction began.
        ExpiredAt(now_ms())
    }

    fn name(&self) -> &CStr {
        c"sigil-expired-records"
    }
}

struct ExpiredAt(Millis);

impl CompactionFilter for ExpiredAt {
    fn filter(&mut self, _level: u32, _key: &[u8], value: &[u8]) -> Decision {
        match envelope::open(value) {
            Some((expires_at, _)) if !envelope::is_live(expires_at, self.0) => Decision::Remove,
            // Live, or too short to carry a header (reads report it as corrupt: keep it to see).
            _ => Decision::Keep,
        }
    }

    fn name(&self) -> &CStr {
        c"sigil-expired-at"
    }
}

pub struct RocksStore {
    durability: Durability,
    /// For [`Batch::relaxed`] commits: WAL written, not fsynced.
    relaxed_opts: WriteOptions,
    /// `None` once [`RocksStore::close`] ran: every later call answers [`StoreError::Closed`].
    db: RwLock<Option<DB>>,
    path: std::path::PathBuf,
    write_opts: WriteOptions,
    stripes: Vec<Mutex<()>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.into_string())
}

impl RocksStore {
    /// Opens (creating if needed) the store in `path`, reclaiming expired records within an hour.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        Self::open_with(path, RocksOptions { durability, ..RocksOptions::default() })
    }

    /// Opens (creating if needed) the store in `path`.
    pub fn open_with(path: &Path, options: RocksOptions) -> Result<Self, StoreError> {
        let RocksOptions { durability, reclaim_period } = options;
        let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
        std::fs::create_dir_all(path).map_err(|e| open_err(e.to_string()))?;

        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(std::thread::available_parallelism().map_or(2, |n| n.get() as i32));
        // Buffered mode: let RocksDB fsync the WAL in the background every 512 KiB.
        opts.set_wal_bytes_per_sync(512 * 1024);
        // A log file is kept until every family with data in it has flushed; the small
        // families (indexes, tickets) rarely fill a memtable, so without a cap the log
        // grows with every session written and a start after a crash replays all of it
        // (measured: 3.2 s for 1M sessions). The cap makes RocksDB flush the families that pin
        // the oldest log, bounding the replay: at 64 MiB a crash after 1M sessions replayed
        // 49 MB in 1.1–1.9 s, at 32 MiB 11 MB in 0.5–0.6 s (docs/benchmarks.md).
        opts.set_max_total_wal_size(32 * 1024 * 1024);
        let family_options = |cf: Cf| {
            let mut o = Options::default();
            o.set_compaction_filter_factory(ExpiredRecords);
            // Rewriting every file each period costs writes; families whose records never
            // expire keep RocksDB's default (30 days with a filter set).
            if !NEVER_EXPIRE.contains(&cf) {
                o.set_periodic_compaction_seconds(reclaim_period.as_secs().max(1));
            }
            o
        };
        let mut families: Vec<ColumnFamilyDescriptor> =
            Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), family_options(*cf))).collect();
        // A store that does not exist yet has no families to list.
        let legacy = DB::list_cf(&opts, path).is_ok_and(|names| names.iter().any(|n| n == LEGACY_EXPIRY_SCHEDULE));
        if legacy {
            families.push(ColumnFamilyDescriptor::new(LEGACY_EXPIRY_SCHEDULE, Options::default()));
        }
        let db = DB::open_cf_descriptors(&opts, path, families).map_err(|e| open_err(e.into_string()))?;

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(durability == Durability::Fsync);
        let mut relaxed_opts = WriteOptions::default();
        relaxed_opts.set_sync(false);
        let store = Self {
            durability,
            relaxed_opts,
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            write_opts,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        };
        store.check_schema().map_err(|e| open_err(e.to_string()))?;
        if legacy {
            store.drop_legacy_schedule();
        }
        Ok(store)
    }

    /// Drops an old store's expiry schedule, once its schema is known to be this one. A
    /// failure only leaves dead data behind (nothing reads the family): a warning, not a
    /// refusal to start; the next open tries again.
    fn drop_legacy_schedule(&self) {
        let mut slot = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = slot.as_mut() {
            match db.drop_cf(LEGACY_EXPIRY_SCHEDULE) {
                Ok(()) => tracing::info!("dropped the expiry schedule of an older store (expired records are now dropped by compaction)"),
                Err(e) => tracing::warn!(error = %e.into_string(), "cannot drop the older store's expiry schedule; it stays, unused"),
            }
        }
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.get(Cf::Meta, b"schema")? {
            None => {
                let mut batch = Batch::new();
                batch.put(Cf::Meta, b"schema".to_vec(), SCHEMA_VERSION.to_vec());
                self.write(batch)
            }
            Some(v) if v == SCHEMA_VERSION => Ok(()),
            Some(_) => Err(StoreError::Corrupt { cf: "meta", what: "unknown schema version" }),
        }
    }

    /// Flushes memtables to SST files so the next open replays no log.
    pub fn flush(&self) -> Result<(), StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        db.flush_wal(true).map_err(backend)?;
        for cf in Cf::ALL {
            db.flush_cf(handle(db, cf)?).map_err(backend)?;
        }
        Ok(())
    }

    /// Compacts every family now, so every record expired at this instant leaves the disk
    /// (tests and benchmarks; a running store reclaims them by itself, see [`RocksOptions`]).
    pub fn compact(&self) -> Result<(), StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        for cf in Cf::ALL {
            db.compact_range_cf(handle(db, cf)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Flushes, waits for calls in progress, stops RocksDB's background work and closes the
    /// database, even while other owners (actors) still hold this store: the process may then
    /// exit without RocksDB threads running into its teardown.
    pub fn close(&self) -> Result<(), StoreError> {
        let flushed = self.flush();
        let mut slot = self.db.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = slot.take() {
            db.cancel_all_background_work(true);
            drop(db);
        }
        flushed
    }

    fn open_db(&self) -> Result<RwLockReadGuard<'_, Option<DB>>, StoreError> {
        Ok(self.db.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn stripe_of(cf: Cf, key: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        cf.hash(&mut h);
        key.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Locks the stripes of `keys` in ascending order, so two lockers cannot deadlock.
    fn lock<'a>(&self, keys: impl Iterator<Item = (Cf, &'a [u8])>) -> Vec<MutexGuard<'_, ()>> {
        let mut ids: Vec<usize> = keys.map(|(cf, key)| Self::stripe_of(cf, key)).collect();
        ids.sort_unstable();
        ids.dedup();
        // The stripes guard no data, so a poisoned one is as good as a clean one.
        ids.into_iter()
            .filter_map(|i| self.stripes.get(i))
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .collect()
    }

    fn batch_keys(batch: &Batch) -> impl Iterator<Item = (Cf, &[u8])> {
        batch.ops().iter().map(|op| match op {
            Op::Put { cf, key, .. } | Op::Delete { cf, key } => (*cf, key.as_slice()),
        })
    }

    /// Commits `batches` as one atomic write; relaxed only if every batch is. Callers hold the
    /// stripes.
    fn commit<'b>(&self, db: &DB, batches: impl IntoIterator<Item = &'b Batch>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let mut relaxed = true;
        for batch in batches {
            relaxed &= batch.is_relaxed();
            for op in batch.ops() {
                match op {
                    Op::Put { cf, key, value, expires_at } => {
                        wb.put_cf(handle(db, *cf)?, key, envelope::wrap(value, *expires_at))
                    }
                    Op::Delete { cf, key } => wb.delete_cf(handle(db, *cf)?, key),
                }
            }
        }
        if wb.is_empty() {
            return Ok(());
        }
        let opts = if relaxed { &self.relaxed_opts } else { &self.write_opts };
        db.write_opt(wb, opts).map_err(backend)
    }

    fn get_at(db: &DB, cf: Cf, key: &[u8], now: Millis) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(Self::current_at(db, cf, key, now)?.map(|c| c.value))
    }

    fn current_at(db: &DB, cf: Cf, key: &[u8], now: Millis) -> Result<Option<Current>, StoreError> {
        let Some(raw) = db.get_pinned_cf(handle(db, cf)?, key).map_err(backend)? else {
            return Ok(None);
        };
        let (expires_at, payload) =
            envelope::open(&raw).ok_or(StoreError::Corrupt { cf: cf.name(), what: "value shorter than its header" })?;
        Ok(envelope::is_live(expires_at, now).then(|| Current { value: payload.to_vec(), expires_at }))
    }
}

fn handle(db: &DB, cf: Cf) -> Result<&ColumnFamily, StoreError> {
    db.cf_handle(cf.name()).ok_or(StoreError::Corrupt { cf: cf.name(), what: "column family missing" })
}

impl Store for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let guard = self.open_db()?;
        Self::get_at(guard.as_ref().ok_or(StoreError::Closed)?, cf, key, now_ms())
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let _stripes = self.lock(Self::batch_keys(&batch));
        self.commit(db, [&batch])
    }

    fn write_each(&self, batches: Vec<Batch>) -> Result<(), StoreError> {
        let batches: Vec<Batch> = batches.into_iter().filter(|b| !b.is_empty()).collect();
        if batches.is_empty() {
            return Ok(());
        }
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let _stripes = self.lock(batches.iter().flat_map(Self::batch_keys));
        self.commit(db, &batches)
    }

    fn take_each(&self, cf: Cf, mut items: Vec<(Vec<u8>, Batch)>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let keys = items.iter().flat_map(|(key, then)| Self::batch_keys(then).chain([(cf, key.as_slice())]));
        let _stripes = self.lock(keys);
        let now = now_ms();
        let mut taken = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        for (key, then) in &mut items {
            let value = if seen.insert(key.clone()) { Self::get_at(db, cf, key, now)? } else { None };
            if value.is_some() {
                then.delete(cf, key.clone());
            }
            taken.push(value);
        }
        self.commit(db, items.iter().zip(&taken).filter(|(_, v)| v.is_some()).map(|((_, then), _)| then))?;
        Ok(taken)
    }

    fn update(
        &self,
        cf: Cf,
        key: &[u8],
        relaxed: bool,
        decide: &mut dyn FnMut(Option<&Current>) -> Change,
    ) -> Result<Change, StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let _key_stripe = self.lock(std::iter::once((cf, key)));
        let current = Self::current_at(db, cf, key, now_ms())?;
        let change = decide(current.as_ref());
        let mut batch = match &change {
            Change::Keep => return Ok(change),
            Change::Put { value, expires_at, then } => {
                let mut b = then.clone();
                match expires_at {
                    Some(at) => b.put_expiring(cf, key.to_vec(), value.clone(), *at),
                    None => b.put(cf, key.to_vec(), value.clone()),
                };
                b
            }
            Change::Delete { then } => {
                let mut b = then.clone();
                b.delete(cf, key.to_vec());
                b
            }
        };
        if relaxed {
            batch.relaxed();
        }
        // Only the key's own stripe is held: `then`'s keys are known after `decide`, and
        // taking more stripes now could deadlock against another locker. So `then` must only
        // touch entries that belong to this record (its index entries), which nothing else
        // reads-and-writes.
        self.commit(db, [&batch])?;
        Ok(change)
    }

    fn insert_new(&self, absent: &[(Cf, Vec<u8>)], batch: Batch) -> Result<bool, StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let keys = absent.iter().map(|(cf, k)| (*cf, k.as_slice())).chain(Self::batch_keys(&batch));
        let _stripes = self.lock(keys);
        let now = now_ms();
        for (cf, key) in absent {
            if Self::current_at(db, *cf, key, now)?.is_some() {
                return Ok(false);
            }
        }
        self.commit(db, [&batch])?;
        Ok(true)
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let now = now_ms();
        let mut out = Vec::new();
        let iter = db.iterator_cf(handle(db, cf)?, IteratorMode::From(prefix, Direction::Forward));
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (key, raw) = item.map_err(backend)?;
            if !key.starts_with(prefix) {
                break;
            }
            let (expires_at, payload) =
                envelope::open(&raw).ok_or(StoreError::Corrupt { cf: cf.name(), what: "value shorter than its header" })?;
            if envelope::is_live(expires_at, now) {
                out.push((key.into_vec(), payload.to_vec()));
            }
        }
        Ok(out)
    }

    fn approximate_count(&self, cf: Cf) -> Result<u64, StoreError> {
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        Ok(db.property_int_value_cf(handle(db, cf)?, "rocksdb.estimate-num-keys").map_err(backend)?.unwrap_or(0))
    }

    fn persist(&self) -> Result<(), StoreError> {
        if self.durability != Durability::Fsync {
            return Ok(());
        }
        let guard = self.open_db()?;
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        // With automatic WAL flushing every write is already in the log file; this syncs it.
        db.flush_wal(true).map_err(backend)
    }

    fn ping(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(Cf::Meta, b"ping".to_vec(), now_ms().to_be_bytes().to_vec());
        self.write(batch)
    }
}
