//! sigil's actix actors: they own state and concurrency; the domain rules live in
//! `sigil-engine`, the wire formats in `sigil-http`.
//!
//! - [`verifier::VerifierPool`] (a handle, no mailbox) queues signature checks and verifies them
//!   on rayon;
//! - [`phrases::PhraseIssuer`] (a handle over its own threads) issues and lists login phrases;
//! - [`sessions::SessionRegistry`] opens and ends wallet sessions (its [`sessions::SessionReader`]
//!   serves the hot "is this session valid?" path without queueing behind writes);
//! - [`notifier::Notifier`] fans events out to websocket subscribers;
//! - [`passwords::PasswordPool`] hashes and checks passwords on its own bounded threads;
//! - [`accounts`]: the account directory's writes and the token dialect's session messages;
//! - [`outbox::Sender`] delivers SMS and email codes (log + outbox, or a webhook);
//! - [`relay::Relay`] (cluster mode) carries the notifier's events to the other nodes.
//!
//! `docs/architecture.md` shows who sends what to whom.

pub mod accounts;
pub mod metrics;
pub mod notifier;
pub mod outbox;
pub mod passwords;
pub mod phrases;
pub mod relay;
pub mod sessions;
pub mod verifier;

pub use sigil_engine as engine;

/// An actor could not answer: its mailbox is closed or it is shedding load.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    #[error("{0} is overloaded")]
    Overloaded(&'static str),
    #[error("{0} is not running")]
    Gone(&'static str),
    #[error(transparent)]
    Store(#[from] sigil_engine::store::StoreError),
}

impl From<ActorError> for sigil_engine::flux::FluxError {
    fn from(e: ActorError) -> Self {
        tracing::warn!(error = %e, "actor unavailable");
        match e {
            ActorError::Store(s) => Self::Store(s),
            _ => Self::Overloaded,
        }
    }
}

impl From<ActorError> for sigil_engine::tokens::TokenError {
    fn from(e: ActorError) -> Self {
        tracing::warn!(error = %e, "actor unavailable");
        match e {
            ActorError::Overloaded(_) => Self::RateLimited(1_000),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<ActorError> for sigil_engine::oauth2::OAuthError {
    fn from(e: ActorError) -> Self {
        tracing::warn!(error = %e, "actor unavailable");
        Self::Unavailable(e.to_string())
    }
}

impl From<ActorError> for sigil_engine::web::WebError {
    fn from(e: ActorError) -> Self {
        tracing::warn!(error = %e, "actor unavailable");
        match e {
            ActorError::Overloaded(_) => Self::RateLimited(1_000),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
