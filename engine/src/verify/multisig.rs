//! Multi-signature logins (spec/flux-id.md decision 12): a P2SH (`3…`) or P2WSH (`bc1q…`,
//! 62 characters) m-of-n address signs a phrase with m BIP-137 signatures and shows the script.
//!
//! Wire form of the `signature` field — a JSON object:
//!
//! ```json
//! {"script": "<hex of OP_m <key>… OP_n OP_CHECKMULTISIG>", "signatures": ["<base64>", …]}
//! ```
//!
//! The address must commit to the script (hash160 for P2SH — the version byte is ignored, as
//! everywhere in FluxOS's verifier — or SHA-256 for P2WSH). Each signature is a standard
//! Bitcoin signed-message signature of the phrase; the key it recovers (compressed or not, per
//! its header byte) must be one of the script's keys, no key may sign twice, and at least m
//! must sign. An invalid or duplicate signature rejects the whole login.

use bitcoin::hashes::{Hash, hash160, sha256};
use serde::Deserialize;

use super::bitcoin_message::{SignedFor, message_hash, parse_signature, segwit_v0_program};
use super::{VerifyError, node_compat, secp};

/// Bitcoin script opcodes used by standard multisig scripts.
const OP_1: u8 = 0x51;
const OP_16: u8 = 0x60;
const OP_CHECKMULTISIG: u8 = 0xae;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    script: String,
    signatures: Vec<String>,
}

/// A parsed `OP_m <keys> OP_n OP_CHECKMULTISIG` script.
#[derive(Debug, PartialEq, Eq)]
pub struct MultisigScript {
    pub required: usize,
    pub keys: Vec<Vec<u8>>,
}

impl MultisigScript {
    pub fn parse(script: &[u8]) -> Option<Self> {
        let (&first, mut rest) = script.split_first()?;
        let required = usize::from(first.checked_sub(OP_1 - 1).filter(|_| (OP_1..=OP_16).contains(&first))?);
        let mut keys = Vec::new();
        loop {
            let (&op, after) = rest.split_first()?;
            match op {
                0x21 | 0x41 => {
                    let len = usize::from(op);
                    keys.push(after.get(..len)?.to_vec());
                    rest = after.get(len..)?;
                }
                OP_1..=OP_16 => {
                    let total = usize::from(op - (OP_1 - 1));
                    let ok = after == [OP_CHECKMULTISIG] && total == keys.len() && required <= total;
                    return ok.then_some(Self { required, keys });
                }
                _ => return None,
            }
        }
    }

    /// The script bytes for `required` of `keys` (for wallets, tools and tests).
    pub fn encode(required: usize, keys: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![OP_1 - 1 + required as u8];
        for key in keys {
            out.push(key.len() as u8);
            out.extend_from_slice(key);
        }
        out.push(OP_1 - 1 + keys.len() as u8);
        out.push(OP_CHECKMULTISIG);
        out
    }
}

/// Whether `signature` is multisig wire form (a JSON object) rather than one signature.
pub fn is_multisig(signature: &str) -> bool {
    signature.trim_start().starts_with('{')
}

/// Whether `address` commits to `script` as P2SH or P2WSH.
fn address_commits_to(address: &str, script: &[u8]) -> bool {
    if let Some(program) = segwit_v0_program(address) {
        return program.len() == 32 && program == sha256::Hash::hash(script).to_byte_array();
    }
    bitcoin::base58::decode_check(address)
        .ok()
        .is_some_and(|payload| payload.len() == 21 && payload.get(1..) == Some(hash160::Hash::hash(script).as_byte_array()))
}

pub fn verify(message: &str, address: &str, signature: &str) -> Result<(), VerifyError> {
    let wire: Wire = serde_json::from_str(signature).map_err(|_| VerifyError::SignatureEncoding)?;
    let script = hex::decode(wire.script.trim()).map_err(|_| VerifyError::SignatureEncoding)?;
    let parsed = MultisigScript::parse(&script).ok_or(VerifyError::SignatureEncoding)?;
    if !address_commits_to(address, &script) {
        return Err(VerifyError::Mismatch);
    }
    if wire.signatures.len() < parsed.required || wire.signatures.len() > parsed.keys.len() {
        return Err(VerifyError::Mismatch);
    }
    let digest = bitcoin::secp256k1::Message::from_digest(message_hash(message));
    let mut signed = vec![false; parsed.keys.len()];
    for sig in &wire.signatures {
        let (signed_for, recoverable) = parse_signature(&node_compat::base64_decode(sig))?;
        let key = secp().recover_ecdsa(&digest, &recoverable).map_err(|_| VerifyError::Recovery)?;
        let serialized = match signed_for {
            SignedFor::P2pkhUncompressed => key.serialize_uncompressed().to_vec(),
            _ => key.serialize().to_vec(),
        };
        let index = parsed.keys.iter().position(|k| *k == serialized).ok_or(VerifyError::Mismatch)?;
        match signed.get_mut(index) {
            Some(seen) if !*seen => *seen = true,
            _ => return Err(VerifyError::Mismatch),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_round_trip_and_bad_ones_are_refused() {
        let keys = vec![vec![2u8; 33], vec![3u8; 33], vec![4u8; 65]];
        let script = MultisigScript::encode(2, &keys);
        assert_eq!(MultisigScript::parse(&script), Some(MultisigScript { required: 2, keys: keys.clone() }));
        let mut wrong_n = script.clone();
        let n = wrong_n.len() - 2;
        wrong_n[n] = OP_1 + 3;
        assert_eq!(MultisigScript::parse(&wrong_n), None);
        assert_eq!(MultisigScript::parse(&MultisigScript::encode(4, &keys)), None, "m > n");
        assert_eq!(MultisigScript::parse(&script[..script.len() - 1]), None);
        assert_eq!(MultisigScript::parse(&[]), None);
        assert_eq!(MultisigScript::parse(&[OP_1, 0x21, 1, 2]), None, "truncated key");
    }
}
