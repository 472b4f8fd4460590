//! The account directory: every write to accounts and groups, on its own thread.
//!
//! Writes are durable (fsynced) store updates, so they run on a sync actor rather than on the
//! HTTP workers. Each is an atomic read-modify-write of one record (`account::modify`), so a
//! login's transparent re-hash, a TOTP step being used, and an administrator's change never
//! overwrite one another. Reads (`account::get`, `account::find`) go straight to the store
//! from the request path, like session lookups.

use std::sync::Arc;

use actix::prelude::*;
use sigil_engine::account::{self, Account, AccountError, Fields, Group};
use sigil_engine::passkeys::{self, RelyingParty, StoredPasskey};
use sigil_engine::web::WebError;
use sigil_engine::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};
use sigil_engine::store::{Store, now_ms};

pub struct AccountDirectory {
    store: Arc<dyn Store>,
}

impl AccountDirectory {
    pub fn start(store: Arc<dyn Store>) -> Addr<Self> {
        SyncArbiter::start(1, move || Self { store: store.clone() })
    }
}

impl Actor for AccountDirectory {
    type Context = SyncContext<Self>;
}

/// Create an account; the password is already hashed (by the password pool).
#[derive(Message)]
#[rtype(result = "Result<Account, AccountError>")]
pub struct CreateAccount {
    pub fields: Fields,
    pub password_phc: String,
}

/// Change an account's fields, and its password hash if given.
#[derive(Message)]
#[rtype(result = "Result<Account, AccountError>")]
pub struct PatchAccount {
    pub guid: String,
    pub fields: Fields,
    pub password_phc: Option<String>,
}

/// Delete an account and end all its sessions.
#[derive(Message)]
#[rtype(result = "Result<Account, AccountError>")]
pub struct DeleteAccount {
    pub guid: String,
}

/// Enrol TOTP (a new secret unless one is given) and issue fresh recovery codes.
#[derive(Message)]
#[rtype(result = "Result<(String, Vec<String>), AccountError>")]
pub struct EnrolTotp {
    pub guid: String,
    pub secret: Option<String>,
    /// The step of the code that proved the enrolment (0 when an admin enrols).
    pub used_step: u64,
}

/// Accept a TOTP code (a step once per account) or a recovery code (once), consuming it.
#[derive(Message)]
#[rtype(result = "Result<bool, AccountError>")]
pub struct UseSecondFactor {
    pub guid: String,
    pub code: String,
    pub recovery: bool,
}

/// Trust a login address of the account (its first login, or an approved new one).
#[derive(Message)]
#[rtype(result = "Result<(), AccountError>")]
pub struct AuthorizeIp {
    pub guid: String,
    pub ip: String,
}

/// Remove TOTP and the recovery codes.
#[derive(Message)]
#[rtype(result = "Result<Account, AccountError>")]
pub struct RemoveTotp {
    pub guid: String,
}

/// Store a fresh hash of the password that just logged in, unless the password changed
/// meanwhile (the hash is still `old_phc`).
#[derive(Message)]
#[rtype(result = "Result<(), AccountError>")]
pub struct Rehash {
    pub guid: String,
    pub old_phc: String,
    pub new_phc: String,
}

#[derive(Message)]
#[rtype(result = "Result<Group, AccountError>")]
pub struct CreateGroup(pub Group);

/// Change a group: each field given replaces the stored one.
#[derive(Message)]
#[rtype(result = "Result<Group, AccountError>")]
pub struct PatchGroup {
    pub name: String,
    pub login_allowed: Option<bool>,
    pub ip_allowlist: Option<Vec<String>>,
    pub require_2fa: Option<bool>,
}

#[derive(Message)]
#[rtype(result = "Result<Group, AccountError>")]
pub struct DeleteGroup {
    pub name: String,
}

impl Handler<CreateAccount> for AccountDirectory {
    type Result = Result<Account, AccountError>;
    fn handle(&mut self, m: CreateAccount, _: &mut SyncContext<Self>) -> Self::Result {
        account::create(self.store.as_ref(), &m.fields, m.password_phc, now_ms())
    }
}

impl Handler<PatchAccount> for AccountDirectory {
    type Result = Result<Account, AccountError>;
    fn handle(&mut self, m: PatchAccount, _: &mut SyncContext<Self>) -> Self::Result {
        account::patch(self.store.as_ref(), &m.guid, &m.fields, m.password_phc)
    }
}

impl Handler<DeleteAccount> for AccountDirectory {
    type Result = Result<Account, AccountError>;
    fn handle(&mut self, m: DeleteAccount, _: &mut SyncContext<Self>) -> Self::Result {
        account::delete(self.store.as_ref(), &m.guid)
    }
}

impl Handler<EnrolTotp> for AccountDirectory {
    type Result = Result<(String, Vec<String>), AccountError>;
    fn handle(&mut self, m: EnrolTotp, _: &mut SyncContext<Self>) -> Self::Result {
        account::enrol_totp(self.store.as_ref(), &m.guid, m.secret, m.used_step, now_ms())
    }
}

impl Handler<UseSecondFactor> for AccountDirectory {
    type Result = Result<bool, AccountError>;
    fn handle(&mut self, m: UseSecondFactor, _: &mut SyncContext<Self>) -> Self::Result {
        if m.recovery {
            account::use_recovery_code(self.store.as_ref(), &m.guid, &m.code)
        } else {
            account::use_totp(self.store.as_ref(), &m.guid, &m.code, now_ms() / 1000)
        }
    }
}

impl Handler<AuthorizeIp> for AccountDirectory {
    type Result = Result<(), AccountError>;
    fn handle(&mut self, m: AuthorizeIp, _: &mut SyncContext<Self>) -> Self::Result {
        account::authorize_ip(self.store.as_ref(), &m.guid, &m.ip)
    }
}

impl Handler<RemoveTotp> for AccountDirectory {
    type Result = Result<Account, AccountError>;
    fn handle(&mut self, m: RemoveTotp, _: &mut SyncContext<Self>) -> Self::Result {
        account::remove_totp(self.store.as_ref(), &m.guid)
    }
}

impl Handler<Rehash> for AccountDirectory {
    type Result = Result<(), AccountError>;
    fn handle(&mut self, m: Rehash, _: &mut SyncContext<Self>) -> Self::Result {
        let changed = account::modify(self.store.as_ref(), &m.guid, false, &mut |a| {
            if a.password != m.old_phc {
                return Err(AccountError::invalid("password", "changed meanwhile"));
            }
            a.password = m.new_phc.clone();
            Ok(())
        });
        match changed {
            Ok(_) | Err(AccountError::Invalid { .. } | AccountError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Handler<CreateGroup> for AccountDirectory {
    type Result = Result<Group, AccountError>;
    fn handle(&mut self, m: CreateGroup, _: &mut SyncContext<Self>) -> Self::Result {
        account::create_group(self.store.as_ref(), m.0)
    }
}

impl Handler<PatchGroup> for AccountDirectory {
    type Result = Result<Group, AccountError>;
    fn handle(&mut self, m: PatchGroup, _: &mut SyncContext<Self>) -> Self::Result {
        account::modify_group(self.store.as_ref(), &m.name, &mut |g| {
            if let Some(v) = m.login_allowed {
                g.login_allowed = v;
            }
            if let Some(v) = &m.ip_allowlist {
                g.ip_allowlist = v.clone();
            }
            if let Some(v) = m.require_2fa {
                g.require_2fa = v;
            }
            Ok(())
        })
    }
}

impl Handler<DeleteGroup> for AccountDirectory {
    type Result = Result<Group, AccountError>;
    fn handle(&mut self, m: DeleteGroup, _: &mut SyncContext<Self>) -> Self::Result {
        account::delete_group(self.store.as_ref(), &m.name)
    }
}

// ---- passkeys: their ceremonies write challenges and accounts, so they run here ----------

/// Registration options for the caller's account (`passkeys::start_registration`).
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, WebError>")]
pub struct StartPasskeyRegistration {
    pub account: Account,
    pub session_key: Vec<u8>,
    pub rp: Arc<RelyingParty>,
}

/// Verify the browser's new credential and add the passkey (`passkeys::finish_registration`).
#[derive(Message)]
#[rtype(result = "Result<StoredPasskey, WebError>")]
pub struct FinishPasskeyRegistration {
    pub guid: String,
    pub session_key: Vec<u8>,
    pub credential: Box<RegisterPublicKeyCredential>,
    pub name: Option<String>,
    pub rp: Arc<RelyingParty>,
}

/// Rename (`Some(name)`) or delete (`None`) passkey `id`; answers whether the account had it.
#[derive(Message)]
#[rtype(result = "Result<bool, WebError>")]
pub struct EditPasskey {
    pub guid: String,
    pub id: String,
    pub name: Option<String>,
}

/// Options for a passwordless login, with its challenge id.
#[derive(Message)]
#[rtype(result = "Result<(String, serde_json::Value), WebError>")]
pub struct StartPasskeyLogin {
    pub rp: Arc<RelyingParty>,
}

/// Verify a passwordless login; answers the account it names (its counter written back).
#[derive(Message)]
#[rtype(result = "Result<Account, WebError>")]
pub struct FinishPasskeyLogin {
    pub challenge_id: String,
    pub credential: Box<PublicKeyCredential>,
    pub rp: Arc<RelyingParty>,
}

/// Options to answer an MFA ticket with a passkey.
#[derive(Message)]
#[rtype(result = "Result<serde_json::Value, WebError>")]
pub struct StartPasskeySecondFactor {
    pub ticket: String,
    pub rp: Arc<RelyingParty>,
}

impl Handler<StartPasskeyRegistration> for AccountDirectory {
    type Result = Result<serde_json::Value, WebError>;
    fn handle(&mut self, m: StartPasskeyRegistration, _: &mut SyncContext<Self>) -> Self::Result {
        passkeys::start_registration(self.store.as_ref(), &m.rp, &m.account, &m.session_key, now_ms())
    }
}

impl Handler<FinishPasskeyRegistration> for AccountDirectory {
    type Result = Result<StoredPasskey, WebError>;
    fn handle(&mut self, m: FinishPasskeyRegistration, _: &mut SyncContext<Self>) -> Self::Result {
        let name = m.name.as_deref();
        passkeys::finish_registration(self.store.as_ref(), &m.rp, &m.guid, &m.session_key, &m.credential, name, now_ms())
    }
}

impl Handler<EditPasskey> for AccountDirectory {
    type Result = Result<bool, WebError>;
    fn handle(&mut self, m: EditPasskey, _: &mut SyncContext<Self>) -> Self::Result {
        match &m.name {
            Some(name) => passkeys::rename(self.store.as_ref(), &m.guid, &m.id, name),
            None => passkeys::delete(self.store.as_ref(), &m.guid, &m.id),
        }
    }
}

impl Handler<StartPasskeyLogin> for AccountDirectory {
    type Result = Result<(String, serde_json::Value), WebError>;
    fn handle(&mut self, m: StartPasskeyLogin, _: &mut SyncContext<Self>) -> Self::Result {
        passkeys::start_login(self.store.as_ref(), &m.rp, now_ms())
    }
}

impl Handler<FinishPasskeyLogin> for AccountDirectory {
    type Result = Result<Account, WebError>;
    fn handle(&mut self, m: FinishPasskeyLogin, _: &mut SyncContext<Self>) -> Self::Result {
        passkeys::finish_login(self.store.as_ref(), &m.rp, &m.challenge_id, &m.credential, now_ms())
    }
}

impl Handler<StartPasskeySecondFactor> for AccountDirectory {
    type Result = Result<serde_json::Value, WebError>;
    fn handle(&mut self, m: StartPasskeySecondFactor, _: &mut SyncContext<Self>) -> Self::Result {
        passkeys::start_second_factor(self.store.as_ref(), &m.rp, &m.ticket, now_ms())
    }
}
