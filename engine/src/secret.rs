//! Secrets: login phrases, bearer tokens and their public ids, hashing and comparison.
//!
//! Everything here draws from the OS CSPRNG. Characters are chosen by rejection sampling so
//! that each is exactly equally likely; bearer secrets carry 256 bits and are stored only as
//! their SHA-256; comparisons of secrets are constant-time.

use bitcoin::hashes::{Hash, sha256};
use rand::TryRngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;

/// Characters of a phrase after its timestamp: FluxOS's lowercase base-36.
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Random base-36 characters in a phrase: 40 × log2(36) ≈ 206.8 bits (≥ 200 required).
pub const PHRASE_RANDOM_CHARS: usize = 40;

#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(String);

/// Fills `buf` from the OS CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    OsRng.try_fill_bytes(buf).map_err(|e| RandomError(e.to_string()))
}

/// Maps a uniformly random byte to a uniformly random base-36 digit, or rejects it.
///
/// 252 = 36 × 7 bytes are kept, seven per digit; the four above are rejected, so no digit is
/// favoured (the classic `byte % 36` would favour 0–3).
fn base36_digit(byte: u8) -> Option<u8> {
    if byte < 252 { BASE36.get(usize::from(byte / 7)).copied() } else { None }
}

/// `n` uniformly random base-36 characters.
pub fn random_base36(n: usize) -> Result<String, RandomError> {
    let mut out = Vec::with_capacity(n);
    // 252/256 of bytes are kept, so n + n/8 + 8 bytes almost always suffice in one read.
    let mut pool = vec![0u8; n + n / 8 + 8];
    while out.len() < n {
        fill_random(&mut pool)?;
        out.extend(pool.iter().filter_map(|b| base36_digit(*b)).take(n - out.len()));
    }
    // Every byte pushed came from BASE36, which is ASCII.
    Ok(out.into_iter().map(char::from).collect())
}

/// A FluxOS-format login phrase: the 13-digit millisecond timestamp `now_ms`, then
/// [`PHRASE_RANDOM_CHARS`] random base-36 characters (53 characters in all).
pub fn login_phrase(now_ms: u64) -> Result<String, RandomError> {
    Ok(format!("{now_ms:013}{}", random_base36(PHRASE_RANDOM_CHARS)?))
}

/// The millisecond timestamp that begins a FluxOS phrase, if its first 13 characters are digits.
pub fn phrase_timestamp(phrase: &str) -> Option<u64> {
    let prefix = phrase.get(..13)?;
    prefix.bytes().all(|b| b.is_ascii_digit()).then(|| prefix.parse().ok()).flatten()
}

/// A bearer token: the secret the client holds and the public id that names it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    /// 256 random bits, base64url without padding (43 characters). Never stored.
    pub secret: String,
    /// 256 random bits, hex (64 characters): safe to list, log and revoke by.
    pub id: String,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").field("secret", &"<redacted>").field("id", &self.id).finish()
    }
}

impl BearerToken {
    pub fn generate() -> Result<Self, RandomError> {
        use base64::Engine as _;
        let mut secret = [0u8; 32];
        fill_random(&mut secret)?;
        Ok(Self {
            secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
            id: random_id()?,
        })
    }
}

/// A public random id: 256 bits as 64 lowercase hex digits.
pub fn random_id() -> Result<String, RandomError> {
    let mut id = [0u8; 32];
    fill_random(&mut id)?;
    Ok(hex::encode(id))
}

/// The SHA-256 under which a bearer secret is stored and looked up.
pub fn secret_hash(secret: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(secret).to_byte_array()
}

/// Compares two secrets (or their hashes) in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_mapping_is_exactly_uniform() {
        let mut per_digit = [0u32; 36];
        let mut rejected = 0;
        for byte in 0..=255u8 {
            match base36_digit(byte) {
                Some(d) => per_digit[BASE36.iter().position(|c| *c == d).unwrap()] += 1,
                None => rejected += 1,
            }
        }
        assert!(per_digit.iter().all(|n| *n == 7), "{per_digit:?}");
        assert_eq!(rejected, 4);
    }

    #[test]
    fn phrase_has_flux_format() {
        let now = 1_700_000_000_123;
        let phrase = login_phrase(now).unwrap();
        assert_eq!(phrase.len(), 13 + PHRASE_RANDOM_CHARS);
        assert!((40..=70).contains(&phrase.len()));
        assert!(phrase.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert_eq!(phrase_timestamp(&phrase), Some(now));
        assert!((PHRASE_RANDOM_CHARS as f64) * 36f64.log2() >= 200.0);
        assert_ne!(login_phrase(now).unwrap(), phrase);
    }

    #[test]
    fn phrase_timestamp_needs_13_digits() {
        assert_eq!(phrase_timestamp("1574991374806spbc"), Some(1_574_991_374_806));
        assert_eq!(phrase_timestamp("157499137480"), None);
        assert_eq!(phrase_timestamp("15749913748x6spbc"), None);
        assert_eq!(phrase_timestamp("+574991374806spbc"), None);
        assert_eq!(phrase_timestamp("1574991374é806"), None);
    }

    #[test]
    fn tokens_are_long_distinct_and_redacted() {
        let a = BearerToken::generate().unwrap();
        let b = BearerToken::generate().unwrap();
        assert_eq!(a.secret.len(), 43);
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.id, b.id);
        assert!(!format!("{a:?}").contains(&a.secret));
        assert!(constant_time_eq(&secret_hash(a.secret.as_bytes()), &secret_hash(a.secret.as_bytes())));
        assert!(!constant_time_eq(&secret_hash(a.secret.as_bytes()), &secret_hash(b.secret.as_bytes())));
    }

    #[test]
    fn random_base36_is_roughly_flat() {
        // 360k draws, 10k expected per digit, sd = 98: a 6-sd band cannot fail by chance.
        let s = random_base36(360_000).unwrap();
        let mut counts = [0u32; 36];
        for b in s.bytes() {
            counts[BASE36.iter().position(|c| *c == b).unwrap()] += 1;
        }
        assert!(counts.iter().all(|n| (9_400..=10_600).contains(n)), "{counts:?}");
    }
}
