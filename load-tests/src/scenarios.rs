//! The scenarios and the driver that runs them closed-loop or at a fixed rate.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use sigil_engine::sign;
use sigil_engine::verify::SignedFor;
use tokio::sync::Mutex;

use crate::stats::{Report, Stats};
use crate::{Args, Scenario};

#[derive(Clone)]
struct Ctx {
    client: reqwest::Client,
    /// The first node: setup, metrics and the account scenarios.
    base: String,
    /// Every node given in --url (cluster mode): the wallet scenarios spread their requests
    /// over them, and ws-push waits on one node for a login verified on another.
    nodes: Arc<Vec<String>>,
}

impl Ctx {
    fn new(args: &Args) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections.max(1))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let nodes: Vec<String> =
            args.url.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
        let base = nodes.first().cloned().ok_or("--url names no server")?;
        Ok(Self { client, base, nodes: Arc::new(nodes) })
    }

    /// Node `k` (round robin over --url).
    fn node(&self, k: usize) -> &str {
        self.nodes.get(k % self.nodes.len().max(1)).map_or(self.base.as_str(), String::as_str)
    }

    async fn flux(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let res = req.send().await.map_err(|e| if e.is_timeout() { "timeout".into() } else { "connect".to_string() })?;
        let status = res.status();
        if status != 200 {
            return Err(format!("http-{}", status.as_u16()));
        }
        let body: Value = res.json().await.map_err(|_| "bad-body".to_string())?;
        if body.get("status").and_then(Value::as_str) == Some("success") {
            Ok(body)
        } else {
            Err(format!("flux-error: {}", body.pointer("/data/message").and_then(Value::as_str).unwrap_or("?")))
        }
    }

    async fn phrase(&self) -> Result<String, String> {
        self.phrase_at(0).await
    }

    async fn phrase_at(&self, k: usize) -> Result<String, String> {
        let body = self.flux(self.client.get(format!("{}/id/loginphrase", self.node(k)))).await?;
        body.get("data").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "bad-body".into())
    }

    async fn verifylogin_at(&self, k: usize, body: String) -> Result<Value, String> {
        self.flux(self.client.post(format!("{}/id/verifylogin", self.node(k))).header("content-type", "text/plain").body(body))
            .await
    }
}

/// A login ready to replay: the verifylogin body and the zelidauth header it will make.
struct Signed {
    body: String,
    header: String,
    phrase: String,
}

/// Fetches a phrase and signs it with a fresh key, alternating BTC and ETH wallets.
async fn sign_login(ctx: &Ctx, i: usize) -> Result<Signed, String> {
    // Login i's phrase comes from node i; it is verified on node i + 1 (and, in ws-push,
    // waited for on node i + 2): with several nodes every step crosses a node.
    let phrase = ctx.phrase_at(i).await?;
    let key = sign::random_key();
    let (zelid, signature) = if i.is_multiple_of(2) {
        (sign::p2pkh_address(&key, true), sign::sign_bitcoin_message(&key, &phrase, SignedFor::P2pkhCompressed))
    } else {
        (sign::ethereum_address_of(&key), sign::sign_ethereum_message(&key, &phrase))
    };
    let body = json!({"zelid": zelid, "loginPhrase": phrase, "signature": signature}).to_string();
    let header = form_urlencoded::Serializer::new(String::new())
        .append_pair("zelid", &zelid)
        .append_pair("loginPhrase", &phrase)
        .append_pair("signature", &signature)
        .finish();
    Ok(Signed { body, header, phrase })
}

/// Prepares `n` signed logins with bounded concurrency (off the clock).
async fn prepare(ctx: &Ctx, n: usize, concurrency: usize, quiet: bool) -> Result<Vec<Signed>, String> {
    if !quiet {
        eprintln!("preparing {n} signed logins (off the clock)…");
    }
    let results: Vec<Result<Signed, String>> =
        futures_util::stream::iter(0..n).map(|i| sign_login(ctx, i)).buffer_unordered(concurrency.clamp(1, 64)).collect().await;
    // A phrase is refused in the millisecond it was issued (FluxOS's rule).
    tokio::time::sleep(Duration::from_millis(2)).await;
    results.into_iter().collect()
}

/// Runs `op(k)` for k = 0, 1, … on `connections` workers until the duration or count is
/// reached. With `rate`, request k is due at start + k/rate; when its worker is still busy at
/// that time its latency is counted from then (so a stalled server is charged for the requests
/// it delayed: no coordinated omission), otherwise from when it was sent.
async fn drive<F, Fut>(args: &Args, limit: Option<u64>, op: F) -> Result<(Stats, Duration), String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let limit = match (args.count, limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let start = Instant::now();
    let deadline = start + args.duration;
    let mut workers = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (op, next, done, failed) = (op.clone(), next.clone(), done.clone(), failed.clone());
        let rate = args.rate;
        let use_deadline = args.count.is_none();
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::new()?;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| k >= l) {
                    break;
                }
                let due = match rate {
                    Some(r) if r > 0.0 => {
                        let at = start + Duration::from_secs_f64(k as f64 / r);
                        if use_deadline && at > deadline {
                            break;
                        }
                        if Instant::now() < at {
                            // The worker is ahead of schedule: it sleeps, and tokio's timer
                            // wakes it up to ~1 ms late. That lateness is the client's, not
                            // the server's, so latency counts from the actual send.
                            tokio::time::sleep_until(at.into()).await;
                            Instant::now()
                        } else {
                            // Behind schedule: the server delayed this request, and is charged.
                            at
                        }
                    }
                    _ => {
                        let now = Instant::now();
                        if use_deadline && now > deadline {
                            break;
                        }
                        now
                    }
                };
                let outcome = op(k).await;
                if outcome.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                stats.record(due.elapsed(), outcome);
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<Stats, String>(stats)
        }));
    }
    let progress = (!args.quiet).then(|| {
        let (done, failed) = (done.clone(), failed.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>6.1}s  {now:>9} done  {:>8}/s  {} errors",
                    start.elapsed().as_secs_f64(),
                    now - last,
                    failed.load(Ordering::Relaxed)
                );
                last = now;
            }
        })
    });
    let mut total = Stats::new()?;
    for w in workers {
        let stats = w.await.map_err(|e| e.to_string())??;
        total.merge(&stats);
    }
    if let Some(p) = progress {
        p.abort();
    }
    Ok((total, start.elapsed()))
}

/// A closed-loop warm-up of `op` that records nothing.
async fn warm_up<F, Fut>(args: &Args, op: F) -> Result<(), String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    if args.warmup.is_zero() {
        return Ok(());
    }
    let warm = Args { duration: args.warmup, rate: None, count: None, quiet: true, ..args_clone(args) };
    drive(&warm, None, op).await.map(|_| ())
}

fn args_clone(args: &Args) -> Args {
    Args {
        scenario: args.scenario,
        url: args.url.clone(),
        connections: args.connections,
        duration: args.duration,
        count: args.count,
        rate: args.rate,
        warmup: args.warmup,
        sessions: args.sessions,
        sockets: args.sockets,
        scenario_file: args.scenario_file.clone(),
        path: args.path.clone(),
        json: None,
        hdr: None,
        quiet: args.quiet,
        internal_secret: args.internal_secret.clone(),
    }
}

fn report(scenario: &str, (stats, elapsed): (Stats, Duration)) -> Report {
    Report { scenario: scenario.into(), elapsed, stats, extra: serde_json::Map::new() }
}

pub async fn run(args: &Args) -> Result<Report, String> {
    let ctx = Ctx::new(args)?;
    match args.scenario {
        Scenario::Phrase => {
            let op = phrase_op(&ctx);
            warm_up(args, op.clone()).await?;
            Ok(report("phrase", drive(args, None, op).await?))
        }
        Scenario::SessionCheck => {
            let headers = Arc::new(prepare_sessions(&ctx, args).await?);
            let op = check_op(&ctx, headers);
            warm_up(args, op.clone()).await?;
            Ok(report("session-check", drive(args, None, op).await?))
        }
        Scenario::WalletLogin => {
            // Enough pre-signed logins for the run: --count, or rate × duration, or a pool.
            let n = args.count.map_or_else(
                || args.rate.map_or(20_000, |r| (r * args.duration.as_secs_f64()).ceil() as usize + 1),
                |c| c as usize,
            );
            let logins = Arc::new(prepare(&ctx, n, args.connections, args.quiet).await?);
            let op = login_op(&ctx, logins.clone());
            Ok(report("wallet-login", drive(args, Some(logins.len() as u64), op).await?))
        }
        Scenario::Mixed => mixed(&ctx, args).await,
        Scenario::Get => {
            let op = get_op(&ctx, &args.path);
            warm_up(args, op.clone()).await?;
            Ok(report("get", drive(args, None, op).await?))
        }
        Scenario::WsPush => ws_push(&ctx, args).await,
        Scenario::WsIdle => ws_idle(&ctx, args).await,
        Scenario::PasswordLogin => {
            let users = Arc::new(make_accounts(&ctx, args, args.sessions.max(1)).await?);
            let op = password_login_op(&ctx, users);
            warm_up(args, op.clone()).await?;
            Ok(report("password-login", drive(args, None, op).await?))
        }
        Scenario::CookieCheck => {
            let users = make_accounts(&ctx, args, 1).await?;
            let user = users.first().ok_or("no account")?;
            let mut cookies = Vec::with_capacity(args.sessions.max(1));
            for _ in 0..args.sessions.max(1) {
                cookies.push(format!("sigil_session={}", ctx.web_login(user).await?));
            }
            let op = cookie_check_op(&ctx, Arc::new(cookies));
            warm_up(args, op.clone()).await?;
            Ok(report("cookie-check", drive(args, None, op).await?))
        }
        Scenario::MfaLogin => {
            let users = make_accounts(&ctx, args, args.sessions.max(1)).await?;
            let secret = args.internal_secret.clone().unwrap_or_default();
            let mut enrolled = Vec::with_capacity(users.len());
            for user in users {
                enrolled.push((user.clone(), ctx.enrol_totp(&user, &secret).await?));
            }
            let op = mfa_login_op(&ctx, Arc::new(enrolled));
            Ok(report("mfa-login", drive(args, Some(args.sessions.max(1) as u64), op).await?))
        }
        Scenario::IpPush => ip_push(&ctx, args).await,
        Scenario::OauthRefresh => oauth(&ctx, args, true).await,
        Scenario::OauthIntrospect => oauth(&ctx, args, false).await,
        Scenario::TokenCheck => {
            let users = make_accounts(&ctx, args, 1).await?;
            let user = users.first().ok_or("no account")?;
            let mut tokens = Vec::with_capacity(args.sessions.max(1));
            for _ in 0..args.sessions.max(1) {
                tokens.push(ctx.token_login(user).await?);
            }
            let op = token_check_op(&ctx, Arc::new(tokens));
            warm_up(args, op.clone()).await?;
            Ok(report("token-check", drive(args, None, op).await?))
        }
    }
}

/// The password every load-test account gets.
const LOAD_PASSWORD: &str = "sigil-load password";

/// Creates `n` accounts with a run-unique prefix through `/api/admin/users`; returns their
/// usernames.
async fn make_accounts(ctx: &Ctx, args: &Args, n: usize) -> Result<Vec<String>, String> {
    let secret = args.internal_secret.as_deref().ok_or("this scenario needs --internal-secret (the server's accounts.internal_secret)")?;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    if !args.quiet {
        eprintln!("creating {n} account(s) (off the clock)…");
    }
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("load-{run}-{i}");
        let res = ctx
            .client
            .post(format!("{}/api/admin/users", ctx.base))
            .header("x-internal-secret", secret)
            .json(&json!({"username": name, "password": LOAD_PASSWORD}))
            .send()
            .await
            .map_err(|e| format!("creating accounts: {e}"))?;
        if res.status() != 201 {
            return Err(format!("creating accounts: http-{} {}", res.status().as_u16(), res.text().await.unwrap_or_default()));
        }
        names.push(name);
    }
    Ok(names)
}

/// Sends `req`; the response if it is a 200, else the error kind.
async fn ok_200(req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
    let res = req.send().await.map_err(|e| if e.is_timeout() { "timeout".to_string() } else { "connect".to_string() })?;
    if res.status() == 200 { Ok(res) } else { Err(format!("http-{}", res.status().as_u16())) }
}

impl Ctx {
    /// Enrols TOTP for `user` through the admin API; returns the base32 secret.
    async fn enrol_totp(&self, user: &str, secret: &str) -> Result<String, String> {
        let guid = guid_of(self, user, secret).await?;
        let req = self.client.post(format!("{}/api/admin/users/{guid}/2fa/totp", self.base)).header("x-internal-secret", secret).json(&json!({}));
        let body: Value = ok_200(req).await?.json().await.map_err(|_| "bad-body".to_string())?;
        body.get("secret").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "bad-body".into())
    }

    /// Logs `user` in on the account API (`/v1`); returns the session token (the cookie's value).
    async fn web_login(&self, user: &str) -> Result<String, String> {
        let req = self.client.post(format!("{}/v1/auth/login", self.base)).json(&json!({"login": user, "password": LOAD_PASSWORD}));
        let body: Value = ok_200(req).await?.json().await.map_err(|_| "bad-body".to_string())?;
        body.get("token").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "bad-body (an MFA account?)".into())
    }

    /// Logs `user` in on the token API; returns the access token.
    async fn token_login(&self, user: &str) -> Result<String, String> {
        let req = self.client.post(format!("{}/api/auth/login", self.base)).json(&json!({"username": user, "password": LOAD_PASSWORD}));
        let body: Value = ok_200(req).await?.json().await.map_err(|_| "bad-body".to_string())?;
        body.get("access_token").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "bad-body".into())
    }
}

fn password_login_op(
    ctx: &Ctx,
    users: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let user = users.get(k as usize % users.len().max(1)).cloned().unwrap_or_default();
        Box::pin(async move { ctx.token_login(&user).await.map(|_| ()) })
    }
}

fn mfa_login_op(
    ctx: &Ctx,
    accounts: Arc<Vec<(String, String)>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let account = accounts.get(k as usize % accounts.len().max(1)).cloned();
        Box::pin(async move {
            let (user, secret) = account.ok_or("no account")?;
            let req = ctx.client.post(format!("{}/v1/auth/login", ctx.base)).json(&json!({"login": user, "password": LOAD_PASSWORD}));
            let body: Value = ok_200(req).await?.json().await.map_err(|_| "bad-body".to_string())?;
            let ticket = body.get("ticket").and_then(Value::as_str).ok_or("no-mfa-ticket")?.to_string();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let code = sigil_engine::account::factors::totp_code(&secret, now).ok_or("bad-secret")?;
            let req = ctx.client.post(format!("{}/v1/auth/mfa/totp", ctx.base)).json(&json!({"ticket": ticket, "code": code}));
            let _ = ok_200(req).await?.bytes().await;
            Ok(())
        })
    }
}

fn cookie_check_op(
    ctx: &Ctx,
    cookies: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let cookie = cookies.get(k as usize % cookies.len().max(1)).cloned().unwrap_or_default();
        Box::pin(async move {
            let res = ok_200(ctx.client.get(format!("{}/v1/users/@me", ctx.base)).header("cookie", cookie)).await?;
            let _ = res.bytes().await;
            Ok(())
        })
    }
}

fn token_check_op(
    ctx: &Ctx,
    tokens: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let token = tokens.get(k as usize % tokens.len().max(1)).cloned().unwrap_or_default();
        Box::pin(async move {
            let res = ok_200(ctx.client.get(format!("{}/api/auth/token", ctx.base)).bearer_auth(token)).await?;
            // Read the body so the connection is reused.
            let _ = res.bytes().await;
            Ok(())
        })
    }
}

fn phrase_op(ctx: &Ctx) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |_| {
        let ctx = ctx.clone();
        Box::pin(async move { ctx.phrase().await.map(|_| ()) })
    }
}

fn get_op(
    ctx: &Ctx,
    path: &str,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let (ctx, url) = (ctx.clone(), format!("{}{path}", ctx.base));
    move |_| {
        let (ctx, url) = (ctx.clone(), url.clone());
        Box::pin(async move {
            let res = ctx.client.get(url).send().await.map_err(|_| "connect".to_string())?;
            let status = res.status();
            // Read the body so the connection is reused, as for sigil's routes.
            let _ = res.bytes().await;
            if status == 200 { Ok(()) } else { Err(format!("http-{}", status.as_u16())) }
        })
    }
}

async fn prepare_sessions(ctx: &Ctx, args: &Args) -> Result<Vec<String>, String> {
    let logins = prepare(ctx, args.sessions.max(1), args.connections, args.quiet).await?;
    let mut headers = Vec::with_capacity(logins.len());
    for (i, l) in logins.into_iter().enumerate() {
        ctx.verifylogin_at(i + 1, l.body).await?;
        headers.push(l.header);
    }
    Ok(headers)
}

fn check_op(
    ctx: &Ctx,
    headers: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let header = headers.get(k as usize % headers.len().max(1)).cloned().unwrap_or_default();
        Box::pin(async move {
            let req = ctx.client.get(format!("{}/id/loggedsessions", ctx.node(k as usize))).header("zelidauth", header);
            ctx.flux(req).await.map(|_| ())
        })
    }
}

fn login_op(
    ctx: &Ctx,
    logins: Arc<Vec<Signed>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let ctx = ctx.clone();
        let body = logins.get(k as usize).map(|l| l.body.clone());
        Box::pin(async move {
            let body = body.ok_or("no pre-signed login left")?;
            ctx.verifylogin_at(k as usize + 1, body).await.map(|_| ())
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MixFile {
    /// Relative weights per scenario: phrase, session-check, wallet-login.
    weights: std::collections::BTreeMap<Scenario, u32>,
}

async fn mixed(ctx: &Ctx, args: &Args) -> Result<Report, String> {
    let path = args.scenario_file.as_ref().ok_or("mixed needs --scenario-file (see load-tests/scenarios/)")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mix: MixFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table = Vec::new();
    for (scenario, weight) in &mix.weights {
        if !matches!(scenario, Scenario::Phrase | Scenario::SessionCheck | Scenario::WalletLogin) {
            return Err(format!("{}: mixed takes phrase, session-check and wallet-login", path.display()));
        }
        table.extend(std::iter::repeat_n(*scenario, *weight as usize));
    }
    if table.is_empty() {
        return Err(format!("{}: all weights are zero", path.display()));
    }
    let login_share = table.iter().filter(|s| **s == Scenario::WalletLogin).count() as f64 / table.len() as f64;
    let expected = args.count.map_or_else(|| args.rate.map_or(200_000.0, |r| r * args.duration.as_secs_f64()), |c| c as f64);
    let logins = Arc::new(prepare(ctx, ((expected * login_share).ceil() as usize).max(1), args.connections, args.quiet).await?);
    let headers = Arc::new(prepare_sessions(ctx, args).await?);
    let (phrase, check, login) = (phrase_op(ctx), check_op(ctx, headers), login_op(ctx, logins));
    let table = Arc::new(table);
    let logins_used = Arc::new(AtomicU64::new(0));
    let op = move |k: u64| {
        let pick = table.get(k as usize % table.len()).copied().unwrap_or(Scenario::Phrase);
        match pick {
            Scenario::SessionCheck => check(k),
            Scenario::WalletLogin => login(logins_used.fetch_add(1, Ordering::Relaxed)),
            _ => phrase(k),
        }
    };
    Ok(report("mixed", drive(args, None, op).await?))
}

/// The server's resident memory, from its own /metrics.
async fn server_rss(ctx: &Ctx) -> Result<f64, String> {
    let text = ctx.client.get(format!("{}/metrics", ctx.base)).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes ").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| "the server's /metrics has no process_resident_memory_bytes".into())
}

fn ws_url(ctx: &Ctx, k: usize, phrase: &str) -> String {
    format!("{}/ws/id/{phrase}", ctx.node(k).replacen("http", "ws", 1))
}

/// Loopback source addresses the sockets are spread over: one address has ~28k ephemeral
/// ports, so 100k sockets to one server port need several (127.0.0.0/8 is all loopback).
const SOURCE_ADDRESSES: u8 = 8;

/// A TCP connection to the `ws://host:port/…` of `url`; to a loopback server, from source
/// address 127.0.0.(1 + n mod 8), so the run is not capped by one address's ports.
async fn connect_from_spread_source(url: &str, n: usize) -> Result<tokio::net::TcpStream, String> {
    let authority = url.split("://").nth(1).and_then(|rest| rest.split('/').next()).ok_or("websocket: bad URL")?;
    let server = tokio::net::lookup_host(authority).await.map_err(|e| format!("websocket: {e}"))?.next().ok_or("websocket: no address")?;
    let socket = if server.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }.map_err(|e| format!("websocket: {e}"))?;
    if server.ip().is_loopback() && server.is_ipv4() {
        let last = 1 + u8::try_from(n % usize::from(SOURCE_ADDRESSES)).unwrap_or(0);
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0))).map_err(|e| format!("websocket: bind: {e}"))?;
    }
    let stream = socket.connect(server).await.map_err(|e| format!("websocket: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("websocket: {e}"))?;
    Ok(stream)
}

/// Opens a websocket to each of `urls`, `concurrency` at a time; each task resolves with the
/// instant its first frame arrived.
async fn open_sockets(urls: &[String], concurrency: usize) -> Result<Vec<tokio::task::JoinHandle<Option<Instant>>>, String> {
    let mut handles = Vec::with_capacity(urls.len());
    for chunk in urls.chunks(concurrency.max(1)) {
        // Small buffers: the client should not need more memory than the server it measures.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let connect = |(i, url): (usize, &String)| {
            let url = url.clone();
            let n = handles.len() + i;
            async move {
                let open = async {
                    let stream = connect_from_spread_source(&url, n).await?;
                    tokio_tungstenite::client_async_with_config(url, stream, Some(config)).await.map_err(|e| format!("websocket: {e}"))
                };
                tokio::time::timeout(Duration::from_secs(10), open)
                    .await
                    .map_err(|_| "websocket: connect timed out (file-descriptor limit?)".to_string())?
            }
        };
        let opened = futures_util::future::join_all(chunk.iter().enumerate().map(connect)).await;
        for socket in opened {
            let (mut socket, _) = socket?;
            handles.push(tokio::spawn(async move {
                while let Some(Ok(msg)) = socket.next().await {
                    if msg.is_text() {
                        return Some(Instant::now());
                    }
                }
                None
            }));
        }
    }
    Ok(handles)
}

async fn ws_push(ctx: &Ctx, args: &Args) -> Result<Report, String> {
    let logins = prepare(ctx, args.sockets.max(1), args.connections, args.quiet).await?;
    let phrases: Vec<String> = logins.iter().map(|l| l.phrase.clone()).collect();
    let urls: Vec<String> = phrases.iter().enumerate().map(|(i, p)| ws_url(ctx, i + 2, p)).collect();
    let sockets = open_sockets(&urls, args.connections).await?;
    if !args.quiet {
        eprintln!("{} websockets waiting; logging in…", sockets.len());
    }
    let mut stats = Stats::new()?;
    let started = Instant::now();
    let answered = Arc::new(Mutex::new(Vec::with_capacity(logins.len())));
    let bodies: Vec<String> = logins.into_iter().map(|l| l.body).collect();
    futures_util::stream::iter(bodies.into_iter().enumerate())
        .for_each_concurrent(args.connections.max(1), |(i, body)| {
            let (ctx, answered) = (ctx.clone(), answered.clone());
            async move {
                let result = ctx.verifylogin_at(i + 1, body).await;
                answered.lock().await.push((i, Instant::now(), result.map(|_| ())));
            }
        })
        .await;
    let elapsed = started.elapsed();
    let mut answered = answered.lock().await.drain(..).collect::<Vec<_>>();
    answered.sort_by_key(|(i, _, _)| *i);
    let mut frame_first = 0u64;
    for ((_, response_at, result), socket) in answered.into_iter().zip(sockets) {
        let frame_at = tokio::time::timeout(Duration::from_secs(10), socket).await.ok().and_then(Result::ok).flatten();
        match (result, frame_at) {
            (Err(e), _) => stats.record(Duration::ZERO, Err(e)),
            (Ok(()), None) => stats.record(Duration::ZERO, Err("no-frame".into())),
            (Ok(()), Some(frame_at)) => {
                if frame_at <= response_at {
                    frame_first += 1;
                }
                stats.record(frame_at.saturating_duration_since(response_at), Ok(()));
            }
        }
    }
    let mut r = Report { scenario: "ws-push".into(), elapsed, stats, extra: serde_json::Map::new() };
    r.extra.insert("latency_is".into(), json!("frame arrival minus verifylogin response arrival (0 when the frame came first)"));
    r.extra.insert("frames_before_response".into(), json!(frame_first));
    r.extra.insert("waiting_sockets".into(), json!(phrases.len()));
    Ok(r)
}

async fn ws_idle(ctx: &Ctx, args: &Args) -> Result<Report, String> {
    if !args.quiet {
        eprintln!("issuing {} phrases…", args.sockets);
    }
    let phrases: Vec<Result<String, String>> = futures_util::stream::iter(0..args.sockets.max(1))
        .map(|_| ctx.phrase())
        .buffer_unordered(args.connections.clamp(1, 64))
        .collect()
        .await;
    let phrases: Vec<String> = phrases.into_iter().collect::<Result<_, _>>()?;
    let before = server_rss(ctx).await?;
    let started = Instant::now();
    // Half first, then the rest: the second half's growth is the marginal cost of a socket
    // (what 100k would cost), free of one-time growth such as allocator arenas and buffers.
    let (first, second) = phrases.split_at(phrases.len() / 2);
    let url_of = |ps: &[String]| ps.iter().map(|p| ws_url(ctx, 0, p)).collect::<Vec<_>>();
    let mut sockets = open_sockets(&url_of(first), args.connections).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let half = server_rss(ctx).await?;
    sockets.extend(open_sockets(&url_of(second), args.connections).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server_rss(ctx).await?;
    let mut stats = Stats::new()?;
    stats.record(started.elapsed(), Ok(()));
    if !args.quiet {
        eprintln!("{} idle websockets open; holding for {:?}", sockets.len(), args.duration);
    }
    tokio::time::sleep(args.duration).await;
    let held = server_rss(ctx).await?;
    for s in &sockets {
        s.abort();
    }
    let n = sockets.len().max(1) as f64;
    let mut r = Report { scenario: "ws-idle".into(), elapsed: started.elapsed(), stats, extra: serde_json::Map::new() };
    r.extra.insert("sockets".into(), json!(sockets.len()));
    r.extra.insert("server_rss_before_bytes".into(), json!(before));
    r.extra.insert("server_rss_open_bytes".into(), json!(after));
    r.extra.insert("server_rss_after_hold_bytes".into(), json!(held));
    r.extra.insert("server_rss_half_bytes".into(), json!(half));
    r.extra.insert("bytes_per_socket_overall".into(), json!(((held.max(after) - before) / n).round()));
    let marginal = (held.max(after) - half) / (second.len().max(1) as f64);
    r.extra.insert("bytes_per_socket".into(), json!(marginal.round()));
    Ok(r)
}

/// Logs `user` in on `/v1` as if from `ip` (via X-Forwarded-For); the reply's status and body.
async fn web_login_from(ctx: &Ctx, user: &str, ip: &str) -> Result<(u16, Value), String> {
    let res = ctx
        .client
        .post(format!("{}/v1/auth/login", ctx.base))
        .header("x-forwarded-for", ip)
        .json(&json!({"login": user, "password": LOAD_PASSWORD}))
        .send()
        .await
        .map_err(|_| "connect".to_string())?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.map_err(|_| "bad-body".to_string())?))
}

async fn ip_push(ctx: &Ctx, args: &Args) -> Result<Report, String> {
    let secret = args.internal_secret.clone().ok_or("ip-push needs --internal-secret")?;
    let n = args.sockets.max(1);
    let users = make_accounts(ctx, args, n).await?;
    if !args.quiet {
        eprintln!("logging {n} accounts in from a known, then a new address (off the clock)…");
    }
    let mut tickets = Vec::with_capacity(n);
    for (i, user) in users.iter().enumerate() {
        ctx.client
            .patch(format!("{}/api/admin/users/{}", ctx.base, guid_of(ctx, user, &secret).await?))
            .header("x-internal-secret", &secret)
            .json(&json!({"email": format!("{user}@load.invalid")}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let (status, _) = web_login_from(ctx, user, "10.0.0.1").await?;
        if status != 200 {
            return Err(format!("first login: http-{status} (limits on?)"));
        }
        let new_ip = format!("10.{}.{}.2", 1 + i / 250, i % 250);
        let (status, body) = web_login_from(ctx, user, &new_ip).await?;
        let ticket = body.get("ticket").and_then(Value::as_str).map(str::to_string);
        match (status, ticket) {
            (403, Some(t)) => tickets.push(t),
            _ => return Err(format!("new-address login: http-{status} {body} (server must trust 127.0.0.1: server.trusted_proxies)")),
        }
    }
    let outbox: Value = ok_200(ctx.client.get(format!("{}/api/admin/outbox", ctx.base)).header("x-internal-secret", &secret))
        .await?
        .json()
        .await
        .map_err(|_| "bad-body".to_string())?;
    let code_for = |user: &str| {
        let to = format!("{user}@load.invalid");
        outbox.as_array().and_then(|all| all.iter().rev().find(|m| m.get("to").and_then(Value::as_str) == Some(to.as_str())))
            .and_then(|m| m.get("code").and_then(Value::as_str))
            .map(str::to_string)
    };
    let codes: Vec<String> = users.iter().map(|u| code_for(u).ok_or("no code in the outbox (sms.sender = log?)")).collect::<Result<_, _>>()?;
    let base = ctx.base.replacen("http", "ws", 1);
    let urls: Vec<String> = tickets.iter().map(|t| format!("{base}/v1/auth/authorize-ip/ws?ticket={t}")).collect();
    let sockets = open_sockets(&urls, args.connections).await?;
    let mut stats = Stats::new()?;
    let started = Instant::now();
    let mut frame_first = 0u64;
    for (code, socket) in codes.into_iter().zip(sockets) {
        let req = ctx.client.post(format!("{}/v1/auth/authorize-ip", ctx.base)).json(&json!({"code": code}));
        let answered = req.send().await.map(|r| r.status().as_u16());
        let response_at = Instant::now();
        let frame_at = tokio::time::timeout(Duration::from_secs(10), socket).await.ok().and_then(Result::ok).flatten();
        match (answered, frame_at) {
            (Ok(204), Some(frame_at)) => {
                if frame_at <= response_at {
                    frame_first += 1;
                }
                stats.record(frame_at.saturating_duration_since(response_at), Ok(()));
            }
            (Ok(204), None) => stats.record(Duration::ZERO, Err("no-frame".into())),
            (Ok(status), _) => stats.record(Duration::ZERO, Err(format!("http-{status}"))),
            (Err(_), _) => stats.record(Duration::ZERO, Err("connect".into())),
        }
    }
    let mut r = Report { scenario: "ip-push".into(), elapsed: started.elapsed(), stats, extra: serde_json::Map::new() };
    r.extra.insert("latency_is".into(), json!("frame arrival minus approval response arrival (0 when the frame came first)"));
    r.extra.insert("frames_before_response".into(), json!(frame_first));
    Ok(r)
}

/// The guid of `user`, from the admin API.
async fn guid_of(ctx: &Ctx, user: &str, secret: &str) -> Result<String, String> {
    let users: Value = ok_200(ctx.client.get(format!("{}/api/admin/users", ctx.base)).header("x-internal-secret", secret))
        .await?
        .json()
        .await
        .map_err(|_| "bad-body".to_string())?;
    users
        .as_array()
        .and_then(|all| all.iter().find(|u| u.get("username").and_then(Value::as_str) == Some(user)))
        .and_then(|u| u.get("guid").and_then(Value::as_str))
        .map(str::to_string)
        .ok_or_else(|| format!("{user} is not listed"))
}

// ---- OAuth2 provider ---------------------------------------------------------------------------

const LOAD_REDIRECT: &str = "http://127.0.0.1:9/callback";

/// A confidential client with a redirect URI, and `n` refresh tokens of one account (each its own
/// grant: authorize with the account's session, consent, exchange), made off the clock.
async fn oauth_grants(ctx: &Ctx, args: &Args, n: usize) -> Result<(String, String, Vec<String>), String> {
    let secret = args.internal_secret.clone().ok_or("this scenario needs --internal-secret")?;
    let users = make_accounts(ctx, args, 1).await?;
    let user = users.first().ok_or("no account")?;
    let session = ctx.web_login(user).await?;
    let app: Value = ok_200_or_201(
        ctx.client
            .post(format!("{}/v1/oauth2/applications", ctx.base))
            .header("x-internal-secret", &secret)
            .json(&json!({"name": "sigil-load", "redirect_uris": [LOAD_REDIRECT], "confidential": true})),
    )
    .await?
    .json()
    .await
    .map_err(|e| e.to_string())?;
    let id = app.get("client_id").and_then(Value::as_str).ok_or("no client_id")?.to_string();
    let client_secret = app.get("client_secret").and_then(Value::as_str).ok_or("no client_secret")?.to_string();
    if !args.quiet {
        eprintln!("authorizing {n} grant(s) (off the clock)…");
    }
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let url = format!(
        "{}/v1/oauth2/authorize?response_type=code&client_id={id}&redirect_uri={}&scope=identify%20offline_access&state=s",
        ctx.base,
        form_urlencoded::byte_serialize(LOAD_REDIRECT.as_bytes()).collect::<String>()
    );
    let mut refresh = Vec::with_capacity(n);
    for _ in 0..n {
        let first = no_redirects.get(&url).bearer_auth(&session).send().await.map_err(|e| e.to_string())?;
        let res = if first.status() == 302 {
            first
        } else {
            let consent: Value = first.json().await.map_err(|e| e.to_string())?;
            let token = consent.get("consent_token").and_then(Value::as_str).ok_or("no consent_token")?.to_string();
            no_redirects
                .post(&url)
                .bearer_auth(&session)
                .form(&[("consent_token", token.as_str()), ("approve", "true")])
                .send()
                .await
                .map_err(|e| e.to_string())?
        };
        let location = res.headers().get("location").and_then(|v| v.to_str().ok()).ok_or("no redirect with a code")?.to_string();
        let code = location
            .split_once('?')
            .and_then(|(_, q)| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()))
            .ok_or("no code")?;
        let tokens: Value = ok_200(ctx.client.post(format!("{}/v1/oauth2/token", ctx.base)).basic_auth(&id, Some(&client_secret)).form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", LOAD_REDIRECT),
        ]))
        .await?
        .json()
        .await
        .map_err(|e| e.to_string())?;
        refresh.push(tokens.get("refresh_token").and_then(Value::as_str).ok_or("no refresh_token")?.to_string());
    }
    Ok((id, client_secret, refresh))
}

async fn ok_200_or_201(req: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
    let res = req.send().await.map_err(|e| if e.is_timeout() { "timeout".into() } else { "connect".to_string() })?;
    if res.status() == 200 || res.status() == 201 { Ok(res) } else { Err(format!("http-{}", res.status().as_u16())) }
}

/// `refresh_token` grants: each slot holds one grant's current refresh token and replaces it
/// with the rotated one (a slot is used by one request at a time).
fn oauth_refresh_op(
    ctx: &Ctx,
    client: (String, String),
    slots: Arc<Vec<Mutex<String>>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let (ctx, slots, (id, secret)) = (ctx.clone(), slots.clone(), client.clone());
        Box::pin(async move {
            let slot = slots.get(k as usize % slots.len().max(1)).ok_or("no grant")?;
            let mut current = slot.lock().await;
            let res = ok_200(ctx.client.post(format!("{}/v1/oauth2/token", ctx.base)).basic_auth(&id, Some(&secret)).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", current.as_str()),
            ]))
            .await?;
            let body: Value = res.json().await.map_err(|_| "bad-body".to_string())?;
            *current = body.get("refresh_token").and_then(Value::as_str).ok_or("no rotated refresh_token")?.to_string();
            Ok(())
        })
    }
}

/// `POST /v1/oauth2/introspect` of refresh tokens (client authentication every time).
fn oauth_introspect_op(
    ctx: &Ctx,
    client: (String, String),
    tokens: Arc<Vec<String>>,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Clone + Send + Sync + 'static {
    let ctx = ctx.clone();
    move |k| {
        let (ctx, (id, secret)) = (ctx.clone(), client.clone());
        let token = tokens.get(k as usize % tokens.len().max(1)).cloned().unwrap_or_default();
        Box::pin(async move {
            let res = ok_200(
                ctx.client.post(format!("{}/v1/oauth2/introspect", ctx.base)).basic_auth(&id, Some(&secret)).form(&[("token", token.as_str())]),
            )
            .await?;
            let body: Value = res.json().await.map_err(|_| "bad-body".to_string())?;
            if body.get("active") == Some(&Value::Bool(true)) { Ok(()) } else { Err("inactive".into()) }
        })
    }
}

async fn oauth(ctx: &Ctx, args: &Args, refresh: bool) -> Result<Report, String> {
    let n = args.sessions.max(args.connections).max(1);
    let (id, secret, tokens) = oauth_grants(ctx, args, n).await?;
    if refresh {
        let slots = Arc::new(tokens.into_iter().map(Mutex::new).collect::<Vec<_>>());
        let op = oauth_refresh_op(ctx, (id, secret), slots);
        warm_up(args, op.clone()).await?;
        Ok(report("oauth-refresh", drive(args, None, op).await?))
    } else {
        let op = oauth_introspect_op(ctx, (id, secret), Arc::new(tokens));
        warm_up(args, op.clone()).await?;
        Ok(report("oauth-introspect", drive(args, None, op).await?))
    }
}
