//! `/login/wallet`: the FluxOS wallet login as a page. The page shows a fresh login phrase, a
//! QR code / deep link for ZelCore and SSP (`zel:?action=sign&message=…&callback=…`, the wallet
//! posts its signature to `/id/verifylogin`), and a MetaMask button (`personal_sign` through
//! `window.ethereum`). It waits on `/ws/id/{phrase}` — the notifier pushes the instant the
//! signature is verified and the wallet session committed — and then posts the wallet's
//! credential here, which opens a `/v1` session of the account linked to that address (see
//! [`sigil_engine::sso::wallet_identity`]).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use sigil_engine::store::now_ms;
use sigil_engine::web::{self as rules, WebError};

use super::{Ui, forms, render, return_to};
use crate::accounts::AccountsState;
use crate::flux::FluxState;
use crate::limits::Limited;
use crate::v1::error::V1Error;
use crate::v1::routes as api;

type State = web::Data<AccountsState>;
type Flux = web::Data<FluxState>;
type UiData = web::Data<Ui>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login/wallet", web::get().to(show)).route("/login/wallet", web::post().to(finish));
}

#[derive(Template)]
#[template(path = "wallet.html")]
struct WalletPage<'a> {
    product: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    phrase: &'a str,
    qr_svg: &'a str,
    zel_link: &'a str,
}

/// The deep link ZelCore and SSP open: sign `phrase`, post the signature to our callback.
pub fn zel_link(public_url: &str, phrase: &str) -> String {
    let callback = format!("{}/id/verifylogin", public_url.trim_end_matches('/'));
    let q = form_urlencoded::Serializer::new(String::new()).append_pair("action", "sign").append_pair("message", phrase).append_pair("callback", &callback).finish();
    format!("zel:?{q}")
}

#[derive(serde::Deserialize)]
struct Back {
    return_to: Option<String>,
}

/// `GET /login/wallet[?return_to=]`: a fresh phrase (the same issuer and limit as
/// `/id/loginphrase`) to sign.
async fn show(req: HttpRequest, state: State, flux: Flux, ui: UiData) -> HttpResponse {
    if !ui.wallet_login {
        return super::error_page(&ui, &V1Error::NotFound);
    }
    let raw = web::Query::<Back>::from_query(req.query_string()).ok().and_then(|q| q.into_inner().return_to);
    let back = return_to(&state.config.accounts, raw.as_deref());
    if let Err(wait) = flux.limits.check(Limited::FluxPhrase, &req) {
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        return super::error_page(&ui, &V1Error::Web(WebError::RateLimited(wait)));
    }
    let phrase = match flux.issuer.issue().await {
        Ok(p) => p.phrase,
        Err(e) => return super::error_page(&ui, &V1Error::Web(WebError::Unavailable(e.to_string()))),
    };
    let (csrf, cookie) = match forms::token(&state, &req) {
        Ok(t) => t,
        Err(e) => return super::error_page(&ui, &e),
    };
    let link = zel_link(&state.config.accounts.public_url, &phrase);
    let qr = super::qr_svg(&link);
    let page = WalletPage { product: &ui.product, csrf: &csrf, return_to: &back, phrase: &phrase, qr_svg: &qr, zel_link: &link };
    super::login::with_cookie(render(StatusCode::OK, &page, None), cookie)
}

/// `POST /login/wallet` (csrf, return_to, zelid, signature, loginPhrase): the wallet session
/// the page just saw pushed becomes a `/v1` session of the wallet's account.
async fn finish(req: HttpRequest, payload: web::Payload, state: State, flux: Flux, ui: UiData) -> HttpResponse {
    if !ui.wallet_login {
        return super::error_page(&ui, &V1Error::NotFound);
    }
    let mut form = match forms::posted(&state, &req, payload).await {
        Ok(f) => f,
        Err(e) => return super::error_page(&ui, &e),
    };
    let back = return_to(&state.config.accounts, Some(form.get("return_to")));
    let (zelid, signature, phrase) = (form.take("zelid"), form.take("signature"), form.take("loginPhrase"));
    if zelid.len() > 128 || signature.len() > 1024 || phrase.len() > 128 {
        return super::error_page(&ui, &V1Error::Web(WebError::Unauthorized));
    }
    // The wallet session must exist for exactly this credential, and be fresh: a page turns a
    // signature of the last `flux.phrase_ttl` into an account session, not an old credential.
    let fresh = match flux.reader.authorize_async(&zelid, &phrase, &signature).await {
        Ok(Some(s)) => now_ms().saturating_sub(s.created_at) <= flux.phrase_ttl(),
        Ok(None) => false,
        Err(e) => return super::error_page(&ui, &V1Error::Web(WebError::Unavailable(e.to_string()))),
    };
    if !fresh {
        let text = "This wallet signature is not valid any more. Please sign a new message.";
        return super::message(&ui, StatusCode::UNAUTHORIZED, "Wallet sign-in failed", text, Some(("/login/wallet", "Try again")));
    }
    let (store, auto_create) = (state.store.clone(), ui.wallet_auto_create);
    let identity = sigil_engine::sso::wallet_identity(&zelid);
    let found = web::block(move || sigil_engine::sso::account_for(store.as_ref(), auto_create, &identity, now_ms())).await;
    let account = match found {
        Ok(Ok(Some(a))) => a,
        Ok(Ok(None)) => {
            let text = "This wallet is not linked to an account here. Ask your administrator, or sign in with a password.";
            return super::message(&ui, StatusCode::FORBIDDEN, "Wallet not linked", text, Some(("/login", "Sign in another way")));
        }
        Ok(Err(e)) => return super::error_page(&ui, &V1Error::Web(e)),
        Err(e) => return super::error_page(&ui, &V1Error::Web(WebError::Unavailable(e.to_string()))),
    };
    let origin = state.origin(&req);
    let opened = match rules::admit(state.store.as_ref(), &account, state.client_ip(&req)) {
        Ok(()) => api::open(&state, &account, &origin).await,
        Err(e) => Err(e.into()),
    };
    let outcome = if opened.is_ok() { "success" } else { "disabled" };
    state.metrics.logins.with_label_values(&["v1", "wallet", outcome]).inc();
    match opened {
        Ok(token) => super::login::signed_in(&state, &token.secret, &back),
        Err(e) => super::error_page(&ui, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deep_link_carries_the_phrase_and_our_callback() {
        let link = zel_link("https://id.example.com/", "1700000000000abc def");
        assert_eq!(link, "zel:?action=sign&message=1700000000000abc+def&callback=https%3A%2F%2Fid.example.com%2Fid%2Fverifylogin");
    }
}
