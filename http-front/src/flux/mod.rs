//! The Flux ZelID dialect: every `/id/*` route (also at `/zelid/*`) and the `/ws/` sockets.
//!
//! Handlers parse, check the caller's privilege and map errors to FluxOS's envelope; the
//! rules live in `sigil_engine::flux`, the state in the actors.

pub mod auth;
pub mod body;
pub mod envelope;
pub mod frame;
pub mod gates;
pub mod routes;
pub mod ws;

use sigil_actors::metrics::ActorMetrics;
use sigil_actors::notifier::Notifier;
use sigil_actors::phrases::PhraseIssuer;
use sigil_actors::sessions::{SessionReader, SessionRegistry};
use sigil_actors::verifier::VerifierPool;
use sigil_engine::config::FluxConfig;
use sigil_engine::flux::login::AddressRules;
use sigil_engine::verify::Policy;

/// What the Flux handlers reach: the actors, the session reader, the settings.
pub struct FluxState {
    pub config: FluxConfig,
    pub issuer: PhraseIssuer,
    pub registry: SessionRegistry,
    pub verifier: VerifierPool,
    pub notifier: Notifier,
    pub reader: SessionReader,
    pub metrics: ActorMetrics,
    pub limits: std::sync::Arc<crate::limits::Limits>,
    pub verified: auth::VerifiedCache,
    /// Checks run before `/id/loginphrase` issues (none by default; see [`gates`]).
    pub gates: gates::Gates,
    pub max_body_bytes: usize,
    /// How long a login socket that finds neither its phrase nor its session waits for the
    /// login that may have just used the phrase (see `ws::serve_login`): 1 s, or in cluster
    /// mode as long as a login's store phases may take.
    pub consumed_grace: std::time::Duration,
}

impl FluxState {
    pub fn rules(&self) -> AddressRules {
        AddressRules { accept_segwit: self.config.accept_segwit }
    }

    pub fn policy(&self) -> Policy {
        if self.config.accept_segwit { Policy::SIGIL } else { Policy::FLUXOS }
    }

    pub fn phrase_ttl(&self) -> u64 {
        self.config.phrase_ttl.as_millis()
    }

    pub fn session_ttl(&self) -> u64 {
        self.config.session_ttl.as_millis()
    }
}
