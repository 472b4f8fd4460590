//! What the account dialects' handlers reach (`/api/auth`, `/api/admin`, and `/v1` next): the
//! actors, the store for lookups, the settings, and the store-backed brute-force limits.

use std::net::IpAddr;
use std::sync::Arc;

use actix::Addr;
use actix_web::HttpRequest;
use prometheus::{IntCounterVec, Opts, Registry};
use sigil_actors::accounts::AccountDirectory;
use sigil_actors::outbox::Sender;
use sigil_actors::passwords::PasswordPool;
use sigil_actors::sessions::SessionRegistry;
use sigil_engine::config::{Config, RateLimit};
use sigil_engine::store::{Millis, Store, StoreError, now_ms};

use crate::limits::Limits;

pub struct AccountsState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub registry: SessionRegistry,
    /// For `/v1` websockets (new-location approval).
    pub notifier: sigil_actors::notifier::Notifier,
    /// The websocket gauge and push latency, shared with the Flux sockets.
    pub actor_metrics: sigil_actors::metrics::ActorMetrics,
    pub directory: Addr<AccountDirectory>,
    pub passwords: PasswordPool,
    pub sender: Sender,
    pub limits: Arc<Limits>,
    pub metrics: AccountMetrics,
    /// The WebAuthn relying party (`webauthn.*`), for the passkey ceremonies.
    pub passkeys: Arc<sigil_engine::passkeys::RelyingParty>,
    /// The OpenID Connect signing key.
    pub oauth_keys: Arc<sigil_engine::oauth2::keys::SigningKey>,
}

/// Outcomes of the account dialects, for Prometheus.
#[derive(Clone)]
pub struct AccountMetrics {
    /// `sigil_account_logins_total{dialect, method, outcome}`.
    pub logins: IntCounterVec,
    /// `sigil_second_factor_total{dialect, method, outcome}`.
    pub second_factor: IntCounterVec,
    /// `sigil_oauth2_grants_total{grant_type, outcome}`.
    pub oauth_grants: IntCounterVec,
}

impl AccountMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let logins = IntCounterVec::new(
            Opts::new("sigil_account_logins_total", "Account login attempts by dialect, method and outcome"),
            &["dialect", "method", "outcome"],
        )?;
        let second_factor = IntCounterVec::new(
            Opts::new("sigil_second_factor_total", "Second-factor attempts by dialect, method and outcome"),
            &["dialect", "method", "outcome"],
        )?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(second_factor.clone()))?;
        let oauth_grants = IntCounterVec::new(
            Opts::new("sigil_oauth2_grants_total", "OAuth2 token-endpoint grants by grant type and outcome (success or the RFC 6749 error)"),
            &["grant_type", "outcome"],
        )?;
        registry.register(Box::new(oauth_grants.clone()))?;
        Ok(Self { logins, second_factor, oauth_grants })
    }
}

impl AccountsState {
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.limits.client_ip(req)
    }

    /// The client's address as text ("" if unknown), for records and counter keys.
    pub fn client_ip_text(&self, req: &HttpRequest) -> String {
        self.client_ip(req).map(|i| i.to_string()).unwrap_or_default()
    }

    /// Who is asking, as a new session records it: the client's address and User-Agent.
    pub fn origin(&self, req: &HttpRequest) -> sigil_engine::session::Origin {
        let user_agent = req.headers().get(actix_web::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
        sigil_engine::session::Origin { ip: self.client_ip_text(req), user_agent: user_agent.to_string() }
    }

    /// [`AccountsState::hit`] on the counter `{prefix}:{client address}`.
    pub fn hit_per_ip(&self, label: &str, prefix: &str, req: &HttpRequest, limit: RateLimit) -> Result<(), Millis> {
        self.hit(label, &format!("{prefix}:{}", self.client_ip_text(req)), limit)
    }

    /// Counts one hit of `key` under `limit` in the store; `Err(wait_ms)` when over it.
    /// Off when `limits.enabled = false`. A store failure lets the request through (and is
    /// logged): the password and code checks behind the limit still stand.
    pub fn hit(&self, label: &str, key: &str, limit: RateLimit) -> Result<(), Millis> {
        if !self.limits.enabled() {
            return Ok(());
        }
        self.verdict(label, sigil_engine::limit::hit(self.store.as_ref(), key, limit, now_ms()))
    }

    /// `Err(wait_ms)` when the failure counter `key` is full, without counting anything.
    pub fn peek(&self, label: &str, key: &str, limit: RateLimit) -> Result<(), Millis> {
        if !self.limits.enabled() {
            return Ok(());
        }
        self.verdict(label, sigil_engine::limit::peek(self.store.as_ref(), key, limit, now_ms()))
    }

    fn verdict(&self, label: &str, counted: Result<Result<(), Millis>, StoreError>) -> Result<(), Millis> {
        match counted {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => {
                self.limits.count_rejection(label);
                Err(wait)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit counter unavailable");
                Ok(())
            }
        }
    }

    /// Counts a failure on the counter `key` (checked with [`AccountsState::peek`]).
    pub fn failed(&self, key: &str, limit: RateLimit) {
        if self.limits.enabled()
            && let Err(e) = sigil_engine::limit::hit(self.store.as_ref(), key, limit, now_ms())
        {
            tracing::warn!(error = %e, "rate-limit counter unavailable");
        }
    }
}

/// Stores a hash at the current parameters after a login with an older one; the login does
/// not wait for it (`Rehash` replaces the hash only if it is still the one that was checked).
pub fn rehash_in_background(state: &actix_web::web::Data<AccountsState>, account: &sigil_engine::account::Account, password: String) {
    let state = state.clone();
    let (guid, old_phc) = (account.guid.clone(), account.password.clone());
    actix_web::rt::spawn(async move {
        let rehash = |new_phc| sigil_actors::accounts::Rehash { guid, old_phc, new_phc };
        let done = match state.passwords.hash(password).await {
            Ok(new_phc) => match state.directory.send(rehash(new_phc)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "re-hashing a password at the new parameters failed; the next login retries");
        }
    });
}

/// Why the password step of a login refused.
#[derive(Debug)]
pub enum PasswordRefusal {
    /// A login limit is full; retry after this many milliseconds.
    RateLimited(Millis),
    /// Unknown login or wrong password (the same, after the same work).
    Invalid,
    /// The password pool or the store could not answer.
    Unavailable(String),
}

/// The password step every dialect's login shares: the per-IP and per-name limits (the same
/// counters for every dialect: one account, one set of limits), the lookup by username or
/// email, argon2id on the password pool (against a decoy for unknown names), failure counting,
/// and the background re-hash. Counts outcomes in `sigil_account_logins_total{dialect}`.
///
/// Failures per name: a full window refuses before any hashing; only wrong passwords count,
/// so parallel logins of an honest script never meet it. Concurrent guesses can overrun the
/// window by the logins in flight, which the per-IP limit bounds.
pub async fn check_password(
    state: &actix_web::web::Data<AccountsState>,
    dialect: &str,
    ip: &str,
    login: &str,
    password: String,
) -> Result<sigil_engine::account::Account, PasswordRefusal> {
    use sigil_engine::account::password::Verdict;
    let outcome = |o: &str| state.metrics.logins.with_label_values(&[dialect, "password", o]).inc();
    let limits = &state.config.limits;
    let limited = |wait| {
        outcome("rate_limited");
        PasswordRefusal::RateLimited(wait)
    };
    state.hit("login_per_ip", &format!("login-ip:{ip}"), limits.login_per_ip).map_err(limited)?;
    let fail_key = format!("login-fail:{}", login.to_lowercase());
    state.peek("login_per_account", &fail_key, limits.login_per_account).map_err(limited)?;
    let found = sigil_engine::account::find(state.store.as_ref(), login).map_err(|e| PasswordRefusal::Unavailable(e.to_string()))?;
    let verdict = state.passwords.verify(password.clone(), found.as_ref().map(|a| a.password.clone())).await;
    match (found, verdict) {
        (Some(account), Ok(Verdict::Valid { rehash })) => {
            if rehash {
                rehash_in_background(state, &account, password);
            }
            Ok(account)
        }
        (_, Err(sigil_actors::ActorError::Overloaded(_))) => {
            outcome("rate_limited");
            Err(PasswordRefusal::RateLimited(1_000))
        }
        (_, Err(e)) => {
            outcome("unavailable");
            Err(PasswordRefusal::Unavailable(e.to_string()))
        }
        _ => {
            outcome("invalid");
            state.failed(&fail_key, limits.login_per_account);
            Err(PasswordRefusal::Invalid)
        }
    }
}
