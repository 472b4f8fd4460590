//! HTTP routes, one module per API surface.

pub mod health;
