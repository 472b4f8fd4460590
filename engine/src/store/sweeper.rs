//! A background thread that deletes expired records on a fixed interval.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Store, now_ms};

/// Runs [`Store::sweep_expired`] every `interval` until dropped.
///
/// Reads already treat expired records as absent, so the sweeper only reclaims space; its
/// interval trades disk for background work, never correctness.
pub struct Sweeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(store: Arc<dyn Store>, interval: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("sigil-sweeper".into()).spawn(move || {
            loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                match store.sweep_expired(now_ms()) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(swept = n, "expired records removed"),
                    Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
                }
            }
        })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
