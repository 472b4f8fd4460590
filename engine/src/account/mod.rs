//! Accounts and authentication groups: the one account model every account dialect uses.
//!
//! An account is found by its `guid` (public, 64 hex) or by its username or email
//! (case-insensitive, unique: a name index in [`Cf::AccountNames`] whose entries are claimed
//! with [`Store::insert_new`], so two concurrent creations of one name cannot both succeed).
//! Every change to an account is a [`Store::update`] of its record — read, edit, write under
//! the record's lock — so concurrent changes (a login's re-hash, a TOTP step being used, an
//! admin's PATCH) never overwrite each other.

pub mod factors;
pub mod password;

use serde::{Deserialize, Serialize};

use crate::session;
use crate::store::{Batch, Change, Cf, Millis, Store, StoreError};

/// A second-factor method, as the dialects name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Totp,
    Mobile,
    Otp,
}

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(Self::Totp),
            "mobile" | "sms" => Some(Self::Mobile),
            "otp" | "recovery" => Some(Self::Otp),
            _ => None,
        }
    }
}

/// An enrolled TOTP authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpFactor {
    /// base32 key (a key, not a bearer secret: the server must compute codes from it).
    pub secret: String,
    /// The last time step accepted: a step is accepted once per account.
    pub last_step: u64,
    pub enrolled_at: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub guid: String,
    pub username: String,
    pub email: Option<String>,
    /// argon2id PHC string.
    pub password: String,
    pub firstname: String,
    pub lastname: String,
    pub language: String,
    pub code: String,
    /// E.164.
    pub phone: Option<String>,
    pub scopes: Vec<String>,
    pub group: Option<String>,
    pub default_2fa: Option<Method>,
    pub disabled: bool,
    pub created_at: Millis,
    pub totp: Option<TotpFactor>,
    /// hex SHA-256 of each unused recovery code.
    pub recovery: Vec<String>,
    /// Addresses this account logged in from and authorized (`/v1` new-location check),
    /// oldest first, at most [`MAX_AUTHORIZED_IPS`].
    #[serde(default)]
    pub authorized_ips: Vec<String>,
    /// Registered passkeys (at most [`crate::passkeys::MAX_PASSKEYS`]). They are a way to log
    /// in and a second factor to choose, never a reason to ask for one.
    #[serde(default)]
    pub passkeys: Vec<crate::passkeys::StoredPasskey>,
    /// The account's WebAuthn user handle (a UUID), set by its first passkey.
    #[serde(default)]
    pub webauthn_id: Option<String>,
    /// Upstream identities (SSO) of this account: `issuer 0x00 subject`.
    #[serde(default)]
    pub sso: Vec<String>,
}

/// Authorized login addresses kept per account; the oldest is forgotten beyond it.
pub const MAX_AUTHORIZED_IPS: usize = 50;

impl Account {
    /// Whether a password login must be followed by a second factor (spec C.4): TOTP enrolled,
    /// or SMS chosen as default with a phone to send to. A phone, or recovery codes, alone do not.
    pub fn has_second_factor(&self) -> bool {
        self.totp.is_some() || (self.default_2fa == Some(Method::Mobile) && self.phone.is_some())
    }

    /// The methods enrolled, as `/api/auth/login`'s `2fa` lists them.
    pub fn methods(&self) -> Vec<Method> {
        let mut out = Vec::new();
        if self.totp.is_some() {
            out.push(Method::Totp);
        }
        if self.phone.is_some() {
            out.push(Method::Mobile);
        }
        if !self.recovery.is_empty() {
            out.push(Method::Otp);
        }
        out
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "admin")
    }

    /// The account without secrets, as the admin API shows it.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "guid": self.guid,
            "username": self.username,
            "email": self.email,
            "firstname": self.firstname,
            "lastname": self.lastname,
            "language": self.language,
            "code": self.code,
            "phone": self.phone,
            "scopes": self.scopes,
            "group": self.group,
            "default_2fa": self.default_2fa,
            "disabled": self.disabled,
            "2fa": self.methods(),
            "created_at": self.created_at / 1000,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub login_allowed: bool,
    /// CIDRs (IPv4 or IPv6); empty = any address.
    pub ip_allowlist: Vec<String>,
    pub require_2fa: bool,
}

impl Group {
    /// Whether `ip` may log in under this group's allow-list.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.ip_allowlist.is_empty() || self.ip_allowlist.iter().filter_map(|c| parse_net(c)).any(|net| net.contains(&ip))
    }
}

/// A CIDR or a single address as a network.
pub fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the username or email is taken")]
    Exists,
    #[error("no such account or group")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("the operating system's random number generator failed")]
    Random,
}

impl AccountError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Corrupt { cf: "accounts", what }
}

/// The fields of a new account or of a change to one (admin API, CLI). For the nullable
/// fields, absent means "leave as is" and `null` means "clear".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    pub username: Option<String>,
    pub password: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub email: Option<Option<String>>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub language: Option<String>,
    pub code: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub phone: Option<Option<String>>,
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub group: Option<Option<String>>,
    pub disabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub default_2fa: Option<Option<String>>,
}

/// A field that is present, possibly `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn printable(field: &'static str, v: &str, max: usize) -> Result<(), AccountError> {
    if v.chars().count() > max {
        return Err(AccountError::invalid(field, format!("must be at most {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(AccountError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

pub fn check_username(v: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b));
    ok.then_some(()).ok_or_else(|| AccountError::invalid("username", "1 to 64 of A-Z a-z 0-9 . _ - @ +"))
}

pub fn check_email(v: &str) -> Result<(), AccountError> {
    printable("email", v, 254)?;
    let ok = v.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'))
        && !v.chars().any(char::is_whitespace);
    ok.then_some(()).ok_or_else(|| AccountError::invalid("email", "must be an email address"))
}

pub fn check_phone(v: &str) -> Result<(), AccountError> {
    let digits = v.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    ok.then_some(()).ok_or_else(|| AccountError::invalid("phone", "must be E.164, e.g. +14155550123"))
}

fn check_scopes(v: &[String]) -> Result<(), AccountError> {
    let ok = v.len() <= 32
        && v.iter().all(|s| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:.-".contains(&b)));
    ok.then_some(()).ok_or_else(|| AccountError::invalid("scopes", "at most 32 names of A-Z a-z 0-9 _ : . -"))
}

pub fn check_group_name(v: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then_some(()).ok_or_else(|| AccountError::invalid("name", "1 to 64 of A-Z a-z 0-9 . _ -"))
}

fn username_key(v: &str) -> Vec<u8> {
    format!("u:{}", v.to_lowercase()).into_bytes()
}

fn email_key(v: &str) -> Vec<u8> {
    format!("e:{}", v.to_lowercase()).into_bytes()
}

/// Applies `f` to `account`, checking each field given. The password, if given, must already
/// be hashed by the caller (hashing belongs to the password pool), so `f.password` is ignored.
fn apply(store: &dyn Store, account: &mut Account, f: &Fields) -> Result<(), AccountError> {
    if let Some(v) = &f.username {
        check_username(v)?;
        account.username = v.clone();
    }
    if let Some(v) = &f.email {
        if let Some(e) = v {
            check_email(e)?;
        }
        account.email = v.clone().filter(|e| !e.is_empty());
    }
    for (field, value, target) in [
        ("firstname", &f.firstname, &mut account.firstname),
        ("lastname", &f.lastname, &mut account.lastname),
        ("code", &f.code, &mut account.code),
    ] {
        if let Some(v) = value {
            printable(field, v, 256)?;
            *target = v.clone();
        }
    }
    if let Some(v) = &f.language {
        let ok = (1..=16).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(AccountError::invalid("language", "a language tag such as en or pt-BR"));
        }
        account.language = v.clone();
    }
    if let Some(v) = &f.phone {
        if let Some(p) = v {
            check_phone(p)?;
        }
        account.phone = v.clone();
    }
    if let Some(v) = &f.scopes {
        check_scopes(v)?;
        account.scopes = v.clone();
    }
    if let Some(v) = &f.group {
        if let Some(g) = v
            && group(store, g)?.is_none()
        {
            return Err(AccountError::invalid("group", format!("no group named {g:?}")));
        }
        account.group = v.clone();
    }
    if let Some(v) = f.disabled {
        account.disabled = v;
    }
    if let Some(v) = &f.default_2fa {
        account.default_2fa = match v.as_deref() {
            None | Some("") => None,
            Some(m) => Some(Method::parse(m).ok_or_else(|| AccountError::invalid("default_2fa", "one of totp, mobile, otp, or null"))?),
        };
    }
    Ok(())
}

/// Creates an account from `f` (username required) with the hashed password `password_phc`.
/// `USER_EXISTS` if the username or the email is taken, atomically.
pub fn create(store: &dyn Store, f: &Fields, password_phc: String, now: Millis) -> Result<Account, AccountError> {
    let username = f.username.clone().ok_or_else(|| AccountError::invalid("username", "is required"))?;
    let guid = crate::secret::random_id().map_err(|_| AccountError::Random)?;
    let mut account = Account {
        guid,
        username,
        email: None,
        password: password_phc,
        firstname: String::new(),
        lastname: String::new(),
        language: "en".into(),
        code: String::new(),
        phone: None,
        scopes: vec!["user".into()],
        group: None,
        default_2fa: None,
        disabled: false,
        created_at: now,
        totp: None,
        recovery: Vec::new(),
        authorized_ips: Vec::new(),
        passkeys: Vec::new(),
        webauthn_id: None,
        sso: Vec::new(),
    };
    apply(store, &mut account, f)?;
    let mut names = vec![(Cf::AccountNames, username_key(&account.username))];
    if let Some(e) = &account.email {
        names.push((Cf::AccountNames, email_key(e)));
    }
    let mut b = Batch::new();
    for (_, key) in &names {
        b.put(Cf::AccountNames, key.clone(), account.guid.clone().into_bytes());
    }
    b.put(Cf::Accounts, account.guid.clone().into_bytes(), encode(&account)?);
    if store.insert_new(&names, b)? { Ok(account) } else { Err(AccountError::Exists) }
}

fn encode(a: &Account) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(a).map_err(|_| corrupt("unencodable account"))
}

fn decode(raw: &[u8]) -> Result<Account, StoreError> {
    serde_json::from_slice(raw).map_err(|_| corrupt("undecodable account"))
}

pub fn get(store: &dyn Store, guid: &str) -> Result<Option<Account>, StoreError> {
    store.get(Cf::Accounts, guid.as_bytes())?.map(|raw| decode(&raw)).transpose()
}

/// The account whose username or email is `login` (any case).
pub fn find(store: &dyn Store, login: &str) -> Result<Option<Account>, StoreError> {
    let key = if login.contains('@') && store.get(Cf::AccountNames, &email_key(login))?.is_some() {
        email_key(login)
    } else {
        username_key(login)
    };
    let Some(guid) = store.get(Cf::AccountNames, &key)? else { return Ok(None) };
    // The name entry is a pointer: the account it names must still carry that name.
    Ok(get(store, &String::from_utf8_lossy(&guid))?.filter(|a| {
        username_key(&a.username) == key || a.email.as_deref().is_some_and(|e| email_key(e) == key)
    }))
}

pub fn list(store: &dyn Store) -> Result<Vec<Account>, StoreError> {
    let mut out: Vec<Account> =
        store.scan_prefix(Cf::Accounts, b"", usize::MAX)?.iter().map(|(_, v)| decode(v)).collect::<Result<_, _>>()?;
    out.sort_by_key(|a| a.username.to_lowercase());
    Ok(out)
}

/// Edits the account `guid` atomically with `edit`, which may refuse with an error (nothing is
/// written). Returns the account as stored after the edit.
pub fn modify(
    store: &dyn Store,
    guid: &str,
    relaxed: bool,
    edit: &mut dyn FnMut(&mut Account) -> Result<(), AccountError>,
) -> Result<Account, AccountError> {
    let mut outcome: Result<Account, AccountError> = Err(AccountError::NotFound);
    store.update(Cf::Accounts, guid.as_bytes(), relaxed, &mut |current| {
        let Some(current) = current else {
            outcome = Err(AccountError::NotFound);
            return Change::Keep;
        };
        let mut account = match decode(&current.value) {
            Ok(a) => a,
            Err(e) => {
                outcome = Err(e.into());
                return Change::Keep;
            }
        };
        if let Err(e) = edit(&mut account) {
            outcome = Err(e);
            return Change::Keep;
        }
        match encode(&account) {
            Ok(value) => {
                outcome = Ok(account);
                Change::Put { value, expires_at: None, then: Batch::new() }
            }
            Err(e) => {
                outcome = Err(e.into());
                Change::Keep
            }
        }
    })?;
    outcome
}

/// Applies a change of fields (admin PATCH, CLI). A new username or email is claimed first
/// (so it cannot be taken twice), then the account is updated and the old names released.
/// `password_phc`, if given, replaces the password hash.
pub fn patch(store: &dyn Store, guid: &str, f: &Fields, password_phc: Option<String>) -> Result<Account, AccountError> {
    let before = get(store, guid)?.ok_or(AccountError::NotFound)?;
    // Check the fields before claiming names.
    let mut preview = before.clone();
    apply(store, &mut preview, f)?;
    let mut claimed = Vec::new();
    if preview.username.to_lowercase() != before.username.to_lowercase() {
        claimed.push(username_key(&preview.username));
    }
    if let Some(e) = &preview.email
        && before.email.as_ref().is_none_or(|old| old.to_lowercase() != e.to_lowercase())
    {
        claimed.push(email_key(e));
    }
    if !claimed.is_empty() {
        let guards: Vec<_> = claimed.iter().map(|k| (Cf::AccountNames, k.clone())).collect();
        let mut b = Batch::new();
        claimed.iter().for_each(|k| {
            b.put(Cf::AccountNames, k.clone(), guid.as_bytes().to_vec());
        });
        if !store.insert_new(&guards, b)? {
            return Err(AccountError::Exists);
        }
    }
    let result = modify(store, guid, false, &mut |a| {
        apply(store, a, f)?;
        if let Some(phc) = &password_phc {
            a.password = phc.clone();
        }
        Ok(())
    });
    let mut release = Batch::new();
    match &result {
        Ok(after) => {
            // Release the names the account no longer has.
            if after.username.to_lowercase() != before.username.to_lowercase() {
                release.delete(Cf::AccountNames, username_key(&before.username));
            }
            if let Some(old) = &before.email
                && after.email.as_ref().is_none_or(|e| e.to_lowercase() != old.to_lowercase())
            {
                release.delete(Cf::AccountNames, email_key(old));
            }
        }
        Err(_) => claimed.iter().for_each(|k| {
            release.delete(Cf::AccountNames, k.clone());
        }),
    }
    store.write(release)?;
    result
}

/// Deletes the account and ends every session it has. Returns the deleted account.
pub fn delete(store: &dyn Store, guid: &str) -> Result<Account, AccountError> {
    let mut deleted = None;
    let mut failure = None;
    store.update(Cf::Accounts, guid.as_bytes(), false, &mut |current| {
        let Some(current) = current else { return Change::Keep };
        match decode(&current.value) {
            Ok(a) => {
                let mut then = Batch::new();
                then.delete(Cf::AccountNames, username_key(&a.username));
                if let Some(e) = &a.email {
                    then.delete(Cf::AccountNames, email_key(e));
                }
                if let Some(user) = &a.webauthn_id {
                    then.delete(Cf::AccountNames, format!("w:{user}").into_bytes());
                }
                for link in &a.sso {
                    then.delete(Cf::AccountNames, [b"o:".as_slice(), link.as_bytes()].concat());
                }
                deleted = Some(a);
                Change::Delete { then }
            }
            Err(e) => {
                failure = Some(e);
                Change::Keep
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let account = deleted.ok_or(AccountError::NotFound)?;
    // The account is gone first, so no new session can open for it; then its sessions end.
    session::end_many(store, &session::of_owner(store, guid)?)?;
    Ok(account)
}

/// Enrols a TOTP secret (a new one unless given) and fresh recovery codes (replacing earlier
/// ones); sets `default_2fa` to TOTP if it was unset. `used_step` is the step of the code that
/// proved the enrolment (it cannot be used again). Returns the secret and the codes in clear,
/// once.
pub fn enrol_totp(
    store: &dyn Store,
    guid: &str,
    secret: Option<String>,
    used_step: u64,
    now: Millis,
) -> Result<(String, Vec<String>), AccountError> {
    let secret = match secret {
        Some(s) => s,
        None => factors::new_totp_secret().map_err(|_| AccountError::Random)?,
    };
    let (codes, hashes) = factors::new_recovery_codes().map_err(|_| AccountError::Random)?;
    modify(store, guid, false, &mut |a| {
        a.totp = Some(TotpFactor { secret: secret.clone(), last_step: used_step, enrolled_at: now });
        a.recovery = hashes.clone();
        if a.default_2fa.is_none() {
            a.default_2fa = Some(Method::Totp);
        }
        Ok(())
    })?;
    Ok((secret, codes))
}

/// Adds `ip` to the account's authorized login addresses (no write if it is there).
pub fn authorize_ip(store: &dyn Store, guid: &str, ip: &str) -> Result<(), AccountError> {
    let result = modify(store, guid, false, &mut |a| {
        if a.authorized_ips.iter().any(|i| i == ip) {
            return Err(AccountError::invalid("ip", "already authorized"));
        }
        a.authorized_ips.push(ip.to_string());
        if a.authorized_ips.len() > MAX_AUTHORIZED_IPS {
            a.authorized_ips.remove(0);
        }
        Ok(())
    });
    match result {
        Ok(_) | Err(AccountError::Invalid { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes TOTP and the recovery codes; `default_2fa` falls back to `mobile` when a phone is
/// set and it was TOTP, else to none.
pub fn remove_totp(store: &dyn Store, guid: &str) -> Result<Account, AccountError> {
    modify(store, guid, false, &mut |a| {
        a.totp = None;
        a.recovery.clear();
        if a.default_2fa == Some(Method::Totp) || a.default_2fa == Some(Method::Otp) {
            a.default_2fa = None;
        }
        Ok(())
    })
}

/// Accepts `code` as the account's TOTP at `unix_secs` if it matches a step within ±1 that is
/// later than the last accepted one, and records that step — atomically, so a code works once.
pub fn use_totp(store: &dyn Store, guid: &str, code: &str, unix_secs: u64) -> Result<bool, AccountError> {
    let mut accepted = false;
    let result = modify(store, guid, false, &mut |a| {
        accepted = false;
        let totp = a.totp.as_mut().ok_or(AccountError::NotFound)?;
        match factors::totp_match(&totp.secret, code, unix_secs) {
            Some(step) if step > totp.last_step => {
                totp.last_step = step;
                accepted = true;
                Ok(())
            }
            // Nothing to write: refuse the edit.
            _ => Err(AccountError::invalid("token", "wrong code")),
        }
    });
    match result {
        Ok(_) => Ok(accepted),
        Err(AccountError::Invalid { .. } | AccountError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Accepts and burns one recovery code, atomically.
pub fn use_recovery_code(store: &dyn Store, guid: &str, code: &str) -> Result<bool, AccountError> {
    let Some(code) = factors::normalize_recovery(code) else { return Ok(false) };
    let result = modify(store, guid, false, &mut |a| match factors::recovery_match(&code, &a.recovery) {
        Some(i) => {
            a.recovery.remove(i);
            Ok(())
        }
        None => Err(AccountError::invalid("token", "wrong code")),
    });
    match result {
        Ok(_) => Ok(true),
        Err(AccountError::Invalid { .. } | AccountError::NotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

// ---- groups ----

fn decode_group(raw: &[u8]) -> Result<Group, StoreError> {
    serde_json::from_slice(raw).map_err(|_| StoreError::Corrupt { cf: "groups", what: "undecodable group" })
}

fn check_group(g: &Group) -> Result<(), AccountError> {
    check_group_name(&g.name)?;
    if g.ip_allowlist.len() > 1024 {
        return Err(AccountError::invalid("ip_allowlist", "at most 1024 entries"));
    }
    for cidr in &g.ip_allowlist {
        if parse_net(cidr).is_none() {
            return Err(AccountError::invalid("ip_allowlist", format!("{cidr:?} is not an IP address or CIDR")));
        }
    }
    Ok(())
}

/// Normalises allow-list entries (`10.0.0.1` → `10.0.0.1/32`, `10.1.2.3/8` → `10.0.0.0/8`).
fn normalise(mut g: Group) -> Group {
    g.ip_allowlist = g.ip_allowlist.iter().filter_map(|c| parse_net(c)).map(|n| n.trunc().to_string()).collect();
    g
}

pub fn create_group(store: &dyn Store, g: Group) -> Result<Group, AccountError> {
    check_group(&g)?;
    let g = normalise(g);
    let value = serde_json::to_vec(&g).map_err(|_| StoreError::Corrupt { cf: "groups", what: "unencodable group" })?;
    let mut b = Batch::new();
    b.put(Cf::Groups, g.name.clone().into_bytes(), value);
    if store.insert_new(&[(Cf::Groups, g.name.clone().into_bytes())], b)? { Ok(g) } else { Err(AccountError::Exists) }
}

pub fn group(store: &dyn Store, name: &str) -> Result<Option<Group>, StoreError> {
    store.get(Cf::Groups, name.as_bytes())?.map(|raw| decode_group(&raw)).transpose()
}

pub fn groups(store: &dyn Store) -> Result<Vec<Group>, StoreError> {
    store.scan_prefix(Cf::Groups, b"", usize::MAX)?.iter().map(|(_, v)| decode_group(v)).collect()
}

/// Changes a group atomically; `edit` may refuse.
pub fn modify_group(
    store: &dyn Store,
    name: &str,
    edit: &mut dyn FnMut(&mut Group) -> Result<(), AccountError>,
) -> Result<Group, AccountError> {
    let mut outcome = Err(AccountError::NotFound);
    store.update(Cf::Groups, name.as_bytes(), false, &mut |current| {
        let Some(current) = current else { return Change::Keep };
        let mut g = match decode_group(&current.value) {
            Ok(g) => g,
            Err(e) => {
                outcome = Err(e.into());
                return Change::Keep;
            }
        };
        if let Err(e) = edit(&mut g).and_then(|()| check_group(&g)) {
            outcome = Err(e);
            return Change::Keep;
        }
        let g = normalise(g);
        match serde_json::to_vec(&g) {
            Ok(value) => {
                outcome = Ok(g);
                Change::Put { value, expires_at: None, then: Batch::new() }
            }
            Err(_) => Change::Keep,
        }
    })?;
    outcome
}

pub fn delete_group(store: &dyn Store, name: &str) -> Result<Group, AccountError> {
    let g = group(store, name)?.ok_or(AccountError::NotFound)?;
    if list(store)?.iter().any(|a| a.group.as_deref() == Some(name)) {
        return Err(AccountError::invalid("name", "the group still has accounts"));
    }
    let mut b = Batch::new();
    b.delete(Cf::Groups, name.as_bytes().to_vec());
    store.write(b)?;
    Ok(g)
}
