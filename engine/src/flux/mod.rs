//! The Flux ZelID dialect's domain: login phrases, wallet sessions, privileges and the exact
//! acceptance rules of FluxOS (spec/flux-id.md), with sigil's decisions applied.

pub mod body;
pub mod error;
pub mod login;
pub mod privilege;
pub mod session;

pub use body::Fields;
pub use error::FluxError;

/// ISO-8601 UTC with milliseconds, as JavaScript's `Date.toJSON()` writes it.
pub fn iso_millis(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_look_like_javascript() {
        assert_eq!(super::iso_millis(1_574_991_374_806), "2019-11-29T01:36:14.806Z");
        assert_eq!(super::iso_millis(0), "1970-01-01T00:00:00.000Z");
    }
}
