//! sigil's domain, with no HTTP and no actors.
//!
//! - [`verify`]: wallet signatures (Bitcoin signed messages, Ethereum `personal_sign`) with
//!   FluxOS's exact verdicts, and batch verification on rayon;
//! - [`secret`]: login phrases, bearer tokens, hashing and constant-time comparison;
//! - [`store`]: the [`store::Store`] trait and its embedded RocksDB implementation;
//! - [`config`]: typed configuration from TOML and the environment;
//! - [`session`]: the one session record of every dialect (wallet, token, cookie);
//! - [`account`]: accounts, groups, passwords and second factors;
//! - [`limit`]: rate-limit and failure counters in the store;
//! - [`flux`]: the Flux ZelID dialect: phrases, wallet sessions, privileges, field rules;
//! - [`tokens`]: the token dialect's rules (`/api/auth`);
//! - [`web`]: the account API's rules (`/v1`): MFA tickets and cookie/Bearer sessions;
//! - [`sign`]: wallet-style signing for the load generator and tests.

pub mod account;
pub mod config;
pub mod flux;
pub mod limit;
pub mod oauth2;
pub mod passkeys;
pub mod secret;
pub mod session;
pub mod sign;
pub mod sso;
pub mod store;
pub mod tokens;
pub mod verify;
pub mod web;

/// The WebAuthn wire types the other crates name (the browser's credentials).
pub mod webauthn {
    pub use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};
}
