//! The password pool: argon2id on its own bounded set of threads.
//!
//! Hashing a password costs tens of milliseconds of CPU and ~19 MiB of memory by design. Done
//! on an actix worker it would stall every request that worker carries; done on rayon it
//! would queue wallet signature checks behind it. So it runs on `passwords.workers` threads
//! of its own, fed by a bounded queue (`passwords.queue`): when the queue is full a login is
//! refused at once ("rate limited") instead of waiting without bound, so a password storm
//! costs at most the pool's cores and a bounded amount of memory. Metrics:
//! `sigil_password_queue_depth`, `sigil_password_hash_seconds`, `sigil_password_rejected_total`.

use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::{Receiver, Sender, TrySendError};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use sigil_engine::account::password::{Hasher, PasswordError, Verdict};
use tokio::sync::oneshot;

use crate::ActorError;

#[derive(Clone)]
pub struct PasswordMetrics {
    pub queue_depth: IntGauge,
    pub hash_seconds: Histogram,
    pub rejected: IntCounter,
}

impl PasswordMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            queue_depth: IntGauge::new("sigil_password_queue_depth", "Password checks waiting for or on a hashing thread")?,
            hash_seconds: Histogram::with_opts(
                HistogramOpts::new("sigil_password_hash_seconds", "Time one argon2id hash or check took on its thread")
                    .buckets(vec![0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28]),
            )?,
            rejected: IntCounter::new("sigil_password_rejected_total", "Password checks refused because the queue was full")?,
        };
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.hash_seconds.clone()))?;
        registry.register(Box::new(m.rejected.clone()))?;
        Ok(m)
    }
}

enum Job {
    /// Check against a stored hash, or against the decoy when there is none (unknown user).
    Verify { password: String, phc: Option<String>, reply: oneshot::Sender<Verdict> },
    Hash { password: String, reply: oneshot::Sender<Result<String, PasswordError>> },
}

/// A handle to the pool; clones share it. The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: Sender<Job>,
    metrics: Option<PasswordMetrics>,
}

impl PasswordPool {
    /// Starts `workers` hashing threads (0 = one per core) behind a queue of `queue` jobs; in
    /// the `background`, they run at the lowest CPU priority.
    pub fn start(hasher: Hasher, settings: PoolSettings, metrics: Option<PasswordMetrics>) -> std::io::Result<Self> {
        let PoolSettings { workers, queue, background } = settings;
        let workers = if workers == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { workers };
        let (jobs, rx) = crossbeam::channel::bounded(queue.max(1));
        let hasher = Arc::new(hasher);
        for i in 0..workers {
            let (rx, hasher, metrics) = (rx.clone(), hasher.clone(), metrics.clone());
            std::thread::Builder::new().name(format!("sigil-password-{i}")).spawn(move || {
                if background {
                    lower_priority();
                }
                work(&rx, &hasher, metrics.as_ref());
            })?;
        }
        Ok(Self { jobs, metrics })
    }

    fn submit(&self, job: Job) -> Result<(), ActorError> {
        match self.jobs.try_send(job) {
            Ok(()) => {
                if let Some(m) = &self.metrics {
                    m.queue_depth.inc();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                if let Some(m) = &self.metrics {
                    m.rejected.inc();
                }
                Err(ActorError::Overloaded("the password pool"))
            }
            Err(TrySendError::Disconnected(_)) => Err(ActorError::Gone("the password pool")),
        }
    }

    /// Checks `password` against `phc`, or against the decoy when `phc` is `None` (so an
    /// unknown username costs what a wrong password costs).
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<Verdict, ActorError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify { password, phc, reply })?;
        rx.await.map_err(|_| ActorError::Gone("the password pool"))
    }

    /// A PHC string of `password` at the configured parameters.
    pub async fn hash(&self, password: String) -> Result<String, ActorError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        rx.await.map_err(|_| ActorError::Gone("the password pool"))?.map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ActorError::Gone("the password hasher")
        })
    }
}

/// The pool's shape (`passwords.workers`, `passwords.queue`, `passwords.background`).
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub workers: usize,
    pub queue: usize,
    pub background: bool,
}

/// Moves the calling thread to SCHED_BATCH at nice 19: under contention it gets about 1.5 % of
/// a core against a normal thread (HTTP workers, the verifier), never preempts them on
/// wake-up, and still always progresses (SCHED_IDLE measured no better here and may starve).
/// Measured on 2 cores (docs/benchmarks.md): a password storm raised the session-check p99
/// 1.6 → 7.8 ms at normal priority, 1.7 → 5.0 ms with this; two SCHED_IDLE CPU burners alone
/// raise it 1.3 → 5.8 ms on the same VM, so the rest is the machine, not the scheduling.
/// Lowering one's own priority needs no privilege; if the OS refuses anyway, hashing runs at
/// normal priority.
fn lower_priority() {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy, thread_native_id};
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    if let Err(e) = thread_priority::set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, policy) {
        tracing::warn!(error = ?e, "cannot lower the password threads' priority; they hash at normal priority");
    }
}

fn work(jobs: &Receiver<Job>, hasher: &Hasher, metrics: Option<&PasswordMetrics>) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        // Metrics first, reply second: whoever is woken by the reply sees them updated.
        let done = |metrics: Option<&PasswordMetrics>| {
            if let Some(m) = metrics {
                m.hash_seconds.observe(started.elapsed().as_secs_f64());
                m.queue_depth.dec();
            }
        };
        match job {
            Job::Verify { password, phc, reply } => {
                let verdict = match phc {
                    Some(phc) => hasher.verify(&password, &phc),
                    None => {
                        hasher.verify_decoy(&password);
                        Verdict::Invalid
                    }
                };
                done(metrics);
                let _ = reply.send(verdict);
            }
            Job::Hash { password, reply } => {
                let hashed = hasher.hash(&password);
                done(metrics);
                let _ = reply.send(hashed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_engine::config::HashParams;

    fn pool(workers: usize, queue: usize) -> (PasswordPool, PasswordMetrics) {
        let hasher = Hasher::new(HashParams { memory_kib: 7_168, iterations: 5, parallelism: 1 }).unwrap();
        let metrics = PasswordMetrics::new(&Registry::new()).unwrap();
        let settings = PoolSettings { workers, queue, background: true };
        (PasswordPool::start(hasher, settings, Some(metrics.clone())).unwrap(), metrics)
    }

    #[actix_web::test]
    async fn hashes_verifies_and_uses_the_decoy() {
        let (pool, metrics) = pool(1, 8);
        let phc = pool.hash("hunter2hunter2".into()).await.unwrap();
        assert_eq!(pool.verify("hunter2hunter2".into(), Some(phc.clone())).await.unwrap(), Verdict::Valid { rehash: false });
        assert_eq!(pool.verify("hunter3hunter3".into(), Some(phc)).await.unwrap(), Verdict::Invalid);
        assert_eq!(pool.verify("anything".into(), None).await.unwrap(), Verdict::Invalid);
        assert_eq!(metrics.hash_seconds.get_sample_count(), 4);
        assert_eq!(metrics.queue_depth.get(), 0);
    }

    #[actix_web::test]
    async fn a_full_queue_refuses_at_once() {
        let (pool, metrics) = pool(1, 2);
        // One on the thread, two queued, the rest refused without waiting.
        let attempts: Vec<_> = (0..12).map(|_| pool.verify("password1".into(), None)).collect();
        let started = Instant::now();
        let results = futures_util::future::join_all(attempts).await;
        let refused = results.iter().filter(|r| matches!(r, Err(ActorError::Overloaded(_)))).count();
        assert!(refused >= 8, "{refused} of 12 refused");
        assert!(metrics.rejected.get() >= 8);
        assert!(started.elapsed().as_secs() < 10);
    }
}
