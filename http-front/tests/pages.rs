//! sigil's own pages (`/login`, `/login/wallet`, `/account`, consent, handoff, new-location
//! approval) against the real binary: the browser flows in headless Chromium
//! (`tests/js/pages.mjs`: password + TOTP, passkey, wallet by MetaMask and by ZelCore,
//! consent, revocation, handoff, a new location by keyboard only, no JavaScript), and here the
//! rules a browser would hide: CSRF and origin checks on every form, no open redirect, error
//! pages instead of JSON, theming from `ui.*`, and the pages switched off.
//!
//! Screenshots go to `$SIGIL_UI_SCREENSHOTS` when set (docs/ui.md is made from them), else to
//! a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{free_port, no_redirects};
use serde_json::{Value, json};
use sigil_engine::sign;

const SECRET: &str = "pages-test-internal-secret-0123456789";

struct Site {
    served: common::Served,
    base: String,
    _dir: tempfile::TempDir,
}

/// A server on http://localhost:PORT (WebAuthn needs the name), trusting 127.0.0.1 as a proxy
/// so a browser context can come "from" another address.
fn site(extra: &[(&str, &str)]) -> Site {
    let port = free_port();
    let mut env = common::browser_env(port, SECRET);
    env.push(("SIGIL_SERVER__TRUSTED_PROXIES", "[\"127.0.0.1\"]".into()));
    env.push(("SIGIL_SMS__SENDER", "log".into()));
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    let base = format!("http://localhost:{port}");
    let dir = tempfile::tempdir().unwrap();
    let served = common::serve(dir.path(), &env);
    Site { served, base, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_flow_in_a_real_browser() {
    let s = site(&[]);
    let btc = sign::random_key();
    let shots_tmp = tempfile::tempdir().unwrap();
    let shots = std::env::var("SIGIL_UI_SCREENSHOTS").unwrap_or_else(|_| shots_tmp.path().display().to_string());
    let out = common::browser_script("pages.mjs", &[&s.base, SECRET, &hex::encode(btc.secret_bytes()), &sign::p2pkh_address(&btc, true), &shots], Duration::from_secs(240)).await;
    let findings: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    eprintln!("browser findings: {findings}");
    for flow in ["password_totp", "passkey", "revocation", "consent", "handoff", "new_location", "no_javascript", "sms", "totp_enrolment", "wallet_metamask", "wallet_zelcore"] {
        assert_eq!(findings[flow], "ok", "{flow}: {findings}");
    }
    let shots = std::path::Path::new(&shots);
    for page in ["login", "mfa", "account", "consent", "handoff", "ip-wait", "authorize-ip", "wallet", "account-totp", "account-sudo", "mfa-sms"] {
        assert!(shots.join(format!("{page}.png")).is_file() && shots.join(format!("{page}-360.png")).is_file(), "{page} screenshots");
    }
    let metrics = reqwest::get(s.served.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sigil_account_logins_total{dialect=\"v1\",method=\"wallet\",outcome=\"success\"} 2"), "wallet logins counted");
}

/// The CSRF cookie and token of a fresh `/login`.
async fn csrf(http: &reqwest::Client, base: &str) -> (String, String) {
    let res = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("sigil_csrf="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let token = cookie.trim_start_matches("sigil_csrf=").split(';').next().unwrap().to_string();
    let html = res.text().await.unwrap();
    assert!(html.contains(&format!("name=\"csrf\" value=\"{token}\"")), "the form carries the cookie's token");
    (format!("sigil_csrf={token}"), token)
}

async fn post_form(http: &reqwest::Client, base: &str, path: &str, cookie: &str, origin: Option<&str>, form: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http.post(format!("{base}{path}")).header("cookie", cookie).form(form);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_are_csrf_safe_redirects_stay_home_and_errors_are_pages() {
    let s = site(&[("SIGIL_ACCOUNTS__ALLOWED_ORIGINS", "[\"https://app.example.com\"]")]);
    let http = no_redirects();
    let base = s.base.as_str();
    let created = http
        .post(format!("{base}/api/admin/users"))
        .header("x-internal-secret", SECRET)
        .json(&json!({"username": "olga", "password": "olga's long password", "email": "olga@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (cookie, token) = csrf(&http, base).await;
    let login = |return_to: &'static str, token: String| {
        vec![("csrf", token), ("login", "olga".into()), ("password", "olga's long password".into()), ("return_to", return_to.into())]
    };
    let as_refs = |f: &Vec<(&'static str, String)>| f.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>();

    // A form from another site, without our origin, or without the cookie's token: refused,
    // as a page in plain words (no session cookie set).
    for (origin, form_token, cookie) in [
        (Some("https://evil.example"), token.clone(), cookie.as_str()),
        (None, token.clone(), cookie.as_str()),
        (Some(base), "0".repeat(64), cookie.as_str()),
        (Some(base), token.clone(), ""),
    ] {
        let form = as_refs(&login("/account", form_token));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = post_form(&http, base, "/login", cookie, origin, &form).await;
        assert_eq!(res.status(), 403, "origin {origin:?}");
        assert!(res.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("sigil_session=")));
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = res.text().await.unwrap();
        assert!(html.contains("another site") && !html.contains("\"code\""), "{html}");
    }

    // return_to: our paths and allowed origins are followed; anything else goes to /account.
    for (asked, lands) in [
        ("/handoff?code=ABCD-EFGH", "/handoff?code=ABCD-EFGH"),
        ("https://app.example.com/after", "https://app.example.com/after"),
        ("https://evil.example/phish", "/account"),
        ("//evil.example/phish", "/account"),
        ("javascript:alert(1)", "/account"),
    ] {
        let form = as_refs(&login(asked, token.clone()));
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = post_form(&http, base, "/login", &cookie, Some(base), &form).await;
        assert_eq!(res.status(), 303, "{asked}");
        assert_eq!(res.headers()["location"], lands, "{asked}");
        let session = res.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_string()).find(|c| c.starts_with("sigil_session="));
        let session = session.expect("a session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Max-Age=604800"), "{session}");
    }

    // Wrong password: the login page again, 400, plain words, the typed name kept.
    let form = [("csrf", token.as_str()), ("login", "olga"), ("password", "wrong"), ("return_to", "/account")];
    let res = post_form(&http, base, "/login", &cookie, Some(base), &form).await;
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.contains("That username or password is not right.") && html.contains("value=\"olga\""), "{html}");

    // Pages that need a session send the browser to /login and back.
    let res = http.get(format!("{base}/account")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?return_to=%2Faccount");

    // The consent request stays JSON for API clients; a browser without a session goes to
    // /login; a broken request is a page, not JSON.
    let res = http.get(format!("{base}/v1/oauth2/authorize?client_id=nope&redirect_uri=x&response_type=code")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let html = res.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>") && html.contains("This sign-in link is not valid"), "{html}");
    let res = http.get(format!("{base}/v1/oauth2/authorize?client_id=nope&redirect_uri=x&response_type=code")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));

    // Whatever a form endpoint is sent — broken encodings, binary, oversized, wrong types —
    // it answers a page with a 4xx, never a 5xx or a hang.
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"%".to_vec(),
        b"csrf=%zz&login=%ff%fe&password".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80, b'=', b'&'],
        b"{\"login\":\"olga\"}".to_vec(),
        format!("csrf={token}&login=olga&password={}", "x".repeat(20_000)).into_bytes(),
        format!("csrf={token}&ticket={}&code=1", "t".repeat(300)).into_bytes(),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..40 {
        let len = usize::try_from(seed % 300).unwrap();
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b.push(u8::try_from(seed & 0xff).unwrap());
        }
        bodies.push(b);
    }
    for path in ["/login", "/login/mfa", "/login/mfa/sms", "/login/authorize-ip", "/login/session", "/login/wallet", "/logout", "/handoff", "/authorize-ip"] {
        for body in &bodies {
            let res = tokio::time::timeout(
                Duration::from_secs(10),
                http.post(format!("{base}{path}"))
                    .header("cookie", &cookie)
                    .header("origin", base)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send(),
            )
            .await
            .expect("a form post hung")
            .unwrap();
            let status = res.status().as_u16();
            assert!((300..500).contains(&status), "{path} answered {status} to {:?}", String::from_utf8_lossy(body));
        }
    }

    // Assets: embedded, typed, no sniffing; unknown ones 404.
    for (path, kind) in [("/ui/sigil.css", "text/css"), ("/ui/login.js", "text/javascript"), ("/ui/logo", "image/svg+xml"), ("/ui/theme.css", "text/css")] {
        let res = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    assert_eq!(http.get(format!("{base}/ui/../Cargo.toml")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn theming_comes_from_config_and_the_pages_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("logo.svg");
    std::fs::write(&logo, "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><rect width=\"1\" height=\"1\" fill=\"#c00\"/></svg>").unwrap();
    let logo_path = logo.display().to_string();
    let s = site(&[
        ("SIGIL_UI__PRODUCT_NAME", "Acme ID"),
        ("SIGIL_UI__PRIMARY_COLOR", "\"#c00\""),
        ("SIGIL_UI__LOGO", logo_path.as_str()),
        ("SIGIL_UI__WALLET_LOGIN", "false"),
    ]);
    let http = no_redirects();
    let html = http.get(format!("{}/login", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("<title>Sign in · Acme ID</title>") && html.contains("<span>Acme ID</span>"), "{html}");
    assert!(!html.contains("Sign in with a wallet"), "wallet login switched off");
    assert_eq!(http.get(format!("{}/login/wallet", s.base)).send().await.unwrap().status(), 404);
    let css = http.get(format!("{}/ui/theme.css", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(css.contains("--primary: #c00;"), "{css}");
    let served_logo = http.get(format!("{}/ui/logo", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(served_logo.contains("#c00"), "the configured logo");

    // A colour that is not a colour stops the start with a clear message.
    let bad = std::process::Command::new(common::SIGIL)
        .args(["serve"])
        .env("SIGIL_SERVER__DATA_DIR", dir.path().join("bad"))
        .env("SIGIL_UI__PRIMARY_COLOR", "red; } body { display: none")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("ui.primary_color"), "{}", String::from_utf8_lossy(&bad.stderr));

    let off = site(&[("SIGIL_UI__ENABLED", "false")]);
    let res = http.get(format!("{}/login", off.base)).send().await.unwrap();
    assert_eq!(res.status(), 404);
}
