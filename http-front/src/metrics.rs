//! Prometheus metrics of the front: per-route request counters and latency histograms.
//!
//! Routes are labelled by their pattern (`/ws/id/{phrase}`), never the raw path, so that a
//! client cannot grow the label set; requests that match no route share `unmatched`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use prometheus::{Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

/// Latency buckets from 50 µs to 5 s: the interesting range of a session engine.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Set from the store at each scrape.
    pub active_sessions: prometheus::IntGauge,
}

impl HttpMetrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("sigil_http_requests_total", "HTTP requests answered, by route pattern, method and status"),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("sigil_http_request_duration_seconds", "Time from request to response head, by route")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let active_sessions = prometheus::IntGauge::new(
            "sigil_flux_active_sessions",
            "Sessions of every kind in the store (RocksDB's estimate at scrape time: counts ended and expired sessions until compaction reclaims them)",
        )?;
        registry.register(Box::new(active_sessions.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Self { registry, requests, latency, active_sessions })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, method, status_label(status)]).inc();
        self.latency.with_label_values(&[route, method]).observe(seconds);
    }
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        101 => "101",
        204 => "204",
        302 => "302",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: times every request and counts it under its route pattern.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &result {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        metrics.observe(&route, method, status, started.elapsed().as_secs_f64());
    }
    result
}

/// Latency and failures of every store operation, by backend (`rocksdb`, `redis`) and
/// operation: `sigil_store_operation_seconds`, `sigil_store_errors_total`.
pub struct StoreMetrics {
    /// One pre-resolved histogram and counter per operation (no label lookup per call: `get`
    /// runs on every authenticated request).
    ops: Vec<(&'static str, prometheus::Histogram, prometheus::IntCounter)>,
}

const STORE_OPS: [&str; 10] = ["get", "write", "write_each", "take", "update", "insert_new", "scan", "persist", "ping", "other"];

impl StoreMetrics {
    pub fn new(registry: &Registry, backend: &str) -> Result<Self, prometheus::Error> {
        let latency = HistogramVec::new(
            HistogramOpts::new("sigil_store_operation_seconds", "Store operations by backend and kind, with their latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["backend", "op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new("sigil_store_errors_total", "Store operations that failed (Redis unreachable, timeouts, …)"),
            &["backend", "op"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        let ops = STORE_OPS
            .iter()
            .map(|op| (*op, latency.with_label_values(&[backend, op]), errors.with_label_values(&[backend, op])))
            .collect();
        Ok(Self { ops })
    }
}

impl sigil_engine::store::StoreObserver for StoreMetrics {
    fn observe(&self, op: &'static str, seconds: f64, ok: bool) {
        let found = self.ops.iter().find(|(name, ..)| *name == op).or_else(|| self.ops.last());
        if let Some((_, latency, errors)) = found {
            latency.observe(seconds);
            if !ok {
                errors.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = HttpMetrics::new(Registry::new()).unwrap();
        m.observe("/healthz", "GET", 200, 0.0001);
        let text = m.render().unwrap();
        assert!(text.contains(r#"sigil_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
        assert!(text.contains("sigil_http_request_duration_seconds_bucket"), "{text}");
    }
}
