//! `sigil-load`: load scenarios against a running sigil, with latency percentiles corrected
//! for coordinated omission in fixed-rate mode. See `load-tests/README.md`.

mod scenarios;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// GET /id/loginphrase.
    Phrase,
    /// Pre-signed BTC/ETH logins (signed off the clock), replayed on POST /id/verifylogin.
    WalletLogin,
    /// Authenticated GET /id/loggedsessions with `zelidauth`, rotating over --sessions.
    SessionCheck,
    /// --sockets websockets wait on their phrases, then logins: verify-response-to-frame latency.
    WsPush,
    /// Hold --sockets idle websockets and report the server's memory per socket.
    WsIdle,
    /// Weighted mix of phrase, wallet-login and session-check from --scenario-file.
    Mixed,
    /// GET --path, any 200 is a success: the same client against a reference server
    /// (e.g. bench's empty handler).
    Get,
    /// POST /api/auth/login with the right password, rotating over --sessions accounts made
    /// through the admin API (needs --internal-secret): argon2id per request.
    PasswordLogin,
    /// Authenticated GET /api/auth/token with a Bearer token, rotating over --sessions tokens
    /// of one account made through the admin API (needs --internal-secret).
    TokenCheck,
    /// Cookie-authenticated GET /v1/users/@me, rotating over --sessions `/v1` sessions of one
    /// account made through the admin API (needs --internal-secret).
    CookieCheck,
    /// The full `/v1` login with a second factor: password (POST /v1/auth/login → MFA ticket),
    /// then a TOTP code (POST /v1/auth/mfa/totp → session), over --sessions accounts with TOTP
    /// enrolled through the admin API (needs --internal-secret). A TOTP step works once per
    /// account, so --sessions must exceed 30 s × the login rate.
    MfaLogin,
    /// `/v1` new-location approval pushed to waiting websockets: --sockets accounts each log in
    /// from a new address (X-Forwarded-For: the server must trust 127.0.0.1 as a proxy and use
    /// the `log` sender), wait on `/v1/auth/authorize-ip/ws`, then are approved; latency is
    /// frame arrival minus approval response (needs --internal-secret).
    IpPush,
    /// OAuth2 `refresh_token` grants: --sessions grants (at least --connections) of one account
    /// to a confidential client, each refreshed and rotated in turn (needs --internal-secret).
    OauthRefresh,
    /// OAuth2 introspection (RFC 7662) of refresh tokens, with client authentication (needs
    /// --internal-secret).
    OauthIntrospect,
}

#[derive(Debug, Parser)]
#[command(name = "sigil-load", version, about = "Load generator for sigil")]
pub struct Args {
    pub scenario: Scenario,
    /// Base URL of the sigil under test (loopback only in this project's tests). Several,
    /// comma-separated, for a cluster: the wallet scenarios spread over them, every login's
    /// phrase, verification and (ws-push) websocket on different nodes.
    #[arg(long, default_value = "http://127.0.0.1:16127")]
    pub url: String,
    /// Concurrent connections (workers).
    #[arg(short, long, default_value_t = 64)]
    pub connections: usize,
    /// How long to measure, e.g. 10s.
    #[arg(short, long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Stop after this many requests instead of --duration.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Fixed request rate per second (open model; latency counted from each request's
    /// intended start). Without it: closed loop, as fast as the connections allow.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Warm-up before measuring (not counted).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Sessions to create and rotate over (session-check, mixed).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Websockets to open (ws-push, ws-idle).
    #[arg(long, default_value_t = 1000)]
    pub sockets: usize,
    /// Scenario file (TOML) for `mixed`; see load-tests/scenarios/.
    #[arg(long)]
    pub scenario_file: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency histogram (HdrHistogram V2) here.
    #[arg(long)]
    pub hdr: Option<PathBuf>,
    /// Path for the `get` scenario.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// The server's `accounts.internal_secret`, to create accounts for password-login and
    /// token-check.
    #[arg(long, env = "SIGIL_LOAD_INTERNAL_SECRET", hide_env_values = true)]
    pub internal_secret: Option<String>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let report = match scenarios::run(&args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sigil-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json()).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("sigil-load: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.hdr {
        match report.hdr().and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string())) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("sigil-load: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
