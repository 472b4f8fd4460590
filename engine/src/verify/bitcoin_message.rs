//! Bitcoin signed messages (BIP-137 header bytes), with FluxOS's exact acceptance rules.
//!
//! FluxOS runs `bitcoinjs-message` v2.2.0 `verify` with the Bitcoin prefix and
//! `checkSegwitAlways` off, after turning any address longer than 36 characters into a P2PKH
//! address of the hex public key it is taken to be. We reproduce that, then add one thing
//! FluxOS cannot do when [`Policy::bech32_p2wpkh`] is on: native `bc1q…` P2WPKH addresses.

use bitcoin::bech32::{self, Fe32};
use bitcoin::hashes::{Hash, hash160, sha256d};
use bitcoin::secp256k1::Message;
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId};

use super::{Policy, VerifyError, node_compat, secp};

const MESSAGE_PREFIX: &[u8] = b"\x18Bitcoin Signed Message:\n";

/// The double-SHA256 of the prefixed message that Bitcoin wallets sign.
pub fn message_hash(message: &str) -> [u8; 32] {
    let body = message.as_bytes();
    let mut buf = Vec::with_capacity(MESSAGE_PREFIX.len() + 9 + body.len());
    buf.extend_from_slice(MESSAGE_PREFIX);
    push_compact_size(&mut buf, body.len() as u64);
    buf.extend_from_slice(body);
    sha256d::Hash::hash(&buf).to_byte_array()
}

fn push_compact_size(buf: &mut Vec<u8>, n: u64) {
    match n {
        0..=0xfc => buf.push(n as u8),
        0xfd..=0xffff => {
            buf.push(0xfd);
            buf.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(0xfe);
            buf.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            buf.push(0xff);
            buf.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// What the 65-byte signature's header byte says about the signing key and address type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedFor {
    /// 27–30: P2PKH of the uncompressed key.
    P2pkhUncompressed,
    /// 31–34: P2PKH of the compressed key.
    P2pkhCompressed,
    /// 35–38: P2SH-wrapped P2WPKH (`3…`).
    P2shP2wpkh,
    /// 39–42: native P2WPKH (`bc1q…`).
    P2wpkh,
}

impl SignedFor {
    /// The header byte a signer writes for this address type and recovery id (0–3).
    pub fn header_byte(self, recid: u8) -> u8 {
        let base = match self {
            Self::P2pkhUncompressed => 27,
            Self::P2pkhCompressed => 31,
            Self::P2shP2wpkh => 35,
            Self::P2wpkh => 39,
        };
        base + (recid & 3)
    }
}

/// The 20-byte hash an address commits to, and how it was written.
enum Expected {
    /// A base58check address: FluxOS compares the payload minus its first (version) byte, so
    /// any version byte is accepted and a two-byte version (Flux `t1…`) never matches.
    Base58(Vec<u8>),
    /// An address longer than 36 characters, read as a hex public key and hashed.
    PubkeyHex([u8; 20]),
    /// A segwit v0 20-byte program (`bc1q…` / `tb1q…`), sigil's addition.
    Bech32(Vec<u8>),
}

impl Expected {
    fn parse(address: &str, policy: Policy) -> Result<Self, VerifyError> {
        if policy.bech32_p2wpkh
            && let Some(program) = p2wpkh_program(address)
        {
            return Ok(Self::Bech32(program));
        }
        if address.encode_utf16().count() > 36 {
            let key = node_compat::hex_decode(address);
            return Ok(Self::PubkeyHex(hash160::Hash::hash(&key).to_byte_array()));
        }
        bitcoin::base58::decode_check(address)
            .map(Self::Base58)
            .map_err(|_| VerifyError::BadAddress)
    }

    /// The bytes FluxOS compares against for a P2PKH or P2SH-P2WPKH signature.
    fn base58_hash(&self) -> Option<&[u8]> {
        match self {
            Self::Base58(payload) => payload.get(1..),
            Self::PubkeyHex(hash) => Some(hash),
            Self::Bech32(_) => None,
        }
    }
}

/// A `bc1q…`/`tb1q…` address's 20-byte witness program, if that is what `address` is.
pub fn p2wpkh_program(address: &str) -> Option<Vec<u8>> {
    segwit_v0_program(address).filter(|p| p.len() == 20)
}

/// The witness program of a segwit v0 address on Bitcoin's main or test network: 20 bytes
/// (P2WPKH) or 32 (P2WSH).
pub fn segwit_v0_program(address: &str) -> Option<Vec<u8>> {
    let (hrp, version, program) = bech32::segwit::decode(address).ok()?;
    let network_ok = hrp == bech32::hrp::BC || hrp == bech32::hrp::TB;
    (network_ok && version == Fe32::Q && matches!(program.len(), 20 | 32)).then_some(program)
}

/// Splits a decoded 65-byte signature into its header meaning, recovery id and body.
pub(crate) fn parse_signature(sig: &[u8]) -> Result<(SignedFor, RecoverableSignature), VerifyError> {
    let (&header, compact) = sig.split_first().ok_or(VerifyError::SignatureLength)?;
    if sig.len() != 65 {
        return Err(VerifyError::SignatureLength);
    }
    let flag = header.checked_sub(27).filter(|f| *f <= 15).ok_or(VerifyError::HeaderByte)?;
    let signed_for = match (flag & 8 != 0, flag & 4 != 0, flag & 12 != 0) {
        (true, true, _) => SignedFor::P2wpkh,
        (true, false, _) => SignedFor::P2shP2wpkh,
        (false, _, true) => SignedFor::P2pkhCompressed,
        (false, _, false) => SignedFor::P2pkhUncompressed,
    };
    let recid = RecoveryId::from_i32(i32::from(flag & 3)).map_err(|_| VerifyError::HeaderByte)?;
    let signature =
        RecoverableSignature::from_compact(compact, recid).map_err(|_| VerifyError::Recovery)?;
    Ok((signed_for, signature))
}

/// hash160 of the key that made `signature` over `hash`, serialised as `signed_for` says.
pub(crate) fn recover_key_hash(
    hash: [u8; 32],
    signed_for: SignedFor,
    signature: &RecoverableSignature,
) -> Result<[u8; 20], VerifyError> {
    let key = secp()
        .recover_ecdsa(&Message::from_digest(hash), signature)
        .map_err(|_| VerifyError::Recovery)?;
    let hash = match signed_for {
        SignedFor::P2pkhUncompressed => hash160::Hash::hash(&key.serialize_uncompressed()),
        _ => hash160::Hash::hash(&key.serialize()),
    };
    Ok(hash.to_byte_array())
}

/// hash160 of the P2SH-P2WPKH redeem script `0 <20-byte key hash>`.
pub(crate) fn p2sh_p2wpkh_hash(key_hash: &[u8; 20]) -> [u8; 20] {
    let mut script = [0u8; 22];
    script[0] = 0x00;
    script[1] = 0x14;
    script[2..].copy_from_slice(key_hash);
    hash160::Hash::hash(&script).to_byte_array()
}

/// Verifies a Bitcoin signed message against a Bitcoin-style address.
pub fn verify(message: &str, address: &str, signature: &str, policy: Policy) -> Result<(), VerifyError> {
    let sig = node_compat::base64_decode(signature);
    let (signed_for, signature) = parse_signature(&sig)?;
    let expected = Expected::parse(address, policy)?;
    let key_hash = recover_key_hash(message_hash(message), signed_for, &signature)?;

    let matches = match (signed_for, &expected) {
        (SignedFor::P2wpkh, Expected::Bech32(program)) => program.as_slice() == key_hash,
        // bitcoinjs-message bech32-decodes the address here; a base58 or pubkey-hex
        // address always throws, so FluxOS says false.
        (SignedFor::P2wpkh, _) => false,
        (SignedFor::P2shP2wpkh, _) => {
            expected.base58_hash() == Some(p2sh_p2wpkh_hash(&key_hash).as_slice())
        }
        (SignedFor::P2pkhCompressed | SignedFor::P2pkhUncompressed, _) => {
            expected.base58_hash() == Some(key_hash.as_slice())
        }
    };
    if matches { Ok(()) } else { Err(VerifyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_size_boundaries() {
        let cases: [(u64, &[u8]); 5] = [
            (0xfc, &[0xfc]),
            (0xfd, &[0xfd, 0xfd, 0x00]),
            (0xffff, &[0xfd, 0xff, 0xff]),
            (0x1_0000, &[0xfe, 0x00, 0x00, 0x01, 0x00]),
            (0x1_0000_0000, &[0xff, 0, 0, 0, 0, 1, 0, 0, 0]),
        ];
        for (n, want) in cases {
            let mut buf = Vec::new();
            push_compact_size(&mut buf, n);
            assert_eq!(buf, want, "{n:#x}");
        }
    }

    #[test]
    fn header_byte_ranges() {
        for (header, want) in [
            (27, SignedFor::P2pkhUncompressed),
            (30, SignedFor::P2pkhUncompressed),
            (31, SignedFor::P2pkhCompressed),
            (34, SignedFor::P2pkhCompressed),
            (35, SignedFor::P2shP2wpkh),
            (38, SignedFor::P2shP2wpkh),
            (39, SignedFor::P2wpkh),
            (42, SignedFor::P2wpkh),
        ] {
            let mut sig = [1u8; 65];
            sig[0] = header;
            assert_eq!(parse_signature(&sig).map(|p| p.0), Ok(want), "header {header}");
        }
        for header in [0u8, 26, 43, 55, 255] {
            let mut sig = [1u8; 65];
            sig[0] = header;
            assert_eq!(parse_signature(&sig).map(|p| p.0), Err(VerifyError::HeaderByte));
        }
        assert_eq!(parse_signature(&[31u8; 64]).map(|p| p.0), Err(VerifyError::SignatureLength));
    }
}
