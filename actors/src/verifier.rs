//! The verifier pool: signature checks verified in small batches on rayon.
//!
//! A caller hands its check to [`VerifierPool::verify_then`] (or awaits [`VerifierPool::verify`]);
//! the check joins the pool's queue, and while fewer drainers run than rayon has threads, a new
//! drainer is spawned on rayon at once (an idle server adds no wait). A drainer takes up to
//! [`PoolConfig::max_batch`] checks at a time, verifies them, hands each verdict to its
//! continuation on the verifying thread, and goes on until the queue is empty. So under load the
//! checks that arrived while a batch was being verified form the next batch, with no timer and
//! no thread between the HTTP worker and rayon: the pool used to be an actor on the system
//! arbiter, whose mailbox woke that thread once per login (docs/benchmarks.md). Small batches
//! keep the stages of a login pipelined: with one batch as large as all 64 connections, every
//! request verified, then committed, then answered in lockstep and the cores took turns idling
//! (measured: 64 → 8 gave +12 % logins/s). When more than [`PoolConfig::max_queue`] checks are
//! waiting or running, new ones are refused at once (the front answers with an error body)
//! instead of growing memory and latency without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sigil_engine::verify::{Check, Policy, VerifyError, verify_batch};
use tokio::sync::oneshot;

use crate::ActorError;
use crate::metrics::ActorMetrics;

#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Checks one drainer takes from the queue at a time.
    pub max_batch: usize,
    /// Checks queued or being verified before new ones are refused.
    pub max_queue: usize,
    /// Drainers that may run on rayon at once (0: none — checks only queue; for tests).
    pub drainers: usize,
    pub policy: Policy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { max_batch: 8, max_queue: 16_384, drainers: rayon::current_num_threads(), policy: Policy::SIGIL }
    }
}

/// What becomes of a check's verdict, on the rayon thread that reached it (or on the caller's
/// thread, with [`ActorError::Overloaded`], if the check was refused). A valid wallet login
/// goes from there straight to the session registry's queue, and its request wakes once, when
/// its session is durable.
pub type Then = Box<dyn FnOnce(Result<Result<(), VerifyError>, ActorError>) + Send>;

/// The pool: a `Clone` handle; every clone feeds the same queue.
#[derive(Clone)]
pub struct VerifierPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    queue: Mutex<Queue>,
    metrics: Option<ActorMetrics>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Check, Then)>,
    /// Checks accepted and not yet answered (waiting + being verified).
    in_flight: usize,
    /// Drainers running on rayon.
    drainers: usize,
}

impl VerifierPool {
    pub fn new(config: PoolConfig, metrics: Option<ActorMetrics>) -> Self {
        Self { inner: Arc::new(Inner { config, queue: Mutex::new(Queue::default()), metrics }) }
    }

    /// Verifies `check` and hands the verdict to `then` where it is reached, without waking
    /// the caller; a refusal (full queue) reaches `then` at once, on this thread.
    pub fn verify_then(&self, check: Check, then: Then) {
        let inner = &self.inner;
        let mut queue = inner.lock();
        if queue.in_flight >= inner.config.max_queue {
            drop(queue);
            if let Some(m) = &inner.metrics {
                m.verifier_rejected.inc();
            }
            then(Err(ActorError::Overloaded("the signature verifier")));
            return;
        }
        queue.in_flight += 1;
        queue.waiting.push_back((check, then));
        // The gauge is set under the lock, so the last value written is the last depth.
        if let Some(m) = &inner.metrics {
            m.verifier_queue_depth.set(queue.in_flight as i64);
        }
        let spawn = queue.drainers < inner.config.drainers;
        if spawn {
            queue.drainers += 1;
        }
        drop(queue);
        if spawn {
            let inner = self.inner.clone();
            rayon::spawn(move || inner.drain());
        }
    }

    /// Verifies `check`; answers the verdict, or [`ActorError::Overloaded`].
    pub async fn verify(&self, check: Check) -> Result<Result<(), VerifyError>, ActorError> {
        let (tx, rx) = oneshot::channel();
        // A caller that gave up (client gone) just dropped its receiver.
        self.verify_then(check, Box::new(move |verdict| drop(tx.send(verdict))));
        rx.await.map_err(|_| ActorError::Gone("the signature verifier"))?
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue's invariants hold between statements; a panic elsewhere cannot break them.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Verifies batches until the queue is empty, then ends (a later check spawns a new one).
    fn drain(&self) {
        loop {
            let batch: Vec<(Check, Then)> = {
                let mut queue = self.lock();
                if queue.waiting.is_empty() {
                    queue.drainers -= 1;
                    return;
                }
                let n = queue.waiting.len().min(self.config.max_batch.max(1));
                queue.waiting.drain(..n).collect()
            };
            if let Some(m) = &self.metrics {
                m.verifier_batch_size.observe(batch.len() as f64);
            }
            let (checks, replies): (Vec<Check>, Vec<Then>) = batch.into_iter().unzip();
            let verdicts = verify_batch(&checks, self.config.policy);
            // Room is made before the answers go out, so a caller that got its verdict always
            // finds the queue no fuller than it left it.
            {
                let mut queue = self.lock();
                queue.in_flight -= replies.len();
                if let Some(m) = &self.metrics {
                    m.verifier_queue_depth.set(queue.in_flight as i64);
                }
            }
            for (then, verdict) in replies.into_iter().zip(verdicts) {
                then(Ok(verdict));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_engine::sign;
    use sigil_engine::verify::SignedFor;

    fn real_check(i: usize, valid: bool) -> Check {
        let key = sign::random_key();
        let message = format!("1700000000000batchcheck{i:030}");
        let mut signature = sign::sign_bitcoin_message(&key, &message, SignedFor::P2pkhCompressed);
        if !valid {
            signature = sign::sign_bitcoin_message(&sign::random_key(), &message, SignedFor::P2pkhCompressed);
        }
        Check { message, address: sign::p2pkh_address(&key, true), signature }
    }

    #[actix_web::test]
    async fn each_caller_gets_its_own_verdict() {
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let pool = VerifierPool::new(PoolConfig::default(), Some(metrics.clone()));
        let checks: Vec<(Check, bool)> = (0..200).map(|i| (real_check(i, i % 3 != 0), i % 3 != 0)).collect();
        let answers = futures_join(checks.iter().map(|(c, _)| pool.verify(c.clone()))).await;
        for ((_, want), got) in checks.iter().zip(answers) {
            assert_eq!(got.unwrap().is_ok(), *want);
        }
        assert!(metrics.verifier_batch_size.get_sample_count() >= 1);
        assert!(
            metrics.verifier_batch_size.get_sample_count() < 200,
            "concurrent checks were batched, not verified one by one"
        );
        assert_eq!(metrics.verifier_queue_depth.get(), 0);
    }

    /// Waits for `verify_then`'s continuation on the current task.
    fn submit(pool: &VerifierPool, check: Check) -> oneshot::Receiver<Result<Result<(), VerifyError>, ActorError>> {
        let (tx, rx) = oneshot::channel();
        pool.verify_then(check, Box::new(move |verdict| drop(tx.send(verdict))));
        rx
    }

    #[actix_web::test]
    async fn a_full_queue_refuses_instead_of_growing() {
        // No drainer may run: the queue only fills.
        let config = PoolConfig { max_queue: 4, drainers: 0, ..PoolConfig::default() };
        let pool = VerifierPool::new(config, None);
        let waiting: Vec<_> = (0..4).map(|i| submit(&pool, real_check(i, true))).collect();
        let refused = submit(&pool, real_check(9, true)).await.unwrap();
        assert!(matches!(refused, Err(ActorError::Overloaded(_))));
        // A drainer for the queue (as one would be spawned were a rayon thread free).
        let inner = pool.inner.clone();
        inner.lock().drainers += 1;
        rayon::spawn(move || inner.drain());
        for rx in waiting {
            assert_eq!(rx.await.unwrap().unwrap(), Ok(()));
        }
        assert!(drainers_end(&pool).await, "the drainer ended with the queue empty");
        // Once the batch is answered there is room again: a check is queued, not refused.
        let again = submit(&pool, real_check(10, true));
        assert_eq!(pool.inner.lock().in_flight, 1, "queued");
        let inner = pool.inner.clone();
        inner.lock().drainers += 1;
        rayon::spawn(move || inner.drain());
        assert_eq!(again.await.unwrap().unwrap(), Ok(()));
    }

    /// A drainer goes on while checks keep arriving: every check queued while a batch was
    /// being verified is answered, with no timer to wake it.
    #[actix_web::test]
    async fn checks_queued_during_a_batch_are_answered() {
        let config = PoolConfig { drainers: 1, max_batch: 2, ..PoolConfig::default() };
        let pool = VerifierPool::new(config, None);
        let receivers: Vec<_> = (0..25).map(|i| submit(&pool, real_check(i, i % 2 == 0))).collect();
        for (i, rx) in receivers.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap().unwrap().is_ok(), i % 2 == 0);
        }
        assert!(drainers_end(&pool).await, "the drainer ended with the queue empty");
        let queue = pool.inner.lock();
        assert_eq!((queue.in_flight, queue.waiting.len()), (0, 0));
    }

    /// Whether every drainer ends within a second: a drainer answers its last batch before
    /// it looks at the queue again and finds it empty, so this may take a moment.
    async fn drainers_end(pool: &VerifierPool) -> bool {
        for _ in 0..1000 {
            if pool.inner.lock().drainers == 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        false
    }

    /// `verify_then` hands each verdict to its continuation on the thread that reached it,
    /// and a check refused by a full queue to its continuation at once, as `Overloaded`.
    #[actix_web::test]
    async fn continuations_get_verdicts_and_refusals() {
        let config = PoolConfig { max_queue: 3, drainers: 0, ..PoolConfig::default() };
        let pool = VerifierPool::new(config, None);
        let mut answers = Vec::new();
        for (i, valid) in [(0, true), (1, false), (2, true), (3, true)] {
            let (tx, rx) = oneshot::channel();
            let then: Then = Box::new(move |verdict| {
                let _ = tx.send((verdict.map(|v| v.is_ok()).map_err(|e| matches!(e, ActorError::Overloaded(_))), std::thread::current().id()));
            });
            pool.verify_then(real_check(i, valid), then);
            answers.push(rx);
        }
        let inner = pool.inner.clone();
        inner.lock().drainers += 1;
        rayon::spawn(move || inner.drain());
        let mut got = Vec::new();
        for rx in answers {
            got.push(rx.await.unwrap());
        }
        let verdicts: Vec<_> = got.iter().map(|(v, _)| *v).collect();
        assert_eq!(verdicts, vec![Ok(true), Ok(false), Ok(true), Err(true)], "three verdicts, the fourth refused");
        assert_ne!(got[0].1, std::thread::current().id(), "a verdict is delivered on the verifying thread");
        assert_eq!(got[3].1, std::thread::current().id(), "a refusal is delivered on the caller's thread");
    }

    async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let handles: Vec<_> = futs.collect();
        let mut out = Vec::with_capacity(handles.len());
        let joined = futures_util::future::join_all(handles).await;
        out.extend(joined);
        out
    }
}
