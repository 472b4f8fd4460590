//! `/ws/id/{phrase}` (also `/ws/zelid/{phrase}`) and `/ws/sign/{identifier}`.
//!
//! Each socket gets exactly one text frame in FluxOS's query-string encoding, then a close.
//! The frame is pushed by the notifier the moment the session (or signature) is committed
//! (decision 3), instead of FluxOS's 500 ms poll. The socket subscribes before it reads the
//! store, so a commit can never fall between the two.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, rt, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::StreamExt as _;
use sigil_actors::notifier::{Payload, Topic};
use sigil_engine::flux::iso_millis;
use sigil_engine::flux::privilege::Privilege;
use sigil_engine::flux::session::{FluxSession, PROVIDED_SIGNATURE_TTL_MS, ProvidedSignature};
use sigil_engine::secret::phrase_timestamp;
use sigil_engine::store::now_ms;

use super::{FluxState, frame};

/// Close codes FluxOS uses.
const LOGIN_PUSHED: u16 = 4012;
const SIGNATURE_PUSHED: u16 = 4015;
const LOGIN_LOOKUP_FAILED: u16 = 4011;
const SIGN_LOOKUP_FAILED: u16 = 4014;

/// Largest frame a client may send us (they have nothing to say; this bounds abuse).
pub(crate) const MAX_CLIENT_FRAME: usize = 4096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // FluxOS tolerates a trailing slash after the segment.
    for pattern in ["/ws/id/{phrase}", "/ws/id/{phrase}/", "/ws/zelid/{phrase}", "/ws/zelid/{phrase}/"] {
        cfg.route(pattern, web::get().to(login_socket));
    }
    cfg.route("/ws/sign/{identifier}", web::get().to(sign_socket))
        .route("/ws/sign/{identifier}/", web::get().to(sign_socket));
}

async fn login_socket(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<FluxState>,
) -> actix_web::Result<HttpResponse> {
    let phrase = path.into_inner();
    upgrade(&req, body, state, move |state, session, stream| async move {
        serve_login(&state, phrase, session, stream).await;
    })
}

async fn sign_socket(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<FluxState>,
) -> actix_web::Result<HttpResponse> {
    let identifier = path.into_inner();
    upgrade(&req, body, state, move |state, session, stream| async move {
        serve_sign(&state, identifier, session, stream).await;
    })
}

/// Accepts the websocket and runs `serve` on it in its own task, counted in the gauge.
fn upgrade<F, Fut>(
    req: &HttpRequest,
    body: web::Payload,
    state: web::Data<FluxState>,
    serve: F,
) -> actix_web::Result<HttpResponse>
where
    F: FnOnce(web::Data<FluxState>, Session, MessageStream) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (response, session, stream) = actix_ws::handle(req, body)?;
    rt::spawn(async move {
        state.metrics.websockets.inc();
        let gauge = state.metrics.websockets.clone();
        serve(state, session, stream.max_frame_size(MAX_CLIENT_FRAME)).await;
        gauge.dec();
    });
    Ok(response)
}

fn login_frame(state: &FluxState, s: &FluxSession, signature: Option<&str>) -> String {
    let created = iso_millis(s.created_at);
    let expire = iso_millis(s.expire_at);
    let privilege = Privilege::of(&s.zelid, &state.config).label();
    let mut pairs = vec![
        ("status", "success"),
        ("data[message]", "Successfully logged in"),
        ("data[zelid]", s.zelid.as_str()),
        ("data[loginPhrase]", s.login_phrase.as_str()),
    ];
    if let Some(sig) = signature {
        pairs.push(("data[signature]", sig));
    }
    pairs.extend([("data[privilage]", privilege), ("data[createdAt]", &created), ("data[expireAt]", &expire)]);
    frame::encode(&pairs)
}

fn sign_frame(p: &ProvidedSignature) -> String {
    frame::encode(&[
        ("status", "success"),
        ("data[_id]", p.id.as_str()),
        ("data[signature]", p.signature.as_str()),
        ("data[identifier]", p.identifier.as_str()),
        ("data[createdAt]", &iso_millis(p.created_at)),
        ("data[expireAt]", &iso_millis(p.expire_at)),
    ])
}

fn error_frame(name: Option<&str>, message: &str) -> String {
    match name {
        Some(name) => frame::encode(&[("status", "error"), ("data[name]", name), ("data[message]", message)]),
        None => frame::encode(&[("status", "error"), ("data[message]", message)]),
    }
}

pub(crate) async fn send_and_close(mut session: Session, text: String, code: Option<u16>) {
    if session.text(text).await.is_ok() {
        let reason = code.map(|c| CloseReason { code: CloseCode::Other(c), description: None });
        let _ = session.close(reason).await;
    }
}

/// What a waiting socket ends with.
pub(crate) enum Outcome<T> {
    Event(T),
    Expired,
    ClientGone,
}

/// Waits for the subscribed event, the deadline or the client leaving, whichever is first.
pub(crate) async fn wait<T>(
    event: impl std::future::Future<Output = Option<T>>,
    deadline: Duration,
    stream: &mut MessageStream,
    session: &mut Session,
) -> Outcome<T> {
    let sleep = tokio::time::sleep(deadline);
    tokio::pin!(event, sleep);
    loop {
        tokio::select! {
            got = &mut event => return got.map_or(Outcome::Expired, Outcome::Event),
            () = &mut sleep => return Outcome::Expired,
            msg = stream.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Outcome::ClientGone,
                Some(Ok(Message::Ping(bytes))) => { let _ = session.pong(&bytes).await; }
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn serve_login(state: &FluxState, phrase: String, mut session: Session, mut stream: MessageStream) {
    let topic = Topic::Login(phrase.clone());
    let (id, event) = state.notifier.subscribe(topic.clone());
    let unsubscribe = || state.notifier.unsubscribe(&topic, id);

    match state.reader.session(&phrase) {
        Ok(Some(s)) => {
            unsubscribe();
            let signature = state.reader.push_signature(&phrase).ok().flatten();
            return send_and_close(session, login_frame(state, &s, signature.as_deref()), Some(LOGIN_PUSHED)).await;
        }
        Ok(None) => {}
        Err(e) => {
            unsubscribe();
            return send_and_close(session, error_frame(Some("Error"), &e.to_string()), Some(LOGIN_LOOKUP_FAILED)).await;
        }
    }
    let active = match state.reader.active_phrase(&phrase) {
        Ok(Some(p)) => p,
        Ok(None) => {
            unsubscribe();
            let msg = "Signed message is no longer valid. Please request a new one.";
            return send_and_close(session, error_frame(None, msg), None).await;
        }
        Err(e) => {
            unsubscribe();
            return send_and_close(session, error_frame(Some("Error"), &e.to_string()), Some(4013)).await;
        }
    };
    let left = Duration::from_millis(active.expire_at.saturating_sub(now_ms()));
    match wait(async { event.await.ok() }, left, &mut stream, &mut session).await {
        Outcome::Event(e) => {
            if let Payload::Login { session: s, signature } = &e.payload {
                let text = login_frame(state, s, Some(signature));
                state.metrics.push_latency.observe(e.committed_at.elapsed().as_secs_f64());
                send_and_close(session, text, Some(LOGIN_PUSHED)).await;
            }
        }
        Outcome::Expired => {
            unsubscribe();
            let msg = "Signed message is no longer valid. Please request a new one.";
            send_and_close(session, error_frame(None, msg), None).await;
        }
        Outcome::ClientGone => unsubscribe(),
    }
}

/// FluxOS waits forever; sigil gives up when the identifier's 15 minutes are over
/// (decision 3): 15 minutes after the timestamp that ends the identifier, or after now if it
/// has none.
async fn serve_sign(state: &FluxState, identifier: String, mut session: Session, mut stream: MessageStream) {
    let topic = Topic::Sign(identifier.clone());
    let (id, event) = state.notifier.subscribe(topic.clone());
    let unsubscribe = || state.notifier.unsubscribe(&topic, id);

    match state.reader.provided_signature(&identifier) {
        Ok(Some(p)) => {
            unsubscribe();
            return send_and_close(session, sign_frame(&p), Some(SIGNATURE_PUSHED)).await;
        }
        Ok(None) => {}
        Err(e) => {
            unsubscribe();
            return send_and_close(session, error_frame(Some("Error"), &e.to_string()), Some(SIGN_LOOKUP_FAILED)).await;
        }
    }
    let now = now_ms();
    let tail_start = identifier.len().saturating_sub(13);
    let started = identifier.get(tail_start..).and_then(phrase_timestamp).filter(|t| *t <= now).unwrap_or(now);
    let left = Duration::from_millis((started + PROVIDED_SIGNATURE_TTL_MS).saturating_sub(now));
    let waited_from = Instant::now();
    match wait(async { event.await.ok() }, left, &mut stream, &mut session).await {
        Outcome::Event(e) => {
            if let Payload::Signature(p) = &e.payload {
                state.metrics.push_latency.observe(e.committed_at.elapsed().as_secs_f64());
                send_and_close(session, sign_frame(p), Some(SIGNATURE_PUSHED)).await;
            }
        }
        Outcome::Expired => {
            unsubscribe();
            tracing::debug!(waited = ?waited_from.elapsed(), "sign socket expired");
            send_and_close(session, error_frame(None, "Signature request has expired"), None).await;
        }
        Outcome::ClientGone => unsubscribe(),
    }
}
