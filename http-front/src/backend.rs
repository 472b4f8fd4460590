//! Opening the configured store: the embedded RocksDB (with its expiry sweeper) or Redis
//! (cluster mode; Redis expires keys itself). The rest of sigil sees only `Arc<dyn Store>`.

use std::sync::Arc;

use sigil_engine::config::{Config, StoreBackend};
use sigil_engine::store::{DEFAULT_NAMESPACE, RedisOptions, RedisStore, RocksStore, Store, StoreError, Sweeper};

use crate::error::FrontError;

/// The open store and what must be stopped with it.
pub enum Backend {
    Rocks { store: Arc<RocksStore>, sweeper: Option<Sweeper> },
    Redis { store: Arc<RedisStore> },
}

impl Backend {
    /// Opens the store of `config`. `sweeper`: start RocksDB's expiry sweeper (the server does;
    /// the one-shot CLI commands do not).
    pub fn open(config: &Config, sweeper: bool) -> Result<Self, FrontError> {
        match config.store.backend {
            StoreBackend::Rocksdb => {
                let store = Arc::new(RocksStore::open(&config.server.data_dir, config.store.durability).map_err(|e| {
                    match e {
                        StoreError::Open { path, reason } if reason.contains("lock") => FrontError::Startup(format!(
                            "the store at {path} is in use (stop `sigil serve` first, or use its admin API): {reason}"
                        )),
                        other => other.into(),
                    }
                })?);
                let sweeper = if sweeper {
                    let dyn_store: Arc<dyn Store> = store.clone();
                    Some(
                        Sweeper::start(dyn_store, config.store.sweep_interval.0)
                            .map_err(|e| FrontError::Startup(format!("cannot start the expiry sweeper: {e}")))?,
                    )
                } else {
                    None
                };
                Ok(Backend::Rocks { store, sweeper })
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
            Backend::Rocks { store, .. } => store.clone(),
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

    /// Stops the sweeper and closes RocksDB for every owner (actors may still hold it), so the
    /// process can exit without RocksDB threads running into its teardown; on Redis, makes
    /// relaxed writes durable.
    pub fn close(self) -> Result<(), StoreError> {
        match self {
            Backend::Rocks { store, sweeper } => {
                drop(sweeper);
                store.close()
            }
            Backend::Redis { store } => store.persist(),
        }
    }

    /// Makes what the one-shot commands wrote durable before the process exits.
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Backend::Rocks { store, .. } => store.flush(),
            Backend::Redis { store } => store.persist(),
        }
    }
}
