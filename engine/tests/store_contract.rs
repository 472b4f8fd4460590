//! The store contract the engine relies on, run against every backend: RocksDB in a temp dir,
//! one real `redis-server`, and a real Redis Cluster (3 primaries + 3 replicas, `WAIT 1`).
//! Each test gets a fresh store (its own RocksDB, or its own key namespace on the shared Redis
//! processes), races threads against it and checks what the engine builds on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, Barrier};
use std::time::Duration;

use sigil_engine::store::{Batch, Change, Cf, Store, index_key, index_prefix, index_primary, now_ms};

/// A store and whatever keeps it alive (a temp dir).
struct Fixture {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

mod backends {
    use super::*;
    use sigil_engine::store::{Durability, RedisOptions, RedisStore, RocksStore};
    use sigil_testkit::{RedisCluster, RedisServer};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub fn rocksdb() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        Fixture { store: Arc::new(RocksStore::open(dir.path(), Durability::Fsync).unwrap()), _dir: Some(dir) }
    }

    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);

    fn connect(urls: Vec<String>, wait: Option<u32>) -> Fixture {
        let options = RedisOptions {
            urls,
            wait_replicas: wait,
            timeout: Duration::from_secs(5),
            namespace: format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)),
        };
        Fixture { store: Arc::new(RedisStore::connect(&options).unwrap()), _dir: None }
    }

    pub fn redis() -> Fixture {
        connect(vec![SERVER.get_or_init(RedisServer::start).url()], None)
    }

    pub fn cluster() -> &'static RedisCluster {
        CLUSTER.get_or_init(RedisCluster::start)
    }

    pub fn redis_cluster() -> Fixture {
        let cluster = cluster();
        connect(cluster.urls(), None)
    }
}

/// Every contract test, once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod rocksdb { $( #[test] fn $name() { super::$name(&super::backends::rocksdb()); } )* }
        mod redis { $( #[test] fn $name() { super::$name(&super::backends::redis()); } )* }
        mod redis_cluster { $( #[test] fn $name() { super::$name(&super::backends::redis_cluster()); } )* }
    };
}

contract!(
    put_get_delete,
    take_has_exactly_one_winner,
    group_takes_race_with_single_takes_and_each_key_has_one_winner,
    take_of_a_missing_or_expired_key_writes_nothing,
    secondary_index_is_written_with_its_record,
    write_each_writes_every_batch_whole,
    expired_records_read_as_absent,
    update_is_atomic_and_never_revives_a_deleted_key,
    update_sees_the_expiry_and_keeps_it,
    insert_new_claims_a_name_once,
    insert_new_claims_several_keys_or_none,
    scan_lists_a_family_by_prefix_in_key_order,
    relaxed_writes_persist_and_ping,
);

fn put_get_delete(f: &Fixture) {
    let store = &f.store;
    let mut b = Batch::new();
    b.put(Cf::AppOwners, b"app".to_vec(), b"1owner".to_vec());
    b.put(Cf::AppOwners, b"gone".to_vec(), b"x".to_vec());
    store.write(b).unwrap();
    let mut b = Batch::new();
    b.delete(Cf::AppOwners, b"gone".to_vec());
    store.write(b).unwrap();
    assert_eq!(store.get(Cf::AppOwners, b"app").unwrap().as_deref(), Some(&b"1owner"[..]));
    assert_eq!(store.get(Cf::AppOwners, b"gone").unwrap(), None);
    assert_eq!(store.get(Cf::Sessions, b"app").unwrap(), None, "families are separate");
    // Binary keys and values, with the bytes a key encoding could trip on.
    let mut b = Batch::new();
    b.put(Cf::Sessions, b"\xff\x00{}*?[".to_vec(), b"\x00\xff".to_vec());
    store.write(b).unwrap();
    assert_eq!(store.get(Cf::Sessions, b"\xff\x00{}*?[").unwrap().as_deref(), Some(&b"\x00\xff"[..]));
    assert_eq!(store.get(Cf::Sessions, b"\xff\x00{}*?").unwrap(), None);
}

fn take_has_exactly_one_winner(f: &Fixture) {
    let store = f.store.clone();
    const KEYS: usize = 50;
    const THREADS: usize = 16;
    for k in 0..KEYS {
        let mut b = Batch::new();
        b.put_expiring(Cf::Phrases, format!("phrase-{k}").into_bytes(), b"issued".to_vec(), now_ms() + 60_000);
        store.write(b).unwrap();
    }
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = Vec::new();
                for k in 0..KEYS {
                    let key = format!("phrase-{k}").into_bytes();
                    // The winner's session is written with the take; a loser's never is.
                    let mut then = Batch::new();
                    then.put(Cf::Sessions, format!("session-{k}").into_bytes(), format!("thread-{t}").into_bytes());
                    if store.take(Cf::Phrases, &key, then).unwrap().is_some() {
                        won.push(k);
                    }
                }
                (t, won)
            })
        })
        .collect();
    let mut winners = vec![Vec::new(); KEYS];
    for h in handles {
        let (t, won) = h.join().unwrap();
        for k in won {
            winners[k].push(t);
        }
    }
    for (k, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "phrase-{k} taken by {w:?}");
        let session = store.get(Cf::Sessions, format!("session-{k}").as_bytes()).unwrap().unwrap();
        assert_eq!(session, format!("thread-{}", w[0]).into_bytes(), "only the winner's batch was written");
        assert_eq!(store.get(Cf::Phrases, format!("phrase-{k}").as_bytes()).unwrap(), None);
    }
}

fn group_takes_race_with_single_takes_and_each_key_has_one_winner(f: &Fixture) {
    let store = f.store.clone();
    const KEYS: usize = 60;
    let mut b = Batch::new();
    for k in 0..KEYS {
        b.put_expiring(Cf::Phrases, format!("p{k}").into_bytes(), b"issued".to_vec(), now_ms() + 60_000);
    }
    store.write(b).unwrap();
    let then = |k: usize, who: &str| {
        let mut b = Batch::new();
        b.put(Cf::Sessions, format!("s{k}").into_bytes(), who.as_bytes().to_vec());
        b
    };
    let barrier = Arc::new(Barrier::new(3));
    // Two group committers (each naming every key, some twice) against one single taker.
    let groups: Vec<_> = ["g0", "g1"]
        .into_iter()
        .map(|who| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut won = Vec::new();
                for chunk in (0..KEYS).collect::<Vec<_>>().chunks(7) {
                    let mut items: Vec<_> = chunk.iter().map(|&k| (format!("p{k}").into_bytes(), then(k, who))).collect();
                    items.push((format!("p{}", chunk[0]).into_bytes(), then(chunk[0], "duplicate")));
                    let taken = store.take_each(Cf::Phrases, items).unwrap();
                    assert_eq!(taken.len(), chunk.len() + 1, "one answer per item, in order");
                    assert_eq!(taken[chunk.len()], None, "a key named twice in a group is taken once");
                    won.extend(chunk.iter().zip(&taken).filter(|(_, t)| t.is_some()).map(|(&k, _)| k));
                }
                (who, won)
            })
        })
        .collect();
    let single = {
        let (store, barrier) = (store.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            let won: Vec<usize> = (0..KEYS)
                .rev()
                .filter(|&k| store.take(Cf::Phrases, format!("p{k}").as_bytes(), then(k, "single")).unwrap().is_some())
                .collect();
            ("single", won)
        })
    };
    let mut winner = vec![Vec::new(); KEYS];
    for h in groups.into_iter().chain([single]) {
        let (who, won) = h.join().unwrap();
        for k in won {
            winner[k].push(who);
        }
    }
    for (k, w) in winner.iter().enumerate() {
        assert_eq!(w.len(), 1, "p{k} taken by {w:?}");
        assert_eq!(store.get(Cf::Sessions, format!("s{k}").as_bytes()).unwrap().unwrap(), w[0].as_bytes());
    }
    assert_eq!(store.take_each(Cf::Phrases, vec![(b"p0".to_vec(), then(0, "late"))]).unwrap(), vec![None]);
}

fn take_of_a_missing_or_expired_key_writes_nothing(f: &Fixture) {
    let store = &f.store;
    let mut b = Batch::new();
    b.put_expiring(Cf::Phrases, b"old".to_vec(), b"v".to_vec(), now_ms() - 1);
    store.write(b).unwrap();
    for key in [&b"old"[..], b"never"] {
        let mut then = Batch::new();
        then.put(Cf::Sessions, b"s".to_vec(), b"v".to_vec());
        then.put(Cf::Sessions, key.to_vec(), b"same slot as the key".to_vec());
        assert_eq!(store.take(Cf::Phrases, key, then).unwrap(), None);
        assert_eq!(store.get(Cf::Sessions, key).unwrap(), None);
    }
    assert_eq!(store.get(Cf::Sessions, b"s").unwrap(), None);
}

fn secondary_index_is_written_with_its_record(f: &Fixture) {
    let store = &f.store;
    let owners = ["1alice", "1bob", "1alice2"];
    for (i, owner) in owners.iter().cycle().take(9).enumerate() {
        let key = format!("s{i}").into_bytes();
        let mut b = Batch::new();
        b.put(Cf::Sessions, key.clone(), owner.as_bytes().to_vec());
        b.put(Cf::SessionsByOwner, index_key(owner.as_bytes(), &key), Vec::new());
        store.write(b).unwrap();
    }
    let alice = store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1alice"), usize::MAX).unwrap();
    let keys: Vec<_> = alice.iter().map(|(k, _)| index_primary(k, b"1alice").unwrap().to_vec()).collect();
    assert_eq!(keys, vec![b"s0".to_vec(), b"s3".to_vec(), b"s6".to_vec()], "1alice2 is not 1alice");
    for k in &keys {
        assert_eq!(store.get(Cf::Sessions, k).unwrap().as_deref(), Some(&b"1alice"[..]));
    }
    assert!(store.get(Cf::SessionsByOwner, &index_key(b"1alice", b"s3")).unwrap().is_some());
    assert_eq!(store.get(Cf::SessionsByOwner, &index_key(b"1alice", b"s4")).unwrap(), None);
    assert_eq!(store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1bob"), 2).unwrap().len(), 2, "limit");
    // Ending a record removes it and its entry together.
    let mut b = Batch::new();
    b.delete(Cf::Sessions, b"s3".to_vec());
    b.delete(Cf::SessionsByOwner, index_key(b"1alice", b"s3"));
    store.write(b).unwrap();
    let alice = store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1alice"), usize::MAX).unwrap();
    assert_eq!(alice.len(), 2);
    assert_eq!(store.get(Cf::Sessions, b"s3").unwrap(), None);
}

/// `write_each` (the phrase issuer's grouped write): every batch lands whole, records and index
/// entries in different slots included; relaxed and strict batches may be mixed; expiries hold.
fn write_each_writes_every_batch_whole(f: &Fixture) {
    let store = &f.store;
    let now = now_ms();
    let batches: Vec<Batch> = (0..40)
        .map(|i| {
            let key = format!("w{i}").into_bytes();
            let mut b = Batch::new();
            b.put_expiring(Cf::Sessions, key.clone(), format!("v{i}").into_bytes(), now + 60_000);
            b.put_expiring(Cf::SessionsByOwner, index_key(format!("1owner{}", i % 3).as_bytes(), &key), Vec::new(), now + 60_000);
            if i % 2 == 0 {
                b.relaxed();
            }
            b
        })
        .chain([Batch::new()])
        .collect();
    store.write_each(batches).unwrap();
    for i in 0..40 {
        let key = format!("w{i}").into_bytes();
        assert_eq!(store.get(Cf::Sessions, &key).unwrap(), Some(format!("v{i}").into_bytes()), "record {i}");
    }
    let owned = store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1owner1"), usize::MAX).unwrap();
    assert_eq!(owned.len(), 13, "index entries of 1, 4, …, 37");
    let mut short = Batch::new();
    short.put_expiring(Cf::Phrases, b"soon".to_vec(), b"x".to_vec(), now_ms() + 100);
    store.write_each(vec![short]).unwrap();
    assert!(store.get(Cf::Phrases, b"soon").unwrap().is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(store.get(Cf::Phrases, b"soon").unwrap(), None, "the expiry holds");
}

fn expired_records_read_as_absent(f: &Fixture) {
    let store = &f.store;
    let now = now_ms();
    // Two seconds: the writes (with WAIT on a loaded Redis Cluster) must land well before it,
    // or "not yet expired" below would be a race with the clock (it was, at 150 ms).
    let short = now + 2_000;
    let mut b = Batch::new();
    b.put_expiring(Cf::Sessions, b"short".to_vec(), b"1".to_vec(), short);
    b.put_expiring(Cf::SessionsByOwner, index_key(b"1o", b"short"), Vec::new(), short);
    b.put_expiring(Cf::SessionsByOwner, index_key(b"1o", b"long"), Vec::new(), now + 3_600_000);
    b.put_expiring(Cf::Sessions, b"long".to_vec(), b"2".to_vec(), now + 3_600_000);
    b.put(Cf::Sessions, b"forever".to_vec(), b"3".to_vec());
    // Rewritten without expiry: it must not expire at its first expiry.
    b.put_expiring(Cf::AppOwners, b"renewed".to_vec(), b"old".to_vec(), now + 100);
    store.write(b).unwrap();
    let mut b = Batch::new();
    b.put(Cf::AppOwners, b"renewed".to_vec(), b"new".to_vec());
    store.write(b).unwrap();

    assert!(store.get(Cf::Sessions, b"short").unwrap().is_some());
    assert_eq!(store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1o"), 10).unwrap().len(), 2);
    std::thread::sleep(Duration::from_millis((short + 100).saturating_sub(now_ms())));
    assert_eq!(store.get(Cf::Sessions, b"short").unwrap(), None, "expired reads as absent at once");
    assert_eq!(store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1o"), 10).unwrap().len(), 1);
    assert!(store.get(Cf::Sessions, b"long").unwrap().is_some());
    assert!(store.get(Cf::Sessions, b"forever").unwrap().is_some());
    assert_eq!(store.get(Cf::AppOwners, b"renewed").unwrap().as_deref(), Some(&b"new"[..]));
    assert!(store.scan_prefix(Cf::Sessions, b"short", 10).unwrap().is_empty());
}

fn update_is_atomic_and_never_revives_a_deleted_key(f: &Fixture) {
    let store = f.store.clone();
    let mut b = Batch::new();
    b.put(Cf::Counters, b"n".to_vec(), 0u64.to_be_bytes().to_vec());
    store.write(b).unwrap();
    // 8 threads × 100 increments by read-modify-write: none is lost.
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..100 {
                    store
                        .update(Cf::Counters, b"n", true, &mut |cur| {
                            let n = u64::from_be_bytes(cur.unwrap().value.as_slice().try_into().unwrap());
                            Change::Put { value: (n + 1).to_be_bytes().to_vec(), expires_at: None, then: Batch::new() }
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    let n = u64::from_be_bytes(store.get(Cf::Counters, b"n").unwrap().unwrap().as_slice().try_into().unwrap());
    assert_eq!(n, 800);

    // Once deleted, updates see nothing and write nothing.
    let deleted = store.update(Cf::Counters, b"n", false, &mut |_| Change::Delete { then: Batch::new() }).unwrap();
    assert!(matches!(deleted, Change::Delete { .. }));
    let mut saw = None;
    store
        .update(Cf::Counters, b"n", false, &mut |cur| {
            saw = Some(cur.is_some());
            Change::Keep
        })
        .unwrap();
    assert_eq!(saw, Some(false));
    assert_eq!(store.get(Cf::Counters, b"n").unwrap(), None);
}

fn update_sees_the_expiry_and_keeps_it(f: &Fixture) {
    let store = &f.store;
    let at = now_ms() + 60_000;
    let mut b = Batch::new();
    b.put_expiring(Cf::Tickets, b"t".to_vec(), b"1".to_vec(), at);
    store.write(b).unwrap();
    let mut seen = None;
    store
        .update(Cf::Tickets, b"t", false, &mut |cur| {
            let cur = cur.unwrap();
            seen = cur.expires_at;
            // Rewrite with an index entry on another slot, deleted again below.
            let mut then = Batch::new();
            then.put_expiring(Cf::SessionIds, b"id-of-t".to_vec(), b"t".to_vec(), at);
            Change::Put { value: b"2".to_vec(), expires_at: cur.expires_at, then }
        })
        .unwrap();
    assert_eq!(seen, Some(at));
    assert_eq!(store.get(Cf::Tickets, b"t").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.get(Cf::SessionIds, b"id-of-t").unwrap().as_deref(), Some(&b"t"[..]));
    store
        .update(Cf::Tickets, b"t", false, &mut |_| {
            let mut then = Batch::new();
            then.delete(Cf::SessionIds, b"id-of-t".to_vec());
            Change::Delete { then }
        })
        .unwrap();
    assert_eq!(store.get(Cf::Tickets, b"t").unwrap(), None);
    assert_eq!(store.get(Cf::SessionIds, b"id-of-t").unwrap(), None);
}

fn insert_new_claims_a_name_once(f: &Fixture) {
    let store = f.store.clone();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16u8)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut b = Batch::new();
                b.put(Cf::AccountNames, b"u:alice".to_vec(), vec![t]);
                b.put(Cf::Accounts, vec![t], b"record".to_vec());
                store.insert_new(&[(Cf::AccountNames, b"u:alice".to_vec())], b).unwrap()
            })
        })
        .collect();
    let won: Vec<u8> = handles.into_iter().enumerate().filter_map(|(t, h)| h.join().unwrap().then_some(t as u8)).collect();
    assert_eq!(won.len(), 1, "exactly one claim wins");
    assert_eq!(store.get(Cf::AccountNames, b"u:alice").unwrap(), Some(vec![won[0]]));
    for t in 0..16u8 {
        assert_eq!(store.get(Cf::Accounts, &[t]).unwrap().is_some(), t == won[0], "a losing claim wrote nothing");
    }
}

/// A username and an email (different slots on a cluster): both are claimed or neither is.
fn insert_new_claims_several_keys_or_none(f: &Fixture) {
    let store = &f.store;
    let claim = |guid: &[u8], names: &[&[u8]]| {
        let mut b = Batch::new();
        for n in names {
            b.put(Cf::AccountNames, n.to_vec(), guid.to_vec());
        }
        b.put(Cf::Accounts, guid.to_vec(), b"record".to_vec());
        let absent: Vec<_> = names.iter().map(|n| (Cf::AccountNames, n.to_vec())).collect();
        store.insert_new(&absent, b).unwrap()
    };
    assert!(claim(b"g1", &[b"u:bob", b"e:bob@example.com"]));
    // The second name is taken: the first must be released again.
    assert!(!claim(b"g2", &[b"u:robert", b"e:bob@example.com"]));
    assert_eq!(store.get(Cf::AccountNames, b"u:robert").unwrap(), None, "a refused claim leaves nothing behind");
    assert_eq!(store.get(Cf::Accounts, b"g2").unwrap(), None);
    assert!(!claim(b"g3", &[b"u:bob", b"e:other@example.com"]));
    assert_eq!(store.get(Cf::AccountNames, b"e:other@example.com").unwrap(), None);
    assert!(claim(b"g4", &[b"u:robert", b"e:other@example.com"]));
    assert_eq!(store.get(Cf::AccountNames, b"e:bob@example.com").unwrap().as_deref(), Some(&b"g1"[..]));
}

fn scan_lists_a_family_by_prefix_in_key_order(f: &Fixture) {
    let store = &f.store;
    let mut b = Batch::new();
    for i in (0..30u8).rev() {
        b.put(Cf::Sessions, [&[0xff], &[i][..]].concat(), vec![i]);
        b.put(Cf::Sessions, format!("phrase{i:02}").into_bytes(), vec![i]);
    }
    b.put(Cf::Groups, b"ops".to_vec(), b"g".to_vec());
    store.write(b).unwrap();
    let accounts = store.scan_prefix(Cf::Sessions, &[0xff], usize::MAX).unwrap();
    assert_eq!(accounts.len(), 30);
    assert!(accounts.windows(2).all(|w| w[0].0 < w[1].0), "key order");
    assert_eq!(accounts[5], (vec![0xff, 5], vec![5]));
    assert_eq!(store.scan_prefix(Cf::Sessions, b"", usize::MAX).unwrap().len(), 60);
    assert_eq!(store.scan_prefix(Cf::Sessions, b"phrase1", usize::MAX).unwrap().len(), 10);
    assert_eq!(store.scan_prefix(Cf::Sessions, b"", 7).unwrap().len(), 7);
    assert_eq!(store.scan_prefix(Cf::Groups, b"", usize::MAX).unwrap(), vec![(b"ops".to_vec(), b"g".to_vec())]);
    assert!(store.scan_prefix(Cf::Accounts, b"", usize::MAX).unwrap().is_empty());
}

fn relaxed_writes_persist_and_ping(f: &Fixture) {
    let store = &f.store;
    let mut b = Batch::new();
    b.put(Cf::Counters, b"relaxed".to_vec(), b"1".to_vec()).relaxed();
    store.write(b).unwrap();
    store.persist().unwrap();
    assert_eq!(store.get(Cf::Counters, b"relaxed").unwrap().as_deref(), Some(&b"1"[..]));
    store.ping().unwrap();
}

/// The cluster fixture is what it claims: cluster mode, and every write waits for a replica.
#[test]
fn the_cluster_backend_runs_in_cluster_mode_and_waits_for_a_replica() {
    use sigil_engine::store::{RedisOptions, RedisStore};
    let _ = backends::redis_cluster();
    let cluster = backends::cluster();
    let store = RedisStore::connect(&RedisOptions {
        urls: cluster.urls(),
        wait_replicas: None,
        timeout: Duration::from_secs(5),
        namespace: "mode-check".into(),
    })
    .unwrap();
    assert!(store.is_cluster());
    assert_eq!(store.wait_replicas(), 1);
    assert_eq!(cluster.primaries().len(), 3);
}
