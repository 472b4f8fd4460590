//! The Flux ZelID dialect end to end: the real binary, real keys, real websockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sigil_engine::sign;
use sigil_engine::verify::SignedFor;
use tokio_tungstenite::tungstenite::Message;

const OWNER_KEY_SEED: [u8; 32] = [7; 32];

fn owner_key() -> bitcoin::secp256k1::SecretKey {
    bitcoin::secp256k1::SecretKey::from_slice(&OWNER_KEY_SEED).unwrap()
}

struct Wallet {
    key: bitcoin::secp256k1::SecretKey,
    kind: &'static str,
}

impl Wallet {
    fn new(kind: &'static str) -> Self {
        Self { key: sign::random_key(), kind }
    }
    fn address(&self) -> String {
        match self.kind {
            "btc" => sign::p2pkh_address(&self.key, true),
            "btc-uncompressed" => sign::p2pkh_address(&self.key, false),
            "p2sh-p2wpkh" => sign::p2sh_p2wpkh_address(&self.key),
            "p2wpkh" => sign::p2wpkh_address(&self.key),
            "eth" => sign::ethereum_address_of(&self.key),
            other => panic!("{other}"),
        }
    }
    fn sign(&self, message: &str) -> String {
        match self.kind {
            "btc" => sign::sign_bitcoin_message(&self.key, message, SignedFor::P2pkhCompressed),
            "btc-uncompressed" => sign::sign_bitcoin_message(&self.key, message, SignedFor::P2pkhUncompressed),
            "p2sh-p2wpkh" => sign::sign_bitcoin_message(&self.key, message, SignedFor::P2shP2wpkh),
            "p2wpkh" => sign::sign_bitcoin_message(&self.key, message, SignedFor::P2wpkh),
            "eth" => sign::sign_ethereum_message(&self.key, message),
            other => panic!("{other}"),
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn get_json(url: &str, zelidauth: Option<&str>) -> Value {
    let mut req = http().get(url);
    if let Some(h) = zelidauth {
        req = req.header("zelidauth", h);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.unwrap()
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>, zelidauth: Option<&str>) -> (u16, Value) {
    let mut req = http().post(url).header("content-type", content_type).body(body);
    if let Some(h) = zelidauth {
        req = req.header("zelidauth", h);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn phrase(s: &common::Served) -> String {
    let body = get_json(&s.url("/id/loginphrase"), None).await;
    // FluxOS refuses a phrase in the very millisecond it was issued; no wallet is that fast,
    // but a loopback test is.
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(body["status"], "success", "{body}");
    body["data"].as_str().unwrap().to_string()
}

/// Logs `wallet` in through a fresh phrase; returns (zelid, phrase, signature).
async fn login(s: &common::Served, wallet: &Wallet) -> (String, String, String) {
    let p = phrase(s).await;
    let sig = wallet.sign(&p);
    let body = json!({"zelid": wallet.address(), "loginPhrase": p, "signature": sig}).to_string();
    let (_, reply) = post(&s.url("/id/verifylogin"), "text/plain", body, None).await;
    assert_eq!(reply["status"], "success", "{reply}");
    (wallet.address(), p, sig)
}

fn query_header(zelid: &str, phrase: &str, signature: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("zelid", zelid)
        .append_pair("signature", signature)
        .append_pair("loginPhrase", phrase)
        .finish()
}

/// Parses a FluxOS websocket frame (a query string) into key → value.
fn parse_frame(text: &str) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_login_pushes_to_the_websocket_and_opens_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let owner = sign::p2pkh_address(&owner_key(), true);
    let s = common::serve(dir.path(), &[("SIGIL_FLUX__OWNER_ZELID", &owner)]);

    let wallet = Wallet::new("btc");
    let zelid = wallet.address();
    let phrase = phrase(&s).await;
    assert_eq!(phrase.len(), 53);

    let (mut socket, _) = tokio_tungstenite::connect_async(s.ws(&format!("/ws/id/{phrase}"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let signature = wallet.sign(&phrase);
    let body = json!({"zelid": zelid, "loginPhrase": phrase, "signature": signature}).to_string();
    let sent = Instant::now();
    let (status, reply) = post(&s.url("/id/verifylogin"), "text/plain", body, None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["status"], "success", "{reply}");
    let data = &reply["data"];
    assert_eq!(data["message"], "Successfully logged in");
    assert_eq!(data["zelid"], zelid.as_str());
    assert_eq!(data["loginPhrase"], phrase.as_str());
    assert_eq!(data["signature"], signature.as_str());
    assert_eq!(data["privilage"], "user");
    let keys: Vec<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["message", "zelid", "loginPhrase", "signature", "privilage", "createdAt", "expireAt"]);

    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    let pushed_after = sent.elapsed();
    let Message::Text(text) = frame else { panic!("{frame:?}") };
    assert!(text.starts_with("status=success&data%5Bmessage%5D=Successfully%20logged%20in&data%5Bzelid%5D="), "{text}");
    let f = parse_frame(&text);
    assert_eq!(f["data[zelid]"], zelid);
    assert_eq!(f["data[signature]"], signature);
    assert_eq!(f["data[privilage]"], "user");
    assert_eq!(f["data[createdAt]"], data["createdAt"].as_str().unwrap());
    match socket.next().await {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4012),
        other => panic!("expected close 4012, got {other:?}"),
    }
    assert!(pushed_after < Duration::from_secs(2), "push, not poll: {pushed_after:?}");

    // The session authorizes by header, in both forms; the phrase cannot be used twice.
    let header = query_header(&zelid, &phrase, &signature);
    let sessions = get_json(&s.url("/id/loggedsessions"), Some(&header)).await;
    assert_eq!(sessions["status"], "success", "{sessions}");
    assert_eq!(sessions["data"][0]["loginPhrase"], phrase.as_str());
    assert!(sessions["data"][0].get("signature").is_none());
    let json_header = json!({"zelid": zelid, "loginPhrase": phrase, "signature": signature}).to_string();
    let sessions = get_json(&s.url("/zelid/loggedsessions?timestamp=1"), Some(&json_header)).await;
    assert_eq!(sessions["status"], "success");
    let body = json!({"zelid": zelid, "loginPhrase": phrase, "signature": signature}).to_string();
    let (_, again) = post(&s.url("/id/verifylogin"), "text/plain", body, None).await;
    assert_eq!(again["data"]["message"], "Signed message is no longer valid. Please request a new one.");

    // A later socket for the same phrase gets the frame at once.
    let (mut late, _) = tokio_tungstenite::connect_async(s.ws(&format!("/ws/zelid/{phrase}"))).await.unwrap();
    let Some(Ok(Message::Text(text))) = late.next().await else { panic!() };
    assert_eq!(parse_frame(&text)["data[loginPhrase]"], phrase);

    // Logout is strict: the very next request with the credential fails.
    let out = get_json(&s.url("/id/logoutcurrentsession"), Some(&header)).await;
    assert_eq!(out, json!({"status":"success","data":{"message":"Successfully logged out"}}));
    let denied = get_json(&s.url("/id/loggedsessions"), Some(&header)).await;
    assert_eq!(denied, json!({"status":"error","data":{"code":401,"name":"Unauthorized","message":"Unauthorized. Access denied."}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_kind_logs_in_with_every_body_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    let encodings = ["text/plain", "application/json", "application/x-www-form-urlencoded"];
    for (i, kind) in ["btc", "btc-uncompressed", "eth", "p2sh-p2wpkh", "p2wpkh"].into_iter().enumerate() {
        for encoding in encodings {
            let wallet = Wallet::new(kind);
            let phrase = phrase(&s).await;
            let signature = wallet.sign(&phrase);
            let body = if encoding.ends_with("urlencoded") {
                query_header(&wallet.address(), &phrase, &signature)
            } else {
                json!({"zelid": wallet.address(), "loginPhrase": phrase, "signature": signature}).to_string()
            };
            let (status, reply) = post(&s.url("/id/verifylogin"), encoding, body, None).await;
            assert_eq!((status, &reply["status"]), (200, &json!("success")), "{kind} {encoding} #{i}: {reply}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_phrase_twenty_parallel_logins_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    let wallet = Wallet::new("eth");
    let phrase = phrase(&s).await;
    let body = json!({"zelid": wallet.address(), "loginPhrase": phrase, "signature": wallet.sign(&phrase)}).to_string();
    let url = s.url("/id/verifylogin");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { post(&url, "text/plain", body, None).await.1 })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        if reply["status"] == "success" {
            wins += 1;
        } else {
            assert_eq!(reply["data"]["message"], "Signed message is no longer valid. Please request a new one.");
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifylogin_checks_in_fluxos_order_with_fluxos_messages() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let wallet = Wallet::new("btc");
    let zelid = wallet.address();
    let phrase = phrase(&s).await;
    let url = s.url("/id/verifylogin");
    let err = |m: &str| json!({"status":"error","data":{"name":"Error","message": m}});

    // Another phrase of the same shape: its last character changed (never to itself — a phrase
    // that ends in the replacement would otherwise stay valid, 1 run in 36).
    let last = if phrase.ends_with('x') { "y" } else { "x" };
    let other_phrase = format!("{}{last}", &phrase[..phrase.len() - 1]);
    let cases = [
        (json!({}).to_string(), err("No Flux ID is specified")),
        (json!({"zelid": "3abc"}).to_string(), err("Flux ID is not valid")),
        (json!({"zelid": zelid}).to_string(), err("No message is specified")),
        (json!({"zelid": zelid, "loginPhrase": "short"}).to_string(), err("Signed message is not valid")),
        (json!({"zelid": zelid, "loginPhrase": phrase}).to_string(), err("No signature is specified")),
        (
            json!({"zelid": zelid, "loginPhrase": other_phrase, "signature": wallet.sign(&phrase)}).to_string(),
            err("Signed message is no longer valid. Please request a new one."),
        ),
        (
            json!({"zelid": zelid, "loginPhrase": phrase, "signature": Wallet::new("btc").sign(&phrase)}).to_string(),
            err("Invalid signature"),
        ),
    ];
    for (body, want) in cases {
        let (status, got) = post(&url, "text/plain", body.clone(), None).await;
        assert_eq!((status, got), (200, want), "{body}");
    }
    // A failed signature check did not consume the phrase.
    let body = json!({"zelid": zelid, "loginPhrase": phrase, "signature": wallet.sign(&phrase)}).to_string();
    assert_eq!(post(&url, "text/plain", body, None).await.1["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_an_error_body_quickly_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let url = s.url("/id/verifylogin");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("null", b"null".to_vec()),
        ("invalid utf-8", b"zelid=\xff\xfe\xfd&loginPhrase=\xc3".to_vec()),
        ("numbers", br#"{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","loginPhrase":1234567890123456789012345678901234567890,"signature":5}"#.to_vec()),
        ("5 MB", vec![b'a'; 5 * 1024 * 1024]),
        ("array", b"[1,2,3]".to_vec()),
    ];
    for (name, body) in cases {
        let started = Instant::now();
        let res = http().post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
        let status = res.status().as_u16();
        let reply: Value = res.json().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "{name} took {:?}", started.elapsed());
        assert_eq!(reply["status"], "error", "{name}: {reply}");
        assert!(status == 200 || (400..500).contains(&status), "{name}: {status}");
        if name == "null" {
            assert_eq!(reply["data"], json!({"name":"TypeError","message":"Cannot read properties of null (reading 'zelid')"}));
        }
        if name == "numbers" {
            assert_eq!(reply["data"]["name"], "TypeError");
        }
        if name == "5 MB" {
            assert_eq!(status, 413);
        }
    }
    // A 20 KB header is refused with a 4xx, not a hang.
    let started = Instant::now();
    let res = http().get(s.url("/id/loggedsessions")).header("zelidauth", "x".repeat(20 * 1024)).send().await;
    if let Ok(res) = res {
        let status = res.status().as_u16();
        assert!(status == 200 || (400..500).contains(&status), "{status}");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(get_json(&s.url("/healthz"), None).await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileges_admin_routes_and_specific_logout() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Wallet { key: owner_key(), kind: "btc" };
    let s = common::serve(dir.path(), &[("SIGIL_FLUX__OWNER_ZELID", &owner.address())]);

    let creds = [login(&s, &owner).await, login(&s, &Wallet::new("eth")).await];
    let (admin, user) = (&creds[0], &creds[1]);
    let admin_h = query_header(&admin.0, &admin.1, &admin.2);
    let user_h = query_header(&user.0, &user.1, &user.2);

    let check = |c: &(String, String, String)| json!({"zelid": c.0, "loginPhrase": c.1, "signature": c.2}).to_string();
    let url = s.url("/id/checkprivilege");
    assert_eq!(post(&url, "text/plain", check(admin), None).await.1, json!({"status":"success","data":{"message":"admin"}}));
    assert_eq!(post(&url, "text/plain", check(user), None).await.1, json!({"status":"success","data":{"message":"user"}}));
    let forged = json!({"zelid": user.0, "loginPhrase": user.1, "signature": admin.2}).to_string();
    assert_eq!(post(&url, "text/plain", forged, None).await.1, json!({"status":"error","data":{"message":"none"}}));
    assert_eq!(
        post(&url, "text/plain", json!({"zelid": "1x"}).to_string(), None).await.1,
        json!({"status":"error","data":{"name":"Error","message":"No user loginPhrase specificed"}})
    );

    let all = get_json(&s.url("/id/loggedusers"), Some(&admin_h)).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(get_json(&s.url("/id/loggedusers"), Some(&user_h)).await["data"]["code"], 401);
    let active = get_json(&s.url("/id/activeloginphrases"), Some(&admin_h)).await;
    assert_eq!(active["status"], "success");

    let url = s.url("/id/logoutspecificsession");
    let body = json!({"loginPhrase": user.1}).to_string();
    assert_eq!(
        post(&url, "text/plain", body.clone(), Some(&admin_h)).await.1,
        json!({"status":"success","data":{"message":"Session successfully logged out"}})
    );
    assert_eq!(
        post(&url, "text/plain", body, Some(&admin_h)).await.1,
        json!({"status":"warning","data":{"message":"Specified user was already logged out"}})
    );
    assert_eq!(get_json(&s.url("/id/loggedsessions"), Some(&user_h)).await["data"]["code"], 401);
    let out = get_json(&s.url("/id/logoutallusers"), Some(&admin_h)).await;
    assert_eq!(out, json!({"status":"success","data":{"message":"Successfully logged out all users"}}));
    assert_eq!(get_json(&s.url("/id/loggedusers"), Some(&admin_h)).await["data"]["code"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provided_signature_reaches_the_sign_socket() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let wallet = Wallet::new("btc");
    let ts = sigil_engine::store::now_ms();
    let message = format!("fluxappregister1{{\"name\":\"demo\"}}{ts}");
    let identifier = format!("{}{ts}", wallet.address());
    let (mut socket, _) = tokio_tungstenite::connect_async(s.ws(&format!("/ws/sign/{identifier}"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let signature = wallet.sign(&message);
    let body = json!({"address": wallet.address(), "message": message, "signature": signature}).to_string();
    let (_, reply) = post(&s.url("/id/providesign"), "text/plain", body, None).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["data"]["identifier"], identifier.as_str());
    let Some(Ok(Message::Text(text))) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap() else {
        panic!()
    };
    let f = parse_frame(&text);
    assert_eq!(f["status"], "success");
    assert_eq!(f["data[signature]"], signature);
    match socket.next().await {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4015),
        other => panic!("expected close 4015, got {other:?}"),
    }
    let _ = socket.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_phrase_socket_gets_the_error_frame() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let started = std::time::Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(s.ws("/ws/id/1700000000000nosuchphrase")).await.unwrap();
    let Some(Ok(Message::Text(text))) = socket.next().await else { panic!() };
    assert_eq!(text.as_str(), "status=error&data%5Bmessage%5D=Signed%20message%20is%20no%20longer%20valid.%20Please%20request%20a%20new%20one.");
    // Refused after the 1 s grace a just-used phrase gets for its login's push, not later.
    assert!(started.elapsed() < Duration::from_secs(4), "refused after {:?}", started.elapsed());
    socket.send(Message::Close(None)).await.ok();
}

/// The Flux sockets are served beside actix-web (tungstenite, picked by peeking at a
/// connection's first bytes); one asked for on a connection that already carried a request
/// (keep-alive) is served too, through actix-web, with the same frames. A websocket on an
/// unknown `/ws/` path is refused with a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_served_on_fresh_and_reused_connections() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let expired = "status=error&data%5Bmessage%5D=Signed%20message%20is%20no%20longer%20valid.%20Please%20request%20a%20new%20one.";
    // A reused connection: a plain request first, then the upgrade on the same socket.
    let mut tcp = tokio::net::TcpStream::connect(s.addr.as_str()).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "the connection stays open");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().trim().parse().unwrap();
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.unwrap();
    let url = s.ws("/ws/id/1700000000000nosuchphrase/");
    let (mut socket, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await.unwrap();
    let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("no frame on the reused connection") };
    assert_eq!(text.as_str(), expired);
    // A fresh connection, the trailing-slash and zelid spellings.
    for path in ["/ws/zelid/1700000000000nosuchphrase", "/ws/id/1700000000000nosuchphrase/"] {
        let (mut socket, _) = tokio_tungstenite::connect_async(s.ws(path)).await.unwrap();
        let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("no frame on {path}") };
        assert_eq!(text.as_str(), expired);
    }
    let refused = tokio_tungstenite::connect_async(s.ws("/ws/nothing/here")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 404),
        other => panic!("an unknown socket path was not refused: {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logins_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = common::serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Two clients log in continuously; a login answered with success is acknowledged.
    let mut streams = Vec::new();
    for client in 0..2 {
        let (acked, base) = (acked.clone(), s.url(""));
        streams.push(tokio::spawn(async move {
            for i in 0.. {
                let wallet = Wallet::new(if (i + client) % 2 == 0 { "btc" } else { "eth" });
                let Ok(res) = http().get(format!("{base}/id/loginphrase")).send().await else { return };
                let Ok(body) = res.json::<Value>().await else { return };
                let Some(p) = body["data"].as_str().map(str::to_string) else { return };
                let sig = wallet.sign(&p);
                let login = json!({"zelid": wallet.address(), "loginPhrase": p, "signature": sig}).to_string();
                let Ok(res) = http().post(format!("{base}/id/verifylogin")).body(login).send().await else { return };
                let Ok(reply) = res.json::<Value>().await else { return };
                if reply["status"] == "success" {
                    acked.lock().unwrap().push((wallet.address(), p, sig));
                }
            }
        }));
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 60 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9(); // mid-stream: both clients have requests in flight
    for t in streams {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "too few logins before the kill: {}", acked.len());
    let s = common::serve(dir.path(), &[]);
    for (zelid, p, sig) in &acked {
        let header = query_header(zelid, p, sig);
        let reply = get_json(&s.url("/id/loggedsessions"), Some(&header)).await;
        assert_eq!(reply["status"], "success", "acknowledged session of {zelid} lost: {reply}");
    }
    // The 60 s push window is a stored timestamp: after the restart, a page that opens its
    // socket now still gets the login with its signature (decision 4).
    let (zelid, p, sig) = acked.last().unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(s.ws(&format!("/ws/id/{p}"))).await.unwrap();
    let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("no frame after restart") };
    let f = parse_frame(&text);
    assert_eq!((f["data[zelid]"].as_str(), f["data[signature]"].as_str()), (zelid.as_str(), sig.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_in_the_flux_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[("SIGIL_LIMITS__FLUX_VERIFYLOGIN", "3/1m"), ("SIGIL_LIMITS__FLUX_PHRASE", "5/1m")]);
    let url = s.url("/id/verifylogin");
    for _ in 0..3 {
        let (status, _) = post(&url, "text/plain", "{}", None).await;
        assert_eq!(status, 200);
    }
    let res = http().post(&url).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status":"error","data":{"code":429,"name":"RateLimited","message":"Too many requests, please try again later"}})
    );
    for _ in 0..5 {
        assert_eq!(get_json(&s.url("/id/loginphrase"), None).await["status"], "success");
    }
    assert_eq!(http().get(s.url("/zelid/emergencyphrase")).send().await.unwrap().status(), 429);
    let metrics = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_rate_limited_total{limit="flux_verifylogin"} 1"#), "{metrics}");
}

fn cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(common::SIGIL).args(args).env("SIGIL_SERVER__DATA_DIR", data).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_revokes_sessions_and_sets_app_owners() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = common::serve(dir.path(), &[]);
    let (zelid, p, sig) = login(&s, &Wallet::new("btc")).await;

    let (ok, _, err) = cli(dir.path(), &["sessions", "list"]);
    assert!(!ok && err.contains("is in use (stop `sigil serve` first"), "{err}");
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    s.child.wait().unwrap();

    let (ok, out, _) = cli(dir.path(), &["sessions", "list", "--zelid", &zelid]);
    assert!(ok);
    assert!(out.starts_with(&format!("{zelid}\t{p}\t")), "{out}");
    let (ok, out, _) = cli(dir.path(), &["app-owner", "set", "demoapp", &zelid]);
    assert!(ok, "{out}");
    let (_, out, _) = cli(dir.path(), &["app-owner", "list"]);
    assert_eq!(out.trim(), format!("demoapp\t{zelid}"));

    let s = common::serve(dir.path(), &[]);
    let check = json!({"zelid": zelid, "loginPhrase": p, "signature": sig, "appname": "demoapp"}).to_string();
    assert_eq!(
        post(&s.url("/id/checkprivilege"), "text/plain", check, None).await.1,
        json!({"status":"success","data":{"message":"appowner"}})
    );
    drop(s);

    let (ok, out, _) = cli(dir.path(), &["sessions", "revoke", "--zelid", &zelid]);
    assert!(ok);
    assert_eq!(out.trim(), "1 session(s) ended");
    let s = common::serve(dir.path(), &[]);
    let header = query_header(&zelid, &p, &sig);
    assert_eq!(get_json(&s.url("/id/loggedsessions"), Some(&header)).await["data"]["code"], 401);
}

/// FluxOS's own client libraries, not ours: bitcoinjs-message and ethers sign, a `ws`
/// websocket waits, and the web UI's encodings carry the result (tests/js/flux-client.mjs).
/// `ops/test.sh` installs them with `npm ci`; without node_modules this test fails loudly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxos_client_libraries_log_in() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/bitcoinjs-message").is_dir() && js.join("node_modules/ethers").is_dir(),
        "run `npm ci` in {} (ops/test.sh does) to install the FluxOS client libraries",
        js.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let (btc, eth) = (sign::random_key(), sign::random_key());
    let out = tokio::process::Command::new("node")
        .current_dir(&js)
        .arg("flux-client.mjs")
        .arg(s.url(""))
        .arg(hex::encode(btc.secret_bytes()))
        .arg(sign::p2pkh_address(&btc, true))
        .arg(hex::encode(eth.secret_bytes()))
        .output()
        .await
        .expect("node is needed for this test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let results: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(results[0]["kind"], "bitcoinjs-message");
    assert_eq!(results[1]["kind"], "ethers");
    assert_eq!(results[1]["closeCode"], 4012);
    // ethers reports the checksummed address; sigil compares case-insensitively.
    assert!(results[1]["zelid"].as_str().unwrap().eq_ignore_ascii_case(&sign::ethereum_address_of(&eth)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multisig_p2sh_and_p2wsh_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let keys: Vec<_> = (0..3).map(|_| sign::random_key()).collect();
    let (script, p2sh, p2wsh) = sign::multisig_addresses(2, &keys);
    for address in [p2sh, p2wsh] {
        let p = phrase(&s).await;
        let signature = sign::sign_multisig(&script, &[keys[2], keys[0]], &p);
        let body = query_header(&address, &p, &signature);
        let (_, reply) = post(&s.url("/id/verifylogin"), "application/x-www-form-urlencoded", body, None).await;
        assert_eq!(reply["status"], "success", "{address}: {reply}");
        assert_eq!(reply["data"]["signature"], signature.as_str());
        let header = query_header(&address, &p, &signature);
        assert_eq!(get_json(&s.url("/id/loggedsessions"), Some(&header)).await["status"], "success");

        let p = phrase(&s).await;
        let too_few = sign::sign_multisig(&script, &[keys[1]], &p);
        let body = json!({"zelid": address, "loginPhrase": p, "signature": too_few}).to_string();
        let (_, reply) = post(&s.url("/id/verifylogin"), "text/plain", body, None).await;
        assert_eq!(reply["data"]["message"], "Invalid signature");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_open_for_the_flux_api_like_fluxos() {
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(dir.path(), &[]);
    let preflight = http()
        .request(reqwest::Method::OPTIONS, s.url("/id/loggedsessions"))
        .header("origin", "https://home.runonflux.io")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "zelidauth")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let res = http().get(s.url("/zelid/loginphrase")).header("origin", "https://example.org").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_window_is_off_by_default_and_cached_when_on() {
    let wallet = Wallet::new("btc");
    let zelid = wallet.address();
    // A phrase this node never issued, self-signed a minute ago: FluxOS's stateless fallback.
    let p = format!("{}{}", sigil_engine::store::now_ms() - 60_000, "selfsignedphrase0123456789abcdefghijklm");
    let header = query_header(&zelid, &p, &wallet.sign(&p));

    let dir = tempfile::tempdir().unwrap();
    let off = common::serve(dir.path(), &[]);
    assert_eq!(get_json(&off.url("/id/loggedsessions"), Some(&header)).await["data"]["code"], 401);
    drop(off);

    let dir = tempfile::tempdir().unwrap();
    let on = common::serve(dir.path(), &[("SIGIL_FLUX__STATELESS_USER_WINDOW", "16h")]);
    let batches = |t: &str| metric(t, "sigil_verifier_batch_size_count");
    let before = batches(&http().get(on.url("/metrics")).send().await.unwrap().text().await.unwrap());
    for _ in 0..3 {
        let reply = get_json(&on.url("/id/loggedsessions"), Some(&header)).await;
        assert_eq!(reply, json!({"status":"success","data":[]}), "user level passes without a session");
    }
    let after = batches(&http().get(on.url("/metrics")).send().await.unwrap().text().await.unwrap());
    assert_eq!(after - before, 1.0, "one ECDSA for three requests: repeats come from the cache");
    // Admin level never passes statelessly, and a wrong signature never does.
    assert_eq!(get_json(&on.url("/id/loggedusers"), Some(&header)).await["data"]["code"], 401);
    let forged = query_header(&zelid, &p, &Wallet::new("btc").sign(&p));
    assert_eq!(get_json(&on.url("/id/loggedsessions"), Some(&forged)).await["data"]["code"], 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_records_app_owners() {
    let dir = tempfile::tempdir().unwrap();
    let owner = Wallet { key: owner_key(), kind: "btc" };
    let s = common::serve(dir.path(), &[("SIGIL_FLUX__OWNER_ZELID", &owner.address())]);
    let creds = [login(&s, &owner).await, login(&s, &Wallet::new("btc")).await];
    let admin_h = query_header(&creds[0].0, &creds[0].1, &creds[0].2);
    let user_h = query_header(&creds[1].0, &creds[1].1, &creds[1].2);
    let url = s.url("/api/admin/flux/app-owners");
    let body = json!({"app": "demo", "owner": creds[1].0}).to_string();
    assert_eq!(post(&url, "text/plain", body.clone(), Some(&user_h)).await.1["data"]["code"], 401);
    assert_eq!(post(&url, "text/plain", body, Some(&admin_h)).await.1["status"], "success");
    assert_eq!(get_json(&url, Some(&admin_h)).await["data"], json!([{"app": "demo", "owner": creds[1].0}]));
    let check = json!({"zelid": creds[1].0, "loginPhrase": creds[1].1, "signature": creds[1].2, "appname": "demo"});
    assert_eq!(
        post(&s.url("/id/checkprivilege"), "text/plain", check.to_string(), None).await.1,
        json!({"status":"success","data":{"message":"appowner"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sessions_are_listed_and_never_authorize() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = cli(dir.path(), &["sessions", "seed", "--count", "25"]);
    assert!(ok && out.starts_with("25 synthetic session(s) written"), "{out}");
    let (ok, out, _) = cli(dir.path(), &["sessions", "list"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 25);
    // A seeded session's hash matches no signature: even its own phrase and zelid fail.
    let fields: Vec<&str> = lines[0].split('\t').collect();
    let s = common::serve(dir.path(), &[]);
    let header = query_header(fields[0], fields[1], "H0000");
    assert_eq!(get_json(&s.url("/id/loggedsessions"), Some(&header)).await["data"]["code"], 401);
}
