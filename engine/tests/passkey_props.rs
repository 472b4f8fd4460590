//! Property tests of passkey input: whatever JSON arrives as a credential, parsing and the
//! ceremonies answer an error — never a panic, never a session. (The real ceremonies, with a
//! real authenticator, are in http-front/tests/passkeys.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use proptest::prelude::*;
use serde_json::json;
use sigil_engine::config::WebauthnConfig;
use sigil_engine::passkeys::{self, RelyingParty};
use sigil_engine::store::{Durability, RocksStore, Store, now_ms};
use sigil_engine::web::WebError;
use sigil_engine::webauthn::{PublicKeyCredential, RegisterPublicKeyCredential};

fn rp() -> RelyingParty {
    RelyingParty::new(&WebauthnConfig {
        rp_id: "localhost".into(),
        rp_name: "sigil".into(),
        allowed_origins: vec!["http://localhost:16127".into()],
    })
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A client data JSON for `challenge`, with one of several origins and types.
fn client_data(kind: &str, challenge: &str, origin: &str) -> String {
    b64(json!({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false}).to_string().as_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text: the credential types parse or refuse, never panic.
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = serde_json::from_str::<PublicKeyCredential>(&text);
        let _ = serde_json::from_str::<RegisterPublicKeyCredential>(&text);
    }

    /// Well-formed assertions with random bytes (and sometimes the right challenge and origin):
    /// a passwordless login always fails, with PASSKEY_AUTHENTICATION_FAILED, and uses up its
    /// challenge.
    #[test]
    fn random_assertions_never_log_in(
        id in proptest::collection::vec(any::<u8>(), 0..80),
        auth_data in proptest::collection::vec(any::<u8>(), 0..120),
        signature in proptest::collection::vec(any::<u8>(), 0..90),
        user in proptest::collection::vec(any::<u8>(), 0..40),
        right_challenge in any::<bool>(),
        origin in prop_oneof![Just("http://localhost:16127"), Just("http://localhost:1"), Just("https://evil.example")],
        kind in prop_oneof![Just("webauthn.get"), Just("webauthn.create"), Just("x")],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), Durability::Buffered).unwrap());
        let rp = rp();
        let (challenge_id, options) = passkeys::start_login(store.as_ref(), &rp, now_ms()).unwrap();
        let challenge = if right_challenge { options["challenge"].as_str().unwrap().to_string() } else { b64(b"other") };
        let credential = json!({
            "id": b64(&id), "rawId": b64(&id), "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": client_data(kind, &challenge, origin),
                "signature": b64(&signature),
                "userHandle": b64(&user),
            },
            "clientExtensionResults": {},
        });
        let credential: PublicKeyCredential = serde_json::from_value(credential).unwrap();
        let result = passkeys::finish_login(store.as_ref(), &rp, &challenge_id, &credential, now_ms());
        prop_assert!(matches!(result, Err(WebError::PasskeyFailed)), "{result:?}");
        // The challenge is gone: the same credential cannot try again.
        let again = passkeys::finish_login(store.as_ref(), &rp, &challenge_id, &credential, now_ms());
        prop_assert!(matches!(again, Err(WebError::PasskeyFailed)));
    }

    /// Random attestation objects (with the registration's own challenge, sometimes) never
    /// register a passkey, never panic, and leave the account without passkeys.
    #[test]
    fn random_attestations_never_register(
        id in proptest::collection::vec(any::<u8>(), 0..80),
        attestation in proptest::collection::vec(any::<u8>(), 0..300),
        right_challenge in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(dir.path(), Durability::Buffered).unwrap());
        let fields = sigil_engine::account::Fields { username: Some("prop".into()), ..Default::default() };
        let account = sigil_engine::account::create(store.as_ref(), &fields, "$argon2id$unused".into(), now_ms()).unwrap();
        let rp = rp();
        let options = passkeys::start_registration(store.as_ref(), &rp, &account, b"session", now_ms()).unwrap();
        let challenge = if right_challenge { options["challenge"].as_str().unwrap().to_string() } else { b64(b"other") };
        let credential = json!({
            "id": b64(&id), "rawId": b64(&id), "type": "public-key",
            "response": {"attestationObject": b64(&attestation), "clientDataJSON": client_data("webauthn.create", &challenge, "http://localhost:16127")},
            "clientExtensionResults": {},
        });
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential).unwrap();
        let result = passkeys::finish_registration(store.as_ref(), &rp, &account.guid, b"session", &credential, None, now_ms());
        prop_assert!(matches!(result, Err(WebError::PasskeyFailed)), "{result:?}");
        let after = sigil_engine::account::get(store.as_ref(), &account.guid).unwrap().unwrap();
        prop_assert!(after.passkeys.is_empty());
    }
}
