//! The security headers of every page: a strict Content-Security-Policy (scripts, styles and
//! images from sigil's own origin only — no inline script, no inline style), no framing, no
//! caching of pages that carry tokens, no MIME sniffing.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;

/// The policy of a page. `form_action` adds one more origin that a form may go to (the
/// consent page posts to sigil, which redirects to the client: Chromium checks form-action
/// on that redirect too).
pub fn content_security_policy(form_action: Option<&str>) -> String {
    let extra = form_action.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// An HTML page with the security headers.
pub fn page(status: StatusCode, html: String, form_action: Option<&str>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy(form_action)))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // `same-origin` keeps the Origin header on our own form posts (the CSRF check needs it).
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html)
}

/// `303 See Other` to `location` (after a form post, the browser GETs it).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The origin (`scheme://host[:port]`) of `url`, for [`content_security_policy`].
pub fn origin_of(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}
