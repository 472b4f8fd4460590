//! The offline subcommands: they open the configured store directly. On RocksDB `sigil serve`
//! must not be running on the data directory (RocksDB allows one process; the error then says
//! so); in cluster mode they work on the shared Redis Cluster while the nodes run.

use sigil_engine::account;
use sigil_engine::config::Config;
use sigil_engine::flux::iso_millis;
use sigil_engine::flux::session::{self, FluxSession};
use sigil_engine::store::Store;

use crate::cli::{AppOwnerCommand, GroupCommand, SessionsCommand, UserCommand, WalletCommand, WalletKind};
use crate::backend::Backend;
use crate::error::FrontError;

fn open(config: &Config) -> Result<Backend, FrontError> {
    Backend::open(config)
}

fn line(s: &FluxSession) -> String {
    format!("{}\t{}\t{}\t{}", s.zelid, s.login_phrase, iso_millis(s.created_at), iso_millis(s.expire_at))
}

pub fn sessions(config: &Config, command: &SessionsCommand) -> Result<(), FrontError> {
    let backend = open(config)?;
    let store = backend.store();
    let store = store.as_ref();
    match command {
        SessionsCommand::List { zelid, .. } => {
            let list = match zelid {
                Some(z) => session::sessions_of(store, z)?,
                None => session::all_sessions(store)?,
            };
            list.iter().for_each(|s| println!("{}", line(s)));
            eprintln!("{} session(s)", list.len());
        }
        SessionsCommand::Seed { count, unflushed, .. } => {
            let started = std::time::Instant::now();
            let ttl = config.flux.session_ttl.as_millis();
            session::seed_synthetic(store, *count, sigil_engine::store::now_ms(), ttl)?;
            println!("{count} synthetic session(s) written in {:.1} s", started.elapsed().as_secs_f64());
            if *unflushed {
                store.persist()?;
                // No flush, no close: what a kill -9 leaves behind (the log is synced above).
                std::process::exit(0);
            }
        }
        SessionsCommand::Revoke { phrase, zelid, all, .. } => {
            let ended = match (phrase, zelid, all) {
                (Some(p), _, _) => usize::from(session::logout(store, p, None)?.is_some()),
                (None, Some(z), _) => session::logout_all_of(store, z)?.len(),
                (None, None, true) => session::logout_everyone(store)?.len(),
                (None, None, false) => {
                    return Err(FrontError::Startup("say which sessions: --phrase P, --zelid Z or --all".into()));
                }
            };
            println!("{ended} session(s) ended");
        }
    }
    backend.flush()?;
    Ok(())
}

pub fn wallet(command: &WalletCommand) -> Result<(), FrontError> {
    use sigil_engine::sign;
    use sigil_engine::verify::SignedFor;
    let address = |kind: WalletKind, key: &bitcoin::secp256k1::SecretKey| match kind {
        WalletKind::Btc => sign::p2pkh_address(key, true),
        WalletKind::BtcUncompressed => sign::p2pkh_address(key, false),
        WalletKind::P2shP2wpkh => sign::p2sh_p2wpkh_address(key),
        WalletKind::P2wpkh => sign::p2wpkh_address(key),
        WalletKind::Eth => sign::ethereum_address_of(key),
    };
    match command {
        WalletCommand::New { kind } => {
            let key = sign::random_key();
            println!("{}\t{}", hex::encode(key.secret_bytes()), address(*kind, &key));
        }
        WalletCommand::Sign { kind, key, message } => {
            let key = hex::decode(key.trim())
                .ok()
                .and_then(|b| bitcoin::secp256k1::SecretKey::from_slice(&b).ok())
                .ok_or_else(|| FrontError::Startup("--key must be 64 hex digits of a valid secret key".into()))?;
            let signature = match kind {
                WalletKind::Btc => sign::sign_bitcoin_message(&key, message, SignedFor::P2pkhCompressed),
                WalletKind::BtcUncompressed => sign::sign_bitcoin_message(&key, message, SignedFor::P2pkhUncompressed),
                WalletKind::P2shP2wpkh => sign::sign_bitcoin_message(&key, message, SignedFor::P2shP2wpkh),
                WalletKind::P2wpkh => sign::sign_bitcoin_message(&key, message, SignedFor::P2wpkh),
                WalletKind::Eth => sign::sign_ethereum_message(&key, message),
            };
            println!("{signature}");
        }
    }
    Ok(())
}

pub fn app_owner(config: &Config, command: &AppOwnerCommand) -> Result<(), FrontError> {
    let backend = open(config)?;
    let store = backend.store();
    let store = store.as_ref();
    match command {
        AppOwnerCommand::Set { app, zelid, .. } => {
            session::set_app_owner(store, app, zelid)?;
            println!("{app}\t{zelid}");
        }
        AppOwnerCommand::List { .. } => {
            for (app, owner) in session::app_owners(store)? {
                println!("{app}\t{owner}");
            }
        }
    }
    backend.flush()?;
    Ok(())
}

fn read_password(from_stdin: bool) -> Result<String, FrontError> {
    if !from_stdin {
        return Err(FrontError::Startup("give the password on standard input with --password-stdin (never as an argument)".into()));
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| FrontError::Startup(format!("cannot read the password: {e}")))?;
    let password = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(&line).to_string();
    account::password::check_new(&password).map_err(|m| FrontError::Startup(format!("password {m}")))?;
    Ok(password)
}

fn hash(config: &Config, password: &str) -> Result<String, FrontError> {
    let hasher = account::password::Hasher::new(config.passwords.hash).map_err(|e| FrontError::Startup(e.to_string()))?;
    hasher.hash(password).map_err(|e| FrontError::Startup(e.to_string()))
}

fn account_error(e: account::AccountError) -> FrontError {
    match e {
        account::AccountError::Store(s) => s.into(),
        other => FrontError::Startup(other.to_string()),
    }
}

fn named(store: &dyn Store, username: &str) -> Result<account::Account, FrontError> {
    account::find(store, username)?.ok_or_else(|| FrontError::Startup(format!("no account named {username:?}")))
}

pub fn user(config: &Config, command: &UserCommand) -> Result<(), FrontError> {
    let backend = open(config)?;
    let store = backend.store();
    let store = store.as_ref();
    match command {
        UserCommand::Add { username, password_stdin, email, firstname, lastname, phone, scopes, group, .. } => {
            let password = read_password(*password_stdin)?;
            let fields = account::Fields {
                username: Some(username.clone()),
                email: email.clone().map(Some),
                firstname: firstname.clone(),
                lastname: lastname.clone(),
                phone: phone.clone().map(Some),
                scopes: scopes.clone(),
                group: group.clone().map(Some),
                ..Default::default()
            };
            let created = account::create(store, &fields, hash(config, &password)?, sigil_engine::store::now_ms()).map_err(account_error)?;
            println!("{}\t{}", created.guid, created.username);
        }
        UserCommand::List { .. } => {
            let all = account::list(store)?;
            for a in &all {
                let state = if a.disabled { "disabled" } else { "enabled" };
                let email = a.email.as_deref().unwrap_or("-");
                let group = a.group.as_deref().unwrap_or("-");
                println!("{}\t{}\t{email}\t{}\t{group}\t{state}", a.guid, a.username, a.scopes.join(","));
            }
            eprintln!("{} account(s)", all.len());
        }
        UserCommand::Passwd { username, password_stdin, .. } => {
            let a = named(store, username)?;
            let password = read_password(*password_stdin)?;
            account::patch(store, &a.guid, &account::Fields::default(), Some(hash(config, &password)?)).map_err(account_error)?;
            let ended = sigil_engine::session::end_many(store, &sigil_engine::session::of_owner(store, &a.guid)?)?;
            println!("password changed for {}; {ended} session(s) ended", a.username);
        }
        UserCommand::Disable { username, undo, .. } => {
            let a = named(store, username)?;
            let fields = account::Fields { disabled: Some(!undo), ..Default::default() };
            account::patch(store, &a.guid, &fields, None).map_err(account_error)?;
            if *undo {
                println!("{} enabled", a.username);
            } else {
                let ended = sigil_engine::session::end_many(store, &sigil_engine::session::of_owner(store, &a.guid)?)?;
                println!("{} disabled; {ended} session(s) ended", a.username);
            }
        }
    }
    backend.flush()?;
    Ok(())
}

pub fn group(config: &Config, command: &GroupCommand) -> Result<(), FrontError> {
    let backend = open(config)?;
    let store = backend.store();
    let store = store.as_ref();
    match command {
        GroupCommand::Add { name, ip_allowlist, require_2fa, no_login, .. } => {
            let g = account::Group { name: name.clone(), login_allowed: !no_login, ip_allowlist: ip_allowlist.clone(), require_2fa: *require_2fa };
            let g = account::create_group(store, g).map_err(|e| match e {
                account::AccountError::Exists => FrontError::Startup(format!("a group named {name:?} exists")),
                other => account_error(other),
            })?;
            println!("{}", g.name);
        }
        GroupCommand::List { .. } => {
            for g in account::groups(store)? {
                let list = if g.ip_allowlist.is_empty() { "any".to_string() } else { g.ip_allowlist.join(",") };
                println!("{}\tlogin={}\trequire_2fa={}\t{list}", g.name, g.login_allowed, g.require_2fa);
            }
        }
    }
    backend.flush()?;
    Ok(())
}
