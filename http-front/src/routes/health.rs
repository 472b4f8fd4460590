//! `/healthz` (the process answers), `/readyz` (the store commits), `/metrics`.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::metrics::HttpMetrics;
use crate::server::AppState;

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    // A durable write blocks on fsync: keep it off the async worker.
    let result = web::block(move || store.ping()).await;
    match result {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness probe failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "reason": "store not writable"}))
        }
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "reason": "server busy"})),
    }
}

#[get("/metrics")]
pub async fn metrics(metrics: web::Data<HttpMetrics>, state: web::Data<AppState>) -> HttpResponse {
    if let Ok(n) = state.store.approximate_count(sigil_engine::store::Cf::Sessions) {
        metrics.active_sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    match metrics.render() {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => {
            tracing::warn!(error = %e, "metrics rendering failed");
            HttpResponse::ServiceUnavailable().finish()
        }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}
