//! The RocksDB store, for real: a temp-dir database, threads racing, a child process killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sigil_engine::store::{
    Batch, Cf, Durability, RocksStore, Store, Sweeper, index_key, index_prefix, index_primary, now_ms,
};

fn open(dir: &tempfile::TempDir) -> RocksStore {
    RocksStore::open(dir.path(), Durability::Fsync).unwrap()
}

#[test]
fn put_get_delete_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        let mut b = Batch::new();
        b.put(Cf::AppOwners, b"app".to_vec(), b"1owner".to_vec());
        b.put(Cf::AppOwners, b"gone".to_vec(), b"x".to_vec());
        store.write(b).unwrap();
        let mut b = Batch::new();
        b.delete(Cf::AppOwners, b"gone".to_vec());
        store.write(b).unwrap();
        assert_eq!(store.get(Cf::AppOwners, b"app").unwrap().as_deref(), Some(&b"1owner"[..]));
        assert_eq!(store.get(Cf::Sessions, b"app").unwrap(), None, "families are separate");
        store.flush().unwrap();
    }
    let store = open(&dir);
    assert_eq!(store.get(Cf::AppOwners, b"app").unwrap().as_deref(), Some(&b"1owner"[..]));
    assert_eq!(store.get(Cf::AppOwners, b"gone").unwrap(), None);
    store.ping().unwrap();
}

#[test]
fn a_second_process_cannot_open_a_busy_store() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir);
    let err = RocksStore::open(dir.path(), Durability::Fsync).unwrap_err().to_string();
    assert!(err.starts_with("cannot open the store at"), "{err}");
}

#[test]
fn take_has_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
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
                    // The winner's session is committed in the same write as the take.
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

#[test]
fn group_takes_race_with_single_takes_and_each_key_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
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

#[test]
fn take_of_a_missing_or_expired_key_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut b = Batch::new();
    b.put_expiring(Cf::Phrases, b"old".to_vec(), b"v".to_vec(), now_ms() - 1);
    store.write(b).unwrap();
    for key in [&b"old"[..], b"never"] {
        let mut then = Batch::new();
        then.put(Cf::Sessions, b"s".to_vec(), b"v".to_vec());
        assert_eq!(store.take(Cf::Phrases, key, then).unwrap(), None);
    }
    assert_eq!(store.get(Cf::Sessions, b"s").unwrap(), None);
}

#[test]
fn secondary_index_is_written_with_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
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
    assert_eq!(store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1bob"), 2).unwrap().len(), 2, "limit");
}

#[test]
fn expired_records_read_as_absent_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = now_ms();
    let mut b = Batch::new();
    b.put_expiring(Cf::Sessions, b"short".to_vec(), b"1".to_vec(), now + 100);
    b.put_expiring(Cf::SessionsByOwner, index_key(b"1o", b"short"), Vec::new(), now + 100);
    b.put_expiring(Cf::Sessions, b"long".to_vec(), b"2".to_vec(), now + 3_600_000);
    b.put(Cf::Sessions, b"forever".to_vec(), b"3".to_vec());
    // Rewritten without expiry: its old schedule entry must not delete it.
    b.put_expiring(Cf::AppOwners, b"renewed".to_vec(), b"old".to_vec(), now + 50);
    store.write(b).unwrap();
    let mut b = Batch::new();
    b.put(Cf::AppOwners, b"renewed".to_vec(), b"new".to_vec());
    store.write(b).unwrap();

    assert!(store.get(Cf::Sessions, b"short").unwrap().is_some());
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(store.get(Cf::Sessions, b"short").unwrap(), None, "expired reads as absent before any sweep");
    assert!(store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1o"), 10).unwrap().is_empty());

    let swept = store.sweep_expired(now_ms()).unwrap();
    assert_eq!(swept, 2, "the session and its index entry");
    assert_eq!(store.sweep_expired(now_ms()).unwrap(), 0, "schedule entries are consumed");
    assert!(store.get(Cf::Sessions, b"long").unwrap().is_some());
    assert!(store.get(Cf::Sessions, b"forever").unwrap().is_some());
    assert_eq!(store.get(Cf::AppOwners, b"renewed").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(store.sweep_expired(now + 3_600_000).unwrap(), 1);
}

#[test]
fn a_large_backlog_is_swept_in_chunks_without_touching_live_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = now_ms();
    let mut b = Batch::new();
    for i in 0..1500 {
        b.put_expiring(Cf::LoginSignatures, format!("due{i:04}").into_bytes(), b"s".to_vec(), now + 20);
        // Same instant, but renewed below: must survive.
        b.put_expiring(Cf::Sessions, format!("renewed{i:04}").into_bytes(), b"old".to_vec(), now + 20);
    }
    store.write(b).unwrap();
    let mut b = Batch::new();
    for i in 0..1500 {
        b.put_expiring(Cf::Sessions, format!("renewed{i:04}").into_bytes(), b"new".to_vec(), now + 3_600_000);
    }
    store.write(b).unwrap();
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(store.pending_expiries(now_ms()).unwrap(), 3000);
    assert_eq!(store.sweep_expired(now_ms()).unwrap(), 1500);
    assert_eq!(store.pending_expiries(now_ms()).unwrap(), 0);
    assert!(store.scan_prefix(Cf::LoginSignatures, b"due", usize::MAX).unwrap().is_empty());
    assert_eq!(store.scan_prefix(Cf::Sessions, b"renewed", usize::MAX).unwrap().len(), 1500);
}

#[test]
fn sweeper_thread_runs_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(open(&dir));
    let mut b = Batch::new();
    for i in 0..1200u32 {
        b.put_expiring(Cf::Signatures, i.to_be_bytes().to_vec(), b"sig".to_vec(), now_ms() + 20);
    }
    store.write(b).unwrap();
    assert_eq!(store.pending_expiries(u64::MAX).unwrap(), 1200);
    let sweeper = Sweeper::start(store.clone(), Duration::from_millis(30)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.pending_expiries(u64::MAX).unwrap() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(sweeper);
    assert_eq!(store.pending_expiries(u64::MAX).unwrap(), 0, "the sweeper cleared the schedule");
    assert_eq!(store.sweep_expired(now_ms()).unwrap(), 0, "and deleted every record");
}

// ---- kill -9 -------------------------------------------------------------------------------

const CHILD_DB: &str = "SIGIL_TEST_CHILD_DB";
const CHILD_MODE: &str = "SIGIL_TEST_CHILD_DURABILITY";

/// Not a test on its own: the child process of `acknowledged_writes_survive_kill_9`. It writes
/// record+index pairs one commit at a time and prints `ACK n` after each commit returns.
#[test]
#[ignore = "run as a child process by acknowledged_writes_survive_kill_9"]
fn kill9_child_writer() {
    let Ok(path) = std::env::var(CHILD_DB) else { return };
    let durability = match std::env::var(CHILD_MODE).as_deref() {
        Ok("buffered") => Durability::Buffered,
        _ => Durability::Fsync,
    };
    let relaxed = std::env::var(CHILD_MODE).as_deref() == Ok("relaxed");
    let store = RocksStore::open(std::path::Path::new(&path), durability).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0u64.. {
        let key = n.to_be_bytes();
        let mut b = Batch::new();
        b.put(Cf::Sessions, key.to_vec(), format!("session {n}").into_bytes());
        b.put(Cf::SessionsByOwner, index_key(b"1owner", &key), Vec::new());
        if relaxed {
            b.relaxed();
        }
        store.write(b).unwrap();
        use std::io::Write as _;
        writeln!(out, "ACK {n}").unwrap();
        out.flush().unwrap();
    }
}

fn kill_mid_stream(durability: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill9_child_writer", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, dir.path())
        .env(CHILD_MODE, durability)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(Ok(line)) = lines.next() {
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = Some(n.parse::<u64>().unwrap());
            if acked >= Some(400) || Instant::now() > deadline {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructors, no flush
    // Acks already written to the pipe before the kill count as acknowledged too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ACK ") {
            acked = Some(n.parse().unwrap());
        }
    }
    child.wait().unwrap();
    let acked = acked.expect("the child acknowledged no write");
    assert!(acked >= 50, "the child wrote too little to make the test meaningful: {acked}");

    let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
    for n in 0..=acked {
        let key = n.to_be_bytes();
        let value = store.get(Cf::Sessions, &key).unwrap();
        assert_eq!(value, Some(format!("session {n}").into_bytes()), "acknowledged write {n} of {acked} lost");
    }
    let index = store.scan_prefix(Cf::SessionsByOwner, &index_prefix(b"1owner"), usize::MAX).unwrap();
    let sessions = store.scan_prefix(Cf::Sessions, b"", usize::MAX).unwrap();
    assert_eq!(index.len(), sessions.len(), "a record and its index entry commit together");
    assert!(index.len() as u64 > acked);
}

#[test]
fn acknowledged_writes_survive_kill_9_with_fsync() {
    kill_mid_stream("fsync");
}

#[test]
fn acknowledged_writes_survive_kill_9_with_buffered_wal() {
    kill_mid_stream("buffered");
}

/// Relaxed batches (issued phrases) skip fsync under the default durability, and still
/// survive a kill of the process.
#[test]
fn acknowledged_relaxed_writes_survive_kill_9() {
    kill_mid_stream("relaxed");
}

#[test]
fn close_ends_the_store_for_every_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let other_owner: Arc<dyn Store> = store.clone();
    let mut b = Batch::new();
    b.put(Cf::AppOwners, b"a".to_vec(), b"1".to_vec());
    other_owner.write(b).unwrap();
    store.close().unwrap();
    let err = other_owner.get(Cf::AppOwners, b"a").unwrap_err().to_string();
    assert!(err.contains("closed"), "{err}");
    drop(other_owner);
    drop(store);
    // Closed means released: the directory opens again at once, with the data.
    let again = open(&dir);
    assert_eq!(again.get(Cf::AppOwners, b"a").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn approximate_count_tracks_the_family_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut b = Batch::new();
    for i in 0..1000u32 {
        b.put(Cf::Sessions, i.to_be_bytes().to_vec(), b"s".to_vec());
    }
    store.write(b).unwrap();
    assert_eq!(store.approximate_count(Cf::Phrases).unwrap(), 0);
    let estimate = store.approximate_count(Cf::Sessions).unwrap();
    assert!((900..=1100).contains(&estimate), "{estimate}");
    store.flush().unwrap();
    let estimate = store.approximate_count(Cf::Sessions).unwrap();
    assert!((900..=1100).contains(&estimate), "after flush: {estimate}");
}

#[test]
fn update_is_atomic_and_never_revives_a_deleted_key() {
    use sigil_engine::store::Change;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let mut b = Batch::new();
    b.put(Cf::Counters, b"n".to_vec(), 0u64.to_be_bytes().to_vec());
    store.write(b).unwrap();
    // 8 threads × 250 increments by read-modify-write: none is lost.
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..250 {
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
    assert_eq!(n, 2000);

    // A delete racing updates: once deleted, updates see nothing and write nothing.
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

#[test]
fn insert_new_claims_a_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
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
