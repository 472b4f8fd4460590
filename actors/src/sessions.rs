//! The session registry: opens and ends wallet sessions; its reader answers lookups.
//!
//! Writes are durable commits, so the registry is a sync actor on several threads: RocksDB
//! groups their concurrent commits under one fsync. Lookups ("is this zelidauth a session?")
//! do not go through the mailbox at all: [`SessionReader`] reads the store directly, which
//! RocksDB serves concurrently with writes, so a login storm never delays an authenticated
//! request. Revocation is still immediate: a logout's reply is sent after its commit, and the
//! next lookup reads the committed state.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use sigil_engine::flux::FluxError;
use sigil_engine::flux::login::SignedPhrase;
use sigil_engine::flux::session::{self, ActivePhrase, FluxSession};
use sigil_engine::store::{Millis, Store, now_ms};

use crate::metrics::ActorMetrics;
use crate::notifier::{Event, Notifier, Payload, Publish, Topic};

/// Consume the phrase and open the session; `None` if another login took the phrase first.
#[derive(Message)]
#[rtype(result = "Result<Option<FluxSession>, FluxError>")]
pub struct OpenSession {
    pub login: SignedPhrase,
    /// The phrase's timestamp (the session's `createdAt`).
    pub created_at: Millis,
    /// When the signature was found valid: the start of the verify-to-push latency.
    pub verified_at: Instant,
}

/// End one session; with `zelid`, only if it belongs to that zelid.
#[derive(Message)]
#[rtype(result = "Result<bool, FluxError>")]
pub struct Logout {
    pub phrase: String,
    pub zelid: Option<String>,
}

#[derive(Message)]
#[rtype(result = "Result<usize, FluxError>")]
pub struct LogoutAll {
    pub zelid: String,
}

#[derive(Message)]
#[rtype(result = "Result<usize, FluxError>")]
pub struct LogoutEveryone;

/// Keep a signature for `/ws/sign/{identifier}` and push it to waiting sockets.
#[derive(Message)]
#[rtype(result = "Result<session::ProvidedSignature, FluxError>")]
pub struct ProvideSignature(pub SignedPhrase);

#[derive(Message)]
#[rtype(result = "Result<(), FluxError>")]
pub struct SetAppOwner {
    pub app: String,
    pub owner: String,
}

pub struct SessionRegistry {
    store: Arc<dyn Store>,
    session_ttl: Millis,
    notifier: Addr<Notifier>,
    metrics: Option<ActorMetrics>,
}

impl SessionRegistry {
    pub fn start(
        store: Arc<dyn Store>,
        session_ttl: Millis,
        notifier: Addr<Notifier>,
        metrics: Option<ActorMetrics>,
        threads: usize,
    ) -> Addr<Self> {
        SyncArbiter::start(threads.max(1), move || Self {
            store: store.clone(),
            session_ttl,
            notifier: notifier.clone(),
            metrics: metrics.clone(),
        })
    }
}

impl Actor for SessionRegistry {
    type Context = SyncContext<Self>;
}

impl Handler<OpenSession> for SessionRegistry {
    type Result = Result<Option<FluxSession>, FluxError>;

    fn handle(&mut self, msg: OpenSession, _: &mut SyncContext<Self>) -> Self::Result {
        let opened = session::open_session(self.store.as_ref(), &msg.login, msg.created_at, self.session_ttl, now_ms())?;
        if let Some(s) = &opened {
            let event = Event {
                payload: Payload::Login { session: s.clone(), signature: msg.login.signature.clone() },
                committed_at: msg.verified_at,
            };
            self.notifier.do_send(Publish(Topic::Login(s.login_phrase.clone()), event));
            if let Some(m) = &self.metrics {
                m.sessions_opened.inc();
            }
        }
        Ok(opened)
    }
}

impl SessionRegistry {
    fn ended(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.sessions_ended.inc_by(n as u64);
        }
    }
}

impl Handler<Logout> for SessionRegistry {
    type Result = Result<bool, FluxError>;

    fn handle(&mut self, msg: Logout, _: &mut SyncContext<Self>) -> Self::Result {
        let ended = session::logout(self.store.as_ref(), &msg.phrase, msg.zelid.as_deref())?.is_some();
        self.ended(usize::from(ended));
        Ok(ended)
    }
}

impl Handler<LogoutAll> for SessionRegistry {
    type Result = Result<usize, FluxError>;

    fn handle(&mut self, msg: LogoutAll, _: &mut SyncContext<Self>) -> Self::Result {
        let n = session::logout_all_of(self.store.as_ref(), &msg.zelid)?.len();
        self.ended(n);
        Ok(n)
    }
}

impl Handler<LogoutEveryone> for SessionRegistry {
    type Result = Result<usize, FluxError>;

    fn handle(&mut self, _: LogoutEveryone, _: &mut SyncContext<Self>) -> Self::Result {
        let n = session::logout_everyone(self.store.as_ref())?.len();
        self.ended(n);
        Ok(n)
    }
}

impl Handler<ProvideSignature> for SessionRegistry {
    type Result = Result<session::ProvidedSignature, FluxError>;

    fn handle(&mut self, ProvideSignature(signed): ProvideSignature, _: &mut SyncContext<Self>) -> Self::Result {
        let provided = session::provide_signature(self.store.as_ref(), &signed, now_ms())?;
        let event = Event { payload: Payload::Signature(provided.clone()), committed_at: Instant::now() };
        self.notifier.do_send(Publish(Topic::Sign(provided.identifier.clone()), event));
        Ok(provided)
    }
}

impl Handler<SetAppOwner> for SessionRegistry {
    type Result = Result<(), FluxError>;

    fn handle(&mut self, msg: SetAppOwner, _: &mut SyncContext<Self>) -> Self::Result {
        Ok(session::set_app_owner(self.store.as_ref(), &msg.app, &msg.owner)?)
    }
}

/// Read-only, lock-free access to sessions for the request path.
#[derive(Clone)]
pub struct SessionReader {
    store: Arc<dyn Store>,
    phrase_ttl: Millis,
}

impl SessionReader {
    pub fn new(store: Arc<dyn Store>, phrase_ttl: Millis) -> Self {
        Self { store, phrase_ttl }
    }

    /// The session a `zelidauth` credential names, if it is live and the signature is the one
    /// it was opened with (decision 5: a lookup and a hash compare, no ECDSA).
    pub fn authorize(&self, zelid: &str, phrase: &str, signature: &str) -> Result<Option<FluxSession>, FluxError> {
        Ok(session::session(self.store.as_ref(), phrase)?.filter(|s| s.zelid == zelid && s.signed_with(signature)))
    }

    pub fn session(&self, phrase: &str) -> Result<Option<FluxSession>, FluxError> {
        Ok(session::session(self.store.as_ref(), phrase)?)
    }

    pub fn push_signature(&self, phrase: &str) -> Result<Option<String>, FluxError> {
        Ok(session::push_signature(self.store.as_ref(), phrase)?)
    }

    pub fn active_phrase(&self, phrase: &str) -> Result<Option<ActivePhrase>, FluxError> {
        Ok(session::active_phrase(self.store.as_ref(), phrase, self.phrase_ttl)?)
    }

    pub fn sessions_of(&self, zelid: &str) -> Result<Vec<FluxSession>, FluxError> {
        Ok(session::sessions_of(self.store.as_ref(), zelid)?)
    }

    pub fn all_sessions(&self) -> Result<Vec<FluxSession>, FluxError> {
        Ok(session::all_sessions(self.store.as_ref())?)
    }

    pub fn app_owner(&self, app: &str) -> Result<Option<String>, FluxError> {
        Ok(session::app_owner(self.store.as_ref(), app)?)
    }

    pub fn app_owners(&self) -> Result<Vec<(String, String)>, FluxError> {
        Ok(session::app_owners(self.store.as_ref())?)
    }

    pub fn provided_signature(&self, identifier: &str) -> Result<Option<session::ProvidedSignature>, FluxError> {
        Ok(session::provided_signature(self.store.as_ref(), identifier)?)
    }
}
