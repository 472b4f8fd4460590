//! The `zelidauth` header: who is calling, and at which level.
//!
//! A credential that matches a stored session (zelid, phrase, and the signature it was opened
//! with, compared by hash in constant time) is authorized by lookup alone (decision 5). Only
//! when `flux.stateless_user_window` is on may a user-level call pass on a recent, self-signed
//! phrase without a session, as FluxOS allows; that path verifies the signature.

use actix_web::HttpRequest;
use sigil_engine::flux::Fields;
use sigil_engine::flux::privilege::Level;
use sigil_engine::secret::phrase_timestamp;
use sigil_engine::store::now_ms;
use sigil_engine::verify::Check;

use super::FluxState;

/// The three parts of a `zelidauth` credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub zelid: String,
    pub phrase: String,
    pub signature: String,
}

impl Credential {
    /// Reads the header in either form (query string or JSON); `None` if absent or incomplete.
    pub fn from_request(req: &HttpRequest) -> Option<Self> {
        let raw = req.headers().get("zelidauth")?.as_bytes();
        Self::from_fields(&Fields::parse(raw))
    }

    pub fn from_fields(fields: &Fields) -> Option<Self> {
        Some(Self {
            zelid: fields.string(&["zelid"]).ok()??,
            phrase: fields.string(&["loginPhrase"]).ok()??,
            signature: fields.string(&["signature"]).ok()??,
        })
    }
}

/// Credentials whose signature already verified on the stateless path, so a repeat costs a
/// hash and a map lookup instead of an ECDSA recovery (decision 6). Keyed by SHA-256 of the
/// whole credential; an entry lives until its phrase leaves the window.
#[derive(Default)]
pub struct VerifiedCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], u64>>,
}

/// Bound on remembered credentials; past it, expired entries go, and if none had, all do.
const VERIFIED_CACHE_MAX: usize = 65_536;

impl VerifiedCache {
    fn key(c: &Credential) -> [u8; 32] {
        let joined = [c.zelid.as_bytes(), c.phrase.as_bytes(), c.signature.as_bytes()].join(&0u8);
        sigil_engine::secret::secret_hash(&joined)
    }

    fn hit(&self, c: &Credential, now: u64) -> bool {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(&Self::key(c)).is_some_and(|until| *until > now)
    }

    fn remember(&self, c: &Credential, until: u64, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= VERIFIED_CACHE_MAX {
            entries.retain(|_, until| *until > now);
            if entries.len() >= VERIFIED_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(Self::key(c), until);
    }
}

/// Whether `credential` passes `level`. Any failure (including the store's) is a plain no,
/// as in FluxOS.
pub async fn allowed(state: &FluxState, credential: &Credential, level: Level) -> bool {
    if !level.admits(&credential.zelid, &state.config) {
        return false;
    }
    match state.reader.authorize_async(&credential.zelid, &credential.phrase, &credential.signature).await {
        Ok(Some(_)) => return true,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            return false;
        }
    }
    level.allows_stateless() && stateless_user(state, credential).await
}

/// FluxOS's fallback for user level: a phrase 40–70 characters long whose timestamp is within
/// the window and not in the future, signed by the zelid. Off unless configured.
async fn stateless_user(state: &FluxState, credential: &Credential) -> bool {
    let window = state.config.stateless_user_window.as_millis();
    if window == 0 {
        return false;
    }
    let len = credential.phrase.encode_utf16().count();
    let now = now_ms();
    let Some(issued) = phrase_timestamp(&credential.phrase).filter(|t| *t <= now && now - t <= window) else {
        return false;
    };
    if !(40..=70).contains(&len) {
        return false;
    }
    if state.verified.hit(credential, now) {
        return true;
    }
    let check = Check {
        message: credential.phrase.clone(),
        address: credential.zelid.clone(),
        signature: credential.signature.clone(),
    };
    let valid = matches!(state.verifier.verify(check).await, Ok(Ok(())));
    if valid {
        state.verified.remember(credential, issued + window, now);
    }
    valid
}

/// The caller's credential if it passes `level`.
pub async fn require(state: &FluxState, req: &HttpRequest, level: Level) -> Option<Credential> {
    let credential = Credential::from_request(req)?;
    allowed(state, &credential, level).await.then_some(credential)
}
