//! The phrase issuer: issues login phrases and lists the active ones.
//!
//! A handle over a queue served by threads of its own: issuing is a store write (relaxed on
//! RocksDB; a network round trip in cluster mode), which must not hold an HTTP worker. A
//! thread takes every request queued while it was busy and writes their phrases together
//! (`Store::write_each`: one log append on RocksDB, concurrent commands in cluster mode), then
//! answers each. The HTTP worker queues its request itself (a channel send) and is woken
//! once, with the phrase. It used to be an actix `SyncArbiter`,
//! whose mailbox is read by a forwarding actor on the system arbiter: every phrase woke that
//! thread on its way to an issuer thread (docs/benchmarks.md).

use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};
use sigil_engine::flux::FluxError;
use sigil_engine::flux::session::{self, ActivePhrase};
use sigil_engine::store::{Millis, Store, now_ms};
use tokio::sync::oneshot;

use crate::ActorError;

/// A request for one phrase: where to send it.
type Job = oneshot::Sender<Result<ActivePhrase, FluxError>>;

/// The issuer's handle; clones share its threads, which end when the last handle is dropped.
#[derive(Clone)]
pub struct PhraseIssuer {
    jobs: Sender<Job>,
    store: Arc<dyn Store>,
    ttl: Millis,
}

impl PhraseIssuer {
    /// Starts `threads` issuer threads sharing one queue.
    pub fn start(store: Arc<dyn Store>, ttl: Millis, threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam::channel::unbounded();
        for i in 0..threads.max(1) {
            let (store, queue) = (store.clone(), queue.clone());
            std::thread::Builder::new().name(format!("sigil-phrases-{i}")).spawn(move || serve(store.as_ref(), ttl, &queue))?;
        }
        Ok(Self { jobs, store, ttl })
    }

    /// A new phrase, stored as issued.
    pub async fn issue(&self) -> Result<ActivePhrase, FluxError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(reply).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Every issued, unused phrase: a scan of them all, on tokio's blocking pool rather than
    /// on an issuer thread, so an admin's listing never holds up the phrases being issued.
    pub async fn active(&self) -> Result<Vec<ActivePhrase>, FluxError> {
        let (store, ttl) = (self.store.clone(), self.ttl);
        tokio::task::spawn_blocking(move || session::active_phrases(store.as_ref(), ttl))
            .await
            .map_err(|_| gone())?
            .map_err(FluxError::from)
    }
}

fn gone() -> FluxError {
    FluxError::from(ActorError::Gone("the phrase issuer"))
}

/// At most this many phrases are written together.
const MAX_BATCH: usize = 256;

fn serve(store: &dyn Store, ttl: Millis, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let issues: Vec<Job> = std::iter::once(first).chain(queue.try_iter().take(MAX_BATCH - 1)).collect();
        // A requester that gave up just dropped its receiver.
        match session::issue_phrases(store, now_ms(), ttl, issues.len()) {
            Ok(phrases) => issues.into_iter().zip(phrases).for_each(|(reply, p)| drop(reply.send(Ok(p)))),
            Err(e) => issues.into_iter().for_each(|reply| drop(reply.send(Err(FluxError::from(e.clone()))))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_engine::store::{Durability, RocksStore};

    #[actix_web::test]
    async fn issued_phrases_are_listed_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), Durability::Fsync).unwrap());
        let issuer = PhraseIssuer::start(store, 1_000, 2).unwrap();
        let issued = futures_util::future::join_all((0..20).map(|_| issuer.issue())).await;
        let mut issued: Vec<String> = issued.into_iter().map(|p| p.unwrap().phrase).collect();
        issued.sort();
        issued.dedup();
        assert_eq!(issued.len(), 20, "every request got its own phrase");
        let mut active: Vec<String> = issuer.active().await.unwrap().into_iter().map(|p| p.phrase).collect();
        active.sort();
        assert_eq!(active, issued);
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        assert!(issuer.active().await.unwrap().is_empty(), "expired phrases are not listed");
    }
}
