//! The account API's rules (`/v1`, spec B and C.4): who may log in, MFA tickets, and the
//! cookie/Bearer sessions they open.
//!
//! A `/v1` session is an [`AccountSession`] of [`Dialect::Web`] in the one session registry.
//! An account with a second factor gets an **MFA ticket** instead of a session: a random
//! secret whose SHA-256 keys a record in [`Cf::Tickets`] for `accounts.mfa_ticket_ttl`. The
//! ticket is consumed in the same atomic write that opens the session, so a ticket opens at
//! most one session; each code check reserves one of its five attempts first, and the fifth
//! failure burns it.

use serde::{Deserialize, Serialize};

use crate::account::{self, Account, AccountError, factors};
use crate::secret::{BearerToken, random_id, secret_hash};
use crate::session::{self, AccountSession, Dialect, MAX_2FA_ATTEMPTS, Origin, Session, SmsCode};
use crate::store::{Batch, Change, Cf, Millis, Store, StoreError};
use crate::tokens::SmsToSend;

/// The dialect's error codes (spec B), one variant each.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebError {
    #[error("UNAUTHORIZED")]
    Unauthorized,
    /// Unknown login and wrong password alike.
    #[error("INVALID_CREDENTIALS")]
    InvalidCredentials,
    /// The account, or its group, may not log in.
    #[error("ACCOUNT_DISABLED")]
    AccountDisabled,
    #[error("MFA_INVALID_TICKET")]
    InvalidTicket,
    #[error("INVALID_CODE")]
    InvalidCode,
    #[error("SUDO_MODE_REQUIRED")]
    SudoModeRequired,
    #[error("INVALID_HANDOFF_CODE")]
    InvalidHandoffCode,
    #[error("HANDOFF_CODE_EXPIRED")]
    HandoffCodeExpired,
    /// A login from a new address: approve it with the code sent to the account.
    #[error("IP_AUTHORIZATION_REQUIRED")]
    IpAuthorizationRequired { ticket: String },
    #[error("RATE_LIMITED")]
    RateLimited(Millis),
    /// A passkey ceremony failed: unknown or used challenge, wrong origin or RP id, bad
    /// signature, replayed assertion, a credential of another account.
    #[error("PASSKEY_AUTHENTICATION_FAILED")]
    PasskeyFailed,
    /// `INVALID_FORM_BODY`: (path, message) pairs.
    #[error("INVALID_FORM_BODY")]
    InvalidForm(Vec<(String, String)>),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::Unavailable(e.to_string())
    }
}

impl From<AccountError> for WebError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(s) => s.into(),
            AccountError::Invalid { field, message } => WebError::InvalidForm(vec![(field.to_string(), message)]),
            AccountError::NotFound => WebError::Unauthorized,
            other => WebError::Unavailable(other.to_string()),
        }
    }
}

/// Checks that `account` may log in from `ip`: enabled, and its group (if any) allows logins
/// and the address. A refusal by the group reads as a disabled account here (`/v1` has no
/// group codes), without saying which rule refused.
pub fn admit(store: &dyn Store, account: &Account, ip: Option<std::net::IpAddr>) -> Result<(), WebError> {
    if account.disabled {
        return Err(WebError::AccountDisabled);
    }
    if let Some(name) = &account.group {
        let group = account::group(store, name)?.ok_or(WebError::AccountDisabled)?;
        if !group.login_allowed || (!group.ip_allowlist.is_empty() && !ip.is_some_and(|ip| group.admits(ip))) {
            return Err(WebError::AccountDisabled);
        }
    }
    Ok(())
}

/// The methods a login's MFA answer lists (C.4): `totp`, `sms`, `webauthn`, `recovery`.
pub fn mfa_methods(account: &Account) -> Vec<&'static str> {
    let mut out = Vec::new();
    if account.totp.is_some() {
        out.push("totp");
    }
    if account.phone.is_some() && (account.default_2fa == Some(account::Method::Mobile) || account.totp.is_some()) {
        out.push("sms");
    }
    if !account.passkeys.is_empty() {
        out.push("webauthn");
    }
    if !account.recovery.is_empty() {
        out.push("recovery");
    }
    out
}

/// A session for `account`, not yet written (see [`session::open_writes`]).
pub fn mint(account: &Account, origin: &Origin, ttl_ms: Millis, now: Millis) -> Result<(BearerToken, Vec<u8>, AccountSession), WebError> {
    AccountSession::mint(&account.guid, Dialect::Web, origin, ttl_ms, None, true, now).map_err(|e| WebError::Unavailable(e.to_string()))
}

/// The live `/v1` session named by `secret` (cookie or Bearer), with its last use.
pub fn lookup(store: &dyn Store, secret: &str) -> Result<(Vec<u8>, AccountSession, Millis), WebError> {
    let key = session::account_key(secret);
    match session::get(store, &key)? {
        Some(Session::Account(s)) if s.dialect == Dialect::Web && s.verified => {
            let last = session::last_activity(store, &key, s.created_at)?;
            Ok((key, s, last))
        }
        _ => Err(WebError::Unauthorized),
    }
}

/// Every live `/v1` session of `owner`, with its last use, oldest first.
pub fn sessions_of(store: &dyn Store, owner: &str) -> Result<Vec<(AccountSession, Millis)>, StoreError> {
    let mut out = Vec::new();
    for (key, s) in session::of_owner(store, owner)? {
        if let Session::Account(s) = s
            && s.dialect == Dialect::Web
        {
            let last = session::last_activity(store, &key, s.created_at)?;
            out.push((s, last));
        }
    }
    Ok(out)
}

/// Puts the session under `key` in sudo mode until `now + ttl_ms`; returns the sudo token
/// (256 bits; only its hash is kept, in the session's own record, so it is valid with that
/// session only and dies with it).
pub fn grant_sudo(store: &dyn Store, key: &[u8], ttl_ms: Millis, now: Millis) -> Result<String, WebError> {
    let token = crate::secret::BearerToken::generate().map_err(|e| WebError::Unavailable(e.to_string()))?.secret;
    let hash = hex::encode(secret_hash(token.as_bytes()));
    let mut live = false;
    session::update_account(store, key, &mut |s| {
        let Some(s) = s else {
            live = false;
            return session::Edit::Keep;
        };
        live = true;
        s.sudo = Some(session::SudoGrant { hash: hash.clone(), until: now.saturating_add(ttl_ms) });
        session::Edit::Save
    })?;
    if live { Ok(token) } else { Err(WebError::Unauthorized) }
}

/// Whether `presented` (the sudo cookie or `X-Sudo-Token`) is this session's live sudo grant.
pub fn in_sudo(s: &AccountSession, presented: Option<&str>, now: Millis) -> bool {
    match (&s.sudo, presented) {
        (Some(grant), Some(p)) => {
            let presented = hex::encode(secret_hash(p.as_bytes()));
            now < grant.until && crate::secret::constant_time_eq(presented.as_bytes(), grant.hash.as_bytes())
        }
        _ => false,
    }
}

/// Whether a password login of `account` from `ip` must first be approved by a code sent to
/// the account (C.4): the check is on, the account has no TOTP (its second factor is its own
/// proof), it has authorized at least one address (its first login authorizes one), this
/// address is not among them, and there is an email or phone to send the code to.
pub fn needs_ip_authorization(enabled: bool, account: &Account, ip: &str) -> bool {
    enabled
        && account.totp.is_none()
        && !account.authorized_ips.is_empty()
        && !account.authorized_ips.iter().any(|i| i == ip)
        && (account.email.is_some() || account.phone.is_some())
}

/// A login waiting for its new address to be approved; keyed by `w` ‖ SHA-256(ticket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpWait {
    pub account: String,
    pub ip: String,
    pub user_agent: String,
    pub approved: bool,
}

/// The approval code of an [`IpWait`]; keyed by `c` ‖ SHA-256(code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IpCode {
    account: String,
    ip: String,
    /// hex of the wait's key hash: also the notifier topic of its websocket.
    wait: String,
}

fn wait_key(wait_id: &str) -> Vec<u8> {
    let mut k = vec![b'w'];
    k.extend_from_slice(wait_id.as_bytes());
    k
}

/// The public topic id of a waiting login: hex SHA-256 of its ticket.
pub fn wait_id(ticket: &str) -> String {
    hex::encode(secret_hash(ticket.as_bytes()))
}

fn code_key(code: &str) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&secret_hash(code.trim().to_ascii_lowercase().as_bytes()));
    k
}

/// Starts a new-location approval: a ticket for the waiting client and a code (32 hex) to
/// send to the account; both live `ttl_ms`, only their hashes are stored.
pub fn start_ip_authorization(store: &dyn Store, account: &Account, origin: &Origin, ttl_ms: Millis, now: Millis) -> Result<(String, String), WebError> {
    let random = |n| crate::secret::random_id().map(|id| id[..n].to_string()).map_err(|e| WebError::Unavailable(e.to_string()));
    let (ticket, code) = (random(64)?, random(32)?);
    let wait = IpWait { account: account.guid.clone(), ip: origin.ip.clone(), user_agent: origin.user_agent.clone(), approved: false };
    let id = wait_id(&ticket);
    let entry = IpCode { account: account.guid.clone(), ip: origin.ip.clone(), wait: id.clone() };
    let mut b = Batch::new();
    b.put_expiring(Cf::Tickets, wait_key(&id), to_json(&wait)?, now + ttl_ms);
    b.put_expiring(Cf::Tickets, code_key(&code), to_json(&entry)?, now + ttl_ms);
    store.write(b)?;
    Ok((ticket, code))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|_| StoreError::Corrupt { cf: "tickets", what: "unencodable record" })
}

/// Approves the address of the login waiting on `code` (single use): the address joins the
/// account's authorized ones and the waiting login may take its session. Returns the wait's
/// id (the notifier topic to wake its websocket).
pub fn approve_ip(store: &dyn Store, code: &str) -> Result<String, WebError> {
    let mut taken: Option<IpCode> = None;
    store.update(Cf::Tickets, &code_key(code), false, &mut |current| {
        taken = current.and_then(|c| serde_json::from_slice(&c.value).ok());
        if taken.is_some() { Change::Delete { then: Batch::new() } } else { Change::Keep }
    })?;
    let entry = taken.ok_or(WebError::InvalidCode)?;
    account::authorize_ip(store, &entry.account, &entry.ip)?;
    // A wait that expired meanwhile stays gone: the address is authorized all the same (the
    // code was right), and the client logs in again.
    store.update(Cf::Tickets, &wait_key(&entry.wait), false, &mut |current| {
        let Some((mut w, at)) = current.and_then(|c| Some((serde_json::from_slice::<IpWait>(&c.value).ok()?, c.expires_at))) else {
            return Change::Keep;
        };
        w.approved = true;
        match serde_json::to_vec(&w) {
            Ok(value) => Change::Put { value, expires_at: at, then: Batch::new() },
            Err(_) => Change::Keep,
        }
    })?;
    Ok(entry.wait)
}

/// Opens a session of `account` in the same atomic write that deletes the `tickets` record
/// under `key` — if `still` holds for the record's current value (it was not consumed,
/// burned or changed meanwhile). The one way every `/v1` ticket turns into a session, so
/// each turns into at most one. `None` when the record no longer qualifies.
fn consume_into_session(
    store: &dyn Store,
    key: &[u8],
    account: &Account,
    origin: &Origin,
    session_ttl_ms: Millis,
    now: Millis,
    still: &dyn Fn(&[u8]) -> bool,
) -> Result<Option<(BearerToken, AccountSession)>, WebError> {
    let (token, session_key, s) = mint(account, origin, session_ttl_ms, now)?;
    let mut opens = Batch::new();
    session::open_writes(&mut opens, &session_key, &Session::Account(s.clone()))?;
    let mut opened = false;
    store.update(Cf::Tickets, key, false, &mut |current| {
        opened = current.is_some_and(|c| still(&c.value));
        if opened { Change::Delete { then: opens.clone() } } else { Change::Keep }
    })?;
    Ok(opened.then_some((token, s)))
}

/// Consumes MFA ticket `ticket` of `account` into a session (a second factor other than a code
/// was verified: a passkey). `None` if the ticket is gone or belongs to another account.
pub fn consume_ticket_into_session(
    store: &dyn Store,
    ticket: &str,
    account: &Account,
    origin: &Origin,
    session_ttl_ms: Millis,
    now: Millis,
) -> Result<Option<(BearerToken, AccountSession)>, WebError> {
    let still = |raw: &[u8]| decode_ticket(raw).is_some_and(|t| t.account == account.guid && t.attempts < MAX_2FA_ATTEMPTS);
    consume_into_session(store, &ticket_key(ticket), account, origin, session_ttl_ms, now, &still)
}

/// The waiting login's session, once approved: `Ok(None)` while pending; the session (opened
/// in the same atomic write that consumes the wait, so only once) when approved; unknown or
/// expired ticket: `MFA_INVALID_TICKET`.
pub fn claim_ip_session(
    store: &dyn Store,
    wait_id: &str,
    session_ttl_ms: Millis,
    now: Millis,
) -> Result<Option<(BearerToken, AccountSession, Account)>, WebError> {
    let key = wait_key(wait_id);
    let w: IpWait = store.get(Cf::Tickets, &key)?.and_then(|raw| serde_json::from_slice(&raw).ok()).ok_or(WebError::InvalidTicket)?;
    if !w.approved {
        return Ok(None);
    }
    let account = account::get(store, &w.account)?.filter(|a| !a.disabled).ok_or(WebError::InvalidTicket)?;
    let origin = Origin { ip: w.ip.clone(), user_agent: w.user_agent.clone() };
    let approved = |raw: &[u8]| serde_json::from_slice::<IpWait>(raw).is_ok_and(|w| w.approved);
    match consume_into_session(store, &key, &account, &origin, session_ttl_ms, now, &approved)? {
        Some((token, s)) => Ok(Some((token, s, account))),
        None => Err(WebError::InvalidTicket),
    }
}

/// Characters of a handoff code: no 0/O, 1/I/L or U, so it reads and types without doubt.
const HANDOFF_ALPHABET: &[u8; 32] = b"ABCDEFGHJKMNPQRSTVWXYZ0123456789";
/// How long an expired handoff is remembered, to answer "expired" rather than "unknown".
const HANDOFF_GRACE_MS: Millis = 10 * 60_000;

/// A handoff (C.4): a new device waits, a logged-in one approves; keyed by `h` ‖ SHA-256 of the
/// normalised code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Handoff {
    /// hex SHA-256 of the poll secret.
    poll_hash: String,
    expires_at: Millis,
    /// The account that completed it, until the new device takes its session.
    completed_by: Option<String>,
}

/// A typed code in any case, with or without dashes and spaces → its 8 characters.
pub fn normalize_handoff_code(code: &str) -> Option<String> {
    let c: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_ascii_uppercase();
    (c.len() == 8 && c.bytes().all(|b| HANDOFF_ALPHABET.contains(&b))).then_some(c)
}

fn handoff_key(normalized: &str) -> Vec<u8> {
    let mut k = vec![b'h'];
    k.extend_from_slice(&secret_hash(normalized.as_bytes()));
    k
}

/// Starts a handoff: a code `XXXX-XXXX` (40 bits; each character is one random byte mod 32,
/// exactly uniform since 256 is a multiple of 32) and a poll secret (256 bits), both stored as
/// hashes. Returns (code, poll secret, expires_at).
pub fn initiate_handoff(store: &dyn Store, ttl_ms: Millis, now: Millis) -> Result<(String, String, Millis), WebError> {
    let unavailable = |e: crate::secret::RandomError| WebError::Unavailable(e.to_string());
    let mut raw = [0u8; 8];
    crate::secret::fill_random(&mut raw).map_err(unavailable)?;
    let code: String = raw.iter().filter_map(|b| HANDOFF_ALPHABET.get(usize::from(b % 32)).copied().map(char::from)).collect();
    let poll_secret = BearerToken::generate().map_err(unavailable)?.secret;
    let expires_at = now.saturating_add(ttl_ms);
    let record = Handoff { poll_hash: hex::encode(secret_hash(poll_secret.as_bytes())), expires_at, completed_by: None };
    let mut b = Batch::new();
    b.put_expiring(Cf::Tickets, handoff_key(&code), to_json(&record)?, expires_at + HANDOFF_GRACE_MS);
    if !store.insert_new(&[(Cf::Tickets, handoff_key(&code))], b)? {
        return Err(WebError::Unavailable("handoff code collision; try again".into()));
    }
    let shown = format!("{}-{}", code.get(..4).unwrap_or_default(), code.get(4..).unwrap_or_default());
    Ok((shown, poll_secret, expires_at))
}

/// The logged-in device approves: the handoff now belongs to `account` (once).
pub fn complete_handoff(store: &dyn Store, code: &str, account: &str, now: Millis) -> Result<(), WebError> {
    let key = handoff_key(&normalize_handoff_code(code).ok_or(WebError::InvalidHandoffCode)?);
    let mut outcome = Err(WebError::InvalidHandoffCode);
    store.update(Cf::Tickets, &key, false, &mut |current| {
        let Some((mut h, at)) = current.and_then(|c| Some((serde_json::from_slice::<Handoff>(&c.value).ok()?, c.expires_at))) else {
            outcome = Err(WebError::InvalidHandoffCode);
            return Change::Keep;
        };
        if now >= h.expires_at {
            outcome = Err(WebError::HandoffCodeExpired);
            return Change::Keep;
        }
        if h.completed_by.is_some() {
            outcome = Err(WebError::InvalidHandoffCode);
            return Change::Keep;
        }
        h.completed_by = Some(account.to_string());
        match to_json(&h) {
            Ok(value) => {
                outcome = Ok(());
                Change::Put { value, expires_at: at, then: Batch::new() }
            }
            Err(e) => {
                outcome = Err(e.into());
                Change::Keep
            }
        }
    })?;
    outcome
}

/// What the waiting device learns.
#[derive(Debug)]
pub enum HandoffStatus {
    Pending,
    Expired,
    /// Released once: the session is opened in the write that consumes the handoff.
    Completed(BearerToken, Box<Account>),
}

/// The new device's poll, with its secret (compared in constant time; a wrong or missing
/// secret never releases anything and reads as an unknown code).
pub fn handoff_status(
    store: &dyn Store,
    code: &str,
    poll_secret: Option<&str>,
    origin: &Origin,
    session_ttl_ms: Millis,
    now: Millis,
) -> Result<HandoffStatus, WebError> {
    let key = handoff_key(&normalize_handoff_code(code).ok_or(WebError::InvalidHandoffCode)?);
    let h: Handoff = store.get(Cf::Tickets, &key)?.and_then(|raw| serde_json::from_slice(&raw).ok()).ok_or(WebError::InvalidHandoffCode)?;
    let presented = hex::encode(secret_hash(poll_secret.unwrap_or_default().as_bytes()));
    if poll_secret.is_none() || !crate::secret::constant_time_eq(presented.as_bytes(), h.poll_hash.as_bytes()) {
        return Err(WebError::InvalidHandoffCode);
    }
    let Some(owner) = h.completed_by.clone() else {
        return Ok(if now >= h.expires_at { HandoffStatus::Expired } else { HandoffStatus::Pending });
    };
    let account = account::get(store, &owner)?.filter(|a| !a.disabled).ok_or(WebError::InvalidHandoffCode)?;
    let completed = |raw: &[u8]| serde_json::from_slice::<Handoff>(raw).is_ok_and(|h| h.completed_by.is_some());
    match consume_into_session(store, &key, &account, origin, session_ttl_ms, now, &completed)? {
        Some((token, _)) => Ok(HandoffStatus::Completed(token, Box::new(account))),
        None => Err(WebError::InvalidHandoffCode),
    }
}

/// A pending login waiting for its second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The account's guid.
    pub account: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Code checks used; the fifth failure burns the ticket.
    pub attempts: u8,
    pub ip: String,
    pub user_agent: String,
    pub sms: Option<SmsCode>,
}

fn ticket_key(ticket: &str) -> Vec<u8> {
    secret_hash(ticket.as_bytes()).to_vec()
}

fn decode_ticket(raw: &[u8]) -> Option<Ticket> {
    serde_json::from_slice(raw).ok()
}

fn encode_ticket(t: &Ticket) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(t).map_err(|_| StoreError::Corrupt { cf: "tickets", what: "unencodable ticket" })
}

/// Issues an MFA ticket for `account` (64 hex, 256 bits; only its hash is stored).
pub fn issue_ticket(store: &dyn Store, account: &Account, origin: &Origin, ttl_ms: Millis, now: Millis) -> Result<String, WebError> {
    let ticket = random_id().map_err(|e| WebError::Unavailable(e.to_string()))?;
    let record = Ticket {
        account: account.guid.clone(),
        created_at: now,
        expires_at: now.saturating_add(ttl_ms),
        attempts: 0,
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
        sms: None,
    };
    let mut b = Batch::new();
    b.put_expiring(Cf::Tickets, ticket_key(&ticket), encode_ticket(&record)?, record.expires_at);
    store.write(b)?;
    Ok(ticket)
}

/// The live ticket, if any (no attempt is used).
pub fn ticket(store: &dyn Store, ticket: &str) -> Result<Option<Ticket>, StoreError> {
    Ok(store.get(Cf::Tickets, &ticket_key(ticket))?.as_deref().and_then(decode_ticket))
}

/// Starts (or restarts) the SMS factor of a ticket: a fresh code, of which only the hash is
/// kept, unless one went out less than 30 s ago or the account has no phone.
pub fn ticket_sms(store: &dyn Store, ticket: &str, now: Millis) -> Result<Option<SmsToSend>, WebError> {
    let key = ticket_key(ticket);
    let t = store.get(Cf::Tickets, &key)?.as_deref().and_then(decode_ticket).ok_or(WebError::InvalidTicket)?;
    let account = account::get(store, &t.account)?.ok_or(WebError::InvalidTicket)?;
    let Some(phone) = account.phone else { return Ok(None) };
    let code = factors::new_sms_code().map_err(|e| WebError::Unavailable(e.to_string()))?;
    let mut sent = false;
    store.update(Cf::Tickets, &key, false, &mut |current| {
        sent = false;
        let Some((mut t, at)) = current.and_then(|c| Some((decode_ticket(&c.value)?, c.expires_at))) else { return Change::Keep };
        if !SmsCode::may_resend(t.sms.as_ref(), now) {
            return Change::Keep;
        }
        t.sms = Some(SmsCode::sent(&code, now));
        match encode_ticket(&t) {
            Ok(value) => {
                sent = true;
                Change::Put { value, expires_at: at, then: Batch::new() }
            }
            Err(_) => Change::Keep,
        }
    })?;
    Ok(sent.then_some(SmsToSend { to: phone, code }))
}

/// Which second factor a ticket is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketFactor {
    /// A TOTP code, or a recovery code (C.4: `/v1/auth/mfa/totp` takes both).
    TotpOrRecovery,
    Sms,
}

/// Answers a ticket with a code. Right: the ticket is consumed and the session opened in one
/// atomic write, and the session's token returned. Wrong: `INVALID_CODE`, and the fifth wrong
/// code burns the ticket. Unknown, expired or burned ticket: `MFA_INVALID_TICKET`.
pub fn redeem_ticket(
    store: &dyn Store,
    ticket: &str,
    factor: TicketFactor,
    code: &str,
    session_ttl_ms: Millis,
    now: Millis,
) -> Result<(BearerToken, AccountSession, Account), WebError> {
    let key = ticket_key(ticket);
    // 1. Reserve an attempt (a burned ticket is deleted).
    let mut reserved: Option<Ticket> = None;
    store.update(Cf::Tickets, &key, false, &mut |current| {
        reserved = None;
        let Some((mut t, at)) = current.and_then(|c| Some((decode_ticket(&c.value)?, c.expires_at))) else { return Change::Keep };
        if t.attempts >= MAX_2FA_ATTEMPTS {
            return Change::Delete { then: Batch::new() };
        }
        t.attempts += 1;
        let Ok(value) = encode_ticket(&t) else { return Change::Keep };
        reserved = Some(t);
        Change::Put { value, expires_at: at, then: Batch::new() }
    })?;
    let t = reserved.ok_or(WebError::InvalidTicket)?;
    let account = account::get(store, &t.account)?.ok_or(WebError::InvalidTicket)?;
    // 2. Check the code, consuming it if right (TOTP step, recovery code); SMS codes are
    //    consumed with the ticket below.
    let accepted = match factor {
        TicketFactor::TotpOrRecovery => {
            if factors::normalize_recovery(code).is_some() {
                account::use_recovery_code(store, &account.guid, code)?
            } else {
                account::use_totp(store, &account.guid, code, now / 1000)?
            }
        }
        TicketFactor::Sms => {
            let digits = factors::normalize_digits(code);
            matches!((&t.sms, digits), (Some(sms), Some(d)) if sms.accepts(&d, now))
        }
    };
    if !accepted {
        if t.attempts >= MAX_2FA_ATTEMPTS {
            store.update(Cf::Tickets, &key, false, &mut |_| Change::Delete { then: Batch::new() })?;
        }
        return Err(WebError::InvalidCode);
    }
    // 3. Consume the ticket and open the session in one write.
    // (An SMS code is consumed here: the ticket must still carry the code that was checked.)
    let origin = Origin { ip: t.ip.clone(), user_agent: t.user_agent.clone() };
    let unchanged = |raw: &[u8]| decode_ticket(raw).is_some_and(|now_t| factor != TicketFactor::Sms || now_t.sms == t.sms);
    match consume_into_session(store, &key, &account, &origin, session_ttl_ms, now, &unchanged)? {
        Some((token, s)) => Ok((token, s, account)),
        None => Err(WebError::InvalidTicket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, RocksStore};

    #[test]
    fn handoff_codes_normalise_and_release_once() {
        assert_eq!(normalize_handoff_code(" abcd-ef23 ").as_deref(), Some("ABCDEF23"));
        assert_eq!(normalize_handoff_code("ABCD-EF2"), None);
        assert_eq!(normalize_handoff_code("ABCD-EFGI"), None, "I is not in the alphabet");
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let f = account::Fields { username: Some("ivy".into()), ..Default::default() };
        let a = account::create(&store, &f, "$argon2id$x".into(), 1).unwrap();
        let now = crate::store::now_ms();
        let (code, secret, _) = initiate_handoff(&store, 300_000, now).unwrap();
        assert_eq!(code.len(), 9);
        let o = Origin::default();
        assert!(matches!(handoff_status(&store, &code, Some(&secret), &o, 60_000, now), Ok(HandoffStatus::Pending)));
        assert!(matches!(handoff_status(&store, &code, None, &o, 60_000, now), Err(WebError::InvalidHandoffCode)));
        complete_handoff(&store, &code.to_lowercase().replace('-', " "), &a.guid, now).unwrap();
        assert!(matches!(complete_handoff(&store, &code, &a.guid, now), Err(WebError::InvalidHandoffCode)), "once");
        assert!(matches!(handoff_status(&store, &code, Some("wrong"), &o, 60_000, now), Err(WebError::InvalidHandoffCode)));
        assert!(matches!(handoff_status(&store, &code, Some(&secret), &o, 60_000, now), Ok(HandoffStatus::Completed(..))));
        assert!(matches!(handoff_status(&store, &code, Some(&secret), &o, 60_000, now), Err(WebError::InvalidHandoffCode)), "released once");
        let (code, secret, _) = initiate_handoff(&store, 1_000, now).unwrap();
        assert!(matches!(handoff_status(&store, &code, Some(&secret), &o, 60_000, now + 2_000), Ok(HandoffStatus::Expired)));
        assert!(matches!(complete_handoff(&store, &code, &a.guid, now + 2_000), Err(WebError::HandoffCodeExpired)));
    }

    #[test]
    fn a_ticket_opens_one_session_and_burns_after_five_wrong_codes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let f = account::Fields { username: Some("zoe".into()), phone: Some(Some("+14155550100".into())), ..Default::default() };
        let a = account::create(&store, &f, "$argon2id$x".into(), 1).unwrap();
        let now = crate::store::now_ms();
        let origin = Origin::default();

        let t = issue_ticket(&store, &a, &origin, 300_000, now).unwrap();
        let sms = ticket_sms(&store, &t, now).unwrap().unwrap();
        assert!(ticket_sms(&store, &t, now + 1_000).unwrap().is_none(), "resend throttled");
        assert!(matches!(redeem_ticket(&store, &t, TicketFactor::Sms, "000000x", 60_000, now), Err(WebError::InvalidCode)));
        let (token, s, _) = redeem_ticket(&store, &t, TicketFactor::Sms, &factors::spaced(&sms.code), 60_000, now).unwrap();
        assert_eq!(lookup(&store, &token.secret).unwrap().1, s);
        assert!(matches!(redeem_ticket(&store, &t, TicketFactor::Sms, &sms.code, 60_000, now), Err(WebError::InvalidTicket)), "single use");

        let t = issue_ticket(&store, &a, &origin, 300_000, now).unwrap();
        let sms = ticket_sms(&store, &t, now).unwrap().unwrap();
        let wrong = if sms.code == "111111" { "222222" } else { "111111" };
        for _ in 0..MAX_2FA_ATTEMPTS {
            assert!(matches!(redeem_ticket(&store, &t, TicketFactor::Sms, wrong, 60_000, now), Err(WebError::InvalidCode)));
        }
        assert!(matches!(redeem_ticket(&store, &t, TicketFactor::Sms, &sms.code, 60_000, now), Err(WebError::InvalidTicket)), "burned");
        assert!(ticket(&store, &t).unwrap().is_none());
    }
}
