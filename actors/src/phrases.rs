//! The phrase issuer: issues login phrases and lists the active ones.
//!
//! A sync actor on its own threads, because issuing is a durable (fsynced) write; several
//! threads let concurrent issues share one fsync.

use std::sync::Arc;

use actix::prelude::*;
use sigil_engine::flux::FluxError;
use sigil_engine::flux::session::{self, ActivePhrase};
use sigil_engine::store::{Millis, Store, now_ms};

#[derive(Message)]
#[rtype(result = "Result<ActivePhrase, FluxError>")]
pub struct IssuePhrase;

#[derive(Message)]
#[rtype(result = "Result<Vec<ActivePhrase>, FluxError>")]
pub struct ActivePhrases;

pub struct PhraseIssuer {
    store: Arc<dyn Store>,
    ttl: Millis,
}

impl PhraseIssuer {
    /// Starts `threads` issuers sharing one mailbox.
    pub fn start(store: Arc<dyn Store>, ttl: Millis, threads: usize) -> Addr<Self> {
        SyncArbiter::start(threads.max(1), move || Self { store: store.clone(), ttl })
    }
}

impl Actor for PhraseIssuer {
    type Context = SyncContext<Self>;
}

impl Handler<IssuePhrase> for PhraseIssuer {
    type Result = Result<ActivePhrase, FluxError>;

    fn handle(&mut self, _: IssuePhrase, _: &mut SyncContext<Self>) -> Self::Result {
        Ok(session::issue_phrase(self.store.as_ref(), now_ms(), self.ttl)?)
    }
}

impl Handler<ActivePhrases> for PhraseIssuer {
    type Result = Result<Vec<ActivePhrase>, FluxError>;

    fn handle(&mut self, _: ActivePhrases, _: &mut SyncContext<Self>) -> Self::Result {
        Ok(session::active_phrases(self.store.as_ref(), self.ttl)?)
    }
}
