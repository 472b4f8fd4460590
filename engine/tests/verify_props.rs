//! Property tests: real keys and messages sign → verify; any change → reject; nothing panics.
//! Ethereum recoveries are cross-checked against k256, an independent implementation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::Engine as _;
use proptest::prelude::*;
use sigil_engine::sign;
use sigil_engine::verify::{Policy, SignedFor, VerifyError, ethereum_message_hash, verify};

fn key_from(seed: [u8; 32]) -> bitcoin::secp256k1::SecretKey {
    bitcoin::secp256k1::SecretKey::from_slice(&seed).unwrap_or_else(|_| sign::random_key())
}

/// The address a wallet shows for a key and signature kind.
fn address_for(key: &bitcoin::secp256k1::SecretKey, kind: u8) -> (String, &'static str) {
    match kind % 5 {
        0 => (sign::p2pkh_address(key, true), "p2pkh-compressed"),
        1 => (sign::p2pkh_address(key, false), "p2pkh-uncompressed"),
        2 => (sign::p2sh_p2wpkh_address(key), "p2sh-p2wpkh"),
        3 => (sign::p2wpkh_address(key), "p2wpkh"),
        _ => (sign::ethereum_address_of(key), "eth"),
    }
}

fn sign_for(key: &bitcoin::secp256k1::SecretKey, kind: u8, message: &str) -> String {
    match kind % 5 {
        0 => sign::sign_bitcoin_message(key, message, SignedFor::P2pkhCompressed),
        1 => sign::sign_bitcoin_message(key, message, SignedFor::P2pkhUncompressed),
        2 => sign::sign_bitcoin_message(key, message, SignedFor::P2shP2wpkh),
        3 => sign::sign_bitcoin_message(key, message, SignedFor::P2wpkh),
        _ => sign::sign_ethereum_message(key, message),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn signed_messages_verify(seed in any::<[u8; 32]>(), kind in 0u8..5, message in "\\PC{1,300}") {
        let key = key_from(seed);
        let (address, label) = address_for(&key, kind);
        let signature = sign_for(&key, kind, &message);
        // FluxOS's Ethereum hashing diverges from EIP-191 outside printable ASCII; our
        // signer follows FluxOS's hashing, so every message must verify.
        prop_assert_eq!(verify(&message, &address, &signature, Policy::SIGIL), Ok(()), "{}", label);
        if label != "p2wpkh" {
            prop_assert_eq!(verify(&message, &address, &signature, Policy::FLUXOS), Ok(()), "{}", label);
        }
    }

    #[test]
    fn any_flipped_signature_byte_is_rejected(
        seed in any::<[u8; 32]>(), kind in 0u8..4, message in "[a-z0-9]{40,60}", index in 0usize..65, bit in 0u8..8,
    ) {
        let key = key_from(seed);
        let (address, _) = address_for(&key, kind);
        let signature = sign_for(&key, kind, &message);
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&signature).unwrap();
        raw[index] ^= 1 << bit;
        // Header flips land on another key encoding or address type (or out of range):
        // they must fail like flips in r or s.
        let tampered = base64::engine::general_purpose::STANDARD.encode(&raw);
        prop_assert!(verify(&message, &address, &tampered, Policy::SIGIL).is_err());
    }

    #[test]
    fn any_flipped_message_or_address_byte_is_rejected(
        seed in any::<[u8; 32]>(), kind in 0u8..5, message in "[a-z0-9]{40,60}", index in 0usize..40, bit in 0u8..7,
    ) {
        let key = key_from(seed);
        let (address, _) = address_for(&key, kind);
        let signature = sign_for(&key, kind, &message);

        let mut m = message.clone().into_bytes();
        let i = index % m.len();
        m[i] ^= 1 << bit;
        if let Ok(m) = String::from_utf8(m) {
            prop_assert!(verify(&m, &address, &signature, Policy::SIGIL).is_err());
        }

        let mut a = address.clone().into_bytes();
        let i = 2 + index % (a.len() - 2);
        a[i] ^= 1 << bit;
        if let Ok(a) = String::from_utf8(a) {
            // Case flips of an Ethereum address are the same address.
            if !a.eq_ignore_ascii_case(&address) {
                prop_assert!(verify(&message, &a, &signature, Policy::SIGIL).is_err(), "{} -> {}", address, a);
            }
        }
    }

    #[test]
    fn ethereum_recovery_matches_k256(seed in any::<[u8; 32]>(), message in "\\PC{1,200}") {
        let key = key_from(seed);
        let signature = sign::sign_ethereum_message(&key, &message);
        let raw = hex::decode(&signature[2..]).unwrap();
        let sig = k256::ecdsa::Signature::from_slice(&raw[..64]).unwrap();
        let recid = k256::ecdsa::RecoveryId::from_byte(raw[64] - 27).unwrap();
        let digest = ethereum_message_hash(&message);
        let vk = k256::ecdsa::VerifyingKey::recover_from_prehash(&digest, &sig, recid).unwrap();
        let point = vk.to_sec1_point(false);
        let mut uncompressed = [0u8; 65];
        uncompressed.copy_from_slice(point.as_bytes());
        prop_assert_eq!(sigil_engine::verify::ethereum_address(&uncompressed), sign::ethereum_address_of(&key));
    }

    #[test]
    fn arbitrary_input_never_panics(message in any::<String>(), address in any::<String>(), signature in any::<String>()) {
        let _ = verify(&message, &address, &signature, Policy::SIGIL);
        let _ = verify(&message, &address, &signature, Policy::FLUXOS);
        let eth = format!("0x{address}");
        let _ = verify(&message, &eth, &signature, Policy::SIGIL);
    }

    #[test]
    fn structured_garbage_never_panics(
        header in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..80), eth_tail in "[0-9a-fA-Fx]{0,140}",
    ) {
        let mut raw = vec![header];
        raw.extend(body);
        let sig = base64::engine::general_purpose::STANDARD.encode(&raw);
        let r = verify("1700000000000abc", "1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC", &sig, Policy::SIGIL);
        prop_assert!(r.is_err());
        let r = verify("1700000000000abc", "0xfaA2cA6454F2815C0900da1d4BfbD53072C736eb", &format!("0x{eth_tail}"), Policy::SIGIL);
        prop_assert!(r.is_err());
    }
}

#[test]
fn high_s_signatures_are_accepted() {
    // Negate s (s' = n - s) and flip the recovery id parity: same key recovers (vector #48).
    let key = sign::random_key();
    let message = "1700000000000k3j5h6g7f8d9s0a1q2w3e4r5t6y7u8i9o0p1a2";
    let sig = sign::sign_bitcoin_message(&key, message, SignedFor::P2pkhCompressed);
    let mut raw = base64::engine::general_purpose::STANDARD.decode(&sig).unwrap();
    use k256::elliptic_curve::ff::PrimeField as _;
    let s = k256::Scalar::from_repr(<[u8; 32]>::try_from(&raw[33..65]).unwrap().into()).unwrap();
    let neg = (-s).to_bytes();
    raw[33..65].copy_from_slice(&neg);
    raw[0] = 31 + ((raw[0] - 31) ^ 1);
    let high_s = base64::engine::general_purpose::STANDARD.encode(&raw);
    let address = sign::p2pkh_address(&key, true);
    assert_eq!(verify(message, &address, &high_s, Policy::FLUXOS), Ok(()));
}

#[test]
fn p2wpkh_needs_its_own_header_and_policy() {
    let key = sign::random_key();
    let message = "1700000000000abcdefghijklmnopqrstuvwxyz0123456789";
    let bech32 = sign::p2wpkh_address(&key);
    let bip137 = sign::sign_bitcoin_message(&key, message, SignedFor::P2wpkh);
    let legacy = sign::sign_bitcoin_message(&key, message, SignedFor::P2pkhCompressed);
    assert_eq!(verify(message, &bech32, &bip137, Policy::SIGIL), Ok(()));
    assert_eq!(verify(message, &bech32, &legacy, Policy::SIGIL), Err(VerifyError::Mismatch));
    assert!(verify(message, &bech32, &bip137, Policy::FLUXOS).is_err());
}

#[test]
fn multisig_p2sh_and_p2wsh_logins() {
    let keys: Vec<_> = (0..3).map(|_| sign::random_key()).collect();
    let (script, p2sh, p2wsh) = sign::multisig_addresses(2, &keys);
    assert!(p2sh.starts_with('3') && p2wsh.starts_with("bc1q") && p2wsh.len() == 62, "{p2sh} {p2wsh}");
    let message = "1700000000000multisigloginphrase0123456789abcdef";
    let outsider = sign::random_key();
    let cases: Vec<(&str, Vec<bitcoin::secp256k1::SecretKey>, bool)> = vec![
        ("2 of 3", vec![keys[0], keys[2]], true),
        ("3 of 3", keys.clone(), true),
        ("1 of 3 is too few", vec![keys[1]], false),
        ("same key twice", vec![keys[1], keys[1]], false),
        ("an outsider", vec![keys[0], outsider], false),
    ];
    for (name, signers, want) in cases {
        let signature = sign::sign_multisig(&script, &signers, message);
        for address in [&p2sh, &p2wsh] {
            assert_eq!(verify(message, address, &signature, Policy::SIGIL).is_ok(), want, "{name} {address}");
            assert!(verify(message, address, &signature, Policy::FLUXOS).is_err(), "FluxOS has no multisig");
        }
        assert!(verify("1700000000000another", &p2sh, &signature, Policy::SIGIL).is_err(), "{name}: other message");
    }
    // The script must be the one the address commits to.
    let (other_script, _, _) = sign::multisig_addresses(2, &[keys[0], keys[1], outsider]);
    let signature = sign::sign_multisig(&other_script, &[keys[0], keys[1]], message);
    assert_eq!(verify(message, &p2sh, &signature, Policy::SIGIL), Err(VerifyError::Mismatch));
    for garbage in ["{", "{}", r#"{"script":"zz","signatures":[]}"#, r#"{"script":"51ae","signatures":["H"]}"#] {
        assert!(verify(message, &p2sh, garbage, Policy::SIGIL).is_err(), "{garbage}");
    }
}
