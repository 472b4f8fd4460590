//! `/ws/id/{phrase}` (also `/ws/zelid/{phrase}`) and `/ws/sign/{identifier}`, served beside
//! actix-web on the same port (see [`is_flux_socket`]).
//!
//! Each socket gets exactly one text frame in FluxOS's query-string encoding, then a close.
//! The frame is pushed by the notifier the moment the session (or signature) is committed
//! (decision 3), instead of FluxOS's 500 ms poll. The socket subscribes before it reads the
//! store, so a commit can never fall between the two.

use std::time::{Duration, Instant};

use actix_web::web;
use futures_util::{SinkExt as _, StreamExt as _};
use sigil_actors::notifier::{Payload, Topic};
use sigil_engine::flux::iso_millis;
use sigil_engine::flux::privilege::Privilege;
use sigil_engine::flux::session::{FluxSession, PROVIDED_SIGNATURE_TTL_MS, ProvidedSignature};
use sigil_engine::secret::phrase_timestamp;
use sigil_engine::store::now_ms;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::{FluxState, frame};

/// Close codes FluxOS uses.
const LOGIN_PUSHED: u16 = 4012;
const SIGNATURE_PUSHED: u16 = 4015;
const LOGIN_LOOKUP_FAILED: u16 = 4011;
const SIGN_LOOKUP_FAILED: u16 = 4014;

/// Largest frame a client may send us (they have nothing to say; this bounds abuse).
pub(crate) const MAX_CLIENT_FRAME: usize = 4096;

/// What every accepted connection is peeked for: the Flux websockets are served beside actix
/// (see [`is_flux_socket`]).
const FLUX_SOCKET_PREFIX: &[u8] = b"GET /ws/";

/// A socket that gets one pushed frame and a close: the Flux sockets (tungstenite) and the
/// `/v1` approval socket (actix-ws) share the waiting and closing below.
pub(crate) trait PushSocket {
    /// Sends a text frame; false if the client is gone.
    async fn text(&mut self, text: String) -> bool;
    /// Closes with `code` (or a normal close).
    async fn close(self, code: Option<u16>);
    /// Waits for the client's next message, answering pings; false once the client closed or
    /// went away.
    async fn heard(&mut self) -> bool;
}

/// The `/v1` approval socket, through actix-ws.
pub(crate) struct ActixSocket(pub actix_ws::Session, pub actix_ws::MessageStream);

impl PushSocket for ActixSocket {
    async fn text(&mut self, text: String) -> bool {
        self.0.text(text).await.is_ok()
    }

    async fn close(self, code: Option<u16>) {
        let reason = code.map(|c| actix_ws::CloseReason { code: actix_ws::CloseCode::Other(c), description: None });
        let _ = self.0.close(reason).await;
    }

    async fn heard(&mut self) -> bool {
        match self.1.next().await {
            None | Some(Err(_) | Ok(actix_ws::Message::Close(_))) => false,
            Some(Ok(actix_ws::Message::Ping(bytes))) => {
                let _ = self.0.pong(&bytes).await;
                true
            }
            Some(Ok(_)) => true,
        }
    }
}

/// A Flux socket: tokio-tungstenite on the accepted connection itself.
pub(crate) struct FluxSocket(WebSocketStream<TcpStream>);

impl PushSocket for FluxSocket {
    async fn text(&mut self, text: String) -> bool {
        self.0.send(WsMessage::text(text)).await.is_ok()
    }

    async fn close(mut self, code: Option<u16>) {
        let frame = code.map(|c| CloseFrame { code: WsCloseCode::from(c), reason: "".into() });
        let _ = self.0.close(frame).await;
    }

    async fn heard(&mut self) -> bool {
        // tungstenite answers pings itself (queued, flushed with the next write or read).
        !matches!(self.0.next().await, None | Some(Err(_) | Ok(WsMessage::Close(_))))
    }
}

/// Whether an accepted connection opens a Flux websocket (`GET /ws/…`): those are served
/// beside actix, with tungstenite and small buffers, because an idle socket through actix-web
/// costs ~13 KB (its h1 dispatcher, buffers and timers live as long as the connection) against
/// under 3 KB this way (docs/benchmarks.md "Idle websockets"). Peeks without consuming; gives
/// up (answering false: actix then answers, or times the connection out) after `patience`.
pub(crate) async fn is_flux_socket(stream: &TcpStream, patience: Duration) -> bool {
    let mut head = [0u8; FLUX_SOCKET_PREFIX.len()];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut head)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        let seen = head.get(..peeked).unwrap_or_default();
        if peeked == 0 || !FLUX_SOCKET_PREFIX.starts_with(seen) {
            return false;
        }
        if peeked == FLUX_SOCKET_PREFIX.len() {
            return true;
        }
        // A head split over packets: wait for the rest (rare; browsers and Node send it whole).
        // Past the deadline the next peek gives up.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What a Flux socket asked for.
enum Wanted {
    Login(String),
    Sign(String),
}

fn wanted(path: &str) -> Option<Wanted> {
    // FluxOS tolerates a trailing slash after the segment.
    let path = path.strip_suffix('/').unwrap_or(path);
    let one_segment = |rest: &str| (!rest.is_empty() && !rest.contains('/')).then(|| percent_encoding::percent_decode_str(rest).decode_utf8_lossy().into_owned());
    if let Some(rest) = path.strip_prefix("/ws/id/").or_else(|| path.strip_prefix("/ws/zelid/")) {
        return one_segment(rest).map(Wanted::Login);
    }
    path.strip_prefix("/ws/sign/").and_then(one_segment).map(Wanted::Sign)
}

/// Serves a connection [`is_flux_socket`] picked: the websocket handshake (an unknown path gets
/// a 404 instead), then the socket's one frame.
pub(crate) async fn accept(stream: TcpStream, state: web::Data<FluxState>) {
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    let mut asked = None;
    // The shape tungstenite's handshake callback must have.
    #[allow(clippy::result_large_err)]
    let route = |req: &Request, res: Response| -> Result<Response, ErrorResponse> {
        asked = wanted(req.uri().path());
        if asked.is_some() {
            return Ok(res);
        }
        let mut refusal = ErrorResponse::new(Some("not found".into()));
        *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
        Err(refusal)
    };
    // One frame and a close, written back to back: without this the close would wait for the
    // client's (delayed) acknowledgement of the frame.
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(0)
        .max_frame_size(Some(MAX_CLIENT_FRAME))
        .max_message_size(Some(MAX_CLIENT_FRAME));
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, route, Some(config));
    let Ok(Ok(socket)) = tokio::time::timeout(Duration::from_secs(5), handshake).await else { return };
    let Some(asked) = asked else { return };
    serve(&state, asked, FluxSocket(socket)).await;
}

/// The same sockets through actix-web, for the rare client that asks for one on a connection
/// that began with another request (keep-alive): the peek only sees a connection's first
/// request.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for pattern in ["/ws/id/{phrase}", "/ws/id/{phrase}/", "/ws/zelid/{phrase}", "/ws/zelid/{phrase}/"] {
        cfg.route(pattern, web::get().to(|req, body, path: web::Path<String>, state| actix_socket(req, body, Wanted::Login(path.into_inner()), state)));
    }
    for pattern in ["/ws/sign/{identifier}", "/ws/sign/{identifier}/"] {
        cfg.route(pattern, web::get().to(|req, body, path: web::Path<String>, state| actix_socket(req, body, Wanted::Sign(path.into_inner()), state)));
    }
}

async fn actix_socket(
    req: actix_web::HttpRequest,
    body: web::Payload,
    asked: Wanted,
    state: web::Data<FluxState>,
) -> actix_web::Result<actix_web::HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    actix_web::rt::spawn(async move {
        let socket = ActixSocket(session, stream.max_frame_size(MAX_CLIENT_FRAME));
        serve(&state, asked, socket).await;
    });
    Ok(response)
}

/// Runs one socket, counted in the gauge.
async fn serve(state: &FluxState, asked: Wanted, socket: impl PushSocket) {
    let gauge = state.metrics.websockets.clone();
    gauge.inc();
    match asked {
        Wanted::Login(phrase) => serve_login(state, phrase, socket).await,
        Wanted::Sign(identifier) => serve_sign(state, identifier, socket).await,
    }
    gauge.dec();
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

pub(crate) async fn send_and_close(mut socket: impl PushSocket, text: String, code: Option<u16>) {
    if socket.text(text).await {
        socket.close(code).await;
    }
}

/// What a waiting socket ends with.
pub(crate) enum Outcome<T> {
    Event(T),
    Expired,
    ClientGone,
}

/// Waits for the subscribed event, the deadline or the client leaving, whichever is first.
pub(crate) async fn wait<T>(event: impl std::future::Future<Output = Option<T>>, deadline: Duration, socket: &mut impl PushSocket) -> Outcome<T> {
    let sleep = tokio::time::sleep(deadline);
    tokio::pin!(event, sleep);
    loop {
        tokio::select! {
            got = &mut event => return got.map_or(Outcome::Expired, Outcome::Event),
            () = &mut sleep => return Outcome::Expired,
            alive = socket.heard() => if !alive { return Outcome::ClientGone },
        }
    }
}

async fn serve_login(state: &FluxState, phrase: String, mut socket: impl PushSocket) {
    let topic = Topic::Login(phrase.clone());
    let (id, event) = state.notifier.subscribe(topic.clone());
    let unsubscribe = || state.notifier.unsubscribe(&topic, id);

    match state.reader.session(&phrase) {
        Ok(Some(s)) => {
            unsubscribe();
            let signature = state.reader.push_signature(&phrase).ok().flatten();
            return send_and_close(socket, login_frame(state, &s, signature.as_deref()), Some(LOGIN_PUSHED)).await;
        }
        Ok(None) => {}
        Err(e) => {
            unsubscribe();
            return send_and_close(socket, error_frame(Some("Error"), &e.to_string()), Some(LOGIN_LOOKUP_FAILED)).await;
        }
    }
    let left = match state.reader.active_phrase(&phrase) {
        Ok(Some(active)) => Duration::from_millis(active.expire_at.saturating_sub(now_ms())),
        // Neither a session nor the phrase: a login may have consumed the phrase between the two
        // reads (in cluster mode its session is written just after the phrase is taken). Its
        // event is on the way to the subscription made first, so wait a moment for it before
        // refusing; a phrase that was never issued or has expired is refused after the grace.
        Ok(None) => state.consumed_grace,
        Err(e) => {
            unsubscribe();
            return send_and_close(socket, error_frame(Some("Error"), &e.to_string()), Some(4013)).await;
        }
    };
    match wait(async { event.await.ok() }, left, &mut socket).await {
        Outcome::Event(e) => {
            if let Payload::Login { session: s, signature } = &e.payload {
                let text = login_frame(state, s, Some(signature));
                state.metrics.push_latency.observe(e.committed_at.elapsed().as_secs_f64());
                send_and_close(socket, text, Some(LOGIN_PUSHED)).await;
            }
        }
        Outcome::Expired => {
            unsubscribe();
            let msg = "Signed message is no longer valid. Please request a new one.";
            send_and_close(socket, error_frame(None, msg), None).await;
        }
        Outcome::ClientGone => unsubscribe(),
    }
}

/// FluxOS waits forever; sigil gives up when the identifier's 15 minutes are over
/// (decision 3): 15 minutes after the timestamp that ends the identifier, or after now if it
/// has none.
async fn serve_sign(state: &FluxState, identifier: String, mut socket: impl PushSocket) {
    let topic = Topic::Sign(identifier.clone());
    let (id, event) = state.notifier.subscribe(topic.clone());
    let unsubscribe = || state.notifier.unsubscribe(&topic, id);

    match state.reader.provided_signature(&identifier) {
        Ok(Some(p)) => {
            unsubscribe();
            return send_and_close(socket, sign_frame(&p), Some(SIGNATURE_PUSHED)).await;
        }
        Ok(None) => {}
        Err(e) => {
            unsubscribe();
            return send_and_close(socket, error_frame(Some("Error"), &e.to_string()), Some(SIGN_LOOKUP_FAILED)).await;
        }
    }
    let now = now_ms();
    let tail_start = identifier.len().saturating_sub(13);
    let started = identifier.get(tail_start..).and_then(phrase_timestamp).filter(|t| *t <= now).unwrap_or(now);
    let left = Duration::from_millis((started + PROVIDED_SIGNATURE_TTL_MS).saturating_sub(now));
    let waited_from = Instant::now();
    match wait(async { event.await.ok() }, left, &mut socket).await {
        Outcome::Event(e) => {
            if let Payload::Signature(p) = &e.payload {
                state.metrics.push_latency.observe(e.committed_at.elapsed().as_secs_f64());
                send_and_close(socket, sign_frame(p), Some(SIGNATURE_PUSHED)).await;
            }
        }
        Outcome::Expired => {
            unsubscribe();
            tracing::debug!(waited = ?waited_from.elapsed(), "sign socket expired");
            send_and_close(socket, error_frame(None, "Signature request has expired"), None).await;
        }
        Outcome::ClientGone => unsubscribe(),
    }
}
