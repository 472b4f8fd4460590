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

/// Whether `key` is over `limit` at `now`, without counting: `Err(wait_ms)` when its window is
/// full. For counters that count failures, checked before an attempt and hit after it failed.
pub fn peek(store: &dyn Store, key: &str, limit: RateLimit, now: Millis) -> Result<Result<(), Millis>, StoreError> {
    let window = u64::try_from(limit.per.as_millis()).unwrap_or(u64::MAX).max(1);
    let state = store.get(Cf::Counters, key.as_bytes())?.and_then(|raw| decode(&raw));
    Ok(match state {
        Some((start, hits)) if now < start.saturating_add(window) && hits >= limit.count => {
            Err(start.saturating_add(window).saturating_sub(now).max(1))
        }
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, RocksStore};

    #[test]
    fn fixed_windows_count_refuse_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        // The store reads records as expired by the real clock, so times are real ones.
        let t = crate::store::now_ms();
        let limit = RateLimit::new(3, 10);
        for _ in 0..3 {
            assert_eq!(peek(&store, "k", limit, t).unwrap(), Ok(()));
            assert_eq!(hit(&store, "k", limit, t).unwrap(), Ok(()));
        }
        assert_eq!(hit(&store, "k", limit, t + 3_000).unwrap(), Err(7_000), "full until +10 s");
        assert_eq!(peek(&store, "k", limit, t + 3_000).unwrap(), Err(7_000));
        assert_eq!(hit(&store, "other", limit, t + 3_000).unwrap(), Ok(()), "keys are separate");
        assert_eq!(hit(&store, "k", limit, t + 10_000).unwrap(), Ok(()), "a new window");
    }

    #[test]
    fn concurrent_hits_are_counted_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RocksStore::open(dir.path(), Durability::Fsync).unwrap());
        let limit = RateLimit::new(50, 60);
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    s.spawn(move || (0..20).filter(|_| hit(store.as_ref(), "k", limit, crate::store::now_ms()).unwrap().is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 50, "160 concurrent hits, exactly 50 allowed");
    }
}
