//! SSO end to end: a downstream sigil logs people in through an upstream OpenID provider — here
//! a second, real sigil process acting as the provider (discovery, PKCE, state, nonce, RS256
//! id_token checked against the upstream's JWKS). The account is created at the first login
//! and found again by (issuer, subject) at the next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{free_port, no_redirects as http, send};

use std::time::Duration;

use serde_json::json;

const SECRET: &str = "sso-test-internal-secret-0123456789";
const FAST_HASH: &str = "{ memory_kib = 7168, iterations = 5, parallelism = 1 }";
const DONE: &str = "http://app.example/done";




fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers.get("location").expect("a redirect").to_str().unwrap().to_string()
}

fn serve(dir: &std::path::Path, port: u16, extra: &[(&str, &str)]) -> common::Served {
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("SIGIL_SERVER__LISTEN", listen.as_str()),
        ("SIGIL_ACCOUNTS__PUBLIC_URL", public.as_str()),
        ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
        ("SIGIL_ACCOUNTS__IP_AUTHORIZATION", "false"),
        ("SIGIL_PASSWORDS__HASH", FAST_HASH),
        ("SIGIL_LIMITS__LOGIN_PER_IP", "1000/10s"),
    ];
    env.extend_from_slice(extra);
    common::serve(dir, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downstream_sigil_logs_people_in_through_an_upstream_provider() {
    let (up_port, down_port) = (free_port(), free_port());
    let (up_dir, down_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let up = serve(up_dir.path(), up_port, &[]);
    let callback = format!("http://127.0.0.1:{down_port}/v1/auth/sso/callback");
    let (status, _, app) = send(
        http()
            .post(up.url("/v1/oauth2/applications"))
            .header("x-internal-secret", SECRET)
            .json(&json!({"name": "downstream sigil", "redirect_uris": [callback], "confidential": true})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let providers = format!(
        "[{{ name = \"corp\", issuer = \"http://127.0.0.1:{up_port}\", client_id = \"{}\", client_secret = \"{}\" }}]",
        app["client_id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap()
    );
    let allowed = format!("[\"{DONE}\"]");
    let down = serve(down_dir.path(), down_port, &[("SIGIL_SSO__PROVIDERS", &providers), ("SIGIL_SSO__ALLOWED_REDIRECT_URIS", &allowed)]);

    // The person has an account and a session at the upstream.
    let (status, _, _) = send(
        http()
            .post(up.url("/api/admin/users"))
            .header("x-internal-secret", SECRET)
            .json(&json!({"username": "uma", "password": "uma's long password", "email": "uma@corp.example"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, _, login) = send(http().post(up.url("/v1/auth/login")).json(&json!({"login": "uma", "password": "uma's long password"}))).await;
    let up_session = login["token"].as_str().unwrap().to_string();

    let sso_login = || async {
        let (status, _, started) = send(http().post(down.url("/v1/auth/sso/start")).json(&json!({"provider": "corp", "redirect_uri": DONE}))).await;
        assert_eq!(status, 200, "{started}");
        let authorize = started["authorization_url"].as_str().unwrap().to_string();
        assert!(authorize.starts_with(&format!("http://127.0.0.1:{up_port}/v1/oauth2/authorize?")), "{authorize}");
        assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="));
        // At the upstream: consent (first time), then back to the downstream's callback.
        let (status, headers, consent) = send(http().get(&authorize).bearer_auth(&up_session)).await;
        let back = if status == 302 {
            location(&headers)
        } else {
            let token = consent["consent_token"].as_str().unwrap();
            let (status, headers, body) =
                send(http().post(&authorize).bearer_auth(&up_session).form(&[("consent_token", token), ("approve", "true")])).await;
            assert_eq!(status, 302, "{body}");
            location(&headers)
        };
        assert!(back.starts_with(&format!("http://127.0.0.1:{down_port}/v1/auth/sso/callback?")), "{back}");
        let (status, headers, body) = send(http().get(&back)).await;
        assert_eq!(status, 302, "{body}");
        assert_eq!(location(&headers), DONE);
        let cookie = headers.get("set-cookie").expect("the session cookie").to_str().unwrap().to_string();
        let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
        (token, back)
    };

    let (token, callback_url) = sso_login().await;
    let (status, _, me) = send(http().get(down.url("/v1/users/@me")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["username"].as_str(), me["email"].as_str()), (Some("uma"), Some("uma@corp.example")));
    // The callback works once.
    let (status, _, body) = send(http().get(&callback_url)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_FORM_BODY")), "{body}");
    // The next SSO login finds the same account.
    let (again, _) = sso_login().await;
    let (_, _, me_again) = send(http().get(down.url("/v1/users/@me")).bearer_auth(&again)).await;
    assert_eq!(me_again["id"], me["id"], "linked by (issuer, subject), not created twice");
    // A password login to the SSO-made account is impossible (it has none).
    let (status, _, _) = send(http().post(down.url("/v1/auth/login")).json(&json!({"login": "uma", "password": "uma's long password"}))).await;
    assert_eq!(status, 400);

    // Refusals: a redirect URI off the allow-list, an unknown provider, a forged state.
    let (status, _, body) = send(http().post(down.url("/v1/auth/sso/start")).json(&json!({"provider": "corp", "redirect_uri": "https://evil.example/"}))).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (400, Some("redirect_uri")));
    let (status, _, _) = send(http().post(down.url("/v1/auth/sso/start")).json(&json!({"provider": "nope", "redirect_uri": DONE}))).await;
    assert_eq!(status, 400);
    let (status, _, _) = send(http().get(down.url("/v1/auth/sso/callback?state=forged&code=x"))).await;
    assert_eq!(status, 400);

    let metrics = http().get(down.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sigil_account_logins_total{dialect=\"v1\",method=\"sso\",outcome=\"success\"} 2"), "sso logins counted");
}

/// SSO against an independent OpenID provider: panva's `oidc-provider` (Node, pinned in
/// tests/js/package-lock.json), started and stopped by this test, with its development login
/// and consent pages filled in as a browser would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_through_an_independent_openid_provider() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(js.join("node_modules/oidc-provider").is_dir(), "run `npm ci` in {} (ops/test.sh does)", js.display());
    let (idp_port, down_port) = (free_port(), free_port());
    let callback = format!("http://127.0.0.1:{down_port}/v1/auth/sso/callback");
    let mut idp = tokio::process::Command::new("node")
        .current_dir(&js)
        .args(["upstream-idp.mjs", &idp_port.to_string(), "sigil-client", "sigil-client-secret-0123456789", &callback])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut out = tokio::io::BufReader::new(idp.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(20), tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)).await.unwrap().unwrap();
    assert_eq!(line.trim(), "ready");

    let providers = format!(
        "[{{ name = \"idp\", issuer = \"http://127.0.0.1:{idp_port}\", client_id = \"sigil-client\", client_secret = \"sigil-client-secret-0123456789\" }}]"
    );
    let allowed = format!("[\"{DONE}\"]");
    let down_dir = tempfile::tempdir().unwrap();
    let down = serve(down_dir.path(), down_port, &[("SIGIL_SSO__PROVIDERS", &providers), ("SIGIL_SSO__ALLOWED_REDIRECT_URIS", &allowed)]);
    let (status, _, started) = send(http().post(down.url("/v1/auth/sso/start")).json(&json!({"provider": "idp", "redirect_uri": DONE}))).await;
    assert_eq!(status, 200, "{started}");

    // The browser at the provider: follow redirects, fill the login form, confirm the consent,
    // until the provider sends it back to sigil's callback.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    let idp_base = format!("http://127.0.0.1:{idp_port}");
    let resolve = |target: &str| if target.starts_with('/') { format!("{idp_base}{target}") } else { target.to_string() };
    let mut url = started["authorization_url"].as_str().unwrap().to_string();
    let mut back = None;
    for _ in 0..20 {
        let res = browser.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            let next = res.headers().get("location").unwrap().to_str().unwrap().to_string();
            if next.starts_with(&callback) {
                back = Some(next);
                break;
            }
            url = resolve(&next);
            continue;
        }
        let page = res.text().await.unwrap();
        let action = page.split("action=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_else(|| panic!("no form in {page}"));
        // The form's hidden fields (e.g. prompt=login / prompt=consent), and the login's own.
        let mut form: Vec<(String, String)> = page
            .split("<input type=\"hidden\"")
            .skip(1)
            .filter_map(|tag| {
                let attr = |a: &str| tag.split(&format!("{a}=\"")).nth(1).and_then(|r| r.split('"').next()).map(str::to_string);
                Some((attr("name")?, attr("value").unwrap_or_default()))
            })
            .collect();
        if page.contains("name=\"login\"") {
            form.extend([("login".to_string(), "ingrid".to_string()), ("password".to_string(), "anything".to_string())]);
        }
        let res = browser.post(resolve(action)).form(&form).send().await.unwrap();
        assert!(res.status().is_redirection(), "the provider answered the form with {}", res.status());
        url = resolve(res.headers().get("location").unwrap().to_str().unwrap());
    }
    let back = back.expect("the provider sent the browser back to sigil");
    let (status, headers, body) = send(http().get(&back)).await;
    assert_eq!(status, 302, "{body}");
    assert_eq!(location(&headers), DONE);
    let cookie = headers.get("set-cookie").unwrap().to_str().unwrap().to_string();
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_string();
    let (status, _, me) = send(http().get(down.url("/v1/users/@me")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["username"].as_str(), me["email"].as_str()), (Some("ingrid"), Some("ingrid@idp.example")));
    let _ = idp.kill().await;
}
