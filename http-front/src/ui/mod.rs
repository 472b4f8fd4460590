//! sigil's own pages (`ui.*`): `/login` (password → second factor; passkey; wallet),
//! `/login/wallet`, `/account`, the OAuth2 consent page, handoff approval and the new-location
//! landing page.
//!
//! The pages are clients of the APIs: server-rendered askama templates (checked at compile
//! time) plus a little plain JavaScript that calls `/v1`, `/id` and the websockets. Only the
//! steps that must work without JavaScript (password, second-factor code, new-location code,
//! handoff and location approval, sign-out) are also handled here as HTML forms — and those
//! handlers call the very functions the JSON routes call. Everything the pages load is
//! embedded in the binary and served from sigil's own origin; see [`assets`] and [`headers`].

pub mod account;
pub mod assets;
pub mod forms;
pub mod headers;
pub mod login;
pub mod wallet;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use sigil_engine::config::{AccountsConfig, Config};
use sigil_engine::web::WebError;

use crate::v1::error::V1Error;

/// What every page needs to know about the operator's branding, built once at start.
pub struct Ui {
    pub product: String,
    pub wallet_login: bool,
    pub wallet_auto_create: bool,
    /// `/ui/theme.css`: the configured colours as CSS variables (validated hex only).
    pub theme_css: web::Bytes,
    /// `/ui/logo`: the configured logo file, or sigil's mark, and its content type.
    pub logo: (web::Bytes, &'static str),
}

impl Ui {
    /// Reads the logo file (if any); the colours were validated with the config.
    pub fn new(config: &Config) -> Result<Self, String> {
        let ui = &config.ui;
        let logo = match &ui.logo {
            None => (web::Bytes::from_static(assets::LOGO_SVG.as_bytes()), "image/svg+xml"),
            Some(path) => {
                let kind = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                    Some("svg") => "image/svg+xml",
                    Some("png") => "image/png",
                    _ => return Err(format!("ui.logo {} must be an .svg or .png file", path.display())),
                };
                let bytes = std::fs::read(path).map_err(|e| format!("ui.logo {}: {e}", path.display()))?;
                if bytes.len() > 512 * 1024 {
                    return Err(format!("ui.logo {} is over 512 KiB", path.display()));
                }
                (web::Bytes::from(bytes), kind)
            }
        };
        let theme_css = web::Bytes::from(format!(
            ":root {{ --primary: {}; --background: {}; --text: {}; }}\n",
            ui.primary_color, ui.background_color, ui.text_color
        ));
        Ok(Self {
            product: ui.product_name.clone(),
            wallet_login: ui.wallet_login,
            wallet_auto_create: ui.wallet_auto_create,
            theme_css,
            logo,
        })
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    assets::configure(cfg);
    login::configure(cfg);
    wallet::configure(cfg);
    account::configure(cfg);
}

/// A page of plain words: an error, or that something is done.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub product: &'a str,
    pub title: &'a str,
    pub text: &'a str,
    pub link: Option<(&'a str, &'a str)>,
    pub is_error: bool,
}

/// Renders `template` as a page with the security headers ([`headers::page`]).
pub fn render(status: StatusCode, template: &impl Template, form_action: Option<&str>) -> HttpResponse {
    match template.render() {
        Ok(html) => headers::page(status, html, form_action),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            headers::page(StatusCode::INTERNAL_SERVER_ERROR, "<!doctype html><title>Error</title><p>Something went wrong.</p>".into(), None)
        }
    }
}

/// A page saying `text` (an error when `is_error`), with an optional way on.
pub fn message(ui: &Ui, status: StatusCode, title: &str, text: &str, link: Option<(&str, &str)>) -> HttpResponse {
    let is_error = status.is_client_error() || status.is_server_error();
    render(status, &MessagePage { product: &ui.product, title, text, link, is_error }, None)
}

/// What went wrong, in words for the person at the browser (never a code or a JSON body), and
/// the status the page answers with.
pub fn plain_words(e: &V1Error) -> (StatusCode, String) {
    let (status, words) = match e {
        V1Error::Web(w) => match w {
            WebError::Unauthorized => (StatusCode::UNAUTHORIZED, "Please sign in first.".to_string()),
            WebError::InvalidCredentials => (StatusCode::BAD_REQUEST, "That username or password is not right.".into()),
            WebError::AccountDisabled => (StatusCode::FORBIDDEN, "This account may not sign in. Ask your administrator.".into()),
            WebError::InvalidTicket => (StatusCode::BAD_REQUEST, "This sign-in has expired or was used. Please start again.".into()),
            WebError::InvalidCode => (StatusCode::BAD_REQUEST, "That code is not right. Check it and try again.".into()),
            WebError::SudoModeRequired => (StatusCode::FORBIDDEN, "Please confirm your password first.".into()),
            WebError::InvalidHandoffCode => (StatusCode::BAD_REQUEST, "That code is not known. Check it and try again.".into()),
            WebError::HandoffCodeExpired => (StatusCode::BAD_REQUEST, "That code has expired. Start again in the app.".into()),
            WebError::IpAuthorizationRequired { .. } => {
                (StatusCode::FORBIDDEN, "This is a new sign-in location: approve it with the code we sent you.".into())
            }
            WebError::RateLimited(wait) => {
                let secs = wait.div_ceil(1000).max(1);
                (StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts. Please wait {secs} seconds and try again."))
            }
            WebError::PasskeyFailed => (StatusCode::UNAUTHORIZED, "The passkey could not be verified.".into()),
            WebError::InvalidForm(fields) => {
                let names: Vec<&str> = fields.iter().map(|(f, _)| f.as_str()).collect();
                (StatusCode::BAD_REQUEST, format!("Please check: {}.", names.join(", ")))
            }
            WebError::Unavailable(why) => {
                tracing::warn!(reason = %why, "page: service unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "The service is busy or unavailable. Please try again in a moment.".into())
            }
        },
        V1Error::InvalidOrigin => (StatusCode::FORBIDDEN, "This form was sent from another site and was refused.".into()),
        V1Error::NotFound => (StatusCode::NOT_FOUND, "There is nothing here.".into()),
        V1Error::Body(_) => (StatusCode::BAD_REQUEST, "The form was incomplete. Please try again.".into()),
    };
    (status, words)
}

/// An error as a page.
pub fn error_page(ui: &Ui, e: &V1Error) -> HttpResponse {
    let (status, words) = plain_words(e);
    message(ui, status, "Something is not right", &words, Some(("/login", "Back to sign-in")))
}

/// Whether the client asked for a page rather than JSON (a browser navigating).
pub fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/html")))
}

/// Where a page may send the person after a login: a path on this origin, or a URL on
/// `accounts.public_url` or one of `accounts.allowed_origins` — anything else becomes
/// `/account` (no open redirect).
pub fn return_to(accounts: &AccountsConfig, raw: Option<&str>) -> String {
    const HOME: &str = "/account";
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty() && r.len() <= 2048) else { return HOME.into() };
    if raw.chars().any(|c| c.is_control() || c == '\\') {
        return HOME.into();
    }
    if raw.starts_with('/') {
        // "//host" and "/\host" are other origins to a browser.
        return if raw.starts_with("//") { HOME.into() } else { raw.into() };
    }
    let Ok(url) = url::Url::parse(raw) else { return HOME.into() };
    let origin = url.origin().ascii_serialization();
    let ours = std::iter::once(&accounts.public_url)
        .chain(&accounts.allowed_origins)
        .filter_map(|o| url::Url::parse(o).ok())
        .any(|o| o.origin().ascii_serialization() == origin);
    if ours && matches!(url.scheme(), "http" | "https") { raw.into() } else { HOME.into() }
}

/// The origins whose forms sigil accepts: `accounts.public_url` and `accounts.allowed_origins`.
pub fn our_origins(accounts: &AccountsConfig) -> Vec<String> {
    std::iter::once(&accounts.public_url).chain(&accounts.allowed_origins).filter_map(|o| headers::origin_of(o)).collect()
}

/// `/login?return_to=…` for a page that needs a session.
pub fn to_login(return_path: &str) -> HttpResponse {
    let q = form_urlencoded::Serializer::new(String::new()).append_pair("return_to", return_path).finish();
    headers::see_other(&format!("/login?{q}"))
}

/// The path and query of this request, to come back to after a login.
pub fn here(req: &HttpRequest) -> String {
    match req.uri().query() {
        Some(q) => format!("{}?{q}", req.path()),
        None => req.path().to_string(),
    }
}

/// QR code of `text` as an inline SVG (rendered here, so the page loads nothing).
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M) {
        Ok(code) => {
            let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).quiet_zone(true).build();
            // Drop the XML declaration: the SVG goes inside an HTML page.
            match svg.find("<svg") {
                Some(at) => svg[at..].to_string(),
                None => String::new(),
            }
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_codes_are_inline_svg() {
        let svg = qr_svg("zel:?action=sign&message=1700000000000abc&callback=http%3A%2F%2F127.0.0.1%2Fid%2Fverifylogin");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    }

    fn accounts() -> AccountsConfig {
        AccountsConfig {
            public_url: "https://id.example.com".into(),
            allowed_origins: vec!["https://app.example.com".into()],
            ..AccountsConfig::default()
        }
    }

    #[test]
    fn return_to_accepts_our_paths_and_origins_only() {
        let a = accounts();
        for ok in ["/account", "/v1/oauth2/authorize?client_id=x&state=y", "https://id.example.com/x", "https://app.example.com/cb?x=1"] {
            assert_eq!(return_to(&a, Some(ok)), ok);
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "http://app.example.com/",
            "javascript:alert(1)",
            "data:text/html,x",
            "evil.example",
            "/ok\nLocation: x",
            "",
        ] {
            assert_eq!(return_to(&a, Some(bad)), "/account", "{bad}");
        }
        assert_eq!(return_to(&a, None), "/account");
    }

    proptest::proptest! {
        #[test]
        fn return_to_never_leaves_our_origins(raw in ".{0,80}") {
            let a = accounts();
            let out = return_to(&a, Some(&raw));
            let stays = (out.starts_with('/') && !out.starts_with("//"))
                || out.starts_with("https://id.example.com") || out.starts_with("https://app.example.com");
            proptest::prop_assert!(stays, "{raw:?} -> {out:?}");
        }
    }
}
