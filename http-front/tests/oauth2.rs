//! sigil as an OAuth2 / OpenID Connect provider, checked by an independent relying party: the
//! `openidconnect` crate discovers sigil, builds the authorization request (PKCE S256, state,
//! nonce), exchanges the code and verifies the RS256 `id_token` against sigil's JWKS — then
//! the RFC's refusals: code reuse (and the revocation it triggers), unregistered redirect URIs,
//! public clients without PKCE, client authentication, 20 parallel redemptions of one code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{free_port, no_redirects as http, send};

use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;

const SECRET: &str = "oauth-test-internal-secret-0123456789";
const FAST_HASH: &str = "{ memory_kib = 7168, iterations = 5, parallelism = 1 }";
const REDIRECT: &str = "http://127.0.0.1:9/callback";




fn location_query(headers: &reqwest::header::HeaderMap) -> std::collections::HashMap<String, String> {
    let loc = headers.get("location").expect("a redirect").to_str().unwrap();
    assert!(loc.starts_with(REDIRECT), "redirected to {loc}");
    let query = loc.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

struct Provider {
    s: common::Served,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Provider {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let s = common::serve(
        dir.path(),
        &[
            ("SIGIL_SERVER__LISTEN", listen.as_str()),
            ("SIGIL_ACCOUNTS__PUBLIC_URL", base.as_str()),
            ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
            ("SIGIL_ACCOUNTS__IP_AUTHORIZATION", "false"),
            ("SIGIL_PASSWORDS__HASH", FAST_HASH),
            ("SIGIL_LIMITS__LOGIN_PER_IP", "1000/10s"),
        ],
    );
    Provider { s, base, _dir: dir }
}

impl Provider {
    async fn user(&self, name: &str) -> String {
        let (status, _, body) = send(
            http()
                .post(self.s.url("/api/admin/users"))
                .header("x-internal-secret", SECRET)
                .json(&json!({"username": name, "password": "a long enough password", "email": format!("{name}@example.com")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, _, body) =
            send(http().post(self.s.url("/v1/auth/login")).json(&json!({"login": name, "password": "a long enough password"}))).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    async fn app(&self, confidential: bool) -> (String, Option<String>) {
        let (status, headers, body) = send(
            http()
                .post(self.s.url("/v1/oauth2/applications"))
                .header("x-internal-secret", SECRET)
                .json(&json!({"name": "Test app", "redirect_uris": [REDIRECT], "confidential": confidential})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        (body["client_id"].as_str().unwrap().to_string(), body["client_secret"].as_str().map(str::to_string))
    }

    /// The authorization request with the person's session: consent first (JSON), then approve.
    async fn code_for(&self, url: &str, session: &str) -> std::collections::HashMap<String, String> {
        let (status, headers, body) = send(http().get(url).bearer_auth(session)).await;
        if status == 302 {
            return location_query(&headers);
        }
        assert_eq!(status, 200, "{body}");
        let token = body["consent_token"].as_str().unwrap();
        let (status, headers, body) =
            send(http().post(url).bearer_auth(session).form(&[("consent_token", token), ("approve", "true")])).await;
        assert_eq!(status, 302, "{body}");
        location_query(&headers)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_relying_party_logs_in_with_sigil() {
    let p = start().await;
    let session = p.user("olga").await;
    let (client_id, secret) = p.app(true).await;

    let rp_http = openidconnect::reqwest::ClientBuilder::new().redirect(openidconnect::reqwest::redirect::Policy::none()).build().unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(p.base.clone()).unwrap(), &rp_http).await.unwrap();
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.clone()), secret.clone().map(ClientSecret::new))
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();

    let back = p.code_for(url.as_str(), &session).await;
    assert_eq!(back.get("state").map(String::as_str), Some(state.secret().as_str()));
    let code = back["code"].clone();
    let tokens = client.exchange_code(AuthorizationCode::new(code.clone())).unwrap().set_pkce_verifier(verifier).request_async(&rp_http).await.unwrap();
    // The library checks the signature (JWKS), issuer, audience, expiry and nonce.
    let id_token = tokens.id_token().expect("an id_token for the openid scope");
    let claims = id_token.claims(&client.id_token_verifier(), &nonce).unwrap();
    assert_eq!(claims.issuer().as_str(), p.base);
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("olga"));
    let info: CoreUserInfoClaims = client.user_info(tokens.access_token().clone(), None).unwrap().request_async(&rp_http).await.unwrap();
    assert_eq!(info.subject().as_str(), claims.subject().as_str());
    assert_eq!(info.email().map(|e| e.as_str()), Some("olga@example.com"));

    // The access token works as Bearer on /v1 …
    let access = tokens.access_token().secret().clone();
    let (status, _, me) = send(http().get(p.s.url("/v1/users/@me")).bearer_auth(&access)).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("olga")));
    // … but can never enter sudo mode.
    let (status, _, _) = send(http().post(p.s.url("/v1/auth/sudo/verify")).bearer_auth(&access).json(&json!({"password": "a long enough password"}))).await;
    assert_eq!(status, 401);

    // The same code again: refused, and the token it issued is revoked (RFC 6749 §4.1.2).
    let any_verifier = "x".repeat(43);
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT), ("code_verifier", any_verifier.as_str())];
    let (status, headers, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&client_id, secret.as_deref()).form(&form)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let (status, headers, _) = send(http().get(p.s.url("/v1/oauth2/userinfo")).bearer_auth(&access)).await;
    assert_eq!(status, 401, "the replayed code's token is revoked");
    assert!(headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Bearer"));

    // Consent is remembered: the next authorization redirects at once.
    let (challenge, _verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, _) = client
        .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let (status, headers, _) = send(http().get(url.as_str()).bearer_auth(&session)).await;
    assert_eq!(status, 302);
    assert!(location_query(&headers).contains_key("code"));

    let text = http().get(p.s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("sigil_oauth2_grants_total{grant_type=\"authorization_code\",outcome=\"success\"} 1"), "grants counted");
    assert!(text.contains("sigil_oauth2_grants_total{grant_type=\"authorization_code\",outcome=\"invalid_grant\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_refuses_what_the_rfcs_refuse() {
    let p = start().await;
    let session = p.user("pavel").await;
    let (public_id, no_secret) = p.app(false).await;
    assert!(no_secret.is_none(), "public clients get no secret");
    let (conf_id, conf_secret) = p.app(true).await;
    let conf_secret = conf_secret.unwrap();
    let authorize = |client: &str, redirect: &str, extra: &str| {
        format!("{}/v1/oauth2/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid&state=s1{extra}", p.base, form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>())
    };

    // An unregistered redirect URI or client: an error page, never a redirect.
    let (status, headers, body) = send(http().get(authorize(&conf_id, "http://127.0.0.1:9/evil", "")).bearer_auth(&session)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    assert!(headers.get("location").is_none());
    let (status, _, _) = send(http().get(authorize("nope", REDIRECT, "")).bearer_auth(&session)).await;
    assert_eq!(status, 400);
    // A public client without PKCE, an unknown scope, a plain challenge: back to the client with an error.
    let (status, headers, _) = send(http().get(authorize(&public_id, REDIRECT, "")).bearer_auth(&session)).await;
    assert_eq!(status, 302);
    let q = location_query(&headers);
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("invalid_request", "s1"));
    let (_, headers, _) = send(http().get(authorize(&conf_id, REDIRECT, "").replace("scope=openid", "scope=openid%20admin")).bearer_auth(&session)).await;
    assert_eq!(location_query(&headers)["error"], "invalid_scope");
    let (_, headers, _) = send(http().get(authorize(&public_id, REDIRECT, "&code_challenge=abc&code_challenge_method=plain")).bearer_auth(&session)).await;
    assert_eq!(location_query(&headers)["error"], "invalid_request");
    // Without a session: 401 in /v1's shape.
    let (status, _, body) = send(http().get(authorize(&conf_id, REDIRECT, ""))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    // Declining consent: access_denied.
    let url = authorize(&conf_id, REDIRECT, "");
    let (_, _, consent) = send(http().get(&url).bearer_auth(&session)).await;
    let (status, headers, _) = send(http().post(&url).bearer_auth(&session).form(&[("consent_token", consent["consent_token"].as_str().unwrap()), ("approve", "false")])).await;
    assert_eq!(status, 302);
    assert_eq!(location_query(&headers)["error"], "access_denied");

    // Client authentication: wrong secret → 401 invalid_client with WWW-Authenticate.
    let form = [("grant_type", "client_credentials"), ("scope", "identify")];
    let (status, headers, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&conf_id, Some("wrong")).form(&form)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(headers.get("www-authenticate").unwrap().to_str().unwrap().starts_with("Basic"));
    // client_credentials (client_secret_post), introspection, revocation.
    let form = [("grant_type", "client_credentials"), ("scope", "identify"), ("client_id", conf_id.as_str()), ("client_secret", conf_secret.as_str())];
    let (status, _, body) = send(http().post(p.s.url("/v1/oauth2/token")).form(&form)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    let (_, _, info) = send(http().post(p.s.url("/v1/oauth2/introspect")).basic_auth(&conf_id, Some(&conf_secret)).form(&[("token", token.as_str())])).await;
    assert_eq!((info["active"].as_bool(), info["client_id"].as_str()), (Some(true), Some(conf_id.as_str())));
    let (status, _, _) = send(http().post(p.s.url("/v1/oauth2/revoke")).basic_auth(&conf_id, Some(&conf_secret)).form(&[("token", token.as_str())])).await;
    assert_eq!(status, 200);
    let (_, _, info) = send(http().post(p.s.url("/v1/oauth2/introspect")).basic_auth(&conf_id, Some(&conf_secret)).form(&[("token", token.as_str())])).await;
    assert_eq!(info, json!({"active": false}));
    let (status, _, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&conf_id, Some(&conf_secret)).form(&[("grant_type", "password")])).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (status, _, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&conf_id, Some(&conf_secret)).body("not a form").header("content-type", "text/plain")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));

    // One code, twenty parallel redemptions (a public client with PKCE): exactly one token.
    let verifier = "v".repeat(50);
    let challenge = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sigil_engine::secret::secret_hash(verifier.as_bytes()))
    };
    let url = authorize(&public_id, REDIRECT, &format!("&code_challenge={challenge}&code_challenge_method=S256"));
    let code = p.code_for(&url, &session).await["code"].clone();
    let tries = (0..20).map(|_| {
        let (url, code, verifier, id) = (p.s.url("/v1/oauth2/token"), code.clone(), verifier.clone(), public_id.clone());
        tokio::spawn(async move {
            let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT), ("code_verifier", verifier.as_str()), ("client_id", id.as_str())];
            send(http().post(url).form(&form)).await.0
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
}

/// offline_access: refresh tokens rotate on every use; an old one presented again revokes the
/// whole family; of twenty parallel uses of one refresh token exactly one gets tokens; revoking
/// a refresh token (RFC 7009) ends its family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_a_reuse_revokes_the_family() {
    let p = start().await;
    let session = p.user("rita").await;
    let (id, secret) = p.app(true).await;
    let secret = secret.unwrap();
    let token = |form: Vec<(&'static str, String)>| {
        let (url, id, secret) = (p.s.url("/v1/oauth2/token"), id.clone(), secret.clone());
        async move { send(http().post(url).basic_auth(id, Some(secret)).form(&form)).await }
    };
    let url = format!(
        "{}/v1/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid%20offline_access&state=x",
        p.base,
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let fresh_grant = || async {
        let code = p.code_for(&url, &session).await["code"].clone();
        let (status, headers, body) = token(vec![("grant_type", "authorization_code".into()), ("code", code), ("redirect_uri", REDIRECT.into())]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        (body["access_token"].as_str().unwrap().to_string(), body["refresh_token"].as_str().expect("offline_access gives a refresh token").to_string())
    };
    let userinfo = |access: String| {
        let url = p.s.url("/v1/oauth2/userinfo");
        async move { send(http().get(url).bearer_auth(access)).await.0 }
    };

    let (other_access, _) = fresh_grant().await;
    let (access1, refresh1) = fresh_grant().await;
    let (status, _, body) = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh1.clone())]).await;
    assert_eq!(status, 200, "{body}");
    let (access2, refresh2) = (body["access_token"].as_str().unwrap().to_string(), body["refresh_token"].as_str().unwrap().to_string());
    assert_ne!(refresh1, refresh2, "rotated");
    assert!(body["id_token"].is_string());
    assert_eq!(userinfo(access2.clone()).await, 200);
    // The old refresh token again: refused, and every token of the family ends.
    let (status, _, body) = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh1.clone())]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(userinfo(access1).await, 401);
    assert_eq!(userinfo(access2).await, 401);
    assert_eq!(userinfo(other_access).await, 200, "another grant of the same account is not touched");
    let (status, _, _) = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh2)]).await;
    assert_eq!(status, 400, "the rotated token died with its family");
    // Narrowing is allowed, widening is not.
    let (_, refresh) = fresh_grant().await;
    let (status, _, body) = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh.clone()), ("scope", "openid email".into())]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    // The refused request burnt nothing: the token still refreshes, narrowed.
    let (status, _, body) = token(vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh.clone()), ("scope", "openid".into())]).await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("openid")), "{body}");
    assert!(body["id_token"].is_string());

    // Twenty parallel uses of one refresh token: exactly one success.
    let (_, refresh) = fresh_grant().await;
    let tries = (0..20).map(|_| {
        let form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
        let form: Vec<(String, String)> = form.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (url, id, secret) = (p.s.url("/v1/oauth2/token"), id.clone(), secret.clone());
        tokio::spawn(async move { send(http().post(url).basic_auth(id, Some(secret)).form(&form)).await.0 })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");

    // RFC 7009 on a refresh token: the family ends.
    let (access, refresh) = fresh_grant().await;
    let (status, _, _) = send(http().post(p.s.url("/v1/oauth2/revoke")).basic_auth(&id, Some(&secret)).form(&[("token", refresh.as_str())])).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo(access).await, 401);
    let (_, _, info) = send(http().post(p.s.url("/v1/oauth2/introspect")).basic_auth(&id, Some(&secret)).form(&[("token", refresh.as_str())])).await;
    assert_eq!(info, json!({"active": false}));
}

/// `kill -9` and a restart: the signing key (the same JWKS), the client, issued access and
/// refresh tokens and the remembered consent are all still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_survives_kill_9() {
    let mut p = start().await;
    let session = p.user("sven").await;
    let (id, secret) = p.app(true).await;
    let secret = secret.unwrap();
    let (_, _, jwks) = send(http().get(p.s.url("/v1/oauth2/jwks"))).await;
    let url = format!(
        "{}/v1/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=openid%20offline_access&state=x",
        p.base,
        form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let code = p.code_for(&url, &session).await["code"].clone();
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT)];
    let (status, _, tokens) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&id, Some(&secret)).form(&form)).await;
    assert_eq!(status, 200, "{tokens}");

    // Eight more grants, each refreshed in a loop (rotations are group-committed and answered
    // after their shared fsync) until the server is killed: every rotation that was answered
    // must survive.
    let mut grants = Vec::new();
    for _ in 0..8 {
        let code = p.code_for(&url, &session).await["code"].clone();
        let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT)];
        let (status, _, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&id, Some(&secret)).form(&form)).await;
        assert_eq!(status, 200, "{body}");
        grants.push(body["refresh_token"].as_str().unwrap().to_string());
    }
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let chains: Vec<_> = grants
        .into_iter()
        .map(|mut refresh| {
            let (url, id, secret, acked) = (p.s.url("/v1/oauth2/token"), id.clone(), secret.clone(), acked.clone());
            tokio::spawn(async move {
                loop {
                    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())];
                    let Ok(res) = http().post(&url).basic_auth(&id, Some(&secret)).form(&form).send().await else { return };
                    let Ok(body) = res.json::<serde_json::Value>().await else { return };
                    let (Some(access), Some(next)) = (body["access_token"].as_str(), body["refresh_token"].as_str()) else { return };
                    acked.lock().unwrap().push(access.to_string());
                    refresh = next.to_string();
                }
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;

    p.s.kill9();
    futures_util::future::join_all(chains).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 8, "the grants were refreshed before the kill ({} rotations)", acked.len());
    let env_port = p.base.rsplit(':').next().unwrap().to_string();
    let listen = format!("127.0.0.1:{env_port}");
    p.s = common::serve(
        p._dir.path(),
        &[
            ("SIGIL_SERVER__LISTEN", listen.as_str()),
            ("SIGIL_ACCOUNTS__PUBLIC_URL", p.base.as_str()),
            ("SIGIL_ACCOUNTS__INTERNAL_SECRET", SECRET),
            ("SIGIL_ACCOUNTS__IP_AUTHORIZATION", "false"),
            ("SIGIL_PASSWORDS__HASH", FAST_HASH),
        ],
    );
    let (_, _, again) = send(http().get(p.s.url("/v1/oauth2/jwks"))).await;
    assert_eq!(jwks, again, "the signing key is kept");
    let (status, _, _) = send(http().get(p.s.url("/v1/oauth2/userinfo")).bearer_auth(tokens["access_token"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    for access in &acked {
        let (status, _, _) = send(http().get(p.s.url("/v1/oauth2/userinfo")).bearer_auth(access)).await;
        assert_eq!(status, 200, "an access token answered before the kill -9 was lost ({} rotations answered)", acked.len());
    }
    let form = [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())];
    let (status, _, body) = send(http().post(p.s.url("/v1/oauth2/token")).basic_auth(&id, Some(&secret)).form(&form)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = send(http().get(&url).bearer_auth(&session)).await;
    assert_eq!(status, 302, "the consent is remembered");
}
