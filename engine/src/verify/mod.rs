//! Wallet-signature verification: FluxOS's verdicts, exactly, plus sigil's additions.
//!
//! [`verify`] gives FluxOS's `verifySignature` answer for a (message, address, signature)
//! triple under [`Policy::FLUXOS`]; [`Policy::SIGIL`] additionally accepts native `bc1q…`
//! P2WPKH addresses (spec/flux-id.md, decision 11). The reasons for a `false` are kept as
//! [`VerifyError`] so that callers can count them; FluxOS itself only says true/false.

pub mod bitcoin_message;
mod ethereum;
pub mod multisig;
pub mod node_compat;

use std::sync::LazyLock;

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use rayon::prelude::*;

pub use bitcoin_message::{SignedFor, message_hash as bitcoin_message_hash};
pub use ethereum::{address_of_uncompressed as ethereum_address, message_hash as ethereum_message_hash};

/// One libsecp256k1 context for the process: building one costs far more than a recovery.
fn secp() -> &'static Secp256k1<VerifyOnly> {
    static CONTEXT: LazyLock<Secp256k1<VerifyOnly>> = LazyLock::new(Secp256k1::verification_only);
    &CONTEXT
}

/// Which address forms beyond FluxOS's own the verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Native segwit v0 `bc1q…`/`tb1q…` addresses with BIP-137 P2WPKH signatures (header
    /// bytes 39–42). FluxOS reads any address over 36 characters as a hex public key, so it
    /// can never verify these.
    pub bech32_p2wpkh: bool,
    /// m-of-n P2SH/P2WSH logins with the script and m signatures in the `signature` field
    /// (decision 12, [`multisig`]). FluxOS has no such path.
    pub multisig: bool,
}

impl Policy {
    /// FluxOS's `verifySignature`, verdict for verdict.
    pub const FLUXOS: Self = Self { bech32_p2wpkh: false, multisig: false };
    /// sigil's default: FluxOS plus `bc1q…` and multisig addresses (`flux.accept_segwit = true`).
    pub const SIGIL: Self = Self { bech32_p2wpkh: true, multisig: true };
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("message, address or signature is empty")]
    Empty,
    #[error("signature does not decode to 65 bytes")]
    SignatureLength,
    #[error("signature is not well-formed")]
    SignatureEncoding,
    #[error("signature header byte is outside 27..=42")]
    HeaderByte,
    #[error("no public key can be recovered from the signature")]
    Recovery,
    #[error("address cannot be decoded")]
    BadAddress,
    #[error("signature was made by another key")]
    Mismatch,
}

/// The kind of identity an address names, as far as the verifier is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// `0x…`: an Ethereum account.
    Ethereum,
    /// `bc1q…`/`tb1q…` with a 20-byte program (only under [`Policy::SIGIL`]).
    Bech32P2wpkh,
    /// Longer than 36 characters: read as a hex public key.
    PubkeyHex,
    /// Anything else: a base58check address (`1…`, `3…`, other coins' versions).
    Base58,
}

impl AddressKind {
    pub fn of(address: &str, policy: Policy) -> Self {
        if address.starts_with("0x") {
            Self::Ethereum
        } else if policy.bech32_p2wpkh && bitcoin_message::p2wpkh_program(address).is_some() {
            Self::Bech32P2wpkh
        } else if address.encode_utf16().count() > 36 {
            Self::PubkeyHex
        } else {
            Self::Base58
        }
    }

    /// A stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ethereum => "eth",
            Self::Bech32P2wpkh => "p2wpkh",
            Self::PubkeyHex => "pubkey",
            Self::Base58 => "base58",
        }
    }
}

/// Checks that `signature` over `message` was made by the key behind `address`.
pub fn verify(message: &str, address: &str, signature: &str, policy: Policy) -> Result<(), VerifyError> {
    if message.is_empty() || address.is_empty() || signature.is_empty() {
        return Err(VerifyError::Empty);
    }
    if address.starts_with("0x") {
        ethereum::verify(message, address, signature)
    } else if policy.multisig && multisig::is_multisig(signature) {
        multisig::verify(message, address, signature)
    } else {
        bitcoin_message::verify(message, address, signature, policy)
    }
}

/// One signature check, owned so that it can travel in an actor message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub message: String,
    pub address: String,
    pub signature: String,
}

impl Check {
    pub fn verify(&self, policy: Policy) -> Result<(), VerifyError> {
        verify(&self.message, &self.address, &self.signature, policy)
    }
}

/// Verifies many checks in parallel on the rayon pool; answers are in input order.
pub fn verify_batch(checks: &[Check], policy: Policy) -> Vec<Result<(), VerifyError>> {
    // A recovery costs ~30 µs; chunks of 8 keep rayon's split overhead well under 1 %.
    checks.par_iter().with_min_len(8).map(|check| check.verify(policy)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_are_rejected_before_any_work() {
        assert_eq!(verify("", "1abc", "H", Policy::SIGIL), Err(VerifyError::Empty));
        assert_eq!(verify("m", "", "H", Policy::SIGIL), Err(VerifyError::Empty));
        assert_eq!(verify("m", "1abc", "", Policy::SIGIL), Err(VerifyError::Empty));
    }

    #[test]
    fn address_kinds() {
        let p = Policy::SIGIL;
        assert_eq!(AddressKind::of("0xfaA2cA6454F2815C0900da1d4BfbD53072C736eb", p), AddressKind::Ethereum);
        assert_eq!(AddressKind::of("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", p), AddressKind::Bech32P2wpkh);
        assert_eq!(
            AddressKind::of("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", Policy::FLUXOS),
            AddressKind::PubkeyHex
        );
        assert_eq!(AddressKind::of("1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC", p), AddressKind::Base58);
    }
}
