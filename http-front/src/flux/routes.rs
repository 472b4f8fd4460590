//! The `/id/*` handlers, in FluxOS's check order, with sigil's decisions applied.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use sigil_actors::sessions::{self, Logout, LogoutAll, LogoutEveryone, OpenSession, ProvideSignature, SetAppOwner};
use sigil_actors::{ActorError, verifier};
use sigil_engine::flux::privilege::{Level, Privilege};
use sigil_engine::flux::session::{self, FluxSession};
use sigil_engine::flux::{FluxError, Fields, iso_millis, login};
use sigil_engine::store::now_ms;
use sigil_engine::verify::{AddressKind, Check, multisig};

use super::auth::{self, Credential};
use crate::limits::Limited;
use super::body::{self, BodyError};
use super::{FluxState, envelope};

type State = web::Data<FluxState>;

/// FluxOS's CORS policy: any origin may call the `/id` API (the Flux web UI and dashboards
/// run on other origins and authenticate with the `zelidauth` header, never cookies).
fn cors() -> actix_cors::Cors {
    actix_cors::Cors::default().allow_any_origin().send_wildcard().allow_any_method().allow_any_header().max_age(86_400)
}

/// Every route, registered under both `/id` and `/zelid` (decision 15).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for prefix in ["/id", "/zelid"] {
        cfg.service(
            web::scope(prefix)
                .wrap(cors())
                .route("/loginphrase", web::get().to(loginphrase))
                .route("/emergencyphrase", web::get().to(emergencyphrase))
                .route("/verifylogin", web::post().to(verifylogin))
                .route("/providesign", web::post().to(providesign))
                .route("/checkprivilege", web::post().to(checkprivilege))
                .route("/loggedsessions", web::get().to(loggedsessions))
                .route("/logoutcurrentsession", web::get().to(logoutcurrentsession))
                .route("/logoutallsessions", web::get().to(logoutallsessions))
                .route("/logoutspecificsession", web::post().to(logoutspecificsession))
                .route("/loggedusers", web::get().to(loggedusers))
                .route("/activeloginphrases", web::get().to(activeloginphrases))
                .route("/logoutallusers", web::get().to(logoutallusers)),
        );
    }
    // sigil's own admin route (decision 13), in the Flux envelope, for the node owner.
    cfg.service(
        web::resource("/api/admin/flux/app-owners")
            .wrap(cors())
            .route(web::get().to(list_app_owners))
            .route(web::post().to(set_app_owner)),
    );
}

async fn list_app_owners(req: HttpRequest, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::Admin).await.is_none() {
        return envelope::unauthorized();
    }
    reply(state.reader.app_owners(), |owners| {
        envelope::data(owners.iter().map(|(app, owner)| json!({"app": app, "owner": owner})).collect::<Vec<_>>())
    })
}

/// `{"app": NAME, "owner": ZELID}`: `checkprivilege` with that `appname` then answers
/// `appowner` for that zelid.
async fn set_app_owner(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::Admin).await.is_none() {
        return envelope::unauthorized();
    }
    let fields = match fields(payload, &state).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let parsed = (|| -> Result<(String, String), FluxError> {
        let app = fields.string(&["app"])?.ok_or(FluxError::Missing("app"))?;
        let owner = fields.string(&["owner"])?.ok_or(FluxError::NoFluxId)?;
        Ok((app, owner))
    })();
    let (app, owner) = match parsed {
        Ok(p) => p,
        Err(e) => return envelope::error(&e),
    };
    let done = sessions::request(&state.registry, SetAppOwner { app: app.clone(), owner: owner.clone() }).await;
    reply(done, |()| envelope::data(json!({"app": app, "owner": owner})))
}

fn actor_error(e: ActorError) -> FluxError {
    tracing::warn!(error = %e, "actor unavailable");
    FluxError::Overloaded
}

fn reply<T>(result: Result<T, FluxError>, ok: impl FnOnce(T) -> HttpResponse) -> HttpResponse {
    match result {
        Ok(v) => ok(v),
        Err(e) => envelope::error(&e),
    }
}

async fn fields(payload: web::Payload, state: &FluxState) -> Result<Fields, HttpResponse> {
    match body::read(payload, state.max_body_bytes).await {
        Ok(bytes) => Ok(Fields::parse(&bytes)),
        Err(e @ BodyError::TooLarge(_)) => Err(envelope::refused(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", &e.to_string())),
        Err(e @ BodyError::Broken) => Err(envelope::refused(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())),
    }
}

/// Health gates are a hook (decision 14); by default the only gate is that the store takes
/// the phrase, which issuing does anyway.
async fn loginphrase(req: HttpRequest, state: State) -> HttpResponse {
    if let Err(refusal) = state.gates.check() {
        return envelope::gate_refused(&refusal);
    }
    issue(&req, &state).await
}

async fn emergencyphrase(req: HttpRequest, state: State) -> HttpResponse {
    issue(&req, &state).await
}

async fn issue(req: &HttpRequest, state: &FluxState) -> HttpResponse {
    if let Err(wait) = state.limits.check(Limited::FluxPhrase, req) {
        return envelope::rate_limited(wait);
    }
    reply(state.issuer.issue().await, |p| envelope::data(p.phrase))
}

fn session_json(s: &FluxSession) -> serde_json::Value {
    json!({
        "zelid": s.zelid,
        "loginPhrase": s.login_phrase,
        "createdAt": iso_millis(s.created_at),
        "expireAt": iso_millis(s.expire_at),
    })
}

/// `verifylogin`'s answer, in FluxOS's field order (`privilage` is FluxOS's spelling).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LoggedIn<'a> {
    message: &'static str,
    zelid: &'a str,
    login_phrase: &'a str,
    signature: &'a str,
    privilage: &'static str,
    created_at: String,
    expire_at: String,
}

async fn verifylogin(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    if let Err(wait) = state.limits.check(Limited::FluxVerifyLogin, &req) {
        return envelope::rate_limited(wait);
    }
    let fields = match fields(payload, &state).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let (kind, outcome) = login_flow(&state, &fields).await;
    let label = match &outcome {
        Ok(_) => "success",
        Err(FluxError::InvalidSignature) => "invalid_signature",
        Err(FluxError::PhraseNotActive) => "phrase_not_active",
        Err(FluxError::Overloaded | FluxError::Store(_)) => "unavailable",
        Err(_) => "bad_request",
    };
    let kind = kind.unwrap_or_else(|| address_kind(&fields, &state));
    state.metrics.logins.with_label_values(&[label, kind]).inc();
    reply(outcome, |(s, signature)| {
        envelope::data(LoggedIn {
            message: "Successfully logged in",
            zelid: &s.zelid,
            login_phrase: &s.login_phrase,
            signature: &signature,
            privilage: Privilege::of(&s.zelid, &state.config).label(),
            created_at: iso_millis(s.created_at),
            expire_at: iso_millis(s.expire_at),
        })
    })
}

/// The `kind` label of a login attempt, from what the client sent.
fn address_kind(fields: &Fields, state: &FluxState) -> &'static str {
    let Ok(Some(address)) = fields.string(&["zelid", "address"]) else { return "none" };
    let multisig = fields.string(&["signature"]).ok().flatten().is_some_and(|s| multisig::is_multisig(&s));
    login_kind(&address, multisig, state)
}

fn login_kind(address: &str, multisig: bool, state: &FluxState) -> &'static str {
    if multisig && state.policy().multisig { "multisig" } else { AddressKind::of(address, state.policy()).label() }
}

/// Steps 1–10 of FluxOS's verifylogin. The phrase is consumed only after the signature
/// verified (a failed check does not burn it), atomically with the session's creation.
/// Answers the attempt's `kind` label once the fields passed their checks (else the caller
/// works it out from the fields).
async fn login_flow(state: &FluxState, fields: &Fields) -> (Option<&'static str>, Result<(FluxSession, String), FluxError>) {
    let now = now_ms();
    let attempt = match login::check_login(fields, state.rules(), now, state.phrase_ttl()) {
        Ok(attempt) => attempt,
        Err(e) => return (None, Err(e)),
    };
    let kind = login_kind(&attempt.zelid, multisig::is_multisig(&attempt.signature), state);
    (Some(kind), open_session(state, attempt, now).await)
}

async fn open_session(state: &FluxState, attempt: login::SignedPhrase, now: u64) -> Result<(FluxSession, String), FluxError> {
    let active = state.reader.active_phrase(&attempt.phrase)?.ok_or(FluxError::PhraseNotActive)?;
    if active.created_at >= now {
        return Err(FluxError::PhraseNotActive);
    }
    let check = Check {
        message: attempt.phrase.clone(),
        address: attempt.zelid.clone(),
        signature: attempt.signature.clone(),
    };
    // The session is prepared before the verdict, so that a valid signature goes from the
    // verifying thread straight to the registry's queue: this request is woken once, with the
    // outcome, when the session is durable (or at once with the refusal).
    let opening = session::prepare_opening(&attempt, active.created_at, state.session_ttl(), now)?;
    let signature = attempt.signature;
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let (registry, pushed) = (state.registry.clone(), signature.clone());
    let then: verifier::Then = Box::new(move |verdict| match verdict {
        Ok(Ok(())) => registry.open_verified(OpenSession { opening, signature: pushed, verified_at: std::time::Instant::now() }, reply),
        Ok(Err(_)) => {
            let _ = reply.send(Err(FluxError::InvalidSignature));
        }
        Err(refused) => {
            let _ = reply.send(Err(actor_error(refused)));
        }
    });
    state.verifier.verify_then(check, then);
    let opened = outcome.await.map_err(|_| actor_error(ActorError::Gone("the session registry")))??;
    opened.map(|s| (s, signature)).ok_or(FluxError::PhraseNotActive)
}

async fn providesign(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    if let Err(wait) = state.limits.check(Limited::FluxProvideSign, &req) {
        return envelope::rate_limited(wait);
    }
    let fields = match fields(payload, &state).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let provided = async {
        let signed = login::check_provided(&fields, state.rules())?;
        if state.config.verify_provided_signatures {
            let check =
                Check { message: signed.phrase.clone(), address: signed.zelid.clone(), signature: signed.signature.clone() };
            state.verifier.verify(check).await.map_err(actor_error)?.map_err(|_| FluxError::InvalidSignature)?;
        }
        sessions::request(&state.registry, ProvideSignature(signed)).await
    }
    .await;
    reply(provided, |p| {
        envelope::data(json!({
            "signature": p.signature,
            "identifier": p.identifier,
            "createdAt": iso_millis(p.created_at),
            "expireAt": iso_millis(p.expire_at),
            "_id": p.id,
        }))
    })
}

async fn checkprivilege(payload: web::Payload, state: State) -> HttpResponse {
    let fields = match fields(payload, &state).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let credential = (|| -> Result<(Credential, Option<String>), FluxError> {
        let zelid = fields.string(&["zelid"])?.ok_or(FluxError::NoUserFluxId)?;
        let phrase = fields.string(&["loginPhrase"])?.ok_or(FluxError::NoUserLoginPhrase)?;
        let signature = fields.string(&["signature"])?.ok_or(FluxError::NoUserSignature)?;
        let app = fields.string(&["appname"]).ok().flatten();
        Ok((Credential { zelid, phrase, signature }, app))
    })();
    let (credential, app) = match credential {
        Ok(c) => c,
        Err(e) => return envelope::error(&e),
    };
    for (level, label) in [(Level::Admin, "admin"), (Level::FluxTeam, "fluxteam")] {
        if auth::allowed(&state, &credential, level).await {
            return envelope::success_message(label);
        }
    }
    if let Some(app) = app {
        let owner = state.reader.app_owner(&app).ok().flatten();
        if owner.as_deref() == Some(credential.zelid.as_str()) && auth::allowed(&state, &credential, Level::User).await {
            return envelope::success_message("appowner");
        }
    }
    if auth::allowed(&state, &credential, Level::User).await {
        return envelope::success_message("user");
    }
    envelope::error_message("none")
}

async fn loggedsessions(req: HttpRequest, state: State) -> HttpResponse {
    let Some(who) = auth::require(&state, &req, Level::User).await else { return envelope::unauthorized() };
    reply(state.reader.sessions_of(&who.zelid), |sessions| {
        envelope::data(sessions.iter().map(session_json).collect::<Vec<_>>())
    })
}

async fn logoutcurrentsession(req: HttpRequest, state: State) -> HttpResponse {
    let Some(who) = auth::require(&state, &req, Level::User).await else { return envelope::unauthorized() };
    let done = sessions::request(&state.registry, Logout { phrase: who.phrase, zelid: Some(who.zelid) }).await;
    reply(done, |_| {
        envelope::success_message("Successfully logged out")
    })
}

async fn logoutallsessions(req: HttpRequest, state: State) -> HttpResponse {
    let Some(who) = auth::require(&state, &req, Level::User).await else { return envelope::unauthorized() };
    let done = sessions::request(&state.registry, LogoutAll { zelid: who.zelid }).await;
    reply(done, |_| {
        envelope::success_message("Successfully logged out all sessions")
    })
}

/// FluxOS's rule stays (knowing the phrase is the authority); a phrase with no session gets
/// the intended warning instead of a TypeError (decision 8).
async fn logoutspecificsession(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::User).await.is_none() {
        return envelope::unauthorized();
    }
    let fields = match fields(payload, &state).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let phrase = match fields.string(&["loginPhrase"]) {
        Ok(Some(p)) => p,
        Ok(None) => return envelope::warning_message("Specified user was already logged out"),
        Err(e) => return envelope::error(&e.into()),
    };
    let done = sessions::request(&state.registry, Logout { phrase, zelid: None }).await;
    reply(done, |ended| {
        if ended {
            envelope::success_message("Session successfully logged out")
        } else {
            envelope::warning_message("Specified user was already logged out")
        }
    })
}

async fn loggedusers(req: HttpRequest, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::Admin).await.is_none() {
        return envelope::unauthorized();
    }
    reply(state.reader.all_sessions(), |sessions| {
        envelope::data(sessions.iter().map(session_json).collect::<Vec<_>>())
    })
}

async fn activeloginphrases(req: HttpRequest, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::Admin).await.is_none() {
        return envelope::unauthorized();
    }
    let phrases = state.issuer.active().await;
    reply(phrases, |phrases| {
        envelope::data(
            phrases
                .iter()
                .map(|p| {
                    json!({"loginPhrase": p.phrase, "createdAt": iso_millis(p.created_at), "expireAt": iso_millis(p.expire_at)})
                })
                .collect::<Vec<_>>(),
        )
    })
}

async fn logoutallusers(req: HttpRequest, state: State) -> HttpResponse {
    if auth::require(&state, &req, Level::Admin).await.is_none() {
        return envelope::unauthorized();
    }
    let done = sessions::request(&state.registry, LogoutEveryone).await;
    reply(done, |_| {
        envelope::success_message("Successfully logged out all users")
    })
}
