//! Passkeys end to end in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `ops/test.sh`) with a virtual authenticator over the DevTools protocol, driven by
//! playwright-core (`tests/js/passkeys.mjs`), against the real binary on http://localhost.
//! Registration, passwordless login, passkey as second factor, replay / tampering / wrong origin
//! / wrong RP id refused — then `kill -9`, a restart, and the passkey (and its counter) still
//! there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::free_port;

use std::time::Duration;

use serde_json::{Value, json};

const SECRET: &str = "passkey-test-internal-secret-0123456789";


async fn node_script(args: &[&str]) -> String {
    common::browser_script("passkeys.mjs", args, Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_in_a_real_browser_and_across_a_kill_9() {
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let mut env = common::browser_env(port, SECRET);
    env.push(("SIGIL_ACCOUNTS__IP_AUTHORIZATION", "false".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut s = common::serve(dir.path(), &env);
    let created = reqwest::Client::new()
        .post(s.url("/api/admin/users"))
        .header("x-internal-secret", SECRET)
        .json(&json!({"username": "petra", "password": "petra's long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let saved = node_script(&["full", &base, "petra", "petra's long password", SECRET]).await;
    let saved: Value = serde_json::from_str(saved.trim()).unwrap();
    assert!(saved["credential"]["signCount"].as_u64().unwrap() >= 3, "the authenticator counted its uses: {saved}");

    let metrics = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sigil_second_factor_total{dialect=\"v1\",method=\"webauthn\",outcome=\"success\"}"), "passkey MFA counted");
    assert!(metrics.contains("sigil_account_logins_total{dialect=\"v1\",method=\"passkey\",outcome=\"invalid\"}"), "refusals counted");

    // kill -9, restart on the same data: the passkey and its counter are still there.
    s.kill9();
    let s = common::serve(dir.path(), &env);
    let out = node_script(&["again", &base, &saved.to_string(), "petra's long password"]).await;
    assert_eq!(out.trim(), "ok");

    let metrics = reqwest::get(s.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sigil_account_logins_total{dialect=\"v1\",method=\"passkey\",outcome=\"success\"}"), "passkey logins counted");
}
