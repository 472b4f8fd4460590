//! The OpenID Connect signing key: RSA 2048, made on the first start and kept in the store
//! (`meta` / `oauth2/signing-key`, PKCS#8 PEM) — claimed with `insert_new`, so the nodes of a
//! cluster that start together agree on one key. `id_token`s are RS256 JWTs (jsonwebtoken);
//! the JWKS publishes the public half under its `kid`.

use base64::Engine as _;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Serialize;

use crate::account::Account;
use crate::secret::secret_hash;
use crate::store::{Batch, Cf, Millis, Store, StoreError};

const KEY_NAME: &[u8] = b"oauth2/signing-key";

pub struct SigningKey {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the OIDC signing key: {0}")]
    Key(String),
}

impl SigningKey {
    /// The stored key, or a new one stored first (whoever stores first wins; the others read it).
    pub fn load_or_create(store: &dyn Store) -> Result<Self, KeyError> {
        if let Some(pem) = store.get(Cf::Meta, KEY_NAME)? {
            return Self::from_pem(&pem);
        }
        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| KeyError::Key(e.to_string()))?;
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Key(e.to_string()))?;
        let mut b = Batch::new();
        b.put(Cf::Meta, KEY_NAME.to_vec(), pem.as_bytes().to_vec());
        store.insert_new(&[(Cf::Meta, KEY_NAME.to_vec())], b)?;
        let stored = store.get(Cf::Meta, KEY_NAME)?.ok_or(KeyError::Key("vanished after it was stored".into()))?;
        Self::from_pem(&stored)
    }

    fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(pem).map_err(|e| KeyError::Key(e.to_string()))?;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(text).map_err(|e| KeyError::Key(e.to_string()))?;
        let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let (n, e) = (b64(key.n().to_bytes_be()), b64(key.e().to_bytes_be()));
        // The kid names the public key: a stable fingerprint (RFC 7638 style input).
        let kid = b64(secret_hash(format!("{{\"e\":\"{e}\",\"kty\":\"RSA\",\"n\":\"{n}\"}}").as_bytes()).to_vec());
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|e| KeyError::Key(e.to_string()))?;
        let jwk = serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Ok(Self { kid, encoding, jwk })
    }

    /// `GET /v1/oauth2/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [self.jwk]})
    }

    /// An RS256 `id_token` (OpenID Connect Core §2).
    #[allow(clippy::too_many_arguments)]
    pub fn id_token(
        &self,
        issuer: &str,
        account: &Account,
        client_id: &str,
        nonce: Option<&str>,
        auth_time: Millis,
        now: Millis,
        ttl_ms: Millis,
        scopes: &[String],
    ) -> Result<String, jsonwebtoken::errors::Error> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            exp: u64,
            iat: u64,
            auth_time: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            preferred_username: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            email: Option<&'a str>,
        }
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let claims = Claims {
            iss: issuer,
            sub: &account.guid,
            aud: client_id,
            exp: now.saturating_add(ttl_ms) / 1000,
            iat: now / 1000,
            auth_time: auth_time / 1000,
            nonce,
            preferred_username: has("profile").then_some(account.username.as_str()),
            email: if has("email") { account.email.as_deref() } else { None },
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }
}
