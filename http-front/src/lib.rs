//! sigil's thin HTTP front: it parses, authenticates and maps errors; the domain lives in
//! `sigil-engine` and state in `sigil-actors`.

pub mod accounts;
pub mod admin;
pub mod admin_cli;
pub mod backend;
pub mod bearer;
pub mod cli;
pub mod error;
pub mod flux;
pub mod json;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod oauth2;
pub mod routes;
pub mod server;
pub mod tokens;
pub mod ui;
pub mod v1;

pub use error::FrontError;
pub use server::Sigil;
