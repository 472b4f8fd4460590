//! The pages' stylesheet, scripts and logo, embedded in the binary (no build chain, nothing
//! from another origin). `/ui/theme.css` and `/ui/logo` come from `ui.*`.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::Ui;

pub const LOGO_SVG: &str = include_str!("../../assets/logo.svg");

/// (name under `/ui/`, content type, bytes).
const FILES: &[(&str, &str, &str)] = &[
    ("sigil.css", "text/css; charset=utf-8", include_str!("../../assets/sigil.css")),
    ("sigil.js", "text/javascript; charset=utf-8", include_str!("../../assets/sigil.js")),
    ("login.js", "text/javascript; charset=utf-8", include_str!("../../assets/login.js")),
    ("wallet.js", "text/javascript; charset=utf-8", include_str!("../../assets/wallet.js")),
    ("account.js", "text/javascript; charset=utf-8", include_str!("../../assets/account.js")),
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui/theme.css", web::get().to(theme)).route("/ui/logo", web::get().to(logo)).route("/ui/{name}", web::get().to(file));
}

fn asset(content_type: &str, body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'self'"))
        .body(body)
}

async fn file(name: web::Path<String>) -> HttpResponse {
    match FILES.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, kind, body)) => asset(kind, web::Bytes::from_static(body.as_bytes())),
        None => HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("not found"),
    }
}

async fn theme(ui: web::Data<Ui>) -> HttpResponse {
    asset("text/css; charset=utf-8", ui.theme_css.clone())
}

async fn logo(ui: web::Data<Ui>) -> HttpResponse {
    // Bytes: a clone shares the buffer, no copy per request.
    asset(ui.logo.1, ui.logo.0.clone())
}
