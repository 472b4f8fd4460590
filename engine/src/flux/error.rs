//! The Flux dialect's domain errors, carrying FluxOS's exact messages (typos included).

use crate::store::StoreError;

/// Everything a Flux `/id` operation can answer instead of success. The front maps each to
/// FluxOS's `{"status":"error","data":{…}}` body; the message text is part of the contract.
#[derive(Debug, thiserror::Error)]
pub enum FluxError {
    #[error("No Flux ID is specified")]
    NoFluxId,
    #[error("Flux ID is not valid")]
    InvalidFluxId,
    #[error("No message is specified")]
    NoMessage,
    #[error("Signed message is not valid")]
    InvalidMessage,
    #[error("No signature is specified")]
    NoSignature,
    #[error("Signed message is no longer valid. Please request a new one.")]
    PhraseNotActive,
    #[error("Invalid signature")]
    InvalidSignature,
    #[error("No user Flux ID specificed")]
    NoUserFluxId,
    #[error("No user loginPhrase specificed")]
    NoUserLoginPhrase,
    #[error("No user Flux ID signature specificed")]
    NoUserSignature,
    /// A required field of one of sigil's own routes is missing.
    #[error("No {0} is specified")]
    Missing(&'static str),
    /// A field of the wrong JSON type; FluxOS reports these as JavaScript TypeErrors.
    #[error("{0}")]
    Type(String),
    #[error("Too many requests, please try again later")]
    Overloaded,
    #[error("Store unavailable: {0}")]
    Store(#[from] StoreError),
}

impl FluxError {
    /// The JavaScript error class FluxOS would name (`data.name`).
    pub fn js_name(&self) -> &'static str {
        match self {
            Self::Type(_) => "TypeError",
            _ => "Error",
        }
    }
}

impl From<super::body::TypeError> for FluxError {
    fn from(e: super::body::TypeError) -> Self {
        Self::Type(e.0)
    }
}
