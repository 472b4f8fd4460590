//! The token API (`/api/auth`) and the admin API end to end: the real binary on 127.0.0.1, a
//! RocksDB in a temp dir, TOTP codes from an independent implementation (`totp-lite`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "test-internal-secret-0123456789";
/// The smallest OWASP argon2id setting, so the tests stay quick.
const FAST_HASH: &str = "{ memory_kib = 7168, iterations = 5, parallelism = 1 }";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    // Generous per-IP and 2fa limits (tests log in many times from 127.0.0.1); the default
    // per-account failure limit stays. The limits test sets its own.
    let mut e = vec![
        ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
        ("SIGIL_PASSWORDS__HASH", FAST_HASH),
        ("SIGIL_LIMITS__LOGIN_PER_IP", "1000/10s"),
        ("SIGIL_LIMITS__MFA_PER_IP", "1000/1m"),
        ("SIGIL_LIMITS__MFA_PER_ACCOUNT", "1000/1m"),
    ];
    e.extend_from_slice(extra);
    e
}

fn serve(dir: &std::path::Path, extra: &[(&str, &str)]) -> common::Served {
    common::serve(dir, &env(extra))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// A reply: status, `Retry-After` if any, JSON body (or `null`).
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    Reply { status, retry_after, body }
}

async fn admin_post(s: &common::Served, path: &str, body: Value) -> Reply {
    send(http().post(s.url(path)).header("x-internal-secret", SECRET).json(&body)).await
}

async fn create_user(s: &common::Served, body: Value) -> Value {
    let r = admin_post(s, "/api/admin/users", body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn login(s: &common::Served, username: &str, password: &str) -> Reply {
    send(http().post(s.url("/api/auth/login")).header("user-agent", CHROME).json(&json!({"username": username, "password": password}))).await
}

async fn login_token(s: &common::Served, username: &str, password: &str) -> String {
    let r = login(s, username, password).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["access_token"].as_str().unwrap().to_string()
}

async fn get(s: &common::Served, path: &str, token: &str) -> Reply {
    send(http().get(s.url(path)).bearer_auth(token)).await
}

async fn two_fa(s: &common::Served, method: &str, token: &str, code: &str) -> Reply {
    send(http().post(s.url(&format!("/api/auth/2fa/{method}"))).json(&json!({"access_token": token, "token": code}))).await
}

/// The code an authenticator app shows now for `secret` (base32), by an implementation that
/// is not sigil's.
fn totp_now(secret: &str, offset_steps: i64) -> String {
    let key = base32_decode(secret);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &key, (now + offset_steps * 30) as u64)
}

/// RFC 4648 base32 (no padding), written here so the test shares no code with the server.
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase()).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

/// Waits until the current 30 s step has at least `margin` seconds left, so a code made now
/// is still the current one when it arrives.
async fn fresh_step(margin: u64) {
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        if 30 - now % 30 >= margin {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_use_list_and_revoke_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let alice = create_user(&s, json!({"username": "Alice", "password": "correct horse battery", "firstname": "Alice", "email": "alice@example.com"})).await;
    assert_eq!(alice["username"], "Alice");
    assert_eq!(alice["scopes"], json!(["user"]));
    assert!(alice.get("password").is_none(), "no password in {alice}");
    let guid = alice["guid"].as_str().unwrap();
    assert_eq!(guid.len(), 64);

    // Username is case-insensitive; the reply is spec A's.
    let r = login(&s, "alice", "correct horse battery").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b = &r.body;
    let token = b["access_token"].as_str().unwrap().to_string();
    assert!(token.len() >= 43);
    assert_eq!(b["verified"], true);
    assert_eq!(b["2fa"], json!([]));
    assert_eq!(b["default_2fa"], Value::Null);
    assert_eq!(b["user"], json!({"username": "Alice", "language": "en", "firstname": "Alice", "lastname": "", "code": "", "_meta": {"guid": guid}}));
    assert_eq!(b["ip"], "127.0.0.1");
    assert_eq!(b["expiry_renew"], 14 * 86400);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(b["expiry"].as_u64().unwrap().abs_diff(now + 30 * 86400) < 5);
    // Email works as the login too.
    let second = login_token(&s, "ALICE@example.com", "correct horse battery").await;

    let r = get(&s, "/api/auth/token", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["user"], json!({"username": "Alice", "firstname": "Alice", "lastname": "", "_meta": {"guid": guid}}));
    assert_eq!(r.body["scopes"], json!(["user"]));

    let r = get(&s, "/api/auth/tokens", &token).await;
    assert_eq!(r.status, 200);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", r.body);
    let item = &list[0];
    assert_eq!(item["agent"]["name"], "Chrome");
    assert_eq!(item["agent"]["os"], "Windows 10");
    assert_eq!(item["ip"], "127.0.0.1");
    assert_eq!(item["user"]["_meta"]["guid"], guid);
    assert_ne!(item["_meta"]["guid"], guid, "_meta.guid names the token, not the user");
    for key in ["onetime", "hide_session", "verified", "last_verified", "expiry_renew", "last_activity", "expire", "scopes"] {
        assert!(item.get(key).is_some(), "{key} missing in {item}");
    }
    // Revoke the second token (the list is oldest first) by its guid: it is dead on the very
    // next request.
    let second_guid = list[1]["_meta"]["guid"].as_str().unwrap().to_string();
    let r = send(http().delete(s.url(&format!("/api/auth/tokens/{second_guid}"))).bearer_auth(&token)).await;
    assert_eq!((r.status, r.body.clone()), (200, json!({"guid": second_guid})));
    let r = get(&s, "/api/auth/token", &second).await;
    assert_eq!((r.status, r.body), (401, json!({"success": false, "error": "INVALID_TOKEN_DATA"})));

    // Another user cannot revoke Alice's token; an unknown guid is 404.
    create_user(&s, json!({"username": "mallory", "password": "mallory's password"})).await;
    let m = login_token(&s, "mallory", "mallory's password").await;
    let alice_token_guid = get(&s, "/api/auth/tokens", &token).await.body[0]["_meta"]["guid"].as_str().unwrap().to_string();
    let r = send(http().delete(s.url(&format!("/api/auth/tokens/{alice_token_guid}"))).bearer_auth(&m)).await;
    assert_eq!((r.status, r.body["error"].clone()), (403, json!("INSUFFICIENT_PERMISSIONS")));
    assert_eq!(get(&s, "/api/auth/tokens", &m).await.body.as_array().unwrap().len(), 1, "only mallory's own");
    let r = send(http().delete(s.url(&format!("/api/auth/tokens/{}", "0".repeat(64)))).bearer_auth(&m)).await;
    assert_eq!(r.status, 404);

    // Logout kills the token at once.
    let r = send(http().post(s.url("/api/auth/logout")).bearer_auth(&token)).await;
    assert_eq!((r.status, r.body), (200, json!({"logout": true})));
    assert_eq!(get(&s, "/api/auth/token", &token).await.status, 401);

    // Wrong password and unknown user: the same answer.
    let wrong = login(&s, "alice", "wrong password!").await;
    let unknown = login(&s, "nobody", "wrong password!").await;
    assert_eq!((wrong.status, wrong.body.clone()), (401, json!({"success": false, "error": "INVALID_TOKEN_DATA"})));
    assert_eq!((unknown.status, unknown.body), (401, wrong.body));

    let metrics = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_account_logins_total{dialect="token",method="password",outcome="success"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"sigil_account_logins_total{dialect="token",method="password",outcome="invalid"} 2"#));
    assert!(metrics.contains("sigil_password_hash_seconds_count"));
    assert!(!metrics.contains(&token), "no token in metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_and_recovery_codes_gate_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let bob = create_user(&s, json!({"username": "bob", "password": "bob's password"})).await;
    let guid = bob["guid"].as_str().unwrap();
    let r = admin_post(&s, &format!("/api/admin/users/{guid}/2fa/totp"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert!(r.body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    let codes: Vec<String> = r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.len() == 32 && c.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())));

    let r = login(&s, "bob", "bob's password").await;
    assert_eq!(r.body["verified"], false);
    assert_eq!(r.body["2fa"], json!(["totp", "otp"]));
    assert_eq!(r.body["default_2fa"], "totp");
    let token = r.body["access_token"].as_str().unwrap().to_string();
    // Until verified: only the 2fa calls and logout.
    let r = get(&s, "/api/auth/token", &token).await;
    assert_eq!((r.status, r.body), (403, json!({"success": false, "error": "TWO_FACTOR_REQUIRED"})));
    assert_eq!(get(&s, "/api/auth/tokens", &token).await.status, 403);

    fresh_step(5).await;
    let good = totp_now(&secret, 0);
    let bad = if good == "000000" { "111111".to_string() } else { "000000".to_string() };
    assert_eq!(two_fa(&s, "totp", &token, &bad).await.body, json!({"verified": false}));
    let r = two_fa(&s, "totp", &token, &good).await;
    assert_eq!((r.status, r.body), (200, json!({"verified": true})));
    assert_eq!(get(&s, "/api/auth/token", &token).await.status, 200);

    // The same step is accepted once per account: a second login cannot reuse it.
    let token2 = login_token(&s, "bob", "bob's password").await;
    assert_eq!(two_fa(&s, "totp", &token2, &good).await.body, json!({"verified": false}));
    // A recovery code works once (any case), then never again.
    let r = two_fa(&s, "otp", &token2, &codes[0].to_uppercase()).await;
    assert_eq!(r.body, json!({"verified": true}));
    let token3 = login_token(&s, "bob", "bob's password").await;
    assert_eq!(two_fa(&s, "otp", &token3, &codes[0]).await.body, json!({"verified": false}));
    // Logout works before verification.
    let r = send(http().post(s.url("/api/auth/logout")).bearer_auth(&token3)).await;
    assert_eq!(r.body, json!({"logout": true}));

    // Concurrency: the same recovery code sent 12 times at once verifies exactly one token.
    let tokens: Vec<String> = futures_util::future::join_all((0..12).map(|_| login_token(&s, "bob", "bob's password"))).await;
    let attempts = tokens.iter().map(|t| two_fa(&s, "otp", t, &codes[1]));
    let replies = futures_util::future::join_all(attempts).await;
    let verified = replies.iter().filter(|r| r.body == json!({"verified": true})).count();
    assert_eq!(verified, 1, "one recovery code, one verification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_codes_go_through_the_outbox_and_five_wrong_codes_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let carol = create_user(&s, json!({"username": "carol", "password": "carol's password", "phone": "+14155550123"})).await;
    let guid = carol["guid"].as_str().unwrap();
    // A phone alone does not make a second factor (C.4) ...
    let r = login(&s, "carol", "carol's password").await;
    assert_eq!((r.body["verified"].clone(), r.body["2fa"].clone()), (json!(true), json!(["mobile"])));
    // ... `default_2fa = mobile` does, and the login sends the SMS itself.
    let r = send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).header("x-internal-secret", SECRET).json(&json!({"default_2fa": "mobile"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = login(&s, "carol", "carol's password").await;
    assert_eq!(r.body["verified"], false);
    let token = r.body["access_token"].as_str().unwrap().to_string();
    let outbox = send(http().get(s.url("/api/admin/outbox?to=%2B14155550123")).header("x-internal-secret", SECRET)).await;
    let messages = outbox.body.as_array().unwrap();
    assert_eq!(messages.len(), 1, "{}", outbox.body);
    let m = &messages[0];
    assert_eq!((m["to"].as_str(), m["channel"].as_str(), m["purpose"].as_str()), (Some("+14155550123"), Some("sms"), Some("2fa")));
    let code = m["code"].as_str().unwrap().to_string();
    let spaced = format!("{} {} {}", &code[0..2], &code[2..4], &code[4..6]);
    assert!(m["body"].as_str().unwrap().contains(&spaced), "{m}");
    // Resend is throttled to one per 30 s.
    assert_eq!(two_fa(&s, "resend", &token, "").await.body, json!({"resend": false}));
    assert_eq!(two_fa(&s, "mobile", &token, &spaced).await.body, json!({"verified": true}));
    // The code was single use.
    let r = login(&s, "carol", "carol's password").await;
    let token2 = r.body["access_token"].as_str().unwrap().to_string();
    let outbox = send(http().get(s.url("/api/admin/outbox?to=+14155550123")).header("x-internal-secret", SECRET)).await;
    assert_eq!(outbox.body.as_array().unwrap().len(), 2, "an unencoded + still finds the phone");
    let new_code = outbox.body[1]["code"].as_str().unwrap().to_string();
    let wrong = if new_code == "000000" { "000001" } else { "000000" };

    // Ten wrong codes at once: at most five are checked, then the token is revoked.
    let replies = futures_util::future::join_all((0..10).map(|_| two_fa(&s, "mobile", &token2, wrong))).await;
    assert!(replies.iter().all(|r| r.body != json!({"verified": true})));
    let checked = replies.iter().filter(|r| r.body == json!({"verified": false})).count();
    assert!(checked <= 5, "{checked} codes were checked");
    let r = two_fa(&s, "mobile", &token2, &new_code).await;
    assert_eq!((r.status, r.body), (401, json!({"success": false, "error": "INVALID_TOKEN_DATA"})), "revoked after five wrong codes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onetime_hidden_and_sliding_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_TOKENS__EXPIRY_RENEW", "2s"), ("SIGIL_TOKENS__EXPIRY", "8s")]);
    create_user(&s, json!({"username": "dave", "password": "dave's password"})).await;
    let opts = |o: Value| {
        let mut body = json!({"username": "dave", "password": "dave's password"});
        body.as_object_mut().unwrap().extend(o.as_object().unwrap().clone());
        send(http().post(s.url("/api/auth/login")).json(&body))
    };
    // One-time: of 10 concurrent uses exactly one succeeds.
    let r = opts(json!({"onetime": true})).await;
    let once = r.body["access_token"].as_str().unwrap().to_string();
    let uses = futures_util::future::join_all((0..10).map(|_| get(&s, "/api/auth/token", &once))).await;
    assert_eq!(uses.iter().filter(|r| r.status == 200).count(), 1);
    assert!(uses.iter().all(|r| r.status == 200 || r.status == 401));

    // Hidden tokens are left out of the owner's own list.
    let hidden = opts(json!({"hide_session": true})).await.body["access_token"].as_str().unwrap().to_string();
    let visible = login_token(&s, "dave", "dave's password").await;
    let list = get(&s, "/api/auth/tokens", &hidden).await.body;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["hide_session"], false);

    // Sliding window of 2 s: used every second it lives on ...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(get(&s, "/api/auth/token", &visible).await.status, 200);
    }
    // ... idle for longer than 2 s it is dead (well before its absolute 8 s) ...
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert_eq!(get(&s, "/api/auth/token", &visible).await.status, 401);
    // ... and the absolute 8 s end holds however it is used.
    let t = login_token(&s, "dave", "dave's password").await;
    let born = Instant::now();
    while born.elapsed() < Duration::from_millis(7_200) {
        assert_eq!(get(&s, "/api/auth/token", &t).await.status, 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_millis(8_300).saturating_sub(born.elapsed())).await;
    assert_eq!(get(&s, "/api/auth/token", &t).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_allow_lists_and_required_second_factor() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)]);
    let mk = |b: Value| admin_post(&s, "/api/admin/groups", b);
    let r = mk(json!({"name": "ops", "ip_allowlist": ["10.1.2.3/8", "2001:db8::/32"]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body, json!({"name": "ops", "login_allowed": true, "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"], "require_2fa": false}));
    assert_eq!(mk(json!({"name": "ops"})).await.status, 409);
    assert_eq!(mk(json!({"name": "frozen", "login_allowed": false})).await.status, 201);
    assert_eq!(mk(json!({"name": "strict", "require_2fa": true})).await.status, 201);
    assert_eq!(mk(json!({"name": "bad", "ip_allowlist": ["10.0.0.0/33"]})).await.status, 400);

    create_user(&s, json!({"username": "olga", "password": "olga's password", "group": "ops"})).await;
    create_user(&s, json!({"username": "fred", "password": "fred's password", "group": "frozen"})).await;
    create_user(&s, json!({"username": "sam", "password": "sam's password", "group": "strict"})).await;
    let r = admin_post(&s, "/api/admin/users", json!({"username": "x", "password": "x's password", "group": "nope"})).await;
    assert_eq!((r.status, r.body["error"].clone()), (400, json!("VALIDATION_ERROR")));

    let from = |ip: &'static str, who: &'static str, pw: &'static str| {
        send(http().post(s.url("/api/auth/login")).header("x-forwarded-for", ip).json(&json!({"username": who, "password": pw})))
    };
    let r = from("192.0.2.9", "olga", "olga's password").await;
    assert_eq!((r.status, r.body), (403, json!({"success": false, "error": "INVALID_IP"})));
    let r = from("10.200.0.1", "olga", "olga's password").await;
    assert_eq!((r.status, r.body["ip"].clone()), (200, json!("10.200.0.1")));
    assert_eq!(from("2001:db8::5", "olga", "olga's password").await.status, 200, "IPv6 allow-list");
    assert_eq!(from("2001:db9::5", "olga", "olga's password").await.status, 403);
    let r = from("10.0.0.1", "fred", "fred's password").await;
    assert_eq!((r.status, r.body), (403, json!({"success": false, "error": "INVALID_AUTHENTICATION_GROUP"})));
    // A group that demands a second factor from an account with none: refused, no token.
    let r = from("10.0.0.1", "sam", "sam's password").await;
    assert_eq!((r.status, r.body), (403, json!({"success": false, "error": "TWO_FACTOR_REQUIRED"})));
    // With a phone, a 2fa-requiring group makes the token unverified.
    let r = send(http().patch(s.url("/api/admin/groups/frozen")).header("x-internal-secret", SECRET).json(&json!({"login_allowed": true, "require_2fa": true}))).await;
    assert_eq!(r.body["require_2fa"], true);
    let fred = send(http().get(s.url("/api/admin/users")).header("x-internal-secret", SECRET)).await.body;
    let fred_guid = fred.as_array().unwrap().iter().find(|u| u["username"] == "fred").unwrap()["guid"].as_str().unwrap().to_string();
    send(http().patch(s.url(&format!("/api/admin/users/{fred_guid}"))).header("x-internal-secret", SECRET).json(&json!({"phone": "+4930123456"}))).await;
    let r = from("10.0.0.1", "fred", "fred's password").await;
    assert_eq!((r.status, r.body["verified"].clone()), (200, json!(false)));
    // A group with members cannot be deleted; an empty one can.
    assert_eq!(send(http().delete(s.url("/api/admin/groups/ops")).header("x-internal-secret", SECRET)).await.status, 400);
    let r = mk(json!({"name": "empty"})).await;
    assert_eq!(r.status, 201);
    let r = send(http().delete(s.url("/api/admin/groups/empty")).header("x-internal-secret", SECRET)).await;
    assert_eq!((r.status, r.body), (200, json!({"name": "empty"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_authenticates_and_manages_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let url = s.url("/api/admin/users");
    let r = send(http().get(&url)).await;
    assert_eq!((r.status, r.body), (401, json!({"success": false, "error": "INVALID_TOKEN_DATA"})));
    assert_eq!(send(http().get(&url).header("x-internal-secret", "wrong")).await.status, 401);
    assert_eq!(send(http().get(&url).header("x-internal-secret", SECRET)).await.status, 200);

    let root = create_user(&s, json!({"username": "root", "password": "root's password", "scopes": ["admin", "user"]})).await;
    let user = create_user(&s, json!({"username": "user", "password": "user's password", "email": "User@Example.com"})).await;
    let admin_token = login_token(&s, "root", "root's password").await;
    let user_token = login_token(&s, "user", "user's password").await;
    assert_eq!(send(http().get(&url).bearer_auth(&user_token)).await.status, 403);
    let all = send(http().get(&url).bearer_auth(&admin_token)).await;
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    // Admins list everyone's tokens.
    assert_eq!(get(&s, "/api/auth/tokens", &admin_token).await.body.as_array().unwrap().len(), 2);

    // Usernames and emails are unique regardless of case.
    for taken in [json!({"username": "USER", "password": "another password"}), json!({"username": "u2", "password": "another password", "email": "user@example.COM"})] {
        let r = admin_post(&s, "/api/admin/users", taken).await;
        assert_eq!((r.status, r.body), (409, json!({"success": false, "error": "USER_EXISTS"})));
    }
    // Bad fields are named.
    let r = admin_post(&s, "/api/admin/users", json!({"username": "bad name!", "password": "long enough"})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["details"].as_str().unwrap().starts_with("username"), "{}", r.body);
    let r = admin_post(&s, "/api/admin/users", json!({"username": "shorty", "password": "short"})).await;
    assert!(r.body["details"].as_str().unwrap().starts_with("password"), "{}", r.body);
    let r = admin_post(&s, "/api/admin/users", json!({"username": "x1", "password": "long enough", "colour": "red"})).await;
    assert_eq!(r.status, 400, "unknown fields are refused: {}", r.body);

    // PATCH: fields change; the password changes and old tokens die.
    let guid = user["guid"].as_str().unwrap();
    let r = send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).bearer_auth(&admin_token).json(&json!({"lastname": "Smith", "password": "a new password"}))).await;
    assert_eq!((r.status, r.body["lastname"].clone()), (200, json!("Smith")));
    assert_eq!(get(&s, "/api/auth/token", &user_token).await.status, 401);
    assert_eq!(login(&s, "user", "user's password").await.status, 401);
    let user_token = login_token(&s, "user", "a new password").await;
    // Disabled: no login, no session.
    send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).bearer_auth(&admin_token).json(&json!({"disabled": true}))).await;
    assert_eq!(get(&s, "/api/auth/token", &user_token).await.status, 401);
    assert_eq!(login(&s, "user", "a new password").await.status, 401);
    send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).bearer_auth(&admin_token).json(&json!({"disabled": false}))).await;
    let user_token = login_token(&s, "user", "a new password").await;
    // DELETE: the account and every token are gone at once; the name is free again.
    let r = send(http().delete(s.url(&format!("/api/admin/users/{guid}"))).bearer_auth(&admin_token)).await;
    assert_eq!((r.status, r.body), (200, json!({"guid": guid})));
    assert_eq!(get(&s, "/api/auth/token", &user_token).await.status, 401);
    assert_eq!(send(http().get(s.url(&format!("/api/admin/users/{guid}"))).bearer_auth(&admin_token)).await.status, 404);
    create_user(&s, json!({"username": "user", "password": "user's password", "email": "user@example.com"})).await;
    assert_eq!(root["scopes"], json!(["admin", "user"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_never_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    create_user(&s, json!({"username": "eve", "password": "eve's password"})).await;
    let login_url = s.url("/api/auth/login");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("malformed", http().post(&login_url).header("content-type", "application/json").body("{\"username\":"), 400),
        ("wrong type", http().post(&login_url).json(&json!({"username": 5, "password": "x"})), 400),
        ("array", http().post(&login_url).json(&json!(["eve", "x"])), 400),
        ("missing", http().post(&login_url).json(&json!({"username": "eve"})), 400),
        ("NUL", http().post(&login_url).json(&json!({"username": "e\u{0}ve", "password": "eve's password"})), 401),
        ("absurd username", http().post(&login_url).json(&json!({"username": "e".repeat(10_000), "password": "x"})), 400),
        ("absurd password", http().post(&login_url).json(&json!({"username": "eve", "password": "x".repeat(5_000)})), 400),
        ("huge body", http().post(&login_url).header("content-type", "application/json").body(vec![b' '; 2 << 20]), 413),
        ("form body", http().post(&login_url).header("content-type", "application/x-www-form-urlencoded").body("username=eve"), 415),
        ("invalid UTF-8", http().post(&login_url).header("content-type", "application/json").body(vec![b'{', 0xff, 0xfe, b'}']), 400),
        ("no bearer", http().get(s.url("/api/auth/token")), 401),
        ("basic auth", http().get(s.url("/api/auth/token")).header("authorization", "Basic ZXZlOng="), 401),
        ("bearer junk", http().get(s.url("/api/auth/token")).header("authorization", reqwest::header::HeaderValue::from_bytes(b"Bearer \xc3\xa4\xff").unwrap()), 401),
        ("long bearer", http().get(s.url("/api/auth/token")).header("authorization", format!("Bearer {}", "a".repeat(8000))), 401),
        ("unknown route", http().get(s.url("/api/auth/nothing-here")), 404),
        ("unknown 2fa", http().post(s.url("/api/auth/2fa/carrier-pigeon")).json(&json!({"access_token": "x", "token": "1"})), 404),
        ("2fa without token", http().post(s.url("/api/auth/2fa/totp")).json(&json!({"token": "123456"})), 400),
        ("admin junk", http().post(s.url("/api/admin/users")).header("x-internal-secret", SECRET).body("\u{0}\u{0}"), 400),
    ];
    for (name, req, want) in cases {
        let started = Instant::now();
        let r = send(req).await;
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert_eq!(r.body["success"], false, "{name}: {}", r.body);
        assert!(r.body["error"].is_string(), "{name}: {}", r.body);
        assert!(started.elapsed() < Duration::from_secs(5), "{name} took {:?}", started.elapsed());
    }
    assert_eq!(http().get(s.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(login(&s, "eve", "eve's password").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_is_limited_and_counters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limits = [("SIGIL_LIMITS__LOGIN_PER_ACCOUNT", "3/15m"), ("SIGIL_LIMITS__LOGIN_PER_IP", "100/10s")];
    let mut s = serve(dir.path(), &limits);
    create_user(&s, json!({"username": "frank", "password": "frank's password"})).await;
    // Right passwords do not count against the account.
    for _ in 0..5 {
        assert_eq!(login(&s, "frank", "frank's password").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(login(&s, "frank", "guess guess").await.status, 401);
    }
    let r = login(&s, "frank", "frank's password").await;
    assert_eq!((r.status, r.body), (429, json!({"success": false, "error": "RATE_LIMITED"})));
    assert!((1..=900).contains(&r.retry_after.unwrap()));
    // Another account is not affected.
    create_user(&s, json!({"username": "grace", "password": "grace's password"})).await;
    assert_eq!(login(&s, "grace", "grace's password").await.status, 200);
    // The counter is in the store: a restart (even kill -9) does not reset it.
    s.kill9();
    let s = serve(dir.path(), &limits);
    assert_eq!(login(&s, "FRANK", "frank's password").await.status, 429);

    // Per IP: a small window, then 429 with Retry-After, in the dialect's shape.
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_LIMITS__LOGIN_PER_IP", "4/1m")]);
    for _ in 0..4 {
        assert_eq!(login(&s, "nobody", "whatever!").await.status, 401);
    }
    let r = login(&s, "nobody", "whatever!").await;
    assert_eq!(r.status, 429);
    assert!(r.retry_after.is_some());
    let metrics = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_rate_limited_total{limit="login_per_ip"} 1"#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_account_state_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[]);
    let heidi = create_user(&s, json!({"username": "heidi", "password": "heidi's password"})).await;
    let guid = heidi["guid"].as_str().unwrap();
    let kept = login_token(&s, "heidi", "heidi's password").await;
    let revoked = login_token(&s, "heidi", "heidi's password").await;
    let r = send(http().post(s.url("/api/auth/logout")).bearer_auth(&revoked)).await;
    assert_eq!(r.body, json!({"logout": true}));
    let r = admin_post(&s, &format!("/api/admin/users/{guid}/2fa/totp"), json!({})).await;
    let codes: Vec<String> = r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let pending = login(&s, "heidi", "heidi's password").await.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(two_fa(&s, "otp", &pending, &codes[0]).await.body, json!({"verified": true}));
    s.kill9();

    let s = serve(dir.path(), &[]);
    assert_eq!(get(&s, "/api/auth/token", &kept).await.status, 200, "the token");
    assert_eq!(get(&s, "/api/auth/token", &revoked).await.status, 401, "the revocation");
    assert_eq!(get(&s, "/api/auth/token", &pending).await.status, 200, "the verification");
    let r = login(&s, "heidi", "heidi's password").await;
    assert_eq!(r.body["2fa"], json!(["totp", "otp"]), "the enrolment");
    let t = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(two_fa(&s, "otp", &t, &codes[0]).await.body, json!({"verified": false}), "the consumed recovery code");
    assert_eq!(two_fa(&s, "otp", &t, &codes[1]).await.body, json!({"verified": true}));
}

fn cli(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(common::SIGIL)
        .args(args)
        .env("SIGIL_SERVER__DATA_DIR", data)
        .env("SIGIL_PASSWORDS__HASH", FAST_HASH)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_users_and_groups_and_passwords_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = cli(d, &["group", "add", "ops", "--ip-allowlist", "127.0.0.0/8,::1", "--require-2fa"], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ops");
    let (ok, out, _) = cli(d, &["group", "list"], None);
    assert!(ok);
    assert_eq!(out.trim(), "ops\tlogin=true\trequire_2fa=true\t127.0.0.0/8,::1/128");
    // No password in argv: without --password-stdin the CLI refuses.
    let (ok, _, err) = cli(d, &["user", "add", "ivan"], None);
    assert!(!ok && err.contains("--password-stdin"), "{err}");
    let (ok, out, err) = cli(d, &["user", "add", "ivan", "--password-stdin", "--email", "ivan@example.com", "--scopes", "admin,user"], Some("ivan's secret pw\n"));
    assert!(ok, "{err}");
    assert!(out.trim().ends_with("\tivan"), "{out}");
    let (ok, _, err) = cli(d, &["user", "add", "IVAN", "--password-stdin"], Some("another password\n"));
    assert!(!ok && err.contains("taken"), "{err}");
    let (ok, _, err) = cli(d, &["user", "add", "judy", "--password-stdin", "--group", "nope"], Some("judy's password\n"));
    assert!(!ok && err.contains("no group"), "{err}");
    let (ok, out, _) = cli(d, &["user", "list"], None);
    assert!(ok);
    assert!(out.contains("\tivan\tivan@example.com\tadmin,user\t-\tenabled"), "{out}");
    assert!(!out.contains("secret"), "{out}");

    let mut s = serve(d, &[]);
    let t = login_token(&s, "ivan", "ivan's secret pw").await;
    assert_eq!(get(&s, "/api/auth/token", &t).await.body["scopes"], json!(["admin", "user"]));
    let mut log = Vec::new();
    while let Ok(line) = s.log.try_recv() {
        log.push(line);
    }
    assert!(!log.iter().any(|l| l.contains("ivan's secret pw") || l.contains(&t)), "a secret was logged: {log:?}");
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    s.child.wait().unwrap();

    let (ok, out, err) = cli(d, &["user", "passwd", "ivan", "--password-stdin"], Some("a brand new pw\n"));
    assert!(ok, "{err}");
    assert!(out.contains("1 session(s) ended"), "{out}");
    let (ok, out, _) = cli(d, &["user", "disable", "ivan"], None);
    assert!(ok && out.contains("disabled"), "{out}");
    let s = serve(d, &[]);
    assert_eq!(get(&s, "/api/auth/token", &t).await.status, 401);
    assert_eq!(login(&s, "ivan", "a brand new pw").await.status, 401, "disabled");
    drop(s);
    let (ok, _, _) = cli(d, &["user", "disable", "ivan", "--undo"], None);
    assert!(ok);
    let s = serve(d, &[]);
    assert_eq!(login(&s, "ivan", "a brand new pw").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_hashes_are_upgraded_at_login() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    create_user(&s, json!({"username": "kim", "password": "kim's password"})).await;
    drop(s);
    let stronger = "{ memory_kib = 9216, iterations = 4, parallelism = 1 }";
    let mut s = common::serve(dir.path(), &[("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET), ("SIGIL_PASSWORDS__HASH", stronger)]);
    assert_eq!(login(&s, "kim", "kim's password").await.status, 200);
    // The re-hash runs after the reply; give it a moment, then stop and read the store.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    s.child.wait().unwrap();
    let store = sigil_engine::store::RocksStore::open(dir.path(), sigil_engine::store::Durability::Fsync).unwrap();
    let kim = sigil_engine::account::find(&store, "kim").unwrap().unwrap();
    assert!(kim.password.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"), "{}", kim.password);
    store.close().unwrap();
    drop(store);
    let s = common::serve(dir.path(), &[("SIGIL_PASSWORDS__HASH", stronger)]);
    assert_eq!(login(&s, "kim", "kim's password").await.status, 200, "the new hash verifies");
}

/// A one-thread HTTP endpoint on 127.0.0.1 that answers the statuses in `script` in turn
/// (then 200) and hands every request body to the test.
fn webhook(script: Vec<u16>) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead as _, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = std::io::BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
            let status = script.next().unwrap_or(200);
            let _ = write!(reader.get_mut(), "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_sender_retries_and_failures_show_in_metrics() {
    let (url, bodies) = webhook(vec![500]);
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_SMS__SENDER", "webhook"), ("SIGIL_SMS__WEBHOOK_URL", &url), ("SIGIL_SMS__WEBHOOK_RETRIES", "2")]);
    let u = create_user(&s, json!({"username": "lena", "password": "lena's password", "phone": "+14155550199"})).await;
    let guid = u["guid"].as_str().unwrap();
    send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).header("x-internal-secret", SECRET).json(&json!({"default_2fa": "mobile"}))).await;
    let r = login(&s, "lena", "lena's password").await;
    let token = r.body["access_token"].as_str().unwrap().to_string();
    // The gateway refuses the first POST; the retry delivers the same message.
    let first: Value = serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    let second: Value = serde_json::from_str(&bodies.recv_timeout(Duration::from_secs(5)).unwrap()).unwrap();
    assert_eq!(first, second);
    assert_eq!((first["to"].as_str(), first["channel"].as_str(), first["purpose"].as_str()), (Some("+14155550199"), Some("sms"), Some("2fa")));
    let text = first["body"].as_str().unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{text}");
    assert_eq!(two_fa(&s, "mobile", &token, &code).await.body, json!({"verified": true}));
    // With a webhook there is no outbox.
    assert_eq!(send(http().get(s.url("/api/admin/outbox")).header("x-internal-secret", SECRET)).await.status, 404);
    let metrics = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_messages_total{outcome="retried",sender="webhook"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"sigil_messages_total{outcome="sent",sender="webhook"} 1"#), "{metrics}");
    drop(s);

    // A gateway that is down: every try fails, then the failure is counted (and the login
    // itself is not held up).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/sms", dead.local_addr().unwrap());
    drop(dead);
    let s = serve(dir.path(), &[("SIGIL_SMS__SENDER", "webhook"), ("SIGIL_SMS__WEBHOOK_URL", &dead_url), ("SIGIL_SMS__WEBHOOK_RETRIES", "1")]);
    let started = Instant::now();
    assert_eq!(login(&s, "lena", "lena's password").await.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = http().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains(r#"sigil_messages_total{outcome="failed",sender="webhook"} 1"#) {
            break;
        }
        assert!(Instant::now() < deadline, "no failure counted: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut log = Vec::new();
    while let Ok(line) = s.log.try_recv() {
        log.push(line);
    }
    assert!(log.iter().any(|l| l.contains("message webhook failed")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_no_secret_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[]);
    let password = "a password to look for";
    let u = create_user(&s, json!({"username": "mia", "password": password, "phone": "+14155550111"})).await;
    let guid = u["guid"].as_str().unwrap();
    let token = login_token(&s, "mia", password).await;
    let r = admin_post(&s, &format!("/api/admin/users/{guid}/2fa/totp"), json!({})).await;
    let codes: Vec<String> = r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    send(http().patch(s.url(&format!("/api/admin/users/{guid}"))).header("x-internal-secret", SECRET).json(&json!({"default_2fa": "mobile"}))).await;
    let pending = login(&s, "mia", password).await.body["access_token"].as_str().unwrap().to_string();
    let outbox = send(http().get(s.url("/api/admin/outbox")).header("x-internal-secret", SECRET)).await.body;
    let sms = outbox[0]["code"].as_str().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    s.child.wait().unwrap();

    let store = sigil_engine::store::RocksStore::open(dir.path(), sigil_engine::store::Durability::Fsync).unwrap();
    // Six digits could turn up inside any timestamp: the SMS code is checked the other way
    // round, by finding its hash.
    let sms_hash = hex::encode(sigil_engine::secret::secret_hash(sms.as_bytes()));
    let mut secrets: Vec<&str> = vec![password, &token, &pending];
    secrets.extend(codes.iter().map(String::as_str));
    let (mut records, mut sms_hashed) = (0, false);
    for cf in sigil_engine::store::Cf::ALL {
        use sigil_engine::store::Store as _;
        for (k, v) in store.scan_prefix(cf, b"", usize::MAX).unwrap() {
            records += 1;
            let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            sms_hashed |= v.contains(&sms_hash);
            for secret in &secrets {
                assert!(!k.contains(secret) && !v.contains(secret), "{secret:?} in clear in {}: {k} = {v}", cf.name());
            }
        }
    }
    assert!(records >= 8, "the store was read ({records} records)");
    assert!(sms_hashed, "the pending SMS code is kept as its hash");
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_revocations_acknowledged_mid_stream_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    create_user(&s, json!({"username": "nina", "password": "nina's password"})).await;
    // Two clients log in and out continuously; every answered login is an acknowledged token,
    // every answered logout an acknowledged revocation.
    let issued = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let revoked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (issued, revoked, base) = (issued.clone(), revoked.clone(), s.url(""));
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let body = json!({"username": "nina", "password": "nina's password"});
                let Ok(res) = http().post(format!("{base}/api/auth/login")).json(&body).send().await else { return };
                let Ok(reply) = res.json::<Value>().await else { return };
                let Some(token) = reply["access_token"].as_str().map(str::to_string) else { return };
                if i % 3 == 2 {
                    let Ok(res) = http().post(format!("{base}/api/auth/logout")).bearer_auth(&token).send().await else { return };
                    if res.status() == 200 {
                        revoked.lock().unwrap().push(token);
                    }
                } else {
                    issued.lock().unwrap().push(token);
                }
            }
        }));
    }
    let started = Instant::now();
    while issued.lock().unwrap().len() < 30 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill9();
    for c in clients {
        c.await.unwrap();
    }
    let (issued, revoked) = (issued.lock().unwrap().clone(), revoked.lock().unwrap().clone());
    assert!(issued.len() >= 20 && !revoked.is_empty(), "{} tokens, {} revocations before the kill", issued.len(), revoked.len());
    let s = serve(dir.path(), &[("SIGIL_LIMITS__ENABLED", "false")]);
    for t in &issued {
        assert_eq!(get(&s, "/api/auth/token", t).await.status, 200, "an acknowledged token was lost");
    }
    for t in &revoked {
        assert_eq!(get(&s, "/api/auth/token", t).await.status, 401, "an acknowledged revocation was lost");
    }
}
