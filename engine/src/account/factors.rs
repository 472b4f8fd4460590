//! Second factors: TOTP (RFC 6238 through `totp-rs`), SMS codes and recovery codes.
//!
//! The rules every factor follows: codes come from the OS CSPRNG without bias, only hashes of
//! SMS and recovery codes are stored, comparisons are constant-time, and acceptance is
//! exactly-once — a TOTP step once per account, an SMS or recovery code once — because the
//! store commits the "used" mark in the same atomic update that accepts the code.

use totp_rs::{Algorithm, Secret, TOTP};

use crate::secret::{RandomError, constant_time_eq, fill_random, secret_hash};

/// RFC 6238 as every authenticator app does it: SHA-1, 6 digits, 30 s.
pub const TOTP_DIGITS: usize = 6;
pub const TOTP_STEP_SECS: u64 = 30;
/// Steps accepted either side of now (clock drift).
pub const TOTP_SKEW: u64 = 1;
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;
/// How long an SMS code is good for.
pub const SMS_CODE_TTL_MS: u64 = 10 * 60_000;
/// Shortest pause between two SMS to one session.
pub const SMS_RESEND_MS: u64 = 30_000;

fn totp(secret: Vec<u8>, account: &str) -> TOTP {
    // `new_unchecked`: the secret is ours (160 bits) or was checked by `decode_secret`, and an
    // account name with a colon must not make a code uncheckable.
    TOTP::new_unchecked(Algorithm::SHA1, TOTP_DIGITS, 1, TOTP_STEP_SECS, secret, Some("sigil".into()), account.replace(':', "_"))
}

/// A fresh 160-bit TOTP secret, base32 (as authenticator apps take it).
pub fn new_totp_secret() -> Result<String, RandomError> {
    let mut raw = [0u8; 20];
    fill_random(&mut raw)?;
    Ok(Secret::Raw(raw.to_vec()).to_encoded().to_string())
}

/// The raw key of a base32 secret, if it is one of at least 128 bits.
pub fn decode_secret(base32: &str) -> Option<Vec<u8>> {
    let cleaned: String = base32.chars().filter(|c| !c.is_whitespace() && *c != '=').collect::<String>().to_ascii_uppercase();
    let raw = Secret::Encoded(cleaned).to_bytes().ok()?;
    (raw.len() >= 16 && raw.len() <= 128).then_some(raw)
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(base32: &str, account: &str) -> Option<String> {
    Some(totp(decode_secret(base32)?, account).get_url())
}

/// The code an authenticator app shows for `base32` at `unix_secs` (for clients of sigil: the
/// load generator; sigil itself only checks codes, with [`totp_match`]).
pub fn totp_code(base32: &str, unix_secs: u64) -> Option<String> {
    Some(totp(decode_secret(base32)?, "").generate(unix_secs))
}

/// The time step a code is for: `unix_secs / 30`.
pub fn totp_step(unix_secs: u64) -> u64 {
    unix_secs / TOTP_STEP_SECS
}

/// The step (within ±[`TOTP_SKEW`] of now) whose code `code` is, if any. Every candidate is
/// compared, in constant time, so the answer's timing does not say which one matched.
pub fn totp_match(base32: &str, code: &str, unix_secs: u64) -> Option<u64> {
    let code = normalize_digits(code)?;
    let key = decode_secret(base32)?;
    let t = totp(key, "");
    let now = totp_step(unix_secs);
    let mut matched = None;
    for step in now.saturating_sub(TOTP_SKEW)..=now + TOTP_SKEW {
        let expected = t.generate(step * TOTP_STEP_SECS);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// The digits of a typed code ("48 01 94" → "480194"); `None` unless exactly six digits.
pub fn normalize_digits(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// A uniformly random six-digit code (rejection sampling: 4 294 000 000 is a multiple of 10⁶).
pub fn new_sms_code() -> Result<String, RandomError> {
    loop {
        let mut b = [0u8; 4];
        fill_random(&mut b)?;
        let n = u32::from_be_bytes(b);
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

/// "480194" → "48 01 94", as the SMS shows it.
pub fn spaced(code: &str) -> String {
    code.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

/// hex SHA-256 of a code, as stored.
pub fn code_hash(code: &str) -> String {
    hex::encode(secret_hash(code.as_bytes()))
}

/// Whether `code` (already normalised) is the one `stored_hash` was made from, in constant time.
pub fn code_matches(code: &str, stored_hash: &str) -> bool {
    constant_time_eq(code_hash(code).as_bytes(), stored_hash.as_bytes())
}

/// Ten recovery codes (128 bits each, 32 lowercase hex) and their hashes.
pub fn new_recovery_codes() -> Result<(Vec<String>, Vec<String>), RandomError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut raw = [0u8; 16];
        fill_random(&mut raw)?;
        codes.push(hex::encode(raw));
    }
    let hashes = codes.iter().map(|c| code_hash(c)).collect();
    Ok((codes, hashes))
}

/// A typed recovery code: 32 hex digits, spaces and dashes ignored, any case.
pub fn normalize_recovery(code: &str) -> Option<String> {
    let cleaned: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_ascii_lowercase();
    (cleaned.len() == 32 && cleaned.bytes().all(|b| b.is_ascii_hexdigit())).then_some(cleaned)
}

/// The index of the stored hash `code` matches, comparing every one in constant time.
pub fn recovery_match(code: &str, hashes: &[String]) -> Option<usize> {
    let presented = code_hash(code);
    let mut found = None;
    for (i, h) in hashes.iter().enumerate() {
        if constant_time_eq(presented.as_bytes(), h.as_bytes()) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_agrees_with_an_independent_implementation() {
        let secret = new_totp_secret().unwrap();
        let key = decode_secret(&secret).unwrap();
        assert_eq!(key.len(), 20);
        for t in [59u64, 1_111_111_109, 1_234_567_890, 2_000_000_000] {
            let theirs = totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &key, t);
            assert_eq!(totp_match(&secret, &theirs, t), Some(t / 30), "t = {t}");
            // One step either side is accepted, two are not.
            assert_eq!(totp_match(&secret, &theirs, t + 30), Some(t / 30));
            assert_eq!(totp_match(&secret, &theirs, t - 30), Some(t / 30));
            let far = totp_lite::totp_custom::<totp_lite::Sha1>(30, 6, &key, t + 90);
            assert_ne!(totp_match(&secret, &far, t), Some((t + 90) / 30));
        }
    }

    #[test]
    fn rfc_6238_vector() {
        // RFC 6238 appendix B, SHA-1, truncated to 6 digits: T = 59 → 94287082 → "287082".
        let secret = Secret::Raw(b"12345678901234567890".to_vec()).to_encoded().to_string();
        assert_eq!(totp_match(&secret, "287082", 59), Some(1));
        assert_eq!(totp_match(&secret, "28 70 82", 59), Some(1));
        assert_eq!(totp_match(&secret, "287083", 59), None);
        assert_eq!(totp_match(&secret, "28708", 59), None);
    }

    #[test]
    fn otpauth_uri_names_the_account_and_secret() {
        let secret = new_totp_secret().unwrap();
        let uri = otpauth_uri(&secret, "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/sigil:alice?"), "{uri}");
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    }

    #[test]
    fn short_or_broken_secrets_are_refused() {
        assert!(decode_secret("JBSWY3DP").is_none(), "40 bits");
        assert!(decode_secret("not base32!").is_none());
        assert!(decode_secret(&new_totp_secret().unwrap().to_lowercase()).is_some());
    }

    #[test]
    fn sms_codes_are_six_uniform_digits() {
        let mut first_digit = [0u32; 10];
        for _ in 0..20_000 {
            let c = new_sms_code().unwrap();
            assert_eq!(c.len(), 6);
            first_digit[usize::from(c.as_bytes()[0] - b'0')] += 1;
        }
        // 2000 expected each, sd ≈ 42: a 10-sd band.
        assert!(first_digit.iter().all(|n| (1_580..=2_420).contains(n)), "{first_digit:?}");
        assert_eq!(spaced("480194"), "48 01 94");
        assert_eq!(normalize_digits(" 48 01 94 ").as_deref(), Some("480194"));
        assert_eq!(normalize_digits("48O194"), None);
    }

    #[test]
    fn recovery_codes_match_once_each_by_hash() {
        let (codes, hashes) = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
        assert!(hashes.iter().zip(&codes).all(|(h, c)| h != c), "only hashes are kept");
        let typed = normalize_recovery(&codes[3].to_uppercase()).unwrap();
        assert_eq!(recovery_match(&typed, &hashes), Some(3));
        assert_eq!(recovery_match(&"0".repeat(32), &hashes), None);
    }
}
