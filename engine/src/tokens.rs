//! The token dialect's rules (`/api/auth`, spec A and C.3): who may log in from where, what a
//! token may do before its second factor, absolute and sliding expiry, one-time tokens, and the
//! second-factor checks with their five-attempt limit.
//!
//! Tokens are [`AccountSession`]s of [`Dialect::Token`] in the one session registry; this module
//! only adds the dialect's decisions. Every function takes the store; the front reaches them
//! through the actors.

use std::net::IpAddr;

use crate::account::{self, Account, AccountError, Method, factors};
use crate::secret::BearerToken;
use crate::session::{self, AccountSession, Dialect, Edit, MAX_2FA_ATTEMPTS, Origin, Session, SmsCode};
use crate::store::{Batch, Millis, Store, StoreError};

/// The dialect's error codes (spec A), one variant each.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Bad credentials; unknown, expired or revoked token.
    #[error("INVALID_TOKEN_DATA")]
    InvalidToken,
    #[error("INVALID_AUTHENTICATION_GROUP")]
    InvalidGroup,
    #[error("INVALID_IP")]
    InvalidIp,
    #[error("INSUFFICIENT_PERMISSIONS")]
    Insufficient,
    #[error("TWO_FACTOR_REQUIRED")]
    TwoFactorRequired,
    /// Too many attempts; retry after this many milliseconds.
    #[error("RATE_LIMITED")]
    RateLimited(Millis),
    #[error("VALIDATION_ERROR: {0}")]
    Validation(String),
    /// The store or a pool could not answer.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Unavailable(e.to_string())
    }
}

impl From<AccountError> for TokenError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Store(s) => s.into(),
            AccountError::Invalid { field, message } => TokenError::Validation(format!("{field}: {message}")),
            AccountError::NotFound => TokenError::InvalidToken,
            other => TokenError::Unavailable(other.to_string()),
        }
    }
}

/// Lifetimes from `tokens.*`.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub expiry_ms: Millis,
    pub renew_ms: Millis,
}

/// What a password login may do next, once the password was right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The token works at once.
    Verified,
    /// The token works only for the 2fa calls and logout until a second factor succeeds.
    NeedsSecondFactor,
}

/// Checks the account's state and group for a login from `ip` (spec A): a disabled account is
/// refused like a wrong password; a group may forbid logins, restrict addresses, or demand a
/// second factor. A group that demands one from an account with none enrolled refuses the
/// login with `TWO_FACTOR_REQUIRED` rather than issuing a token that could never be verified.
pub fn admit(store: &dyn Store, account: &Account, ip: Option<IpAddr>) -> Result<Admission, TokenError> {
    if account.disabled {
        return Err(TokenError::InvalidToken);
    }
    let mut needs = account.has_second_factor();
    if let Some(name) = &account.group {
        let group = account::group(store, name)?.ok_or(TokenError::InvalidGroup)?;
        if !group.login_allowed {
            return Err(TokenError::InvalidGroup);
        }
        if !group.ip_allowlist.is_empty() && !ip.is_some_and(|ip| group.admits(ip)) {
            return Err(TokenError::InvalidIp);
        }
        if group.require_2fa {
            if account.totp.is_none() && account.phone.is_none() {
                return Err(TokenError::TwoFactorRequired);
            }
            needs = true;
        }
    }
    Ok(if needs { Admission::NeedsSecondFactor } else { Admission::Verified })
}

/// Options of a login (spec C.3).
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    pub onetime: bool,
    pub hide_session: bool,
    pub origin: Origin,
}

/// Mints a token for `account` and its session record (not yet written: see [`open_writes`]).
pub fn mint(account: &Account, admission: Admission, opts: &LoginOptions, life: Lifetimes, now: Millis) -> Result<(BearerToken, Vec<u8>, AccountSession), TokenError> {
    let verified = admission == Admission::Verified;
    let (token, key, mut s) =
        AccountSession::mint(&account.guid, Dialect::Token, &opts.origin, life.expiry_ms, Some(life.renew_ms), verified, now)
            .map_err(|e| TokenError::Unavailable(e.to_string()))?;
    s.onetime = opts.onetime;
    s.hide_session = opts.hide_session;
    Ok((token, key, s))
}

/// The writes that open a minted token's session.
pub fn open_writes(key: &[u8], s: &AccountSession) -> Result<Batch, StoreError> {
    let mut b = Batch::new();
    session::open_writes(&mut b, key, &Session::Account(s.clone()))?;
    Ok(b)
}

/// What a request with a token wants to do, for the `verified` gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Any call but the 2fa ones and logout: needs a verified token.
    Use,
    /// A 2fa call or logout: allowed before verification.
    Unverified,
}

/// The live token session named by `secret`, checked for absolute and idle expiry and for the
/// `verified` gate. Does not record the use (see [`record_use`]).
pub fn lookup(store: &dyn Store, secret: &str, purpose: Purpose, now: Millis) -> Result<(Vec<u8>, AccountSession, Millis), TokenError> {
    let key = session::account_key(secret);
    let Some(Session::Account(s)) = session::get(store, &key)? else { return Err(TokenError::InvalidToken) };
    if s.dialect != Dialect::Token {
        return Err(TokenError::InvalidToken);
    }
    let last = session::last_activity(store, &key, s.created_at)?;
    if s.idle_expired(last, now) {
        return Err(TokenError::InvalidToken);
    }
    if purpose == Purpose::Use && !s.verified {
        return Err(TokenError::TwoFactorRequired);
    }
    Ok((key, s, last))
}

/// Records an authenticated use: moves `last_activity` (sliding expiry). One-time tokens are
/// not touched here; their use ends them (through the registry, exactly once).
pub fn record_use(store: &dyn Store, key: &[u8], s: &AccountSession, last: Millis, now: Millis) -> Result<(), StoreError> {
    session::record_use(store, key, s, last, now)
}

/// Every live token of `owner` (or of everyone), with its last activity, oldest first.
pub fn tokens(store: &dyn Store, owner: Option<&str>, now: Millis) -> Result<Vec<(AccountSession, Millis)>, StoreError> {
    let all = match owner {
        Some(o) => session::of_owner(store, o)?,
        None => session::all_accounts(store)?,
    };
    let mut out = Vec::new();
    for (key, s) in all {
        let Session::Account(s) = s else { continue };
        if s.dialect != Dialect::Token {
            continue;
        }
        let last = session::last_activity(store, &key, s.created_at)?;
        if !s.idle_expired(last, now) {
            out.push((s, last));
        }
    }
    Ok(out)
}

/// An SMS to send: to whom, and the six digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsToSend {
    pub to: String,
    pub code: String,
}

/// Starts (or restarts) an SMS second factor for the token under `key`: a fresh code, of
/// which only the hash is kept, unless one was sent less than 30 s ago or the account has no
/// phone. Returns what to send.
pub fn issue_sms(store: &dyn Store, key: &[u8], account: &Account, now: Millis) -> Result<Option<SmsToSend>, TokenError> {
    let Some(phone) = account.phone.clone() else { return Ok(None) };
    let code = factors::new_sms_code().map_err(|e| TokenError::Unavailable(e.to_string()))?;
    let mut issued = false;
    session::update_account(store, key, &mut |s| {
        issued = false;
        let Some(s) = s else { return Edit::Keep };
        if s.verified || !SmsCode::may_resend(s.sms.as_ref(), now) {
            return Edit::Keep;
        }
        s.sms = Some(SmsCode::sent(&code, now));
        issued = true;
        Edit::Save
    })?;
    Ok(issued.then_some(SmsToSend { to: phone, code }))
}

/// Checks a second factor for the token under `key`. At most [`MAX_2FA_ATTEMPTS`] codes are
/// ever checked per token: an attempt is reserved atomically *before* the code is looked at,
/// so concurrent guesses cannot exceed the limit, and the token is revoked when the last one
/// fails. A right code is accepted exactly once (TOTP step, recovery code and SMS code are each
/// marked used in the same atomic update that accepts them). Returns whether it verified.
pub fn second_factor(store: &dyn Store, key: &[u8], method: Method, code: &str, now: Millis) -> Result<bool, TokenError> {
    // 1. Reserve an attempt.
    let mut already = false;
    let reserved = session::update_account(store, key, &mut |s| {
        already = false;
        let Some(s) = s else { return Edit::Keep };
        if s.dialect != Dialect::Token {
            return Edit::Keep;
        }
        if s.verified {
            already = true;
            return Edit::Keep;
        }
        if s.failed_2fa >= MAX_2FA_ATTEMPTS {
            return Edit::End;
        }
        s.failed_2fa += 1;
        Edit::Save
    })?;
    let Some(reserved) = reserved.filter(|s| s.dialect == Dialect::Token) else { return Err(TokenError::InvalidToken) };
    if already {
        return Ok(true);
    }
    // 2. Check the code, consuming it if right.
    let accepted = match method {
        Method::Totp => account::use_totp(store, &reserved.owner, code, now / 1000)?,
        Method::Otp => account::use_recovery_code(store, &reserved.owner, code)?,
        Method::Mobile => {
            let Some(digits) = factors::normalize_digits(code) else { return finish(store, key, false, now, &reserved) };
            let mut ok = false;
            session::update_account(store, key, &mut |s| {
                ok = false;
                let Some(s) = s else { return Edit::Keep };
                match &s.sms {
                    Some(sms) if sms.accepts(&digits, now) => {
                        s.sms = None;
                        s.verified = true;
                        s.last_verified = Some(now);
                        s.failed_2fa = 0;
                        ok = true;
                        Edit::Save
                    }
                    _ => Edit::Keep,
                }
            })?;
            ok
        }
    };
    finish(store, key, accepted, now, &reserved)
}

/// Marks the token verified after a right code, or revokes it after the last wrong one.
fn finish(store: &dyn Store, key: &[u8], accepted: bool, now: Millis, reserved: &AccountSession) -> Result<bool, TokenError> {
    if accepted {
        let mut live = false;
        session::update_account(store, key, &mut |s| {
            let Some(s) = s else {
                live = false;
                return Edit::Keep;
            };
            live = true;
            if s.verified {
                return Edit::Keep;
            }
            s.verified = true;
            s.last_verified = Some(now);
            s.failed_2fa = 0;
            s.sms = None;
            Edit::Save
        })?;
        // Revoked while the code was being checked: the code is spent, the token is not back.
        return if live { Ok(true) } else { Err(TokenError::InvalidToken) };
    }
    if reserved.failed_2fa >= MAX_2FA_ATTEMPTS {
        session::end(store, key, &|_| true)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Durability, RocksStore};

    fn account(store: &dyn Store, name: &str) -> Account {
        let f = account::Fields { username: Some(name.into()), phone: Some(Some("+14155550123".into())), ..Default::default() };
        account::create(store, &f, "$argon2id$placeholder".into(), 1).unwrap()
    }

    fn open(store: &dyn Store, a: &Account, admission: Admission, now: Millis) -> (BearerToken, Vec<u8>) {
        let life = Lifetimes { expiry_ms: 100_000, renew_ms: 10_000 };
        let (token, key, s) = mint(a, admission, &LoginOptions::default(), life, now).unwrap();
        store.write(open_writes(&key, &s).unwrap()).unwrap();
        (token, key)
    }

    #[test]
    fn absolute_and_sliding_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let a = account(&store, "alice");
        let now = crate::store::now_ms();
        let (token, key) = open(&store, &a, Admission::Verified, now);
        let (_, s, last) = lookup(&store, &token.secret, Purpose::Use, now + 9_000).unwrap();
        record_use(&store, &key, &s, last, now + 9_000).unwrap();
        // Used at +9 s, so alive at +18 s although created 18 s ago with a 10 s window.
        assert!(lookup(&store, &token.secret, Purpose::Use, now + 18_000).is_ok());
        assert!(matches!(lookup(&store, &token.secret, Purpose::Use, now + 19_500), Err(TokenError::InvalidToken)));
        assert!(matches!(lookup(&store, "not a token", Purpose::Use, now), Err(TokenError::InvalidToken)));
    }

    #[test]
    fn five_wrong_codes_revoke_and_sms_codes_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), Durability::Fsync).unwrap();
        let a = account(&store, "bob");
        let now = crate::store::now_ms();
        let (token, key) = open(&store, &a, Admission::NeedsSecondFactor, now);
        assert!(matches!(lookup(&store, &token.secret, Purpose::Use, now), Err(TokenError::TwoFactorRequired)));
        let sms = issue_sms(&store, &key, &a, now).unwrap().unwrap();
        assert_eq!(issue_sms(&store, &key, &a, now + 1_000).unwrap(), None, "resend throttled");
        assert!(!second_factor(&store, &key, Method::Mobile, "000000x", now).unwrap());
        assert!(second_factor(&store, &key, Method::Mobile, &factors::spaced(&sms.code), now).unwrap());
        assert!(lookup(&store, &token.secret, Purpose::Use, now).is_ok());

        let (token, key) = open(&store, &a, Admission::NeedsSecondFactor, now);
        let sms = issue_sms(&store, &key, &a, now).unwrap().unwrap();
        let wrong = if sms.code == "123456" { "654321" } else { "123456" };
        for _ in 0..MAX_2FA_ATTEMPTS {
            assert!(!second_factor(&store, &key, Method::Mobile, wrong, now).unwrap());
        }
        assert!(matches!(second_factor(&store, &key, Method::Mobile, &sms.code, now), Err(TokenError::InvalidToken)));
        assert!(matches!(lookup(&store, &token.secret, Purpose::Unverified, now), Err(TokenError::InvalidToken)));
    }
}
