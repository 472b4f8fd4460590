//! sigil's actix actors: they own state and concurrency; the domain rules live in
//! `sigil-engine`, the wire formats in `sigil-http`.
//!
//! - [`verifier::VerifierPool`] gathers signature checks into micro-batches and verifies them
//!   on rayon;
//! - [`phrases::PhraseIssuer`] issues and lists login phrases;
//! - [`sessions::SessionRegistry`] opens and ends wallet sessions (its [`sessions::SessionReader`]
//!   serves the hot "is this session valid?" path without queueing behind writes);
//! - [`notifier::Notifier`] fans events out to websocket subscribers.
//!
//! `docs/architecture.md` shows who sends what to whom.

pub mod metrics;
pub mod notifier;
pub mod phrases;
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
}
