//! sigil's domain, with no HTTP and no actors.
//!
//! - [`verify`]: wallet signatures (Bitcoin signed messages, Ethereum `personal_sign`) with
//!   FluxOS's exact verdicts, and batch verification on rayon;
//! - [`secret`]: login phrases, bearer tokens, hashing and constant-time comparison;
//! - [`store`]: the [`store::Store`] trait and its embedded RocksDB implementation;
//! - [`config`]: typed configuration from TOML and the environment;
//! - [`flux`]: the Flux ZelID dialect: phrases, wallet sessions, privileges, field rules;
//! - [`sign`]: wallet-style signing for the load generator and tests.

pub mod config;
pub mod flux;
pub mod secret;
pub mod sign;
pub mod store;
pub mod verify;
