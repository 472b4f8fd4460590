//! Password hashing: argon2id, PHC strings, transparent re-hashing, and a decoy for unknown
//! users.
//!
//! Every hash records its parameters (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), so a
//! password hashed under older settings still verifies, and a successful login with it tells
//! the caller to store a fresh hash under the current ones ([`Verdict::Valid::rehash`]).
//! A login for a name that does not exist verifies against [`Hasher::decoy`] — a hash of a
//! random password under the current parameters — so it costs the same time as a wrong
//! password and the timing does not tell which names exist.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::HashParams;
use crate::secret::{fill_random, random_id};

/// Longest password accepted (bytes). argon2 takes any length, but nobody types more, and a
/// bound keeps request bodies and memory small.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password a new one may be (characters), per NIST SP 800-63B.
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("bad argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("the operating system's random number generator failed")]
    Random,
}

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Right password; `rehash` when the stored hash uses other parameters than the current.
    Valid { rehash: bool },
    Invalid,
}

/// Hashes and verifies passwords at the configured parameters.
pub struct Hasher {
    params: HashParams,
    argon: Argon2<'static>,
    decoy: String,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("params", &self.params).finish_non_exhaustive()
    }
}

fn argon(p: HashParams) -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None).map_err(|e| PasswordError::Params(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl Hasher {
    /// Builds the hasher and its decoy hash (one hash's worth of time).
    pub fn new(params: HashParams) -> Result<Self, PasswordError> {
        let argon = argon(params)?;
        let mut hasher = Self { params, argon, decoy: String::new() };
        let decoy_password = random_id().map_err(|_| PasswordError::Random)?;
        hasher.decoy = hasher.hash(&decoy_password)?;
        Ok(hasher)
    }

    /// A PHC string of `password` with a fresh 128-bit salt.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let mut salt = [0u8; 16];
        fill_random(&mut salt).map_err(|_| PasswordError::Random)?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        self.argon.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Checks `password` against a stored PHC string (argon2id or another argon2 variant).
    /// An unreadable stored hash is a wrong password, after the same work as the decoy.
    pub fn verify(&self, password: &str, phc: &str) -> Verdict {
        let Ok(parsed) = PasswordHash::new(phc) else {
            self.verify_decoy(password);
            return Verdict::Invalid;
        };
        // The stored hash's own algorithm and parameters are used (argon2 reads them).
        if Argon2::default().verify_password(password.as_bytes(), &parsed).is_err() {
            return Verdict::Invalid;
        }
        let current = Params::try_from(&parsed).ok().map(|p| HashParams {
            memory_kib: p.m_cost(),
            iterations: p.t_cost(),
            parallelism: p.p_cost(),
        });
        let same = parsed.algorithm.as_str() == "argon2id" && current == Some(self.params);
        Verdict::Valid { rehash: !same }
    }

    /// Spends the time of one verification and fails (unknown usernames).
    pub fn verify_decoy(&self, password: &str) {
        if let Ok(parsed) = PasswordHash::new(&self.decoy) {
            let _ = self.argon.verify_password(password.as_bytes(), &parsed);
        }
    }
}

/// Why a new password is refused, if it is.
pub fn check_new(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.contains('\0') {
        return Err("must not contain NUL".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest OWASP setting, so the tests stay quick.
    fn fast() -> HashParams {
        HashParams { memory_kib: 7_168, iterations: 5, parallelism: 1 }
    }

    #[test]
    fn hashes_are_argon2id_phc_and_verify() {
        let h = Hasher::new(fast()).unwrap();
        let phc = h.hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{phc}");
        assert_ne!(phc, h.hash("correct horse").unwrap(), "salted");
        assert_eq!(h.verify("correct horse", &phc), Verdict::Valid { rehash: false });
        assert_eq!(h.verify("correct hors", &phc), Verdict::Invalid);
        assert_eq!(h.verify("correct horse", "not a phc string"), Verdict::Invalid);
    }

    #[test]
    fn other_parameters_verify_and_ask_for_a_rehash() {
        let old = Hasher::new(fast()).unwrap();
        let phc = old.hash("pässwörd").unwrap();
        let new = Hasher::new(HashParams { memory_kib: 9_216, iterations: 4, parallelism: 1 }).unwrap();
        assert_eq!(new.verify("pässwörd", &phc), Verdict::Valid { rehash: true });
        assert_eq!(new.verify("passwörd", &phc), Verdict::Invalid);
    }

    #[test]
    fn decoy_costs_about_as_much_as_a_real_check() {
        let h = Hasher::new(fast()).unwrap();
        let phc = h.hash("some password").unwrap();
        let once = |f: &dyn Fn()| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64()
        };
        // Interleaved, and the fastest of each: other tests share the cores, and a check that
        // was descheduled says nothing about what it costs.
        let (mut real, mut decoy) = (f64::MAX, f64::MAX);
        for _ in 0..7 {
            real = real.min(once(&|| {
                let _ = h.verify("wrong password", &phc);
            }));
            decoy = decoy.min(once(&|| h.verify_decoy("wrong password")));
        }
        let ratio = decoy / real;
        assert!((0.5..2.0).contains(&ratio), "decoy {decoy:.3}s vs real {real:.3}s");
    }

    #[test]
    fn new_passwords_are_bounded() {
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
        assert!(check_new(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(check_new("with\0nul inside").is_err());
    }
}
