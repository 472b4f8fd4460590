//! The verifier pool: micro-batches of signature checks, verified in parallel on rayon.
//!
//! Callers send [`Verify`]; the actor queues the check and its reply channel. The queue goes
//! to rayon as one batch **at once while a rayon thread is free** (an idle server adds no
//! wait), and otherwise when it reaches [`PoolConfig::max_batch`] or [`PoolConfig::max_wait`]
//! after the first check arrived. Small batches keep the stages of a login pipelined: with one
//! batch as large as all 64 connections, every request verified, then committed, then answered
//! in lockstep and the cores took turns idling (measured in docs/benchmarks.md: 64 → 8 gave
//! +12 % logins/s). Each caller gets its own verdict. When more
//! than [`PoolConfig::max_queue`] checks are waiting or running, new ones are refused at once
//! (the front answers with an error body) instead of growing memory and latency without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use sigil_engine::verify::{Check, Policy, VerifyError, verify_batch};
use tokio::sync::oneshot;

use crate::ActorError;
use crate::metrics::ActorMetrics;

#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub max_queue: usize,
    /// Batches that may run on rayon before new checks wait to be batched (0: always wait).
    pub eager_batches: usize,
    pub policy: Policy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            max_wait: Duration::from_micros(200),
            max_queue: 16_384,
            eager_batches: rayon::current_num_threads(),
            policy: Policy::SIGIL,
        }
    }
}

/// Verify one signature; answers the verdict, or [`ActorError::Overloaded`].
#[derive(Message)]
#[rtype(result = "Result<oneshot::Receiver<Result<(), VerifyError>>, ActorError>")]
pub struct Verify(pub Check);

/// What becomes of a check's verdict, on the rayon thread that reached it (or on the pool's
/// thread, with [`ActorError::Overloaded`], if the check was refused).
pub type Then = Box<dyn FnOnce(Result<Result<(), VerifyError>, ActorError>) + Send>;

/// Verify one signature and hand the verdict to `then` where it is reached, without waking the
/// sender: a valid wallet login goes from the verifying thread straight to the session
/// registry's queue, and its request wakes once, when its session is durable. Send it with
/// `do_send` (the answer comes through `then`, refusals included).
#[derive(Message)]
#[rtype(result = "()")]
pub struct VerifyThen(pub Check, pub Then);

pub struct VerifierPool {
    config: PoolConfig,
    pending: Vec<(Check, Then)>,
    flush_scheduled: Option<SpawnHandle>,
    /// Checks accepted and not yet answered (queued + on rayon).
    in_flight: Arc<AtomicUsize>,
    /// Batches handed to rayon and not yet finished.
    running: Arc<AtomicUsize>,
    metrics: Option<ActorMetrics>,
}

impl VerifierPool {
    pub fn new(config: PoolConfig, metrics: Option<ActorMetrics>) -> Self {
        Self { config, pending: Vec::new(), flush_scheduled: None, in_flight: Arc::new(AtomicUsize::new(0)), running: Arc::new(AtomicUsize::new(0)), metrics }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.flush_scheduled.take() {
            ctx.cancel_future(handle);
        }
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        let policy = self.config.policy;
        let in_flight = self.in_flight.clone();
        let running = self.running.clone();
        running.fetch_add(1, Ordering::AcqRel);
        let metrics = self.metrics.clone();
        if let Some(m) = &metrics {
            m.verifier_batch_size.observe(batch.len() as f64);
        }
        rayon::spawn(move || {
            let (checks, replies): (Vec<Check>, Vec<_>) = batch.into_iter().unzip();
            let verdicts = verify_batch(&checks, policy);
            running.fetch_sub(1, Ordering::AcqRel);
            let n = replies.len();
            // Room is made before the answers go out, so a caller that got its verdict
            // always finds the queue no fuller than it left it.
            let left = in_flight.fetch_sub(n, Ordering::AcqRel).saturating_sub(n);
            if let Some(m) = metrics {
                m.verifier_queue_depth.set(left as i64);
            }
            for (then, verdict) in replies.into_iter().zip(verdicts) {
                then(Ok(verdict));
            }
        });
    }
}

impl Actor for VerifierPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.config.max_queue);
    }
}

impl VerifierPool {
    /// Queues `check` for a batch, or refuses it when the queue is full.
    fn enqueue(&mut self, check: Check, then: Then, ctx: &mut Context<Self>) -> Result<(), (Then, ActorError)> {
        let depth = self.in_flight.load(Ordering::Acquire);
        if depth >= self.config.max_queue {
            if let Some(m) = &self.metrics {
                m.verifier_rejected.inc();
            }
            return Err((then, ActorError::Overloaded("the signature verifier")));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(m) = &self.metrics {
            m.verifier_queue_depth.set(depth as i64 + 1);
        }
        self.pending.push((check, then));
        let rayon_free = self.running.load(Ordering::Acquire) < self.config.eager_batches;
        if rayon_free || self.pending.len() >= self.config.max_batch {
            self.flush(ctx);
        } else if self.flush_scheduled.is_none() {
            self.flush_scheduled = Some(ctx.run_later(self.config.max_wait, |pool, ctx| {
                pool.flush_scheduled = None;
                pool.flush(ctx);
            }));
        }
        Ok(())
    }
}

impl Handler<Verify> for VerifierPool {
    type Result = Result<oneshot::Receiver<Result<(), VerifyError>>, ActorError>;

    fn handle(&mut self, Verify(check): Verify, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let then: Then = Box::new(move |verdict| {
            // A caller that gave up (client gone) just dropped its receiver.
            if let Ok(verdict) = verdict {
                let _ = tx.send(verdict);
            }
        });
        self.enqueue(check, then, ctx).map_err(|(_, e)| e)?;
        Ok(rx)
    }
}

impl Handler<VerifyThen> for VerifierPool {
    type Result = ();

    fn handle(&mut self, VerifyThen(check, then): VerifyThen, ctx: &mut Context<Self>) {
        if let Err((then, refused)) = self.enqueue(check, then, ctx) {
            then(Err(refused));
        }
    }
}

/// Sends `check` to the pool and waits for its verdict.
pub async fn verify(pool: &Addr<VerifierPool>, check: Check) -> Result<Result<(), VerifyError>, ActorError> {
    let receiver = pool.send(Verify(check)).await.map_err(|_| ActorError::Gone("the signature verifier"))??;
    receiver.await.map_err(|_| ActorError::Gone("the signature verifier"))
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
        let pool = VerifierPool::new(PoolConfig::default(), Some(metrics.clone())).start();
        let checks: Vec<(Check, bool)> = (0..200).map(|i| (real_check(i, i % 3 != 0), i % 3 != 0)).collect();
        let answers = futures_join(checks.iter().map(|(c, _)| verify(&pool, c.clone()))).await;
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

    #[actix_web::test]
    async fn a_full_queue_refuses_instead_of_growing() {
        let config = PoolConfig {
            max_queue: 4,
            max_batch: 1000,
            max_wait: Duration::from_millis(300),
            eager_batches: 0,
            ..PoolConfig::default()
        };
        let pool = VerifierPool::new(config, None).start();
        let mut waiting = Vec::new();
        for i in 0..4 {
            waiting.push(pool.send(Verify(real_check(i, true))).await.unwrap().unwrap());
        }
        let refused = pool.send(Verify(real_check(9, true))).await.unwrap();
        assert!(matches!(refused, Err(ActorError::Overloaded(_))));
        for rx in waiting {
            assert_eq!(rx.await.unwrap(), Ok(()));
        }
        // Once the batch is answered there is room again.
        assert_eq!(verify(&pool, real_check(10, true)).await.unwrap(), Ok(()));
    }

    /// `VerifyThen` hands each verdict to its continuation on the thread that reached it, and
    /// a check refused by a full queue to its continuation at once, as `Overloaded`.
    #[actix_web::test]
    async fn continuations_get_verdicts_and_refusals() {
        let config = PoolConfig { max_queue: 3, max_batch: 1000, max_wait: Duration::from_millis(200), eager_batches: 0, ..PoolConfig::default() };
        let pool = VerifierPool::new(config, None).start();
        let mut answers = Vec::new();
        for (i, valid) in [(0, true), (1, false), (2, true), (3, true)] {
            let (tx, rx) = oneshot::channel();
            let then: Then = Box::new(move |verdict| {
                let _ = tx.send((verdict.map(|v| v.is_ok()).map_err(|e| matches!(e, ActorError::Overloaded(_))), std::thread::current().id()));
            });
            pool.do_send(VerifyThen(real_check(i, valid), then));
            answers.push(rx);
        }
        let mut got = Vec::new();
        for rx in answers {
            got.push(rx.await.unwrap());
        }
        let verdicts: Vec<_> = got.iter().map(|(v, _)| *v).collect();
        assert_eq!(verdicts, vec![Ok(true), Ok(false), Ok(true), Err(true)], "three verdicts, the fourth refused");
        assert_ne!(got[0].1, std::thread::current().id(), "a verdict is delivered on the verifying thread");
    }

    async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let handles: Vec<_> = futs.collect();
        let mut out = Vec::with_capacity(handles.len());
        let joined = futures_util::future::join_all(handles).await;
        out.extend(joined);
        out
    }
}
