//! Rate-limit and failure counters kept in the store: fixed windows, updated atomically.
//!
//! Counters live in [`Cf::Counters`], so they survive a restart and, with a shared store, are
//! shared by every node. Each hit is one atomic [`Store::update`] written without fsync (a
//! counter lost to a power cut only gives an attacker a fresh window once) that expires with its
//! window. Keys name what is counted, e.g. `login-ip:192.0.2.7` or `login-fail:alice`.

use crate::config::RateLimit;
use crate::store::{Batch, Change, Cf, Millis, Store, StoreError};

/// One counter's state: the window's start and the hits in it.
fn decode(raw: &[u8]) -> Option<(Millis, u32)> {
    let start = u64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
    let hits = u32::from_be_bytes(raw.get(8..12)?.try_into().ok()?);
    Some((start, hits))
}

fn encode(start: Millis, hits: u32) -> Vec<u8> {
    let mut out = start.to_be_bytes().to_vec();
    out.extend_from_slice(&hits.to_be_bytes());
    out
}

/// Counts one hit on `key` under `limit` at `now`: `Ok(Ok(()))` if it is within the limit,
/// `Ok(Err(wait_ms))` if the window is full (the hit is not counted).
pub fn hit(store: &dyn Store, key: &str, limit: RateLimit, now: Millis) -> Result<Result<(), Millis>, StoreError> {
    let window = u64::try_from(limit.per.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut verdict = Ok(());
    store.update(Cf::Counters, key.as_bytes(), true, &mut |current| {
        let (start, hits) = current.and_then(|c| decode(&c.value)).filter(|(start, _)| now < start.saturating_add(window)).unwrap_or((now, 0));
        if hits >= limit.count {
            verdict = Err(start.saturating_add(window).saturating_sub(now).max(1));
            return Change::Keep;
        }
        verdict = Ok(());
        Change::Put { value: encode(start, hits + 1), expires_at: Some(start.saturating_add(window)), then: Batch::new() }
    })?;
    Ok(verdict)
}

/// Takes back one hit (a counted attempt that turned out to be a success).
pub fn refund(store: &dyn Store, key: &str) -> Result<(), StoreError> {
    store.update(Cf::Counters, key.as_bytes(), true, &mut |current| match current.and_then(|c| decode(&c.value).map(|d| (d, c.expires_at))) {
        Some(((start, hits), expires_at)) if hits > 0 => {
            Change::Put { value: encode(start, hits - 1), expires_at, then: Batch::new() }
        }
        _ => Change::Keep,
    })?;
    Ok(())
}
