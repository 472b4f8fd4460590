//! Cluster mode end to end: real `redis-server` processes forming a Redis Cluster (3 primaries +
//! 3 replicas, AOF on), several real `sigil serve` processes on it, real wallets and websockets.
//! One node issues, another verifies, a third is asked; a primary is killed with `kill -9`
//! during a login storm; the whole of Redis goes away and comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sigil_engine::sign;
use sigil_engine::verify::SignedFor;
use sigil_testkit::RedisCluster;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cluster-internal-secret-0123456789";
const FAST_HASH: &str = "{ memory_kib = 7168, iterations = 5, parallelism = 1 }";

/// The deadline of one Redis command (and half of it for WAIT) in these tests: the default 1 s
/// is tight when five clusters' worth of processes share two cores.
const REDIS_TIMEOUT: &str = "5s";

fn node(cluster: &RedisCluster) -> common::Served {
    node_with(cluster, REDIS_TIMEOUT)
}

fn node_with(cluster: &RedisCluster, redis_timeout: &str) -> common::Served {
    let urls = format!("[{}]", cluster.urls().iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(","));
    let dir = tempfile::tempdir().unwrap();
    common::serve(
        dir.path(),
        &[
            ("SIGIL_STORE__BACKEND", "redis"),
            ("SIGIL_STORE__REDIS_URLS", &urls),
            ("SIGIL_STORE__REDIS_TIMEOUT", redis_timeout),
            ("SIGIL_LIMITS__ENABLED", "false"),
            ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
            ("SIGIL_PASSWORDS__HASH", FAST_HASH),
        ],
    )
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

struct Wallet(bitcoin::secp256k1::SecretKey);

impl Wallet {
    fn new() -> Self {
        Self(sign::random_key())
    }
    fn address(&self) -> String {
        sign::p2pkh_address(&self.0, true)
    }
    fn sign(&self, message: &str) -> String {
        sign::sign_bitcoin_message(&self.0, message, SignedFor::P2pkhCompressed)
    }
}

async fn json_of(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn phrase(s: &common::Served) -> String {
    let (_, body) = json_of(http().get(s.url("/id/loginphrase"))).await;
    assert_eq!(body["status"], "success", "{body}");
    // FluxOS refuses a phrase in the millisecond it was issued.
    tokio::time::sleep(Duration::from_millis(2)).await;
    body["data"].as_str().unwrap().to_string()
}

async fn verify(s: &common::Served, wallet: &Wallet, phrase: &str) -> Value {
    verify_at(&s.url(""), wallet, phrase).await
}

async fn verify_at(base: &str, wallet: &Wallet, phrase: &str) -> Value {
    let body = json!({"zelid": wallet.address(), "loginPhrase": phrase, "signature": wallet.sign(phrase)});
    json_of(http().post(format!("{base}/id/verifylogin")).body(body.to_string())).await.1
}

fn zelidauth(wallet: &Wallet, phrase: &str) -> String {
    json!({"zelid": wallet.address(), "signature": wallet.sign(phrase), "loginPhrase": phrase}).to_string()
}

async fn logged_in(s: &common::Served, auth: &str) -> bool {
    let (_, body) = json_of(http().get(s.url("/id/loggedsessions")).header("zelidauth", auth)).await;
    body["status"] == "success"
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_logins_push_and_revocation() {
    let cluster = RedisCluster::start();
    let nodes = [node(&cluster), node(&cluster), node(&cluster)];
    let [a, b, c] = &nodes;

    // Push across nodes: the phrase from A, the websocket on B, the login on C.
    let mut latencies = Vec::new();
    for _ in 0..30 {
        let wallet = Wallet::new();
        let p = phrase(a).await;
        let (mut socket, _) = tokio_tungstenite::connect_async(b.ws(&format!("/ws/id/{p}"))).await.unwrap();
        let started = Instant::now();
        let reply = verify(c, &wallet, &p).await;
        assert_eq!(reply["status"], "success", "{reply}");
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("no push within 5 s");
        let Some(Ok(Message::Text(text))) = frame else { panic!("no frame: {frame:?}") };
        latencies.push(started.elapsed());
        assert!(text.contains(&wallet.address()), "{text}");
    }
    latencies.sort();
    eprintln!(
        "cross-node push, login request sent → frame on another node: p50 {:?}, p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // A phrase is single use across nodes.
    let wallet = Wallet::new();
    let p = phrase(b).await;
    assert_eq!(verify(a, &wallet, &p).await["status"], "success");
    assert_eq!(verify(c, &wallet, &p).await["status"], "error", "the phrase was used on A");

    // Revocation on one node is refused on the very next request on every node.
    let auth = zelidauth(&wallet, &p);
    for n in &nodes {
        assert!(logged_in(n, &auth).await);
    }
    let (_, out) = json_of(http().get(c.url("/id/logoutcurrentsession")).header("zelidauth", &auth)).await;
    assert_eq!(out["status"], "success", "{out}");
    for n in &nodes {
        assert!(!logged_in(n, &auth).await, "revoked on C, still valid on {}", n.addr);
    }

    // Accounts and tokens: created on A, logged in on B, used on C, revoked on A.
    let (status, user) = json_of(
        http()
            .post(a.url("/api/admin/users"))
            .header("x-internal-secret", SECRET)
            .json(&json!({"username": "carol", "password": "carol's long password"})),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, again) = json_of(
        http()
            .post(b.url("/api/admin/users"))
            .header("x-internal-secret", SECRET)
            .json(&json!({"username": "Carol", "password": "another long password"})),
    )
    .await;
    assert_eq!(status, 409, "usernames are unique across nodes: {again}");
    let (status, login) =
        json_of(http().post(b.url("/api/auth/login")).json(&json!({"username": "carol", "password": "carol's long password"})))
            .await;
    assert_eq!(status, 200, "{login}");
    let token = login["access_token"].as_str().unwrap().to_string();
    for n in &nodes {
        let (status, me) = json_of(http().get(n.url("/api/auth/token")).bearer_auth(&token)).await;
        assert_eq!(status, 200, "{me}");
    }
    let (status, _) = json_of(http().post(a.url("/api/auth/logout")).bearer_auth(&token)).await;
    assert!(status < 300, "{status}");
    for n in &nodes {
        let (status, _) = json_of(http().get(n.url("/api/auth/token")).bearer_auth(&token)).await;
        assert_eq!(status, 401, "logged out on A, still valid on {}", n.addr);
    }

    // OAuth2 refresh rotation across nodes: a grant redeemed on A, refreshed on B (a rotation
    // group-committed there), refreshed again on C; the token B rotated away, replayed on A,
    // revokes the family, and its access tokens are refused on every node.
    let (status, _) = json_of(
        http().post(a.url("/api/admin/users")).header("x-internal-secret", SECRET).json(&json!({"username": "olga", "password": "olga's long password"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, login) = json_of(http().post(b.url("/v1/auth/login")).json(&json!({"login": "olga", "password": "olga's long password"}))).await;
    assert_eq!(status, 200, "{login}");
    let session = login["token"].as_str().unwrap().to_string();
    let redirect = "http://127.0.0.1:9/callback";
    let (status, app) = json_of(
        http()
            .post(c.url("/v1/oauth2/applications"))
            .header("x-internal-secret", SECRET)
            .json(&json!({"name": "cluster app", "redirect_uris": [redirect], "confidential": true})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let (id, secret) = (app["client_id"].as_str().unwrap().to_string(), app["client_secret"].as_str().unwrap().to_string());
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let authorize = format!(
        "{}?response_type=code&client_id={id}&redirect_uri={}&scope=identify%20offline_access&state=s",
        a.url("/v1/oauth2/authorize"),
        form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
    );
    let consent: Value = no_redirects.get(&authorize).bearer_auth(&session).send().await.unwrap().json().await.unwrap();
    let approved = no_redirects
        .post(&authorize)
        .bearer_auth(&session)
        .form(&[("consent_token", consent["consent_token"].as_str().unwrap()), ("approve", "true")])
        .send()
        .await
        .unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    let code = form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes()).find(|(k, _)| k == "code").unwrap().1.into_owned();
    let grant = |n: &common::Served, form: Vec<(&'static str, String)>| {
        let (url, id, secret) = (n.url("/v1/oauth2/token"), id.clone(), secret.clone());
        async move { json_of(http().post(url).basic_auth(id, Some(secret)).form(&form)).await }
    };
    let (status, first) = grant(a, vec![("grant_type", "authorization_code".into()), ("code", code), ("redirect_uri", redirect.into())]).await;
    assert_eq!(status, 200, "{first}");
    let refresh = |t: &Value| t["refresh_token"].as_str().unwrap().to_string();
    let (status, second) = grant(b, vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh(&first))]).await;
    assert_eq!(status, 200, "{second}");
    let (status, third) = grant(c, vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh(&second))]).await;
    assert_eq!(status, 200, "{third}");
    let access = third["access_token"].as_str().unwrap().to_string();
    for n in &nodes {
        let (status, _) = json_of(http().get(n.url("/v1/oauth2/userinfo")).bearer_auth(&access)).await;
        assert_eq!(status, 200, "the rotated access token works on {}", n.addr);
    }
    let (status, replay) = grant(a, vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh(&second))]).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")), "{replay}");
    for n in &nodes {
        let (status, _) = json_of(http().get(n.url("/v1/oauth2/userinfo")).bearer_auth(&access)).await;
        assert_eq!(status, 401, "the family was revoked on A, its access token still works on {}", n.addr);
    }

    // The store and the relay report through /metrics.
    let text = http().get(b.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("sigil_store_operation_seconds_count{backend=\"redis\",op=\"get\"}"), "store metrics");
    assert!(text.contains("sigil_cluster_push_messages_total{direction=\"in\",outcome=\"delivered\"}"), "relay metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logins_survive_a_primary_kill_9() {
    let mut cluster = RedisCluster::start();
    let nodes = [node(&cluster), node(&cluster)];
    let bases: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.url("")).collect());
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let failed = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut storm = Vec::new();
    for client in 0..4usize {
        let (bases, acked, failed, stop) = (bases.clone(), acked.clone(), failed.clone(), stop.clone());
        storm.push(tokio::spawn(async move {
            let mut i = client;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // Phrase from one node, login on the other.
                let (issuer, verifier) = (&bases[i % 2], &bases[(i + 1) % 2]);
                let wallet = Wallet::new();
                let Ok(res) = http().get(format!("{issuer}/id/loginphrase")).send().await else { continue };
                let Ok(body) = res.json::<Value>().await else { continue };
                let Some(p) = body["data"].as_str().map(str::to_string) else {
                    *failed.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
                let reply = verify_at(verifier, &wallet, &p).await;
                if reply["status"] == "success" {
                    acked.lock().unwrap().push((zelidauth(&wallet, &p), Instant::now()));
                } else {
                    *failed.lock().unwrap() += 1;
                }
            }
        }));
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 150 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = cluster.primaries()[0];
    let killed_at = Instant::now();
    cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap().kill();
    // The storm goes on through the failover: its replica is promoted after the node timeout.
    // Until the killed node is back as a replica of it, that shard cannot confirm a write to
    // one replica (WAIT 1), so its logins are refused (unavailable), never acknowledged.
    cluster.wait_failover(Duration::from_secs(30));
    let promoted = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap().restart();
    cluster.wait_ok(Duration::from_secs(30));
    let recovered = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in storm {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let after = acked.iter().filter(|(_, at)| *at > recovered).count();
    eprintln!(
        "failover: {} logins acknowledged ({} after the old primary rejoined as a replica); replica promoted {:?} \
         and cluster whole again {:?} after the kill; {} logins refused",
        acked.len(),
        after,
        promoted,
        recovered - killed_at,
        failed.lock().unwrap()
    );
    assert!(acked.len() >= 150, "too few logins: {}", acked.len());
    assert!(after > 0, "sigil did not recover by itself after the failover");
    // Every login that got a success reply authenticates on every node.
    for (auth, _) in &acked {
        for n in &nodes {
            assert!(logged_in(n, auth).await, "acknowledged login lost after the failover: {auth}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_is_unavailable_at_once_and_sigil_recovers_by_itself() {
    let mut cluster = RedisCluster::start();
    // The production default: "unavailable" must come quickly.
    let s = node_with(&cluster, "1s");
    let wallet = Wallet::new();
    let p = phrase(&s).await;
    assert_eq!(verify(&s, &wallet, &p).await["status"], "success");
    let auth = zelidauth(&wallet, &p);

    for n in cluster.nodes.iter_mut() {
        n.kill();
    }
    // /readyz, a login and an authenticated read: each answers quickly, none succeeds.
    let started = Instant::now();
    let (status, _) = json_of(http().get(s.url("/readyz"))).await;
    assert_eq!(status, 503);
    let (_, body) = json_of(http().get(s.url("/id/loginphrase"))).await;
    assert_eq!(body["status"], "error", "{body}");
    assert!(!logged_in(&s, &auth).await, "no session can be confirmed without the store");
    let (status, body) =
        json_of(http().post(s.url("/api/auth/login")).json(&json!({"username": "nobody", "password": "whatever password"}))).await;
    assert!(status == 503 || status == 429, "{status} {body}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());

    // Redis comes back (same ports, same data): sigil is ready again by itself.
    for n in cluster.nodes.iter_mut() {
        n.restart();
    }
    cluster.wait_state_ok(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while json_of(http().get(s.url("/readyz"))).await.0 != 200 {
        assert!(Instant::now() < deadline, "sigil did not become ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(logged_in(&s, &auth).await, "the session written before the outage is still there (AOF)");
    // Writes are acknowledged again once every primary's replica is back in sync (WAIT 1).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let wallet = Wallet::new();
        let p = phrase(&s).await;
        let reply = verify(&s, &wallet, &p).await;
        if reply["status"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "logins do not succeed again: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Slots move between primaries while logins go on (live resharding): the client library
/// follows the MOVED/ASK redirections, no login is lost and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_go_on_through_a_live_resharding() {
    let cluster = RedisCluster::start();
    let s = node(&cluster);
    let base = s.url("");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let wallet = Wallet::new();
                let (_, body) = json_of(http().get(format!("{base}/id/loginphrase"))).await;
                let Some(p) = body["data"].as_str().map(str::to_string) else {
                    refused.push(body);
                    continue;
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
                let reply = verify_at(&base, &wallet, &p).await;
                if reply["status"] == "success" {
                    acked.push(zelidauth(&wallet, &p));
                } else {
                    refused.push(reply);
                }
            }
            (acked, refused)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let primaries = cluster.primaries();
    // Blocking (redis-cli) while the storm runs on the runtime's other thread.
    let moved = tokio::task::block_in_place(|| cluster.reshard(primaries[0], primaries[1], 2000));
    assert!(moved.contains("Moving slot"), "{moved}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = storm.await.unwrap();
    eprintln!("resharding 2000 slots: {} logins acknowledged, {} refused", acked.len(), refused.len());
    assert!(acked.len() >= 20, "too few logins: {}", acked.len());
    assert!(refused.is_empty(), "logins refused during the resharding: {:?}", refused.first());
    for auth in &acked {
        assert!(logged_in(&s, auth).await, "login lost in the resharding: {auth}");
    }
}

/// `ops/cluster/up` and `down` as a developer runs them: 6 Redis processes and 3 sigil nodes
/// come up and work together; `down` stops exactly the pids `up` recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_cluster_scripts_start_a_working_cluster_and_stop_exactly_it() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("c");
    // Ports apart from the testkit's (10000–21000) and, with their cluster bus ports (+10000),
    // below Linux's ephemeral range (32768+), where outgoing connections take ports at random.
    let redis_base = 21000 + (std::process::id() % 100) as u16 * 10;
    let sigil_base = 22000 + (std::process::id() % 100) as u16 * 10;
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let run = |script: &str| {
        std::process::Command::new(format!("{root}/ops/cluster/{script}"))
            .env("SIGIL_BIN", common::SIGIL)
            .env("SIGIL_CLUSTER_DIR", &cluster_dir)
            .env("REDIS_BASE_PORT", redis_base.to_string())
            .env("SIGIL_BASE_PORT", sigil_base.to_string())
            .env("SIGIL_LIMITS__ENABLED", "false")
            .env("SIGIL_STORE__REDIS_TIMEOUT", REDIS_TIMEOUT)
            .output()
            .unwrap()
    };
    /// Runs `down` however the test ends (a failed assertion must not leave the cluster running).
    struct Down<F: Fn()>(F);
    impl<F: Fn()> Drop for Down<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let _down = Down(|| {
        let _ = run("down");
    });
    let up = tokio::task::block_in_place(|| run("up"));
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    let pids: Vec<u32> = std::fs::read_to_string(cluster_dir.join("pids"))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 9, "6 Redis processes and 3 sigil nodes");
    let node = |n: u16| format!("http://127.0.0.1:{}", sigil_base + n);
    let wallet = Wallet::new();
    let (_, body) = json_of(http().get(format!("{}/id/loginphrase", node(1)))).await;
    let p = body["data"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let reply = verify_at(&node(2), &wallet, &p).await;
    assert_eq!(reply["status"], "success", "{reply}");
    let (_, sessions) =
        json_of(http().get(format!("{}/id/loggedsessions", node(3))).header("zelidauth", zelidauth(&wallet, &p))).await;
    assert_eq!(sessions["status"], "success", "{sessions}");

    let down = tokio::task::block_in_place(|| run("down"));
    assert!(down.status.success(), "down failed: {}", String::from_utf8_lossy(&down.stderr));
    for pid in pids {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ");
        assert!(!alive, "pid {pid} still running after down");
    }
    assert!(!cluster_dir.exists(), "down removes its directory");
}
