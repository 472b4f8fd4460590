//! The session registry: opens and ends wallet sessions; its reader answers lookups.
//!
//! Every registry write goes, in arrival order, to one committer thread that **group-commits**:
//! the logins that queued up while it was busy are applied together, in one atomic RocksDB
//! write (`flux::session::commit_openings`), and the other grouped writes (OAuth2 refresh
//! rotations) are applied relaxed in their place. A second thread, the syncer, makes a group
//! durable with one fsync ([`Store::persist`]) and only then answers its requests, so the
//! committer applies group N+1 while group N's fsync runs. Under load a group holds dozens of
//! writes and durability is paid once per group; an idle server commits a lone one at once.
//! The requests prepare their writes themselves (`prepare_opening`, `refresh::claim`), in
//! parallel, so the serial stage does nothing but commit. Measured in docs/benchmarks.md.
//!
//! Handlers answer with a [`Pending`] receiver that is fulfilled after the fsync, so the
//! waiting request is woken straight from the syncer and nothing acknowledged is lost to a
//! crash. A login applied but not yet synced is visible to readers; it is acknowledged, and
//! pushed to its websocket, only once durable.
//!
//! Lookups ("is this zelidauth a session?") do not go through the registry at all:
//! [`SessionReader`] reads the store directly, which RocksDB serves concurrently with writes,
//! so a login storm never delays an authenticated request. Revocation is still immediate: a
//! logout is answered after its durable commit, and the next lookup reads the committed state.

use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::{Receiver, Sender};
use sigil_engine::flux::FluxError;
use sigil_engine::flux::login::SignedPhrase;
use sigil_engine::flux::session::{self, ActivePhrase, FluxSession, Opening};
use sigil_engine::account::{Account, Method};
use sigil_engine::oauth2::refresh::{self, Rotation};
use sigil_engine::oauth2::{OAuthError, TokenResponse};
use sigil_engine::secret::BearerToken;
use sigil_engine::session::{self as any_session, AccountSession, Origin, Session};
use sigil_engine::web::{self, HandoffStatus, TicketFactor, WebError};
use sigil_engine::store::{Batch, Millis, Store, StoreError, now_ms};
use sigil_engine::tokens::{self, SmsToSend, TokenError};
use tokio::sync::oneshot;

use crate::ActorError;
use crate::metrics::ActorMetrics;
use crate::notifier::{Event, Notifier, Payload, Topic};

/// The committer's answer to one request, delivered once its write is durable. `E` is the
/// error type of the dialect that asked (the registry itself only fails with [`ActorError`],
/// which every dialect's error converts from).
pub type Pending<T, E = FluxError> = oneshot::Receiver<Result<T, E>>;

/// At most this many requests share one commit, so one group's latency stays bounded.
const MAX_GROUP: usize = 512;

/// Consume the phrase and open the session; `None` if another login took the phrase first.
pub struct OpenSession {
    /// From [`session::prepare_opening`].
    pub opening: Opening,
    /// The login signature, pushed to the phrase's websocket.
    pub signature: String,
    /// When the signature was found valid: the start of the verify-to-push latency.
    pub verified_at: Instant,
}

/// End one session; with `zelid`, only if it belongs to that zelid.
pub struct Logout {
    pub phrase: String,
    pub zelid: Option<String>,
}

pub struct LogoutAll {
    pub zelid: String,
}

pub struct LogoutEveryone;

/// Keep a signature for `/ws/sign/{identifier}` and push it to waiting sockets.
pub struct ProvideSignature(pub SignedPhrase);

pub struct SetAppOwner {
    pub app: String,
    pub owner: String,
}

/// Open an account session (token or cookie): commit the writes the dialect prepared
/// (`tokens::open_writes`), durably.
pub struct OpenAccountSession {
    pub writes: Batch,
}

/// End the session under `key`, of any kind — the one revocation path. With `owner`, only if
/// it belongs to that owner. Answers the session ended, if one was live.
pub struct EndSession {
    pub key: Vec<u8>,
    pub owner: Option<String>,
}

/// End every session of an owner (a zelid or an account guid), of every kind.
pub struct EndSessionsOf {
    pub owner: String,
}

/// Check a token's second factor (`tokens::second_factor`): attempts and codes are counted
/// and consumed atomically.
pub struct TokenSecondFactor {
    pub key: Vec<u8>,
    pub method: Method,
    pub code: String,
}

/// Start an SMS second factor for a token (`tokens::issue_sms`); answers what to send.
pub struct IssueTokenSms {
    pub key: Vec<u8>,
    pub account: Account,
}

/// Issue a `/v1` MFA ticket for an account whose password was right (`web::issue_ticket`).
pub struct IssueMfaTicket {
    pub account: Account,
    pub origin: Origin,
    pub ttl_ms: Millis,
}

/// Answer a `/v1` MFA ticket with a code (`web::redeem_ticket`): the ticket is consumed and
/// the session opened in one atomic write.
pub struct RedeemMfaTicket {
    pub ticket: String,
    pub factor: TicketFactor,
    pub code: String,
    pub session_ttl_ms: Millis,
}

/// Start the SMS factor of a `/v1` MFA ticket (`web::ticket_sms`); answers what to send.
pub struct SendTicketSms {
    pub ticket: String,
}

/// Put a `/v1` session in sudo mode (`web::grant_sudo`); answers the sudo token.
pub struct GrantSudo {
    pub key: Vec<u8>,
    pub ttl_ms: Millis,
}

/// End the sessions of `owner` whose public ids are listed (others' ids are ignored).
pub struct EndSessionsById {
    pub owner: String,
    pub ids: Vec<String>,
}

/// Start a `/v1` new-location approval; answers (ticket, code).
pub struct StartIpAuthorization {
    pub account: Account,
    pub origin: Origin,
    pub ttl_ms: Millis,
}

/// Approve a new login address by its code; wakes the waiting websocket.
pub struct ApproveIp {
    pub code: String,
}

/// Take the session of an approved new-location login (`None` while it waits).
pub struct ClaimIpSession {
    pub wait_id: String,
    pub session_ttl_ms: Millis,
}

/// Start a handoff (`web::initiate_handoff`): (code, poll secret, expires_at).
pub struct InitiateHandoff {
    pub ttl_ms: Millis,
}

/// A logged-in account approves a handoff.
pub struct CompleteHandoff {
    pub code: String,
    pub account: String,
}

/// The new device's poll; opens its session once the handoff is complete.
pub struct PollHandoff {
    pub code: String,
    pub poll_secret: Option<String>,
    pub origin: Origin,
    pub session_ttl_ms: Millis,
}

/// Sends `msg` to the registry and waits until its write is committed.
pub async fn request<M: Write>(registry: &SessionRegistry, msg: M) -> Result<M::Ok, M::Err> {
    let gone = || M::Err::from(ActorError::Gone("the session registry"));
    let pending = msg.submit(registry).map_err(|e| {
        tracing::warn!(error = %e, "session registry unavailable");
        M::Err::from(e)
    })?;
    pending.await.map_err(|_| gone())?
}

/// A write the registry commits: how it is queued for the committer. Implemented by every
/// message above; callers use [`request`].
pub trait Write: Send + 'static {
    /// What the request answers once its write is durable.
    type Ok: Send + 'static;
    /// The asking dialect's error (see [`Pending`]).
    type Err: From<ActorError> + Send + 'static;

    /// Queues the write (on the calling thread: a channel send, no hand-off to another task)
    /// and answers where its outcome will arrive.
    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError>;
}

type Reply<T, E = FluxError> = oneshot::Sender<Result<T, E>>;

/// One queued write.
enum Job {
    Open(OpenSession, Reply<Option<FluxSession>>),
    /// A write applied relaxed, in its place in the queue; its answer waits for its group's
    /// fsync and is given by the syncer.
    Grouped(Box<dyn FnOnce(&Committer) -> Answer + Send>),
    /// Any other write: runs alone, in its place in the queue, and answers for itself.
    Other(Box<dyn FnOnce(&Committer) + Send>),
}

/// Answers a [`Job::Grouped`] request, given how its group's fsync went.
type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The registry's handle: cheap to clone; sending a write is a channel send on the caller's
/// thread, so a request reaches the committer without passing through an actor's mailbox.
#[derive(Clone)]
pub struct SessionRegistry {
    jobs: Sender<Job>,
}

impl SessionRegistry {
    /// Starts the registry and its committer and syncer threads (which end when it does).
    pub fn start(store: Arc<dyn Store>, notifier: Notifier, metrics: Option<ActorMetrics>) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam::channel::unbounded();
        let (applied, to_sync) = crossbeam::channel::unbounded();
        let syncer = Syncer { store: store.clone(), notifier: notifier.clone(), metrics: metrics.clone() };
        std::thread::Builder::new().name("sigil-syncer".into()).spawn(move || syncer.run(&to_sync))?;
        let committer = Committer { store, notifier, metrics, applied };
        std::thread::Builder::new().name("sigil-committer".into()).spawn(move || committer.run(&queue))?;
        Ok(Self { jobs })
    }

    fn queue<T: Send + 'static, E: Send + 'static>(
        &self,
        work: impl FnOnce(&Committer) -> Result<T, E> + Send + 'static,
    ) -> Result<Pending<T, E>, ActorError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Other(Box::new(move |c| {
            // A requester that gave up just dropped its receiver.
            let _ = tx.send(work(c));
        }));
        self.jobs.send(job).map_err(|_| ActorError::Gone("the session registry"))?;
        Ok(rx)
    }

    /// Queues a login whose signature was just found valid and answers `reply` once its
    /// session is durable: [`OpenSession`] for the verifier's thread, so the request that waits
    /// for it is woken once, with the outcome. If the registry is gone, `reply` is dropped and
    /// the request hears so.
    pub fn open_verified(&self, msg: OpenSession, reply: oneshot::Sender<Result<Option<FluxSession>, FluxError>>) {
        let _ = self.jobs.send(Job::Open(msg, reply));
    }

    /// Queues `work`, whose writes must be relaxed: it is answered only once its group is
    /// durable (a failed fsync answers the store's error instead).
    fn queue_grouped<T: Send + 'static, E: From<StoreError> + Send + 'static>(
        &self,
        work: impl FnOnce(&Committer) -> Result<T, E> + Send + 'static,
    ) -> Result<Pending<T, E>, ActorError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Grouped(Box::new(move |c| {
            let outcome = work(c);
            Box::new(move |persisted: Result<(), StoreError>| {
                let _ = tx.send(persisted.map_err(E::from).and(outcome));
            })
        }));
        self.jobs.send(job).map_err(|_| ActorError::Gone("the session registry"))?;
        Ok(rx)
    }
}

impl Write for OpenSession {
    type Ok = Option<FluxSession>;
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let (tx, rx) = oneshot::channel();
        registry.jobs.send(Job::Open(self, tx)).map_err(|_| ActorError::Gone("the session registry"))?;
        Ok(rx)
    }
}

impl Write for Logout {
    type Ok = bool;
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| {
            let ended = session::logout(c.store.as_ref(), &msg.phrase, msg.zelid.as_deref())?.is_some();
            c.ended(usize::from(ended));
            Ok(ended)
        })
    }
}

impl Write for LogoutAll {
    type Ok = usize;
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| {
            let n = session::logout_all_of(c.store.as_ref(), &msg.zelid)?.len();
            c.ended(n);
            Ok(n)
        })
    }
}

impl Write for LogoutEveryone {
    type Ok = usize;
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        registry.queue(|c| {
            let n = session::logout_everyone(c.store.as_ref())?.len();
            c.ended(n);
            Ok(n)
        })
    }
}

impl Write for ProvideSignature {
    type Ok = session::ProvidedSignature;
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let ProvideSignature(signed) = self;
        registry.queue(move |c| {
            let provided = session::provide_signature(c.store.as_ref(), &signed, now_ms())?;
            let event = Event { payload: Payload::Signature(provided.clone()), committed_at: Instant::now() };
            c.notifier.publish(Topic::Sign(provided.identifier.clone()), event);
            Ok(provided)
        })
    }
}

impl Write for SetAppOwner {
    type Ok = ();
    type Err = FluxError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| Ok(session::set_app_owner(c.store.as_ref(), &msg.app, &msg.owner)?))
    }
}

impl Write for OpenAccountSession {
    type Ok = ();
    type Err = ActorError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| {
            c.store.write(msg.writes)?;
            c.opened_account();
            Ok(())
        })
    }
}

impl Write for EndSession {
    type Ok = Option<Session>;
    type Err = ActorError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| {
            let owner = msg.owner;
            let only = |s: &Session| owner.as_deref().is_none_or(|o| o == s.owner());
            let ended = any_session::end(c.store.as_ref(), &msg.key, &only)?;
            c.ended(usize::from(ended.is_some()));
            Ok(ended)
        })
    }
}

impl Write for EndSessionsOf {
    type Ok = usize;
    type Err = ActorError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| {
            let store = c.store.as_ref();
            let n = any_session::end_many(store, &any_session::of_owner(store, &msg.owner)?)?;
            c.ended(n);
            Ok(n)
        })
    }
}

impl Write for TokenSecondFactor {
    type Ok = bool;
    type Err = TokenError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| tokens::second_factor(c.store.as_ref(), &msg.key, msg.method, &msg.code, now_ms()))
    }
}

impl Write for IssueTokenSms {
    type Ok = Option<SmsToSend>;
    type Err = TokenError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let msg = self;
        registry.queue(move |c| tokens::issue_sms(c.store.as_ref(), &msg.key, &msg.account, now_ms()))
    }
}

impl Write for IssueMfaTicket {
    type Ok = String;
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::issue_ticket(c.store.as_ref(), &m.account, &m.origin, m.ttl_ms, now_ms()))
    }
}

/// Answer a `/v1` MFA ticket with a passkey assertion (`passkeys::finish_second_factor`):
/// the ticket is consumed and the session opened in one write.
pub struct RedeemMfaPasskey {
    pub ticket: String,
    pub credential: Box<sigil_engine::webauthn::PublicKeyCredential>,
    pub rp: Arc<sigil_engine::passkeys::RelyingParty>,
    pub session_ttl_ms: Millis,
}

impl Write for RedeemMfaPasskey {
    type Ok = (BearerToken, AccountSession, Account);
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let store = c.store.as_ref();
            let opened = sigil_engine::passkeys::finish_second_factor(store, &m.rp, &m.ticket, &m.credential, m.session_ttl_ms, now_ms())?;
            c.opened_account();
            Ok(opened)
        })
    }
}

impl Write for RedeemMfaTicket {
    type Ok = (BearerToken, AccountSession, Account);
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let opened = web::redeem_ticket(c.store.as_ref(), &m.ticket, m.factor, &m.code, m.session_ttl_ms, now_ms())?;
            c.opened_account();
            Ok(opened)
        })
    }
}

impl Write for SendTicketSms {
    type Ok = Option<SmsToSend>;
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::ticket_sms(c.store.as_ref(), &m.ticket, now_ms()))
    }
}

impl Write for GrantSudo {
    type Ok = String;
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::grant_sudo(c.store.as_ref(), &m.key, m.ttl_ms, now_ms()))
    }
}

impl Write for EndSessionsById {
    type Ok = usize;
    type Err = ActorError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let store = c.store.as_ref();
            let mut n = 0;
            for id in &m.ids {
                if let Some(key) = any_session::key_of_id(store, id)? {
                    n += usize::from(any_session::end(store, &key, &|s| s.owner() == m.owner)?.is_some());
                }
            }
            c.ended(n);
            Ok(n)
        })
    }
}

impl Write for StartIpAuthorization {
    type Ok = (String, String);
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::start_ip_authorization(c.store.as_ref(), &m.account, &m.origin, m.ttl_ms, now_ms()))
    }
}

impl Write for ApproveIp {
    type Ok = ();
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let wait = web::approve_ip(c.store.as_ref(), &m.code)?;
            // Durable by now (the approval was an fsynced write): wake the waiting socket.
            let event = Event { payload: Payload::IpAuthorized, committed_at: Instant::now() };
            c.notifier.publish(Topic::IpAuthorized(wait), event);
            Ok(())
        })
    }
}

impl Write for ClaimIpSession {
    type Ok = Option<(BearerToken, AccountSession, Account)>;
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let claimed = web::claim_ip_session(c.store.as_ref(), &m.wait_id, m.session_ttl_ms, now_ms())?;
            if claimed.is_some() {
                c.opened_account();
            }
            Ok(claimed)
        })
    }
}

/// Write a claimed OAuth2 refresh rotation (`refresh::rotate`); answered once durable, in a
/// group with the other rotations and logins that queued meanwhile.
pub struct RotateRefresh(pub Box<Rotation>);

impl Write for RotateRefresh {
    type Ok = TokenResponse;
    type Err = OAuthError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let RotateRefresh(rotation) = self;
        registry.queue_grouped(move |c| {
            let rotated = refresh::rotate(c.store.as_ref(), *rotation);
            if rotated.is_ok() {
                c.opened_account();
            }
            rotated
        })
    }
}

impl Write for InitiateHandoff {
    type Ok = (String, String, Millis);
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::initiate_handoff(c.store.as_ref(), m.ttl_ms, now_ms()))
    }
}

impl Write for CompleteHandoff {
    type Ok = ();
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| web::complete_handoff(c.store.as_ref(), &m.code, &m.account, now_ms()))
    }
}

impl Write for PollHandoff {
    type Ok = HandoffStatus;
    type Err = WebError;

    fn submit(self, registry: &SessionRegistry) -> Result<Pending<Self::Ok, Self::Err>, ActorError> {
        let m = self;
        registry.queue(move |c| {
            let store = c.store.as_ref();
            let status = web::handoff_status(store, &m.code, m.poll_secret.as_deref(), &m.origin, m.session_ttl_ms, now_ms())?;
            if matches!(status, HandoffStatus::Completed(..)) {
                c.opened_account();
            }
            Ok(status)
        })
    }
}

/// A committed group on its way to the syncer: its logins, and the other grouped writes'
/// answers.
struct Applied {
    waiting: Vec<Waiting>,
    opened: Vec<Option<FluxSession>>,
    answers: Vec<Answer>,
}

/// What the committer gathers between two commits.
#[derive(Default)]
struct Group {
    logins: Vec<(OpenSession, Reply<Option<FluxSession>>)>,
    answers: Vec<Answer>,
}

/// What is left of an [`OpenSession`] once its writes went to the store.
struct Waiting {
    signature: String,
    verified_at: Instant,
    reply: Reply<Option<FluxSession>>,
}

/// The registry's serial stage: applies writes to the store in arrival order.
struct Committer {
    store: Arc<dyn Store>,
    notifier: Notifier,
    metrics: Option<ActorMetrics>,
    applied: Sender<Applied>,
}

impl Committer {
    /// Takes whatever queued up while it was busy: applies grouped writes in their place,
    /// commits the logins among them as one write, and hands the group to the syncer; a write
    /// that runs alone first ends the group before it. Until the registry is gone.
    fn run(self, queue: &Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut group = Group::default();
            for job in std::iter::once(first).chain(queue.try_iter().take(MAX_GROUP - 1)) {
                match job {
                    Job::Open(msg, reply) => group.logins.push((msg, reply)),
                    Job::Grouped(work) => group.answers.push(work(&self)),
                    Job::Other(work) => {
                        self.commit(std::mem::take(&mut group));
                        work(&self);
                    }
                }
            }
            self.commit(group);
        }
    }

    fn commit(&self, Group { logins, answers }: Group) {
        if logins.is_empty() && answers.is_empty() {
            return;
        }
        if let Some(m) = &self.metrics {
            m.registry_group_size.observe((logins.len() + answers.len()) as f64);
        }
        let (openings, waiting): (Vec<_>, Vec<_>) = logins
            .into_iter()
            .map(|(msg, reply)| (msg.opening, Waiting { signature: msg.signature, verified_at: msg.verified_at, reply }))
            .unzip();
        let (waiting, opened) = match session::commit_openings(self.store.as_ref(), openings) {
            Ok(opened) => (waiting, opened),
            Err(e) => {
                tracing::error!(error = %e, logins = waiting.len(), "group commit of logins failed");
                for w in waiting {
                    let _ = w.reply.send(Err(FluxError::from(e.clone())));
                }
                (Vec::new(), Vec::new())
            }
        };
        // The syncer only ends when this thread drops its sender.
        let _ = self.applied.send(Applied { waiting, opened, answers });
    }

    fn ended(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.sessions_ended.inc_by(n as u64);
        }
    }

    fn opened_account(&self) {
        if let Some(m) = &self.metrics {
            m.account_sessions_opened.inc();
        }
    }
}

/// The registry's durability stage: one fsync for every group applied since the last one,
/// then the answers and the websocket pushes.
struct Syncer {
    store: Arc<dyn Store>,
    notifier: Notifier,
    metrics: Option<ActorMetrics>,
}

impl Syncer {
    fn run(self, applied: &Receiver<Applied>) {
        while let Ok(first) = applied.recv() {
            let groups: Vec<Applied> = std::iter::once(first).chain(applied.try_iter()).collect();
            let persisted = self.store.persist();
            if let Err(e) = &persisted {
                tracing::error!(error = %e, "making logins durable failed");
            }
            // Pushes go out before the answers: a waiting page should hear of its login no
            // later than the client that made it.
            let mut answers = Vec::new();
            let mut grouped = Vec::new();
            for Applied { waiting, opened, answers: more } in groups {
                grouped.extend(more);
                for (w, s) in waiting.into_iter().zip(opened) {
                    let answer = match &persisted {
                        Ok(()) => {
                            if let Some(s) = &s {
                                self.opened(s, w.signature, w.verified_at);
                            }
                            Ok(s)
                        }
                        Err(e) => Err(FluxError::from(e.clone())),
                    };
                    answers.push((w.reply, answer));
                }
            }
            for (reply, answer) in answers {
                let _ = reply.send(answer);
            }
            for answer in grouped {
                answer(persisted.clone());
            }
        }
    }

    fn opened(&self, s: &FluxSession, signature: String, verified_at: Instant) {
        let event = Event { payload: Payload::Login { session: s.clone(), signature }, committed_at: verified_at };
        self.notifier.publish(Topic::Login(s.login_phrase.clone()), event);
        if let Some(m) = &self.metrics {
            m.sessions_opened.inc();
        }
    }
}

/// Read-only, lock-free access to sessions for the request path.
#[derive(Clone)]
pub struct SessionReader {
    store: Arc<dyn Store>,
    phrase_ttl: Millis,
}

impl SessionReader {
    pub fn new(store: Arc<dyn Store>, phrase_ttl: Millis) -> Self {
        Self { store, phrase_ttl }
    }

    /// The session a `zelidauth` credential names, if it is live and the signature is the one
    /// it was opened with (decision 5: a lookup and a hash compare, no ECDSA).
    pub fn authorize(&self, zelid: &str, phrase: &str, signature: &str) -> Result<Option<FluxSession>, FluxError> {
        Ok(session::session(self.store.as_ref(), phrase)?.filter(|s| s.zelid == zelid && s.signed_with(signature)))
    }

    /// [`SessionReader::authorize`] without holding the caller's thread while a networked
    /// store answers (cluster mode); the same answer.
    pub async fn authorize_async(&self, zelid: &str, phrase: &str, signature: &str) -> Result<Option<FluxSession>, FluxError> {
        let found = session::session_async(self.store.as_ref(), phrase).await?;
        Ok(found.filter(|s| s.zelid == zelid && s.signed_with(signature)))
    }

    pub fn session(&self, phrase: &str) -> Result<Option<FluxSession>, FluxError> {
        Ok(session::session(self.store.as_ref(), phrase)?)
    }

    pub fn push_signature(&self, phrase: &str) -> Result<Option<String>, FluxError> {
        Ok(session::push_signature(self.store.as_ref(), phrase)?)
    }

    pub fn active_phrase(&self, phrase: &str) -> Result<Option<ActivePhrase>, FluxError> {
        Ok(session::active_phrase(self.store.as_ref(), phrase, self.phrase_ttl)?)
    }

    pub fn sessions_of(&self, zelid: &str) -> Result<Vec<FluxSession>, FluxError> {
        Ok(session::sessions_of(self.store.as_ref(), zelid)?)
    }

    pub fn all_sessions(&self) -> Result<Vec<FluxSession>, FluxError> {
        Ok(session::all_sessions(self.store.as_ref())?)
    }

    pub fn app_owner(&self, app: &str) -> Result<Option<String>, FluxError> {
        Ok(session::app_owner(self.store.as_ref(), app)?)
    }

    pub fn app_owners(&self) -> Result<Vec<(String, String)>, FluxError> {
        Ok(session::app_owners(self.store.as_ref())?)
    }

    pub fn provided_signature(&self, identifier: &str) -> Result<Option<session::ProvidedSignature>, FluxError> {
        Ok(session::provided_signature(self.store.as_ref(), identifier)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_engine::store::{Durability, RocksStore};

    #[actix_web::test]
    async fn concurrent_logins_share_commits_and_each_phrase_opens_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), Durability::Fsync).unwrap());
        let registry = prometheus::Registry::new();
        let metrics = ActorMetrics::new(&registry).unwrap();
        let notifier = Notifier::new(None);
        let sessions = SessionRegistry::start(store.clone(), notifier, Some(metrics.clone())).unwrap();
        let now = now_ms();
        let phrases = session::issue_phrases(store.as_ref(), now, 60_000, 120).unwrap();
        // Every phrase twice, by two different zelids: one of each pair may win.
        let attempts: Vec<_> = phrases
            .iter()
            .flat_map(|p| ["1first", "1second"].map(|zelid| (p.phrase.clone(), zelid)))
            .map(|(phrase, zelid)| {
                let login = SignedPhrase { zelid: zelid.into(), phrase, signature: format!("sig-{zelid}") };
                let opening = session::prepare_opening(&login, now, 3_600_000, now).unwrap();
                request(&sessions, OpenSession { opening, signature: login.signature, verified_at: Instant::now() })
            })
            .collect();
        let answers = futures_util::future::join_all(attempts).await;
        for (pair, phrase) in answers.chunks(2).zip(&phrases) {
            let opened: Vec<_> = pair.iter().filter_map(|a| a.as_ref().unwrap().as_ref()).collect();
            assert_eq!(opened.len(), 1, "{} opened {} times", phrase.phrase, opened.len());
            let stored = session::session(store.as_ref(), &phrase.phrase).unwrap().unwrap();
            assert_eq!(&stored, opened[0], "the acknowledged session is the stored one");
        }
        assert_eq!(metrics.sessions_opened.get(), 120);
        let commits = metrics.registry_group_size.get_sample_count();
        assert!(commits < 240, "concurrent logins were committed in groups ({commits} commits for 240)");

        // Other writes keep their place in the queue: a logout right after its login ends it.
        let ended = request(&sessions, Logout { phrase: phrases[0].phrase.clone(), zelid: None }).await.unwrap();
        assert!(ended);
        assert_eq!(session::session(store.as_ref(), &phrases[0].phrase).unwrap(), None);
    }
}
