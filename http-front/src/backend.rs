//! Opening the configured store: the embedded RocksDB (which drops expired records when it
//! compacts) or Redis (cluster mode; Redis expires keys itself). The rest of sigil sees only `Arc<dyn Store>`.

use std::sync::Arc;

use sigil_engine::config::{Config, StoreBackend};
use sigil_engine::store::{DEFAULT_NAMESPACE, RedisOptions, RedisStore, RocksOptions, RocksStore, Store, StoreError};

use crate::error::FrontError;

/// The open store and what must be stopped with it.
pub enum Backend {
    Rocks { store: Arc<RocksStore> },
    Redis { store: Arc<RedisStore> },
}

impl Backend {
    /// Opens the store of `config`.
    pub fn open(config: &Config) -> Result<Self, FrontError> {
        match config.store.backend {
            StoreBackend::Rocksdb => {
                if config.store.sweep_interval.is_some() {
                    tracing::warn!(
                        "store.sweep_interval is no longer used (expired records are dropped by compaction; see store.reclaim_period): ignored"
                    );
                }
                let options =
                    RocksOptions { durability: config.store.durability, reclaim_period: config.store.reclaim_period.0 };
                let store = Arc::new(RocksStore::open_with(&config.server.data_dir, options).map_err(|e| {
                    match e {
                        StoreError::Open { path, reason } if reason.contains("lock") => FrontError::Startup(format!(
                            "the store at {path} is in use (stop `sigil serve` first, or use its admin API): {reason}"
                        )),
                        other => other.into(),
                    }
                })?);
                Ok(Backend::Rocks { store })
            }
            StoreBackend::Redis => {
                let options = RedisOptions {
                    urls: config.store.redis_urls.clone(),
                    wait_replicas: config.store.redis_wait_replicas,
                    timeout: config.store.redis_timeout.0,
                    namespace: DEFAULT_NAMESPACE.to_string(),
                };
                let store = RedisStore::connect(&options)?;
                tracing::info!(
                    cluster = store.is_cluster(),
                    wait_replicas = store.wait_replicas(),
                    "store: Redis"
                );
                Ok(Backend::Redis { store: Arc::new(store) })
            }
        }
    }

    /// The backend's name in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Rocks { .. } => "rocksdb",
            Backend::Redis { .. } => "redis",
        }
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Rocks { store } => store.clone(),
            Backend::Redis { store } => store.clone(),
        }
    }

    /// The Redis store, in cluster mode.
    pub fn redis(&self) -> Option<&Arc<RedisStore>> {
        match self {
            Backend::Redis { store } => Some(store),
            Backend::Rocks { .. } => None,
        }
    }

    /// Closes RocksDB for every owner (actors may still hold it), so the
    /// process can exit without RocksDB threads running into its teardown; on Redis, makes
    /// relaxed writes durable.
    pub fn close(self) -> Result<(), StoreError> {
        match self {
            Backend::Rocks { store } => store.close(),
            Backend::Redis { store } => store.persist(),
        }
    }

    /// Makes what the one-shot commands wrote durable before the process exits.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Backend::Rocks { store } => store.flush(),
            Backend::Redis { store } => store.persist(),
        }
    }
}
