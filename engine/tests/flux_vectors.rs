//! The 61 FluxOS signature vectors: sigil's verifier must give FluxOS's verdict on each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use serde::Deserialize;
use sigil_engine::verify::{Check, Policy, verify, verify_batch};

#[derive(Deserialize)]
struct Vector {
    kind: String,
    address: String,
    message: String,
    signature: String,
    valid: bool,
    source: String,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("../fixtures/flux-signatures.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn fixture_is_the_full_set() {
    let v = vectors();
    assert_eq!(v.len(), 61);
    assert_eq!(v.iter().filter(|x| x.valid).count(), 30);
}

#[test]
fn fluxos_policy_agrees_with_every_vector() {
    let mut wrong = Vec::new();
    for (i, v) in vectors().iter().enumerate() {
        let got = verify(&v.message, &v.address, &v.signature, Policy::FLUXOS);
        if got.is_ok() != v.valid {
            wrong.push(format!("#{i} {} {} want {} got {got:?} ({})", v.kind, v.address, v.valid, v.source));
        }
    }
    assert!(wrong.is_empty(), "{} disagreements:\n{}", wrong.len(), wrong.join("\n"));
}

/// sigil's default policy adds native `bc1q…` P2WPKH (decision 11): the one FluxOS-invalid
/// vector that is a correct BIP-137 P2WPKH signature turns valid; nothing else changes.
#[test]
fn sigil_policy_differs_only_on_bech32() {
    for (i, v) in vectors().iter().enumerate() {
        let got = verify(&v.message, &v.address, &v.signature, Policy::SIGIL).is_ok();
        let want = if v.kind == "btc-segwit-p2wpkh" { true } else { v.valid };
        assert_eq!(got, want, "#{i} {} {}", v.kind, v.address);
    }
}

#[test]
fn batch_gives_the_same_verdicts_in_order() {
    let vectors = vectors();
    let checks: Vec<Check> = vectors
        .iter()
        .cycle()
        .take(vectors.len() * 5)
        .map(|v| Check { message: v.message.clone(), address: v.address.clone(), signature: v.signature.clone() })
        .collect();
    let got = verify_batch(&checks, Policy::FLUXOS);
    assert_eq!(got.len(), checks.len());
    for (i, (result, v)) in got.iter().zip(vectors.iter().cycle()).enumerate() {
        assert_eq!(result.is_ok(), v.valid, "batch item {i}");
    }
}
