//! Reading JSON request bodies for the account dialects, with errors the dialects can shape.
//!
//! The framework's own extractors answer a bare 413/415/400 in their own words; these
//! routes read the raw payload themselves so every refusal is in the dialect's error shape.

use actix_web::HttpRequest;
use actix_web::web::Payload;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

/// Largest body an account route reads.
pub const MAX_JSON_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("Content-Type must be application/json")]
    WrongType,
    #[error("{0}")]
    Malformed(String),
    #[error("the body could not be read")]
    Unreadable,
}

/// Whether the request says its body is JSON (or says nothing, as scripts often don't).
fn is_json(req: &HttpRequest) -> bool {
    match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().ok().and_then(|t| t.split(';').next()).is_some_and(|t| {
            let t = t.trim().to_ascii_lowercase();
            t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
        }),
    }
}

/// Reads at most `limit` bytes of body and parses it as `T`. An empty body reads as `{}`.
pub async fn read<T: DeserializeOwned>(req: &HttpRequest, mut payload: Payload, limit: usize) -> Result<T, BodyError> {
    if !is_json(req) {
        return Err(BodyError::WrongType);
    }
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

/// Parses a body already read (the part [`read`] does after reading), for tests and fuzzing.
/// The body must be a JSON object (serde would otherwise also read a struct from an array).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(BodyError::Malformed("the body must be a JSON object".into()));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        BodyError::Malformed(if path == "." { inner.to_string() } else { format!("{path}: {inner}") })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
        #[serde(default)]
        onetime: bool,
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse::<Login>(br#"{"username":"a","password":"b"}"#).is_ok());
        let e = parse::<Login>(br#"{"username":5,"password":"b"}"#).unwrap_err().to_string();
        assert_eq!(e, "username: invalid type: integer `5`, expected a string");
        let e = parse::<Login>(br#"{"username":"a"}"#).unwrap_err().to_string();
        assert!(e.contains("missing field `password`"), "{e}");
        assert!(parse::<Login>(b"{\"username\":\"a\0\",\"password\":\"b\"").is_err());
        assert!(parse::<Login>(b"").is_err(), "an empty body is {{}}: fields missing");
        let e = parse::<Login>(br#"["a","b"]"#).unwrap_err().to_string();
        assert!(e.contains("must be a JSON object"), "{e}");
    }

    proptest! {
        /// Any bytes at all: a value or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse::<Login>(&bytes);
            let _ = parse::<serde_json::Value>(&bytes);
        }

        /// Any strings round-trip through a well-formed body.
        #[test]
        fn any_strings_parse(username in ".{0,64}", password in ".{0,64}") {
            let body = serde_json::to_vec(&serde_json::json!({"username": username, "password": password})).unwrap();
            let login: Login = parse(&body).unwrap();
            prop_assert_eq!(login.username, username);
            prop_assert_eq!(login.password, password);
        }
    }
}
