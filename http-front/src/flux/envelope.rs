//! FluxOS's response envelope: HTTP 200 and `{"status", "data"}` for every answer.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use sigil_engine::flux::FluxError;

/// The envelope, serialized straight from its parts: no intermediate `serde_json::Value` (a
/// deep copy of the data and a map per object, on every answer of the hot routes).
#[derive(Serialize)]
struct Envelope<T> {
    status: &'static str,
    data: T,
}

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

/// `{"status":"success","data":<data>}`.
pub fn data(data: impl Serialize) -> HttpResponse {
    HttpResponse::Ok().json(Envelope { status: "success", data })
}

/// `{"status":"success","data":{"message":…}}`.
pub fn success_message(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(Envelope { status: "success", data: Message { message } })
}

/// `{"status":"warning","data":{"message":…}}`.
pub fn warning_message(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(Envelope { status: "warning", data: Message { message } })
}

/// `{"status":"error","data":{"message":…}}` (no name: a plain refusal, e.g. checkprivilege's `none`).
pub fn error_message(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(Envelope { status: "error", data: Message { message } })
}

/// The 401 body FluxOS sends (with HTTP 200) when a privilege check fails.
pub fn unauthorized() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "error",
        "data": {"code": 401, "name": "Unauthorized", "message": "Unauthorized. Access denied."}
    }))
}

/// A thrown error, as FluxOS reports it: `{"status":"error","data":{"name":"Error","message":…}}`.
pub fn error(e: &FluxError) -> HttpResponse {
    let (status, code): (StatusCode, Option<u16>) = match e {
        FluxError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, Some(503)),
        FluxError::Store(err) => {
            tracing::error!(error = %err, "store failure on a Flux route");
            (StatusCode::OK, None)
        }
        _ => (StatusCode::OK, None),
    };
    let mut body = serde_json::Map::new();
    if let Some(code) = code {
        body.insert("code".into(), json!(code));
    }
    body.insert("name".into(), json!(e.js_name()));
    body.insert("message".into(), json!(e.to_string()));
    HttpResponse::build(status).json(json!({"status": "error", "data": Value::Object(body)}))
}

/// A health gate's refusal of `/id/loginphrase`, as FluxOS words it.
pub fn gate_refused(refusal: &super::gates::Refusal) -> HttpResponse {
    let mut data = serde_json::Map::new();
    if let Some(code) = refusal.code {
        data.insert("code".into(), json!(code));
    }
    if let Some(name) = &refusal.name {
        data.insert("name".into(), json!(name));
    }
    data.insert("message".into(), json!(refusal.message));
    HttpResponse::Ok().json(json!({"status": "error", "data": Value::Object(data)}))
}

/// A rate-limited request: 429, `Retry-After`, and the error body.
pub fn rate_limited(wait: std::time::Duration) -> HttpResponse {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut res = refused(StatusCode::TOO_MANY_REQUESTS, "RateLimited", "Too many requests, please try again later");
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&secs.max(1).to_string()) {
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, v);
    }
    res
}

/// Refusals that are not FluxOS's own: an oversized body (413) or a rate limit (429).
pub fn refused(status: StatusCode, name: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"status": "error", "data": {"code": status.as_u16(), "name": name, "message": message}}))
}
