//! Property tests of the account layer's parsers: whatever a client sends, a value or an
//! error, never a panic, and what is accepted has the promised shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use proptest::prelude::*;
use sigil_engine::account::{self, factors};
use sigil_engine::web;

proptest! {
    #[test]
    fn usernames_emails_phones_never_panic_and_accept_only_their_shape(s in "\\PC{0,80}") {
        if account::check_username(&s).is_ok() {
            prop_assert!((1..=64).contains(&s.len()));
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b)));
        }
        if account::check_email(&s).is_ok() {
            prop_assert!(s.contains('@') && !s.chars().any(char::is_whitespace));
        }
        if account::check_phone(&s).is_ok() {
            prop_assert!(s.starts_with('+') && s[1..].bytes().all(|b| b.is_ascii_digit()));
        }
        let _ = account::check_group_name(&s);
        let _ = account::parse_net(&s);
    }

    #[test]
    fn codes_normalise_to_their_canonical_form(s in "[ 0-9a-zA-Z-]{0,40}") {
        if let Some(d) = factors::normalize_digits(&s) {
            prop_assert!(d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit()));
        }
        if let Some(r) = factors::normalize_recovery(&s) {
            prop_assert!(r.len() == 32 && r.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        if let Some(h) = web::normalize_handoff_code(&s) {
            prop_assert_eq!(h.len(), 8);
            prop_assert_eq!(web::normalize_handoff_code(&h.to_lowercase()), Some(h.clone()), "case-insensitive");
        }
    }

    #[test]
    fn totp_checks_never_panic(secret in "\\PC{0,64}", code in "\\PC{0,12}", t in any::<u64>()) {
        let _ = factors::totp_match(&secret, &code, t);
        let _ = factors::decode_secret(&secret);
    }

    #[test]
    fn a_code_made_for_a_step_matches_that_step(t in 60u64..4_000_000_000) {
        let secret = factors::new_totp_secret().unwrap();
        let code = factors::totp_code(&secret, t).unwrap();
        // (Its own step, or a neighbour whose code happens to be the same six digits.)
        let matched = factors::totp_match(&secret, &code, t);
        prop_assert!(matched.is_some_and(|step| step.abs_diff(factors::totp_step(t)) <= 1), "{matched:?}");
    }
}
