//! A [`Store`] that reports the latency and outcome of every operation of the store it wraps,
//! whichever backend that is (the metrics `sigil_store_operation_seconds{backend,op}`).

use std::sync::Arc;
use std::time::Instant;

use super::{Batch, Change, Cf, Current, Entry, Store, StoreError, StoreFuture};

/// Receives one report per store operation.
pub trait StoreObserver: Send + Sync {
    /// `op` (`get`, `write`, `take`, `update`, `insert_new`, `scan`, `persist`, `ping`, …) took
    /// `seconds`; `ok` tells whether it succeeded.
    fn observe(&self, op: &'static str, seconds: f64, ok: bool);
}

pub struct Observed {
    inner: Arc<dyn Store>,
    observer: Arc<dyn StoreObserver>,
}

impl Observed {
    pub fn new(inner: Arc<dyn Store>, observer: Arc<dyn StoreObserver>) -> Self {
        Self { inner, observer }
    }

    fn time<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Instant::now();
        let out = f();
        self.observer.observe(op, started.elapsed().as_secs_f64(), out.is_ok());
        out
    }
}

impl Store for Observed {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.time("get", || self.inner.get(cf, key))
    }

    fn get_async(&self, cf: Cf, key: &[u8]) -> StoreFuture<Option<Vec<u8>>> {
        let (started, observer, fut) = (Instant::now(), self.observer.clone(), self.inner.get_async(cf, key));
        Box::pin(async move {
            let out = fut.await;
            observer.observe("get", started.elapsed().as_secs_f64(), out.is_ok());
            out
        })
    }

    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.time("write", || self.inner.write(batch))
    }

    fn write_each(&self, batches: Vec<Batch>) -> Result<(), StoreError> {
        self.time("write_each", || self.inner.write_each(batches))
    }

    fn take(&self, cf: Cf, key: &[u8], then: Batch) -> Result<Option<Vec<u8>>, StoreError> {
        self.time("take", || self.inner.take(cf, key, then))
    }

    fn take_each(&self, cf: Cf, items: Vec<(Vec<u8>, Batch)>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.time("take", || self.inner.take_each(cf, items))
    }

    fn update(
        &self,
        cf: Cf,
        key: &[u8],
        relaxed: bool,
        decide: &mut dyn FnMut(Option<&Current>) -> Change,
    ) -> Result<Change, StoreError> {
        self.time("update", || self.inner.update(cf, key, relaxed, decide))
    }

    fn insert_new(&self, absent: &[(Cf, Vec<u8>)], batch: Batch) -> Result<bool, StoreError> {
        self.time("insert_new", || self.inner.insert_new(absent, batch))
    }

    fn scan_prefix(&self, cf: Cf, prefix: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.time("scan", || self.inner.scan_prefix(cf, prefix, limit))
    }

    fn approximate_count(&self, cf: Cf) -> Result<u64, StoreError> {
        self.inner.approximate_count(cf)
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.time("persist", || self.inner.persist())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.time("ping", || self.inner.ping())
    }
}
