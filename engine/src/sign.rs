//! Signing the way wallets do: for the load generator, examples and tests.
//!
//! Production never signs; these functions exist so that sigil's own tools make real
//! signatures with real keys instead of replaying canned ones.

use bitcoin::hashes::{Hash, hash160};
use bitcoin::secp256k1::{All, Message, PublicKey, Secp256k1, SecretKey};
use base64::Engine as _;
use std::sync::LazyLock;

use crate::verify::{SignedFor, bitcoin_message_hash, ethereum_address, ethereum_message_hash};

fn secp() -> &'static Secp256k1<All> {
    static CONTEXT: LazyLock<Secp256k1<All>> = LazyLock::new(Secp256k1::new);
    &CONTEXT
}

/// A fresh secret key from the OS CSPRNG.
pub fn random_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        // The OS generator failing is not recoverable for a signing tool; retry is pointless
        // but harmless, and keeps this function infallible for its callers.
        if crate::secret::fill_random(&mut bytes).is_err() {
            continue;
        }
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// The public key of `key`.
pub fn public_key(key: &SecretKey) -> PublicKey {
    PublicKey::from_secret_key(secp(), key)
}

/// A BIP-137 signature (base64 of header‖r‖s) of `message` for the given address type.
pub fn sign_bitcoin_message(key: &SecretKey, message: &str, signed_for: SignedFor) -> String {
    let digest = Message::from_digest(bitcoin_message_hash(message));
    let (recid, compact) = secp().sign_ecdsa_recoverable(&digest, key).serialize_compact();
    let mut sig = [0u8; 65];
    sig[0] = signed_for.header_byte(recid.to_i32() as u8);
    sig[1..].copy_from_slice(&compact);
    base64::engine::general_purpose::STANDARD.encode(sig)
}

/// An Ethereum `personal_sign` signature: `0x` + r‖s‖v hex with v = 27/28, as MetaMask sends.
pub fn sign_ethereum_message(key: &SecretKey, message: &str) -> String {
    let digest = Message::from_digest(ethereum_message_hash(message));
    let (recid, compact) = secp().sign_ecdsa_recoverable(&digest, key).serialize_compact();
    format!("0x{}{:02x}", hex::encode(compact), 27 + recid.to_i32())
}

/// The P2PKH address (`1…`) of `key`, compressed or not.
pub fn p2pkh_address(key: &SecretKey, compressed: bool) -> String {
    let public = public_key(key);
    let hash = if compressed {
        hash160::Hash::hash(&public.serialize())
    } else {
        hash160::Hash::hash(&public.serialize_uncompressed())
    };
    base58_address(0x00, hash.as_byte_array())
}

/// The P2SH-P2WPKH address (`3…`) of `key`.
pub fn p2sh_p2wpkh_address(key: &SecretKey) -> String {
    let key_hash = hash160::Hash::hash(&public_key(key).serialize()).to_byte_array();
    let mut script = vec![0x00, 0x14];
    script.extend_from_slice(&key_hash);
    base58_address(0x05, hash160::Hash::hash(&script).as_byte_array())
}

/// The native P2WPKH address (`bc1q…`) of `key`.
pub fn p2wpkh_address(key: &SecretKey) -> String {
    let key_hash = hash160::Hash::hash(&public_key(key).serialize());
    bitcoin::bech32::segwit::encode_v0(bitcoin::bech32::hrp::BC, key_hash.as_byte_array())
        .unwrap_or_default()
}

/// The Ethereum address (`0x…`, lower case) of `key`.
pub fn ethereum_address_of(key: &SecretKey) -> String {
    ethereum_address(&public_key(key).serialize_uncompressed())
}

/// An m-of-n multisig set: its script (hex), P2SH address (`3…`) and P2WSH address (`bc1q…`).
pub fn multisig_addresses(required: usize, keys: &[SecretKey]) -> (String, String, String) {
    use bitcoin::hashes::sha256;
    let publics: Vec<Vec<u8>> = keys.iter().map(|k| public_key(k).serialize().to_vec()).collect();
    let script = crate::verify::multisig::MultisigScript::encode(required, &publics);
    let p2sh = base58_address(0x05, hash160::Hash::hash(&script).as_byte_array());
    let p2wsh = bitcoin::bech32::segwit::encode_v0(bitcoin::bech32::hrp::BC, sha256::Hash::hash(&script).as_byte_array())
        .unwrap_or_default();
    (hex::encode(script), p2sh, p2wsh)
}

/// The multisig `signature` field: the script and one signature of `message` per signer.
pub fn sign_multisig(script_hex: &str, signers: &[SecretKey], message: &str) -> String {
    let signatures: Vec<String> =
        signers.iter().map(|k| sign_bitcoin_message(k, message, SignedFor::P2pkhCompressed)).collect();
    serde_json::json!({"script": script_hex, "signatures": signatures}).to_string()
}

fn base58_address(version: u8, hash: &[u8; 20]) -> String {
    let mut payload = Vec::with_capacity(21);
    payload.push(version);
    payload.extend_from_slice(hash);
    bitcoin::base58::encode_check(&payload)
}
