//! Errors that stop the `sigil` binary. Each prints as one line naming the problem.

use sigil_engine::config::ConfigError;
use sigil_engine::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: std::net::SocketAddr, reason: String },
    #[error("{0} is not available yet in this build")]
    NotAvailable(&'static str),
    #[error("cannot start: {0}")]
    Startup(String),
    #[error("server failed: {0}")]
    Runtime(String),
}
