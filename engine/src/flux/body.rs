//! FluxOS's `ensureObject`: how a POST body or a `zelidauth` header becomes fields.
//!
//! Any content type is read as text; JSON is tried first, then a URL query string (`qs`
//! rules: `+` is a space, `%XX` decoded, repeated keys become arrays, `a[b]` nests). A JSON
//! `null` stays null (FluxOS then fails reading a field of it); other non-objects become `{}`.

use serde_json::{Map, Value};

/// A parsed body: an object of fields, or JSON `null`.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    Object(Map<String, Value>),
    Null,
}

/// A field that is present and truthy but not a string (FluxOS then throws a TypeError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

impl Fields {
    pub fn parse(raw: &[u8]) -> Self {
        let text = String::from_utf8_lossy(raw);
        if text.is_empty() {
            return Self::Object(Map::new());
        }
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Self::Object(map),
            Ok(Value::Null) => Self::Null,
            Ok(_) => Self::Object(Map::new()),
            Err(_) => Self::Object(parse_query(&text)),
        }
    }

    /// The first truthy value among `names` (JS `body.a || body.b`), as a string.
    /// `Ok(None)` when none is truthy; a truthy non-string is a [`TypeError`].
    pub fn string(&self, names: &[&str]) -> Result<Option<String>, TypeError> {
        let map = match self {
            Self::Object(map) => map,
            Self::Null => {
                let first = names.first().copied().unwrap_or("field");
                return Err(TypeError(format!("Cannot read properties of null (reading '{first}')")));
            }
        };
        for name in names {
            match map.get(*name) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => continue,
                Some(Value::String(s)) if s.is_empty() => continue,
                Some(Value::Number(n)) if n.as_f64() == Some(0.0) => continue,
                Some(Value::String(s)) => return Ok(Some(s.clone())),
                Some(other) => {
                    return Err(TypeError(format!("{name} must be a string, not {}", json_type(other))));
                }
            }
        }
        Ok(None)
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `qs.parse` as far as sigil's flat fields need it: repeated keys become arrays and
/// bracketed keys (`a[b]`, `a[]`) become objects, so both read as non-strings.
fn parse_query(text: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(text.as_bytes()) {
        if key.is_empty() {
            continue;
        }
        let (base, nested) = match key.find('[') {
            Some(i) if i > 0 => (&key[..i], true),
            _ => (&key[..], false),
        };
        let value = if nested { Value::Object(Map::new()) } else { Value::String(value.into_owned()) };
        match map.get_mut(base) {
            None => {
                map.insert(base.to_owned(), value);
            }
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: &Fields, names: &[&str]) -> Result<Option<String>, TypeError> {
        f.string(names)
    }

    #[test]
    fn json_text_plain_and_form_bodies() {
        let json = Fields::parse(br#"{"zelid":"1abc","loginPhrase":"p","signature":"H+/="}"#);
        assert_eq!(s(&json, &["zelid"]).unwrap().as_deref(), Some("1abc"));
        let form = Fields::parse(b"zelid=1abc&signature=H%2B%2F%3D&loginPhrase=p");
        assert_eq!(s(&form, &["signature"]).unwrap().as_deref(), Some("H+/="));
        let plus = Fields::parse(b"signature=H+ZB");
        assert_eq!(s(&plus, &["signature"]).unwrap().as_deref(), Some("H ZB"), "+ is a space");
    }

    #[test]
    fn fallbacks_follow_js_truthiness() {
        let f = Fields::parse(br#"{"zelid":"","address":"1abc","message":0,"loginPhrase":false}"#);
        assert_eq!(s(&f, &["zelid", "address"]).unwrap().as_deref(), Some("1abc"));
        assert_eq!(s(&f, &["loginPhrase", "message"]).unwrap(), None);
        assert_eq!(Fields::parse(b"").string(&["zelid"]).unwrap(), None);
        assert_eq!(Fields::parse(b"42").string(&["zelid"]).unwrap(), None);
        assert_eq!(Fields::parse(b"[1,2]").string(&["zelid"]).unwrap(), None);
        assert_eq!(Fields::parse(b"\"str\"").string(&["zelid"]).unwrap(), None);
    }

    #[test]
    fn null_and_non_strings_are_type_errors() {
        let err = Fields::parse(b"null").string(&["zelid", "address"]).unwrap_err();
        assert_eq!(err.0, "Cannot read properties of null (reading 'zelid')");
        assert!(Fields::parse(br#"{"loginPhrase":1234}"#).string(&["loginPhrase"]).is_err());
        assert!(Fields::parse(b"zelid=a&zelid=b").string(&["zelid"]).is_err(), "duplicates become arrays");
        assert!(Fields::parse(b"zelid[x]=a").string(&["zelid"]).is_err(), "brackets nest");
    }

    #[test]
    fn invalid_utf8_is_read_lossily() {
        let f = Fields::parse(b"zelid=\xff\xfe");
        assert!(s(&f, &["zelid"]).unwrap().is_some());
    }
}
