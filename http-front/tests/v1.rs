//! The account API (`/v1`) end to end: the real binary, a cookie-jar HTTP client, TOTP codes
//! from an independent implementation (`totp-lite`), concurrent use of single-use secrets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};

const SECRET: &str = "v1-internal-secret-0123456789";
const FAST_HASH: &str = "{ memory_kib = 7168, iterations = 5, parallelism = 1 }";
const ORIGIN: &str = "http://127.0.0.1:16127";

fn serve(dir: &std::path::Path, extra: &[(&str, &str)]) -> common::Served {
    let mut e = vec![
        ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
        ("SIGIL_PASSWORDS__HASH", FAST_HASH),
        // Plain-HTTP test server: cookies without Secure, or a cookie jar would not send them.
        ("SIGIL_ACCOUNTS__COOKIE_SECURE", "false"),
        ("SIGIL_LIMITS__LOGIN_PER_IP", "1000/10s"),
        ("SIGIL_LIMITS__MFA_PER_IP", "1000/1m"),
        ("SIGIL_LIMITS__MFA_PER_ACCOUNT", "1000/1m"),
    ];
    e.extend_from_slice(extra);
    common::serve(dir, &e)
}

/// A browser-like client: keeps cookies.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).timeout(Duration::from_secs(20)).build().unwrap()
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

struct Reply {
    status: u16,
    set_cookie: Vec<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let set_cookie = res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = res.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}")) };
    Reply { status, set_cookie, retry_after, body }
}

async fn create_user(s: &common::Served, body: Value) -> String {
    let r = send(plain().post(s.url("/api/admin/users")).header("x-internal-secret", SECRET).json(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["guid"].as_str().unwrap().to_string()
}

async fn login(s: &common::Served, client: &reqwest::Client, login: &str, password: &str) -> Reply {
    send(client.post(s.url("/v1/auth/login")).json(&json!({"login": login, "password": password}))).await
}

fn totp_now(secret: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut key, mut buffer, mut bits) = (Vec::new(), 0u32, 0);
    for c in secret.trim_end_matches('=').bytes() {
        buffer = (buffer << 5) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key.push((buffer >> bits) as u8);
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &key, now)
}

async fn fresh_step() {
    while 30 - std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 30 < 5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_login_list_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let guid = create_user(&s, json!({"username": "Ada", "password": "analytical engine", "email": "ada@example.com"})).await;

    // Login by email, any case: the token in the body and the same token as an HttpOnly cookie.
    let b = browser();
    let r = login(&s, &b, "ADA@example.com", "analytical engine").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["user_id"], guid.as_str());
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 22, "≥ 128 bits");
    let cookie = r.set_cookie.iter().find(|c| c.starts_with("sigil_session=")).unwrap();
    assert!(cookie.starts_with(&format!("sigil_session={token};")), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "cookie_secure = false here: {cookie}");

    // The cookie authenticates the browser; the token authenticates a native client.
    let me = send(b.get(s.url("/v1/users/@me"))).await;
    assert_eq!((me.status, me.body["id"].as_str(), me.body["username"].as_str()), (200, Some(guid.as_str()), Some("Ada")));
    assert!(me.body.get("password").is_none());
    let native = send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await;
    assert_eq!(native.status, 200);
    assert_eq!(send(plain().get(s.url("/v1/users/@me"))).await.body, json!({"code": "UNAUTHORIZED", "message": "Unauthorized"}));

    // A second session (by username); both listed, ids are not tokens, one is current.
    let second = login(&s, &plain(), "ada", "analytical engine").await.body["token"].as_str().unwrap().to_string();
    let list = send(b.get(s.url("/v1/auth/sessions"))).await.body;
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    for i in items {
        for key in ["id", "created_at", "last_used_at", "ip", "agent"] {
            assert!(i.get(key).is_some(), "{key} in {i}");
        }
        assert!(i["id"] != token.as_str() && i["id"] != second.as_str(), "ids are public handles");
    }

    // CSRF: a cookie-authenticated state change needs our Origin; Bearer needs none.
    let r = send(b.post(s.url("/v1/auth/logout"))).await;
    assert_eq!((r.status, r.body["code"].clone()), (403, json!("INVALID_ORIGIN")));
    let r = send(b.post(s.url("/v1/auth/logout")).header("origin", "https://evil.example")).await;
    assert_eq!(r.status, 403);
    let r = send(b.post(s.url("/v1/auth/logout")).header("origin", ORIGIN)).await;
    assert_eq!(r.status, 204);
    assert!(r.set_cookie.iter().any(|c| c.starts_with("sigil_session=;") && c.contains("Max-Age=0")), "{:?}", r.set_cookie);
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await.status, 401, "dead at once");
    assert_eq!(send(b.get(s.url("/v1/users/@me"))).await.status, 401, "the cookie is gone");
    assert_eq!(send(plain().post(s.url("/v1/auth/logout")).bearer_auth(&second)).await.status, 204, "Bearer: no Origin needed");

    // Wrong password and unknown login look alike; a disabled account is refused.
    let wrong = login(&s, &plain(), "ada", "difference engine").await;
    let unknown = login(&s, &plain(), "babbage", "difference engine").await;
    assert_eq!((wrong.status, &wrong.body), (400, &json!({"code": "INVALID_CREDENTIALS", "message": "Invalid login or password"})));
    assert_eq!((unknown.status, unknown.body), (400, wrong.body));
    send(plain().patch(s.url(&format!("/api/admin/users/{guid}"))).header("x-internal-secret", SECRET).json(&json!({"disabled": true}))).await;
    let r = login(&s, &plain(), "ada", "analytical engine").await;
    assert_eq!((r.status, r.body["code"].clone()), (403, json!("ACCOUNT_DISABLED")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_tickets_open_a_session_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let guid = create_user(&s, json!({"username": "grace", "password": "cobol compiler", "phone": "+14155550177"})).await;
    let r = send(plain().post(s.url(&format!("/api/admin/users/{guid}/2fa/totp"))).header("x-internal-secret", SECRET).json(&json!({}))).await;
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let codes: Vec<String> = r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();

    // No cookie and no session before the second factor.
    let b = browser();
    let r = login(&s, &b, "grace", "cobol compiler").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["mfa"], true);
    assert_eq!(r.body["methods"], json!(["totp", "sms", "recovery"]));
    assert_eq!((r.body["sms"].clone(), r.body["webauthn"].clone()), (json!(true), json!(false)));
    assert!(r.set_cookie.is_empty(), "no cookie before the second factor: {:?}", r.set_cookie);
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    assert_eq!(send(b.get(s.url("/v1/users/@me"))).await.status, 401);

    fresh_step().await;
    let r = send(b.post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": ticket, "code": "000000"}))).await;
    assert_eq!((r.status, r.body["code"].clone()), (400, json!("INVALID_CODE")));
    let r = send(b.post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": ticket, "code": totp_now(&secret)}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["user_id"], guid.as_str());
    assert!(r.set_cookie.iter().any(|c| c.starts_with("sigil_session=")));
    assert_eq!(send(b.get(s.url("/v1/users/@me"))).await.status, 200);
    // The ticket is spent.
    let r = send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": ticket, "code": codes[0]}))).await;
    assert_eq!((r.status, r.body["code"].clone()), (400, json!("MFA_INVALID_TICKET")));

    // A recovery code on /mfa/totp, once.
    let t = login(&s, &plain(), "grace", "cobol compiler").await.body["ticket"].as_str().unwrap().to_string();
    assert_eq!(send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": t, "code": codes[0]}))).await.status, 200);
    let t = login(&s, &plain(), "grace", "cobol compiler").await.body["ticket"].as_str().unwrap().to_string();
    assert_eq!(send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": t, "code": codes[0]}))).await.status, 400);

    // SMS: send (204), read the outbox, answer; 12 concurrent answers with the right code open
    // exactly one session.
    let t = login(&s, &plain(), "grace", "cobol compiler").await.body["ticket"].as_str().unwrap().to_string();
    assert_eq!(send(plain().post(s.url("/v1/auth/mfa/sms/send")).json(&json!({"ticket": t}))).await.status, 204);
    let outbox = send(plain().get(s.url("/api/admin/outbox?to=%2B14155550177")).header("x-internal-secret", SECRET)).await.body;
    let code = outbox.as_array().unwrap().last().unwrap()["code"].as_str().unwrap().to_string();
    let answers = (0..12).map(|_| send(plain().post(s.url("/v1/auth/mfa/sms")).json(&json!({"ticket": t, "code": code}))));
    let replies = futures_util::future::join_all(answers).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 1, "one ticket, one session");
    assert!(replies.iter().all(|r| r.status == 200 || r.body["code"] == "MFA_INVALID_TICKET"));

    // Five wrong codes burn a ticket.
    let t = login(&s, &plain(), "grace", "cobol compiler").await.body["ticket"].as_str().unwrap().to_string();
    for _ in 0..5 {
        let r = send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": t, "code": "999999x"}))).await;
        assert_eq!(r.body["code"], "INVALID_CODE");
    }
    let r = send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": t, "code": codes[1]}))).await;
    assert_eq!(r.body["code"], "MFA_INVALID_TICKET", "burned after five");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_validation_errors_limits_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[("SIGIL_LIMITS__LOGIN_PER_IP", "12/1m")]);
    let guid = create_user(&s, json!({"username": "linus", "password": "penguin power", "scopes": ["admin", "user"]})).await;
    let token = login(&s, &plain(), "linus", "penguin power").await.body["token"].as_str().unwrap().to_string();
    let gone = login(&s, &plain(), "linus", "penguin power").await.body["token"].as_str().unwrap().to_string();
    assert_eq!(send(plain().post(s.url("/v1/auth/logout")).bearer_auth(&gone)).await.status, 204);

    let validate = |secret: Option<&str>, t: &str| {
        let mut req = plain().post(s.url("/v1/internal/sessions/validate")).json(&json!({"token": t}));
        if let Some(secret) = secret {
            req = req.header("x-internal-secret", secret);
        }
        send(req)
    };
    assert_eq!(validate(None, &token).await.status, 401);
    assert_eq!(validate(Some("wrong"), &token).await.status, 401);
    let r = validate(Some(SECRET), &token).await;
    assert_eq!((r.body["valid"].clone(), r.body["user_id"].clone(), r.body["scopes"].clone()), (json!(true), json!(guid), json!(["admin", "user"])));
    assert!(r.body["expires_at"].is_string());
    assert_eq!(validate(Some(SECRET), &gone).await.body, json!({"valid": false}));
    assert_eq!(validate(Some(SECRET), "nonsense").await.body, json!({"valid": false}));
    // A /v1 session of an admin reaches the admin API (either dialect's Bearer works there).
    assert_eq!(send(plain().get(s.url("/api/admin/users")).bearer_auth(&token)).await.status, 200);

    // Bad input: /v1's own error shape, never a 5xx.
    let url = s.url("/v1/auth/login");
    let r = send(plain().post(&url).header("content-type", "application/json").body("{\"login\":")).await;
    assert_eq!((r.status, r.body["code"].clone()), (400, json!("INVALID_FORM_BODY")));
    let r = send(plain().post(&url).json(&json!({"login": 7, "password": "x"}))).await;
    assert_eq!(r.body["errors"], json!([{"path": "login", "message": "invalid type: integer `7`, expected a string"}]));
    let r = send(plain().post(&url).json(&json!({"login": "", "password": "x"}))).await;
    assert_eq!(r.body["errors"][0]["path"], "login");
    assert_eq!(send(plain().post(&url).header("content-type", "text/plain").body("x")).await.status, 415);
    assert_eq!(send(plain().post(&url).header("content-type", "application/json").body(vec![b' '; 1 << 20])).await.status, 413);
    let r = send(plain().get(s.url("/v1/nowhere"))).await;
    assert_eq!((r.status, r.body["code"].clone()), (404, json!("NOT_FOUND")));
    let r = send(plain().post(s.url("/v1/auth/mfa/totp")).json(&json!({"ticket": "x".repeat(300), "code": "1"}))).await;
    assert_eq!(r.status, 400);

    // Per-IP login limit: 429 with retry_after and Retry-After.
    let mut limited = None;
    for _ in 0..12 {
        let r = login(&s, &plain(), "linus", "wrong password").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the per-IP limit answers 429");
    assert_eq!(r.body["code"], "RATE_LIMITED");
    assert!(r.body["retry_after"].as_u64().unwrap() >= 1);
    assert!(r.retry_after.is_some());

    // A sudo grant and a TOTP enrolment, acknowledged just before the kill.
    let sudo = send(plain().post(s.url("/v1/auth/sudo/verify")).bearer_auth(&token).json(&json!({"password": "penguin power"}))).await;
    let sudo = sudo.body["sudo_token"].as_str().unwrap().to_string();
    let secret = base32(&[0x33; 20]);
    fresh_step().await;
    let enable = json!({"secret": secret, "code": totp_now(&secret)});
    let r = send(plain().post(s.url("/v1/users/@me/mfa/totp/enable")).bearer_auth(&token).header("x-sudo-token", &sudo).json(&enable)).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // kill -9: everything acknowledged survives.
    s.kill9();
    let s = serve(dir.path(), &[]);
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await.status, 200, "the session");
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&gone)).await.status, 401, "the logout");
    let r = send(plain().post(s.url("/v1/auth/sessions/logout")).bearer_auth(&token).header("x-sudo-token", &sudo).json(&json!({"session_ids": []}))).await;
    assert_eq!(r.status, 204, "the sudo grant: {}", r.body);
    let me = send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await.body;
    assert_eq!((me["mfa_enabled"].clone(), me["methods"].clone()), (json!(true), json!(["totp", "recovery"])), "the enrolment");
}

fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buffer, mut bits) = (String::new(), 0u32, 0);
    for b in bytes {
        buffer = (buffer << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_mode_gates_session_logout_and_totp_enrolment() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    create_user(&s, json!({"username": "hopper", "password": "nanoseconds!"})).await;
    let b = browser();
    assert_eq!(login(&s, &b, "hopper", "nanoseconds!").await.status, 200);
    let other = login(&s, &plain(), "hopper", "nanoseconds!").await.body["token"].as_str().unwrap().to_string();
    let list = send(b.get(s.url("/v1/auth/sessions"))).await.body;
    let other_id = list.as_array().unwrap().iter().find(|i| i["current"] == false).unwrap()["id"].as_str().unwrap().to_string();

    let end_other = || send(b.post(s.url("/v1/auth/sessions/logout")).header("origin", ORIGIN).json(&json!({"session_ids": [other_id]})));
    let r = end_other().await;
    assert_eq!((r.status, r.body["code"].clone()), (403, json!("SUDO_MODE_REQUIRED")));

    let verify = |body: Value| send(b.post(s.url("/v1/auth/sudo/verify")).header("origin", ORIGIN).json(&body));
    let r = verify(json!({"password": "wrong guess"})).await;
    assert_eq!((r.status, r.body["code"].clone()), (400, json!("INVALID_CREDENTIALS")));
    let r = verify(json!({"password": "nanoseconds!"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sudo_token = r.body["sudo_token"].as_str().unwrap().to_string();
    let cookie = r.set_cookie.iter().find(|c| c.starts_with("sigil_sudo_mode=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=900"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    // The jar sends the sudo cookie: the other session ends; again is harmless.
    assert_eq!(end_other().await.status, 204);
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&other)).await.status, 401);
    assert_eq!(end_other().await.status, 204, "idempotent");

    // The grant is bound to its session: another session cannot use its token.
    let third = login(&s, &plain(), "hopper", "nanoseconds!").await.body["token"].as_str().unwrap().to_string();
    let as_third = |token: &str| {
        send(plain().post(s.url("/v1/auth/sessions/logout")).bearer_auth(&third).header("x-sudo-token", token).json(&json!({"session_ids": []})))
    };
    assert_eq!(as_third(&sudo_token).await.body["code"], "SUDO_MODE_REQUIRED");
    let own = send(plain().post(s.url("/v1/auth/sudo/verify")).bearer_auth(&third).json(&json!({"password": "nanoseconds!"}))).await;
    let own = own.body["sudo_token"].as_str().unwrap().to_string();
    assert_eq!(as_third(&own).await.status, 204, "a native client's X-Sudo-Token");

    // TOTP enrolment: the client makes the secret and proves it with a code.
    let secret = base32(&[0x5a; 20]);
    let enable = |code: String| send(b.post(s.url("/v1/users/@me/mfa/totp/enable")).header("origin", ORIGIN).json(&json!({"secret": secret, "code": code})));
    assert_eq!(enable("000000".into()).await.body["code"], "INVALID_CODE");
    fresh_step().await;
    let r = enable(totp_now(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let codes: Vec<String> = r.body["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(login(&s, &plain(), "hopper", "nanoseconds!").await.body["mfa"], true, "a password login now asks for it");
    // Without sudo, no change; with it, a recovery code removes TOTP.
    let r = send(plain().post(s.url("/v1/users/@me/mfa/totp/disable")).bearer_auth(&third).json(&json!({"code": codes[0]}))).await;
    assert_eq!(r.body["code"], "SUDO_MODE_REQUIRED");
    let r = send(b.post(s.url("/v1/users/@me/mfa/totp/disable")).header("origin", ORIGIN).json(&json!({"code": codes[0]}))).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = login(&s, &plain(), "hopper", "nanoseconds!").await;
    assert!(r.body.get("mfa").is_none() && r.body["token"].is_string(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_locations_wait_for_approval_by_poll_or_websocket() {
    use futures_util::StreamExt as _;
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)]);
    let guid = create_user(&s, json!({"username": "kay", "password": "smalltalk80", "email": "kay@example.com"})).await;
    let from = |ip: &'static str| send(plain().post(s.url("/v1/auth/login")).header("x-forwarded-for", ip).json(&json!({"login": "kay", "password": "smalltalk80"})));
    // The first login authorizes its address; it and the next from there need nothing more.
    assert_eq!(from("10.0.0.1").await.status, 200);
    assert_eq!(from("10.0.0.1").await.status, 200);
    // A new address: no session, a ticket, a code by email.
    let r = from("10.0.0.2").await;
    assert_eq!((r.status, r.body["code"].clone(), r.body["resend_available_in"].clone()), (403, json!("IP_AUTHORIZATION_REQUIRED"), json!(30)));
    assert!(r.set_cookie.is_empty());
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    let poll = |t: String| send(plain().get(s.url(&format!("/v1/auth/authorize-ip/poll?ticket={t}"))));
    assert_eq!(poll(ticket.clone()).await.body, json!({"completed": false}));
    let (mut socket, _) = tokio_tungstenite::connect_async(s.ws(&format!("/v1/auth/authorize-ip/ws?ticket={ticket}"))).await.unwrap();
    let outbox = send(plain().get(s.url("/api/admin/outbox?to=kay@example.com")).header("x-internal-secret", SECRET)).await.body;
    let mail = outbox.as_array().unwrap().last().unwrap().clone();
    assert_eq!((mail["channel"].as_str(), mail["purpose"].as_str()), (Some("email"), Some("ip-authorization")));
    assert!(mail["body"].as_str().unwrap().contains("10.0.0.2"));
    let code = mail["code"].as_str().unwrap().to_string();

    let approve = |c: String| send(plain().post(s.url("/v1/auth/authorize-ip")).json(&json!({"code": c})));
    assert_eq!(approve("0".repeat(32)).await.body["code"], "INVALID_CODE");
    let approved_at = std::time::Instant::now();
    assert_eq!(approve(code.clone()).await.status, 204);
    // The waiting socket gets the session the moment the code is accepted.
    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    let pushed = approved_at.elapsed();
    let frame: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!((frame["completed"].clone(), frame["user_id"].clone()), (json!(true), json!(guid)));
    assert!(pushed < Duration::from_secs(1), "pushed after {pushed:?}");
    let token = frame["token"].as_str().unwrap().to_string();
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await.status, 200);
    // Released once: the poll now finds nothing; the code was single use.
    assert_eq!(poll(ticket).await.body["code"], "MFA_INVALID_TICKET");
    assert_eq!(approve(code).await.body["code"], "INVALID_CODE");
    // The approved address is trusted from now on.
    assert_eq!(from("10.0.0.2").await.status, 200);

    // The same by polling, with the cookie on the completed answer.
    let r = from("10.0.0.3").await;
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    let outbox = send(plain().get(s.url("/api/admin/outbox?to=kay@example.com")).header("x-internal-secret", SECRET)).await.body;
    let code = outbox.as_array().unwrap().last().unwrap()["code"].as_str().unwrap().to_string();
    assert_eq!(approve(code).await.status, 204);
    let r = poll(ticket.clone()).await;
    assert_eq!((r.body["completed"].clone(), r.body["user_id"].clone()), (json!(true), json!(guid)));
    assert!(r.set_cookie.iter().any(|c| c.starts_with("sigil_session=")));
    assert_eq!(poll(ticket).await.status, 400, "released once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_moves_a_browser_session_to_a_native_app() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_LIMITS__MFA_PER_IP", "6/1m")]);
    let guid = create_user(&s, json!({"username": "ken", "password": "unix v1 1971"})).await;
    let b = browser();
    assert_eq!(login(&s, &b, "ken", "unix v1 1971").await.status, 200);

    // The app (not logged in) starts; the browser approves with the code as the user typed it.
    let r = send(plain().post(s.url("/v1/auth/handoff/initiate"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let code = r.body["code"].as_str().unwrap().to_string();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    let secret = r.body["poll_secret"].as_str().unwrap().to_string();
    assert!(r.body["expires_at"].is_string());
    let status = |c: &str, secret: Option<&str>| {
        let mut req = plain().get(s.url(&format!("/v1/auth/handoff/{c}/status")));
        if let Some(secret) = secret {
            req = req.header("x-handoff-secret", secret);
        }
        send(req)
    };
    assert_eq!(status(&code, Some(&secret)).await.body, json!({"status": "pending"}));
    let typed = code.to_lowercase().replace('-', "");
    let r = send(b.post(s.url(&format!("/v1/auth/handoff/{typed}/complete"))).header("origin", ORIGIN)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Without the secret nothing is released; with it, once.
    assert_eq!(status(&code, None).await.body["code"], "INVALID_HANDOFF_CODE");
    let r = status(&code, Some(&secret)).await;
    assert_eq!((r.body["status"].clone(), r.body["user_id"].clone()), (json!("completed"), json!(guid)));
    let token = r.body["token"].as_str().unwrap().to_string();
    assert_eq!(send(plain().get(s.url("/v1/users/@me")).bearer_auth(&token)).await.status, 200);
    assert_eq!(status(&code, Some(&secret)).await.body["code"], "INVALID_HANDOFF_CODE", "released once");
    // Completing needs a session; a used code cannot be completed again.
    assert_eq!(send(plain().post(s.url(&format!("/v1/auth/handoff/{code}/complete")))).await.status, 401);

    // Failed lookups are limited per IP (6 a minute here).
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = status("ZZZZ-ZZZZ", Some("guess")).await;
        codes.push(r.status);
    }
    assert!(codes.contains(&429), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_handoffs_release_one_session_under_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)]);
    create_user(&s, json!({"username": "barbara", "password": "liskov substitution", "email": "b@example.com"})).await;
    let from = |ip: &'static str| send(plain().post(s.url("/v1/auth/login")).header("x-forwarded-for", ip).json(&json!({"login": "barbara", "password": "liskov substitution"})));
    let first = from("10.1.0.1").await;
    assert_eq!(first.status, 200);
    let token = first.body["token"].as_str().unwrap().to_string();
    let ticket = from("10.1.0.2").await.body["ticket"].as_str().unwrap().to_string();
    let outbox = send(plain().get(s.url("/api/admin/outbox?to=b@example.com")).header("x-internal-secret", SECRET)).await.body;
    let code = outbox.as_array().unwrap().last().unwrap()["code"].as_str().unwrap().to_string();
    // The same code approved 8 times at once: one 204.
    let approvals = (0..8).map(|_| send(plain().post(s.url("/v1/auth/authorize-ip")).json(&json!({"code": code}))));
    let approvals = futures_util::future::join_all(approvals).await;
    assert_eq!(approvals.iter().filter(|r| r.status == 204).count(), 1);
    // 10 polls at once: one session.
    let polls = (0..10).map(|_| send(plain().get(s.url(&format!("/v1/auth/authorize-ip/poll?ticket={ticket}")))));
    let polls = futures_util::future::join_all(polls).await;
    assert_eq!(polls.iter().filter(|r| r.body["completed"] == true).count(), 1);

    // A handoff polled 10 times at once after approval: one session.
    let r = send(plain().post(s.url("/v1/auth/handoff/initiate"))).await;
    let (hcode, secret) = (r.body["code"].as_str().unwrap().to_string(), r.body["poll_secret"].as_str().unwrap().to_string());
    let approve = send(plain().post(s.url(&format!("/v1/auth/handoff/{hcode}/complete"))).bearer_auth(&token)).await;
    assert_eq!(approve.status, 204);
    let polls = (0..10).map(|_| send(plain().get(s.url(&format!("/v1/auth/handoff/{hcode}/status"))).header("x-handoff-secret", secret.clone())));
    let polls = futures_util::future::join_all(polls).await;
    assert_eq!(polls.iter().filter(|r| r.body["status"] == "completed").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_secrets_are_never_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &[("SIGIL_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#)]);
    let password = "a v1 password to look for";
    create_user(&s, json!({"username": "dennis", "password": password, "email": "d@example.com"})).await;
    let session = login(&s, &plain(), "dennis", password).await.body["token"].as_str().unwrap().to_string();
    let sudo = send(plain().post(s.url("/v1/auth/sudo/verify")).bearer_auth(&session).json(&json!({"password": password}))).await;
    let sudo = sudo.body["sudo_token"].as_str().unwrap().to_string();
    let wait = send(plain().post(s.url("/v1/auth/login")).header("x-forwarded-for", "10.9.9.9").json(&json!({"login": "dennis", "password": password}))).await;
    let wait = wait.body["ticket"].as_str().unwrap().to_string();
    let outbox = send(plain().get(s.url("/api/admin/outbox?to=d@example.com")).header("x-internal-secret", SECRET)).await.body;
    let ip_code = outbox.as_array().unwrap().last().unwrap()["code"].as_str().unwrap().to_string();
    let handoff = send(plain().post(s.url("/v1/auth/handoff/initiate"))).await.body;
    let poll_secret = handoff["poll_secret"].as_str().unwrap().to_string();
    let secret = base32(&[0x42; 20]);
    fresh_step().await;
    let r = send(plain().post(s.url("/v1/users/@me/mfa/totp/enable")).bearer_auth(&session).header("x-sudo-token", &sudo).json(&json!({"secret": secret, "code": totp_now(&secret)}))).await;
    let recovery = r.body["recovery_codes"][0].as_str().unwrap().to_string();
    let ticket = login(&s, &plain(), "dennis", password).await.body["ticket"].as_str().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    s.child.wait().unwrap();

    let store = sigil_engine::store::RocksStore::open(dir.path(), sigil_engine::store::Durability::Fsync).unwrap();
    let secrets = [password, &session, &sudo, &wait, &ip_code, &poll_secret, &recovery, &ticket];
    for cf in sigil_engine::store::Cf::ALL {
        use sigil_engine::store::Store as _;
        for (k, v) in store.scan_prefix(cf, b"", usize::MAX).unwrap() {
            let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            for secret in secrets {
                assert!(!k.contains(secret) && !v.contains(secret), "{secret:?} in clear in {}: {k} = {v}", cf.name());
            }
        }
    }
    store.close().unwrap();
}
