//! Metrics owned by the actors, registered into the server's registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ActorMetrics {
    pub verifier_batch_size: Histogram,
    pub verifier_queue_depth: IntGauge,
    pub verifier_rejected: prometheus::IntCounter,
    pub registry_group_size: Histogram,
    pub logins: IntCounterVec,
    pub websockets: IntGauge,
    pub subscriptions: IntGauge,
    pub push_latency: Histogram,
    pub sessions_opened: prometheus::IntCounter,
    pub sessions_ended: prometheus::IntCounter,
    pub account_sessions_opened: prometheus::IntCounter,
}

impl ActorMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            verifier_batch_size: Histogram::with_opts(
                HistogramOpts::new("sigil_verifier_batch_size", "Signature checks verified together in one rayon batch")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            )?,
            verifier_queue_depth: IntGauge::new(
                "sigil_verifier_queue_depth",
                "Signature checks waiting for or under verification",
            )?,
            verifier_rejected: prometheus::IntCounter::new(
                "sigil_verifier_rejected_total",
                "Signature checks refused because the verifier queue was full",
            )?,
            registry_group_size: Histogram::with_opts(
                HistogramOpts::new("sigil_registry_group_size", "Registry writes (wallet logins, OAuth2 refresh rotations) made durable together by one fsync")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0]),
            )?,
            logins: IntCounterVec::new(
                Opts::new("sigil_flux_logins_total", "Wallet login attempts by outcome and address kind"),
                &["outcome", "kind"],
            )?,
            websockets: IntGauge::new("sigil_websockets", "Open websocket connections")?,
            subscriptions: IntGauge::new("sigil_notifier_subscriptions", "Websocket subscriptions waiting for an event")?,
            push_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "sigil_push_latency_seconds",
                    "From a login's signature verified to its frame handed to the websocket",
                )
                .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25]),
            )?,
            sessions_opened: prometheus::IntCounter::new("sigil_flux_sessions_opened_total", "Wallet sessions opened")?,
            sessions_ended: prometheus::IntCounter::new("sigil_flux_sessions_ended_total", "Sessions of any kind ended by logout or revocation")?,
            account_sessions_opened: prometheus::IntCounter::new(
                "sigil_account_sessions_opened_total",
                "Account sessions (tokens, cookie sessions) opened",
            )?,
        };
        registry.register(Box::new(m.verifier_batch_size.clone()))?;
        registry.register(Box::new(m.verifier_queue_depth.clone()))?;
        registry.register(Box::new(m.verifier_rejected.clone()))?;
        registry.register(Box::new(m.registry_group_size.clone()))?;
        registry.register(Box::new(m.logins.clone()))?;
        registry.register(Box::new(m.websockets.clone()))?;
        registry.register(Box::new(m.subscriptions.clone()))?;
        registry.register(Box::new(m.push_latency.clone()))?;
        registry.register(Box::new(m.sessions_opened.clone()))?;
        registry.register(Box::new(m.sessions_ended.clone()))?;
        registry.register(Box::new(m.account_sessions_opened.clone()))?;
        Ok(m)
    }
}
