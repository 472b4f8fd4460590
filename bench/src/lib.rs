//! Shared workloads for sigil's benchmarks: real keys, real signatures, made once off the clock.

use bitcoin::secp256k1::ecdsa::RecoverableSignature;
use bitcoin::secp256k1::{Message, Secp256k1, VerifyOnly};
use sigil_engine::secret::login_phrase;
use sigil_engine::sign;
use sigil_engine::verify::{Check, SignedFor, bitcoin_message_hash};

/// Which wallet made a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BtcCompressed,
    BtcUncompressed,
    Eth,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::BtcCompressed => "btc-compressed",
            Kind::BtcUncompressed => "btc-uncompressed",
            Kind::Eth => "eth",
        }
    }
}

/// `n` login-phrase signatures of one kind, each by its own key.
pub fn checks(kind: Kind, n: usize) -> Vec<Check> {
    (0..n)
        .map(|i| {
            let key = sign::random_key();
            let message = login_phrase(1_700_000_000_000 + i as u64).unwrap_or_default();
            let (address, signature) = match kind {
                Kind::BtcCompressed => {
                    (sign::p2pkh_address(&key, true), sign::sign_bitcoin_message(&key, &message, SignedFor::P2pkhCompressed))
                }
                Kind::BtcUncompressed => (
                    sign::p2pkh_address(&key, false),
                    sign::sign_bitcoin_message(&key, &message, SignedFor::P2pkhUncompressed),
                ),
                Kind::Eth => (sign::ethereum_address_of(&key), sign::sign_ethereum_message(&key, &message)),
            };
            Check { message, address, signature }
        })
        .collect()
}

/// A mix of all three kinds, interleaved, as a login storm would bring them.
pub fn mixed_checks(n: usize) -> Vec<Check> {
    let kinds = [Kind::BtcCompressed, Kind::Eth, Kind::BtcUncompressed];
    let per = n.div_ceil(kinds.len());
    let mut columns: Vec<Vec<Check>> = kinds.iter().map(|k| checks(*k, per)).collect();
    let mut out = Vec::with_capacity(n);
    'fill: loop {
        for column in &mut columns {
            match column.pop() {
                Some(c) if out.len() < n => out.push(c),
                _ => break 'fill,
            }
        }
    }
    out
}

/// The reference: bare libsecp256k1 public-key recovery of prepared (digest, signature)
/// pairs, with nothing of sigil's around it.
pub struct RawRecover {
    secp: Secp256k1<VerifyOnly>,
    items: Vec<(Message, RecoverableSignature)>,
}

impl RawRecover {
    pub fn new(n: usize) -> Self {
        let signer = Secp256k1::signing_only();
        let items = (0..n)
            .map(|i| {
                let key = sign::random_key();
                let digest = Message::from_digest(bitcoin_message_hash(&format!("raw reference {i}")));
                (digest, signer.sign_ecdsa_recoverable(&digest, &key))
            })
            .collect();
        Self { secp: Secp256k1::verification_only(), items }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Recovers item `i`; true if a key came out (always, for these inputs).
    pub fn recover(&self, i: usize) -> bool {
        self.items.get(i % self.items.len().max(1)).is_some_and(|(m, s)| self.secp.recover_ecdsa(m, s).is_ok())
    }

    /// Recoveries per second on the calling thread, over `budget`.
    pub fn rate_one_thread(&self, budget: std::time::Duration) -> f64 {
        let mut i = 0usize;
        rate(budget, 1, || {
            i += 1;
            std::hint::black_box(self.recover(i));
        })
    }

    /// Recoveries per second on every rayon thread, over `budget`.
    pub fn rate_all_threads(&self, budget: std::time::Duration) -> f64 {
        use rayon::prelude::*;
        rate(budget, self.len(), || {
            std::hint::black_box((0..self.len()).into_par_iter().with_min_len(8).filter(|i| self.recover(*i)).count());
        })
    }
}

/// Calls `f` (which does `per_call` operations) until `budget` has passed; operations/s.
pub fn rate(budget: std::time::Duration, per_call: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm caches and the rayon pool
    let started = std::time::Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        f();
        calls += 1;
    }
    (calls as f64 * per_call as f64) / started.elapsed().as_secs_f64()
}
