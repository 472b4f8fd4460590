//! HTTP routes, one module per API surface.

pub mod health;

use actix_web::{HttpRequest, HttpResponse};

/// Unknown routes get Express's 404 page, which is what FluxOS clients have always seen.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let path: String = req
        .path()
        .chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c => c.to_string(),
        })
        .collect();
    HttpResponse::NotFound().content_type("text/html; charset=utf-8").body(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {} {path}</pre>\n</body>\n</html>\n",
        req.method()
    ))
}
