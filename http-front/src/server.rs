//! Assembling and running the server: store, metrics, routes, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_http::HttpService;
use actix_service::{Service as _, ServiceFactory as _, fn_factory, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{App, web};
use prometheus::Registry;
use sigil_engine::config::{Config, StoreBackend};
use sigil_engine::store::{Observed, Store};

use crate::backend::Backend;

use sigil_actors::metrics::ActorMetrics;
use sigil_actors::notifier::Notifier;
use sigil_actors::relay::{Relay, RelayMetrics};
use sigil_actors::phrases::PhraseIssuer;
use sigil_actors::sessions::{SessionReader, SessionRegistry};
use sigil_actors::verifier::{PoolConfig, VerifierPool};

use sigil_actors::accounts::AccountDirectory;
use sigil_actors::outbox::Sender;
use sigil_actors::passwords::{PasswordMetrics, PasswordPool, PoolSettings};
use sigil_engine::account::password::Hasher;

use crate::accounts::{AccountMetrics, AccountsState};
use crate::error::FrontError;
use crate::flux::FluxState;
use crate::limits::Limits;
use crate::metrics::{self, HttpMetrics};
use crate::{admin, flux, routes, tokens, v1};

/// Threads of the phrase issuer: each writes the phrases queued while it was busy together,
/// so two keep one batch filling while another is written (or, in cluster mode, in flight).
const PHRASE_ISSUER_THREADS: usize = 2;

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
}

/// The actors every dialect shares: one notifier, one session registry.
struct Shared {
    notifier: Notifier,
    registry: SessionRegistry,
}

fn start_shared(store: &Arc<dyn Store>, metrics: &ActorMetrics) -> Result<Shared, FrontError> {
    // Not an actor: the thread that commits an event hands it to the waiting sockets itself, so
    // a push never queues behind mailbox traffic (docs/architecture.md "Notifier").
    let notifier_metrics = Some(metrics.clone());
    let notifier = Notifier::new(notifier_metrics);
    let registry = SessionRegistry::start(store.clone(), notifier.clone(), Some(metrics.clone()))
        .map_err(|e| FrontError::Startup(format!("cannot start the session registry: {e}")))?;
    Ok(Shared { notifier, registry })
}

/// Starts the Flux actors; they live as long as the actix system.
fn start_flux(
    config: &Config,
    store: &Arc<dyn Store>,
    shared: &Shared,
    metrics: ActorMetrics,
    limits: Arc<Limits>,
) -> Result<FluxState, FrontError> {
    let flux = config.flux.clone();
    let policy = if flux.accept_segwit { sigil_engine::verify::Policy::SIGIL } else { sigil_engine::verify::Policy::FLUXOS };
    let verifier = VerifierPool::new(PoolConfig { policy, ..PoolConfig::default() }, Some(metrics.clone()));
    let issuer = PhraseIssuer::start(store.clone(), flux.phrase_ttl.as_millis(), PHRASE_ISSUER_THREADS)
        .map_err(|e| FrontError::Startup(format!("cannot start the phrase issuer: {e}")))?;
    let (notifier, registry) = (shared.notifier.clone(), shared.registry.clone());
    let reader = SessionReader::new(store.clone(), flux.phrase_ttl.as_millis());
    Ok(FluxState {
        config: flux,
        issuer,
        registry,
        verifier,
        notifier,
        reader,
        metrics,
        limits,
        verified: Default::default(),
        gates: Default::default(),
        max_body_bytes: config.server.max_body_bytes,
        consumed_grace: match config.store.backend {
            StoreBackend::Rocksdb => Duration::from_secs(1),
            // A take, then the session's write, each a command that may wait `redis_timeout`.
            StoreBackend::Redis => Duration::from_secs(1).max(config.store.redis_timeout.0 * 2),
        },
    })
}

/// Starts the account actors: the password pool (its decoy hash costs one hash now), the
/// account directory and the message sender.
fn start_accounts(
    config: &Arc<Config>,
    store: &Arc<dyn Store>,
    shared: &Shared,
    registry: &Registry,
    limits: Arc<Limits>,
    actor_metrics: ActorMetrics,
) -> Result<AccountsState, FrontError> {
    let startup = |what: &str, e: String| FrontError::Startup(format!("cannot start {what}: {e}"));
    let hasher = Hasher::new(config.passwords.hash).map_err(|e| startup("the password hasher", e.to_string()))?;
    let pool_metrics = PasswordMetrics::new(registry).map_err(|e| startup("the password pool", e.to_string()))?;
    let settings = PoolSettings {
        workers: config.passwords.workers,
        queue: config.passwords.queue,
        background: config.passwords.background,
    };
    let passwords = PasswordPool::start(hasher, settings, Some(pool_metrics))
        .map_err(|e| startup("the password pool", e.to_string()))?;
    let sender = Sender::new(config.sms.clone(), Some(registry)).map_err(|e| startup("the message sender", e))?;
    let metrics = AccountMetrics::new(registry).map_err(|e| startup("the account metrics", e.to_string()))?;
    let passkeys = Arc::new(sigil_engine::passkeys::RelyingParty::new(&config.webauthn).map_err(|e| startup("passkeys", e))?);
    let oauth_keys = Arc::new(
        sigil_engine::oauth2::keys::SigningKey::load_or_create(store.as_ref()).map_err(|e| startup("the OpenID Connect signing key", e.to_string()))?,
    );
    Ok(AccountsState {
        config: config.clone(),
        store: store.clone(),
        registry: shared.registry.clone(),
        notifier: shared.notifier.clone(),
        actor_metrics,
        directory: AccountDirectory::start(store.clone()),
        passwords,
        sender,
        limits,
        metrics,
        passkeys,
        oauth_keys,
    })
}

/// A bound, not yet running sigil.
pub struct Sigil {
    server: Server,
    addr: SocketAddr,
    backend: Backend,
}

impl Sigil {
    /// Opens the store and binds the listener; nothing is served until [`Sigil::run`].
    pub fn bind(config: Config) -> Result<Self, FrontError> {
        let backend = Backend::open(&config)?;
        let metrics = HttpMetrics::new(Registry::new()).map_err(|e| FrontError::Startup(e.to_string()))?;
        let store_metrics = metrics::StoreMetrics::new(metrics.registry(), backend.name())
            .map_err(|e| FrontError::Startup(e.to_string()))?;
        let dyn_store: Arc<dyn Store> = Arc::new(Observed::new(backend.store(), Arc::new(store_metrics)));

        let actor_metrics = ActorMetrics::new(metrics.registry()).map_err(|e| FrontError::Startup(e.to_string()))?;
        let limits = Limits::new(&config.limits, &config.server.trusted_proxies, metrics.registry()).map_err(FrontError::Startup)?;
        let shrinking = limits.clone();
        actix_web::rt::spawn(async move {
            let mut every = actix_web::rt::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                shrinking.shrink();
            }
        });
        let shared = match start_shared(&dyn_store, &actor_metrics) {
            Ok(shared) => shared,
            Err(e) => {
                let _ = backend.close();
                return Err(e);
            }
        };
        if let Some(redis) = backend.redis() {
            let relay_metrics =
                RelayMetrics::new(metrics.registry()).map_err(|e| FrontError::Startup(e.to_string()))?;
            let relay = Relay::start(
                &config.store.redis_urls,
                redis.is_cluster(),
                config.store.redis_timeout.0,
                shared.notifier.clone(),
                Some(relay_metrics),
            )
            .map_err(|e| FrontError::Startup(format!("cannot start the cross-node push relay: {e}")))?;
            shared.notifier.attach_relay(relay);
        }
        let flux_state = match start_flux(&config, &dyn_store, &shared, actor_metrics.clone(), limits.clone()) {
            Ok(flux) => flux,
            Err(e) => {
                let _ = backend.close();
                return Err(e);
            }
        };
        let config = Arc::new(config);
        let accounts = match start_accounts(&config, &dyn_store, &shared, metrics.registry(), limits, actor_metrics) {
            Ok(accounts) => accounts,
            Err(e) => {
                let _ = backend.close();
                return Err(e);
            }
        };
        let ui = match crate::ui::Ui::new(&config) {
            Ok(ui) => web::Data::new(ui),
            Err(e) => {
                let _ = backend.close();
                return Err(FrontError::Startup(e));
            }
        };
        let ui_enabled = config.ui.enabled;
        // On Redis a store call that is not async holds its worker for a network round trip,
        // so more workers keep more requests in flight: 4 per core measured best (16.1k
        // authenticated req/s against 8.6k with one per core; docs/benchmarks.md).
        let redis_workers = if backend.redis().is_some() {
            4 * std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            0
        };
        let state = web::Data::new(AppState { config: config.clone(), store: dyn_store });
        let metrics_data = web::Data::new(metrics);
        let flux_data = web::Data::new(flux_state);
        let accounts_data = web::Data::new(accounts);
        let max_body = config.server.max_body_bytes;

        let ws_state = flux_data.clone();
        let app = move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics_data.clone())
                .app_data(flux_data.clone())
                .app_data(accounts_data.clone())
                .app_data(ui.clone())
                .app_data(web::PayloadConfig::new(max_body))
                .wrap(from_fn(metrics::track))
                .configure(routes::health::configure)
                // Before the admin scope, which answers every other `/api/admin` path.
                .configure(flux::routes::configure)
                .configure(tokens::routes::configure)
                .configure(crate::oauth2::configure_root)
                .configure(v1::routes::configure)
                .configure(admin::configure)
                // Reached only by a websocket asked for on a reused connection (see
                // `flux::ws::is_flux_socket`); after the hot request paths, as a pattern with a
                // parameter costs a regex match.
                .configure(flux::ws::configure)
                .configure(|cfg| {
                    if ui_enabled {
                        crate::ui::configure(cfg);
                    }
                })
                .default_service(web::to(routes::not_found))
        };
        let workers = if config.server.workers > 0 {
            config.server.workers
        } else if redis_workers > 0 {
            redis_workers
        } else {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        };
        let listen = config.server.listen;
        let listener = match listener(listen) {
            Ok(l) => l,
            Err(e) => {
                // The registry's committer and syncer threads still hold the store: close it, so
                // RocksDB's background threads are stopped before the process exits (else they
                // may run into its teardown and print "pthread lock: Invalid argument").
                let _ = backend.close();
                return Err(FrontError::Bind { addr: listen, reason: e.to_string() });
            }
        };
        let addr = listener.local_addr().unwrap_or(listen);
        let builder = actix_server::Server::build()
            .workers(workers)
            // actix counts connections per worker; the key is per node.
            .max_concurrent_connections(config.server.max_connections.div_ceil(workers))
            .shutdown_timeout(config.server.shutdown_timeout.0.as_secs().max(1));
        // Fires when a graceful stop begins (SIGTERM/SIGINT or the handle): idle keep-alive
        // connections and waiting websockets then close at once instead of holding the stop
        // for its whole timeout (what `HttpServer` does for its connections).
        let stopping = builder.graceful_shutdown_signal();
        // Every accepted connection is peeked at: a Flux websocket (`GET /ws/…`) is served
        // beside actix with tungstenite and small buffers (an idle one costs a fifth of what it
        // costs through actix-web; docs/benchmarks.md), anything else goes to actix-web's App
        // through actix-http, as `HttpServer` would run it.
        let serve = move || {
            let http_stopping = stopping.clone();
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = http_stopping.clone();
                    async move { stopping.notified().await }
                })
                .keep_alive(Duration::from_secs(75))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(2))
                .local_addr(addr)
                // (sigil reads no AppConfig: its host and address are only actix's fallbacks
                // for a request without a Host header.)
                .finish(map_config(app(), |()| AppConfig::default()))
                .tcp();
            let (ws_state, stopping) = (ws_state.clone(), stopping.clone());
            fn_factory(move || {
                let (http, ws_state, stopping) = (http.new_service(()), ws_state.clone(), stopping.clone());
                async move {
                    let http = std::rc::Rc::new(http.await?);
                    Ok::<_, ()>(fn_service(move |stream: actix_web::rt::net::TcpStream| {
                        let (http, ws_state, stopping) = (http.clone(), ws_state.clone(), stopping.clone());
                        async move {
                            if flux::ws::is_flux_socket(&stream, Duration::from_secs(5)).await {
                                // A stop closes the socket (its client reconnects elsewhere).
                                tokio::select! {
                                    () = flux::ws::accept(stream, ws_state) => {}
                                    () = stopping.notified() => {}
                                }
                                return Ok(());
                            }
                            http.call(stream).await
                        }
                    }))
                }
            })
        };
        let server = match builder.listen("sigil", listener, serve) {
            Ok(b) => b.run(),
            Err(e) => {
                let _ = backend.close();
                return Err(FrontError::Bind { addr: listen, reason: e.to_string() });
            }
        };
        Ok(Self { server, addr, backend })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops the server gracefully (`handle.stop(true)`).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM or [`ServerHandle::stop`], lets in-flight requests finish,
    /// then closes the store cleanly.
    pub async fn run(self) -> Result<(), FrontError> {
        let Self { server, addr, backend } = self;
        tracing::info!(%addr, "sigil listening on http://{addr}");
        let served = server.await;
        tracing::info!("shutting down: requests drained, closing the store");
        // Actors may still hold the store; close it for all of them before the process ends.
        let flushed = backend.close();
        served.map_err(|e| FrontError::Runtime(e.to_string()))?;
        flushed?;
        tracing::info!("sigil stopped cleanly");
        Ok(())
    }
}

/// The listening socket, with the backlog actix-web's `HttpServer` uses (Linux caps it at
/// `net.core.somaxconn`).
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
