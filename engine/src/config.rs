//! sigil's configuration: typed sections, a TOML file, and `SIGIL_<SECTION>__<KEY>` overrides.
//!
//! Every key has a default, so an empty file (or none) is a working configuration. Unknown
//! keys are errors, not warnings: a misspelt `limits.enabld = false` must not silently leave
//! rate limits on. `ops/sigil.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::store::Durability;

/// A duration written the human way in config: `15m`, `14d`, `500ms`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim())
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?} ({e}); write e.g. \"90s\", \"15m\", \"14d\"")))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// A rate limit written `COUNT/WINDOW`, e.g. `120/1m`: at most COUNT requests per WINDOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

impl RateLimit {
    pub const fn new(count: u32, per_secs: u64) -> Self {
        Self { count, per: Duration::from_secs(per_secs) }
    }

    /// The same window with `factor` times the count (for calls that are naturally frequent,
    /// such as polls, under the same setting).
    pub fn scaled(self, factor: u32) -> Self {
        Self { count: self.count.saturating_mul(factor), per: self.per }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (count, per) = s.split_once('/').ok_or_else(|| format!("bad rate limit {s:?}; write COUNT/WINDOW, e.g. \"120/1m\""))?;
        let count: u32 = count.trim().parse().map_err(|_| format!("bad count in rate limit {s:?}"))?;
        let per = humantime::parse_duration(per.trim()).map_err(|e| format!("bad window in rate limit {s:?} ({e})"))?;
        if count == 0 || per.is_zero() {
            return Err(format!("rate limit {s:?} allows nothing; use limits.enabled = false to turn limits off"));
        }
        Ok(Self { count, per })
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for RateLimit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}/{}", self.count, humantime::format_duration(self.per)))
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub flux: FluxConfig,
    pub accounts: AccountsConfig,
    pub tokens: TokensConfig,
    pub passwords: PasswordsConfig,
    pub webauthn: WebauthnConfig,
    pub oauth2: OAuth2Config,
    pub sso: SsoConfig,
    pub ui: UiConfig,
    pub sms: SmsConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on (FluxOS's API port by default).
    pub listen: SocketAddr,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` is believed. Empty: the peer is the client.
    pub trusted_proxies: Vec<String>,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: HumanDuration,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Open connections (websockets included) the node keeps at once, over all workers; past
    /// it new connections wait in the listen backlog. actix's own default is 25k per worker.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 16127)),
            data_dir: PathBuf::from("./sigil-data"),
            trusted_proxies: Vec::new(),
            workers: 0,
            shutdown_timeout: HumanDuration::secs(10),
            max_body_bytes: 256 * 1024,
            max_connections: 262_144,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Rocksdb,
    Redis,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    /// `backend = "redis"`: seed nodes of a Redis Cluster, or the one URL of a standalone Redis.
    pub redis_urls: Vec<String>,
    /// How many replicas must confirm (`WAIT`) a write before it is acknowledged. Unset: 1 if
    /// the Redis deployment has replicas, else 0.
    pub redis_wait_replicas: Option<u32>,
    /// The longest a Redis command (or its `WAIT`) may take before the request that needs it
    /// answers "unavailable".
    pub redis_timeout: HumanDuration,
    /// `fsync` (default): every acknowledged write survives kill -9 and power loss.
    /// `buffered`: survives kill -9 of sigil, not a machine crash.
    pub durability: Durability,
    /// RocksDB: the longest a data file keeps records that expired before it is rewritten
    /// without them (reads ignore an expired record at once; this only reclaims disk).
    pub reclaim_period: HumanDuration,
    /// Removed 2026-12-02 with the sweeper it paced; still accepted (and ignored, with a warning
    /// at start) so a config copied from an older example keeps loading.
    #[serde(skip_serializing)]
    pub sweep_interval: Option<HumanDuration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Rocksdb,
            redis_urls: Vec::new(),
            redis_wait_replicas: None,
            redis_timeout: HumanDuration::secs(1),
            durability: Durability::Fsync,
            reclaim_period: HumanDuration::secs(3600),
            sweep_interval: None,
        }
    }
}

/// FluxOS's production team ids (config/default.js).
pub const FLUX_TEAM_ZELIDS: [&str; 2] = ["1hjy4bCYBJr4mny4zCE85J94RXa8W6q37", "16iJqiVbHptCx87q6XQwNpKdgEZnFtKcyP"];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FluxConfig {
    /// The node owner's ZelID: the `admin` privilege.
    pub owner_zelid: Option<String>,
    /// ZelIDs with the `fluxteam` privilege.
    pub team_zelids: Vec<String>,
    pub phrase_ttl: HumanDuration,
    pub session_ttl: HumanDuration,
    /// FluxOS's stateless user-level fallback window; 0s = off (logout really ends access).
    pub stateless_user_window: HumanDuration,
    /// Accept `3…` and `bc1q…` addresses at login (FluxOS refuses them).
    pub accept_segwit: bool,
    /// Check signatures posted to `/id/providesign` (FluxOS does not).
    pub verify_provided_signatures: bool,
}

impl Default for FluxConfig {
    fn default() -> Self {
        Self {
            owner_zelid: None,
            team_zelids: FLUX_TEAM_ZELIDS.iter().map(|s| s.to_string()).collect(),
            phrase_ttl: HumanDuration::secs(15 * 60),
            session_ttl: HumanDuration::secs(14 * 24 * 3600),
            stateless_user_window: HumanDuration::secs(0),
            accept_segwit: true,
            verify_provided_signatures: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    pub cookie_name: String,
    pub sudo_cookie_name: String,
    pub cookie_secure: bool,
    /// Shared secret for `X-Internal-Secret` service calls and `/api/admin`; none = only
    /// admin-scoped tokens reach the admin API.
    pub internal_secret: Option<String>,
    /// Cookie Max-Age and absolute lifetime of a `/v1` session.
    pub session_ttl: HumanDuration,
    pub sudo_ttl: HumanDuration,
    pub mfa_ticket_ttl: HumanDuration,
    pub handoff_ttl: HumanDuration,
    /// Ask for a code when a known account logs in from a new IP (`/v1`).
    pub ip_authorization: bool,
    /// Origin for CSRF checks, OAuth2 issuer, links in messages.
    pub public_url: String,
    /// More origins allowed to send cookie-authenticated requests.
    pub allowed_origins: Vec<String>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            cookie_name: "sigil_session".into(),
            sudo_cookie_name: "sigil_sudo_mode".into(),
            cookie_secure: true,
            internal_secret: None,
            session_ttl: HumanDuration::secs(7 * 86400),
            sudo_ttl: HumanDuration::secs(15 * 60),
            mfa_ticket_ttl: HumanDuration::secs(5 * 60),
            handoff_ttl: HumanDuration::secs(5 * 60),
            ip_authorization: true,
            public_url: "http://127.0.0.1:16127".into(),
            allowed_origins: Vec::new(),
        }
    }
}

/// The token API (`/api/auth`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Absolute lifetime of a token.
    pub expiry: HumanDuration,
    /// Sliding idle window: a token unused for this long is dead.
    pub expiry_renew: HumanDuration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self { expiry: HumanDuration::secs(30 * 86400), expiry_renew: HumanDuration::secs(14 * 86400) }
    }
}

/// argon2id cost parameters (the PHC string records them with every hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's first recommendation for argon2id.
    fn default() -> Self {
        Self { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

/// OWASP's argon2id settings (memory KiB, iterations), all of equal strength; parameters at
/// or above one of them are accepted.
pub const OWASP_ARGON2ID: [(u32, u32); 5] = [(47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5)];

impl HashParams {
    pub fn meets_owasp(&self) -> bool {
        self.parallelism >= 1 && OWASP_ARGON2ID.iter().any(|(m, t)| self.memory_kib >= *m && self.iterations >= *t)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordsConfig {
    pub hash: HashParams,
    /// Threads that hash passwords; 0 = one per core.
    pub workers: usize,
    /// Password checks that may wait for a worker; beyond it logins answer "rate limited".
    pub queue: usize,
    /// Hash at the lowest CPU priority (SCHED_BATCH, nice 19): session checks and signature
    /// verification always go first, password logins take the CPU they leave.
    pub background: bool,
}

impl Default for PasswordsConfig {
    fn default() -> Self {
        Self { hash: HashParams::default(), workers: 0, queue: 256, background: true }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebauthnConfig {
    pub rp_id: String,
    pub rp_name: String,
    pub allowed_origins: Vec<String>,
}

impl Default for WebauthnConfig {
    fn default() -> Self {
        Self { rp_id: "localhost".into(), rp_name: "sigil".into(), allowed_origins: vec!["http://localhost:16127".into()] }
    }
}

/// The OAuth2 / OpenID Connect provider (spec C.2).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth2Config {
    /// Lifetime of an access token.
    pub access_ttl: HumanDuration,
    /// Lifetime of a refresh token (each use rotates it).
    pub refresh_ttl: HumanDuration,
    /// Lifetime of an authorization code (single use).
    pub code_ttl: HumanDuration,
}

impl Default for OAuth2Config {
    fn default() -> Self {
        Self { access_ttl: HumanDuration::secs(3600), refresh_ttl: HumanDuration::secs(30 * 86_400), code_ttl: HumanDuration::secs(60) }
    }
}

/// sigil's own login pages (`/login`, `/login/wallet`, `/account`, consent, handoff, new-location
/// approval): whether they are served, and the operator's branding.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the pages at all (the APIs work either way).
    pub enabled: bool,
    /// The product name in titles and headings.
    pub product_name: String,
    /// An SVG or PNG file shown as the logo (read once at start; served from sigil's own
    /// origin, so the pages load nothing from elsewhere). None = sigil's mark.
    pub logo: Option<PathBuf>,
    /// Colours as `#rgb` or `#rrggbb`: buttons and links, the page, the text.
    pub primary_color: String,
    pub background_color: String,
    pub text_color: String,
    /// Offer "sign in with a wallet" on `/login`.
    pub wallet_login: bool,
    /// A wallet that logs in through the pages for the first time gets an account of its own
    /// (username = its address); when off, only wallets linked before may log in.
    pub wallet_auto_create: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            product_name: "sigil".into(),
            logo: None,
            primary_color: "#2f55d4".into(),
            background_color: "#f5f6f8".into(),
            text_color: "#1b1e24".into(),
            wallet_login: true,
            wallet_auto_create: true,
        }
    }
}

/// Whether `s` is a CSS hex colour (`#rgb` or `#rrggbb`) — the only form the theme takes, so
/// nothing from the config can break out of the stylesheet.
pub fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Logging in through upstream OpenID Connect providers (spec C.2 "SSO").
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    /// `[[sso.providers]]`.
    pub providers: Vec<SsoProvider>,
    /// Where `/v1/auth/sso/start` may send the person back after the login (exact URLs).
    pub allowed_redirect_uris: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SsoProvider {
    /// The name clients pass to `/v1/auth/sso/start`.
    pub name: String,
    /// The upstream's issuer (its discovery document is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// For a confidential registration at the upstream (sent with HTTP Basic).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_sso_scopes")]
    pub scopes: Vec<String>,
    /// Create an account at the first login of an unknown upstream user.
    #[serde(default = "default_true")]
    pub auto_create: bool,
}

fn default_sso_scopes() -> Vec<String> {
    ["openid", "email", "profile"].iter().map(|s| s.to_string()).collect()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsSender {
    /// Codes go to the log and to `GET /api/admin/outbox`.
    #[default]
    Log,
    /// Codes are POSTed to `sms.webhook_url`.
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    pub sender: SmsSender,
    pub webhook_url: Option<String>,
    /// How long one webhook POST may take.
    pub webhook_timeout: HumanDuration,
    /// Further tries after a failed POST (with a doubling pause from 200 ms).
    pub webhook_retries: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self { sender: SmsSender::Log, webhook_url: None, webhook_timeout: HumanDuration::secs(5), webhook_retries: 2 }
    }
}

/// Per-client-IP request limits. Defaults are far above what one honest user sends.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Master switch: false turns every limit off (load tests, trusted networks).
    pub enabled: bool,
    /// `/id/loginphrase` and `/id/emergencyphrase`.
    pub flux_phrase: RateLimit,
    /// `/id/verifylogin`.
    pub flux_verifylogin: RateLimit,
    /// `/id/providesign`.
    pub flux_providesign: RateLimit,
    /// Password logins per client IP (`/v1/auth/login`, `/api/auth/login`).
    pub login_per_ip: RateLimit,
    /// Password logins per account name.
    pub login_per_account: RateLimit,
    /// Second-factor attempts per client IP.
    pub mfa_per_ip: RateLimit,
    /// Second-factor attempts per account.
    pub mfa_per_account: RateLimit,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            flux_phrase: RateLimit::new(120, 60),
            flux_verifylogin: RateLimit::new(60, 60),
            flux_providesign: RateLimit::new(60, 60),
            login_per_ip: RateLimit::new(10, 10),
            login_per_account: RateLimit::new(5, 15 * 60),
            mfa_per_ip: RateLimit::new(30, 60),
            mfa_per_account: RateLimit::new(20, 15 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `sigil=debug,actix_web=info`. `RUST_LOG` wins.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("bad config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("bad environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("bad configuration{source_desc}: {reason}")]
    Invalid { source_desc: String, reason: String },
}

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "SIGIL_";

impl Config {
    /// Reads `file` (if given), applies `SIGIL_<SECTION>__<KEY>` variables from `env`, and
    /// checks the result.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let source_desc = file.map(|p| format!(" in {}", p.display())).unwrap_or_default();
        let mut table = match file {
            None => toml::Table::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse { path: path.display().to_string(), reason: one_line(&e.to_string()) })?
            }
        };
        let mut env_vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        env_vars.sort();
        for (var, value) in env_vars {
            apply_env(&mut table, &var, &value)?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid { source_desc: source_desc.clone(), reason: one_line(&e.to_string()) })?;
        config.validate().map_err(|reason| ConfigError::Invalid { source_desc, reason })?;
        Ok(config)
    }

    /// Cross-field checks that types alone cannot express.
    fn validate(&self) -> Result<(), String> {
        if self.flux.phrase_ttl.is_zero() {
            return Err("flux.phrase_ttl must be longer than 0s".into());
        }
        if self.flux.session_ttl.is_zero() {
            return Err("flux.session_ttl must be longer than 0s".into());
        }
        if self.store.reclaim_period.0 < std::time::Duration::from_secs(60) {
            // RocksDB rewrites every file at least this often: seconds would mean rewriting the
            // whole store continuously.
            return Err("store.reclaim_period must be at least 1m".into());
        }
        if self.store.backend == StoreBackend::Redis && self.store.redis_urls.is_empty() {
            return Err("store.backend = \"redis\" needs store.redis_urls".into());
        }
        if self.sms.sender == SmsSender::Webhook && self.sms.webhook_url.is_none() {
            return Err("sms.sender = \"webhook\" needs sms.webhook_url".into());
        }
        if !self.passwords.hash.meets_owasp() {
            return Err(format!(
                "passwords.hash is weaker than OWASP's argon2id minimum (memory_kib/iterations of one of {OWASP_ARGON2ID:?}, parallelism >= 1)"
            ));
        }
        if self.passwords.hash.memory_kib > 4 * 1024 * 1024 || self.passwords.hash.iterations > 64 || self.passwords.hash.parallelism > 64 {
            return Err("passwords.hash is absurdly expensive (memory_kib <= 4 GiB, iterations <= 64, parallelism <= 64)".into());
        }
        if self.server.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        if self.passwords.queue == 0 {
            return Err("passwords.queue must be at least 1".into());
        }
        if self.tokens.expiry.is_zero() || self.tokens.expiry_renew.is_zero() {
            return Err("tokens.expiry and tokens.expiry_renew must be longer than 0s".into());
        }
        for (key, colour) in [("primary_color", &self.ui.primary_color), ("background_color", &self.ui.background_color), ("text_color", &self.ui.text_color)] {
            if !is_hex_color(colour) {
                return Err(format!("ui.{key} must be a colour like \"#2f55d4\" or \"#25d\""));
            }
        }
        if self.ui.product_name.trim().is_empty() || self.ui.product_name.len() > 64 {
            return Err("ui.product_name must be 1 to 64 bytes".into());
        }
        for proxy in &self.server.trusted_proxies {
            parse_cidr(proxy).map_err(|e| format!("server.trusted_proxies: {e}"))?;
        }
        Ok(())
    }
}

/// Parses `10.0.0.0/8`, `::1` or `192.168.1.7` into an address and prefix length.
pub fn parse_cidr(s: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.trim().parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => b.trim().parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
    };
    Ok((ip, bits))
}

/// Sets `section.key` from `SIGIL_SECTION__KEY=value`. The value is read as a TOML value when
/// it is one (`true`, `42`, `["a","b"]`, `"quoted"`), otherwise as a plain string.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(path) = var.strip_prefix(ENV_PREFIX) else { return Ok(()) };
    let Some((section, key)) = path.split_once("__") else {
        // SIGIL_CONFIG and friends are flags, not keys.
        return Ok(());
    };
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    if section.is_empty() || key.is_empty() || key.contains("__") {
        return Err(ConfigError::Env { var: var.into(), reason: "expected SIGIL_<SECTION>__<KEY>".into() });
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else {
        return Err(ConfigError::Env { var: var.into(), reason: format!("[{section}] is not a section") });
    };
    section_table.insert(key, parsed);
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:16127");
        assert_eq!(c.server.data_dir, PathBuf::from("./sigil-data"));
        assert_eq!(c.flux.phrase_ttl.0, Duration::from_secs(900));
        assert_eq!(c.flux.session_ttl.0, Duration::from_secs(14 * 86400));
        assert!(c.flux.stateless_user_window.is_zero());
        assert_eq!(c.flux.team_zelids, FLUX_TEAM_ZELIDS);
        assert_eq!(c.accounts.cookie_name, "sigil_session");
        assert_eq!(c.accounts.sudo_cookie_name, "sigil_sudo_mode");
        assert!(c.accounts.cookie_secure);
        assert!(c.limits.enabled);
        assert_eq!(c.store.durability, Durability::Fsync);
        assert_eq!(c.sms.sender, SmsSender::Log);
    }

    #[test]
    fn file_then_env_overrides() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[server]\nlisten = \"0.0.0.0:9000\"\n[flux]\nphrase_ttl = \"5m\"\nsession_ttl = \"2d\"").unwrap();
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("SIGIL_SERVER__LISTEN", "127.0.0.1:9001"),
                ("SIGIL_LIMITS__ENABLED", "false"),
                ("SIGIL_FLUX__TEAM_ZELIDS", r#"["1abc"]"#),
                ("SIGIL_FLUX__OWNER_ZELID", "1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC"),
                ("SIGIL_LIMITS__FLUX_VERIFYLOGIN", "5/10s"),
                ("SIGIL_CONFIG", "ignored: not a key"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(c.flux.phrase_ttl.0, Duration::from_secs(300));
        assert_eq!(c.flux.session_ttl.0, Duration::from_secs(2 * 86400));
        assert!(!c.limits.enabled);
        assert_eq!(c.flux.team_zelids, vec!["1abc".to_string()]);
        assert_eq!(c.flux.owner_zelid.as_deref(), Some("1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC"));
        assert_eq!(c.limits.flux_verifylogin, RateLimit { count: 5, per: Duration::from_secs(10) });
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |file: Option<&Path>, e: &[(&str, &str)]| Config::load(file, env(e)).unwrap_err().to_string();

        let msg = err(None, &[("SIGIL_SERVER__LISTN", "1.2.3.4:5")]);
        assert!(msg.contains("unknown field `listn`"), "{msg}");
        let msg = err(None, &[("SIGIL_FLUX__PHRASE_TTL", "fifteen minutes")]);
        assert!(msg.contains("bad duration \"fifteen minutes\""), "{msg}");
        let msg = err(None, &[("SIGIL_SERVER__LISTEN", "localhost")]);
        assert!(msg.contains("listen") || msg.contains("socket address"), "{msg}");
        let msg = err(Some(Path::new("/nonexistent/sigil.toml")), &[]);
        assert!(msg.starts_with("cannot read config file /nonexistent/sigil.toml"), "{msg}");
        let msg = err(None, &[("SIGIL_LIMITS__FLUX_PHRASE", "0/1m")]);
        assert!(msg.contains("allows nothing"), "{msg}");
        let msg = err(None, &[("SIGIL_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/33"]"#)]);
        assert!(msg.contains("bad prefix length"), "{msg}");
        let msg = err(None, &[("SIGIL_STORE__RECLAIM_PERIOD", "30s")]);
        assert!(msg.contains("store.reclaim_period must be at least 1m"), "{msg}");
        let old = Config::load(None, env(&[("SIGIL_STORE__SWEEP_INTERVAL", "30s")])).unwrap();
        assert_eq!(old.store.sweep_interval, Some(HumanDuration::secs(30)), "an old config still loads");

        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[server\nlisten = 1").unwrap();
        let msg = err(Some(f.path()), &[]);
        assert!(msg.starts_with("bad config file"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");

        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "[sever]\nlisten = \"1.2.3.4:5\"").unwrap();
        let msg = err(Some(f.path()), &[]);
        assert!(msg.contains("unknown field `sever`"), "{msg}");
    }

    #[test]
    fn example_file_loads_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/sigil.example.toml");
        let loaded = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(loaded.server.listen, Config::default().server.listen);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut defaults = Config::default();
        // Optional keys are absent from a serialised default; give them values to list them.
        defaults.flux.owner_zelid = Some(String::new());
        defaults.accounts.internal_secret = Some(String::new());
        defaults.store.redis_urls = vec![String::new()];
        defaults.store.redis_wait_replicas = Some(1);
        defaults.sms.webhook_url = Some(String::new());
        let toml::Value::Table(sections) = toml::Value::try_from(&defaults).unwrap() else { panic!() };
        for (section, keys) in sections {
            assert!(text.contains(&format!("[{section}]")), "[{section}] missing");
            let toml::Value::Table(keys) = keys else { panic!() };
            for key in keys.keys() {
                let documented = text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}="))
                });
                assert!(documented, "{section}.{key} is not in ops/sigil.example.toml");
            }
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.0/8").unwrap().1, 8);
        assert_eq!(parse_cidr("::1").unwrap().1, 128);
        assert!(parse_cidr("10.0.0.0/x").is_err());
        assert!(parse_cidr("example.com").is_err());
    }
}
