//! `Authorization: Bearer <token>`: the credential of the account dialects.

use actix_web::HttpRequest;

/// Longest token accepted; sigil's are 43 characters.
const MAX_TOKEN: usize = 512;

/// The bearer token of the request, if the header is present and well formed: the scheme
/// `Bearer` (any case), one space, and a token of visible ASCII.
pub fn token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    parse(value)
}

pub fn parse(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let ok = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bearer_forms() {
        assert_eq!(parse("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(parse("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(parse("Basic abc"), None);
        assert_eq!(parse("Bearer"), None);
        assert_eq!(parse("Bearer a b"), None);
        assert_eq!(parse(&format!("Bearer {}", "a".repeat(513))), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,600}") {
            let _ = parse(&s);
        }
    }
}
