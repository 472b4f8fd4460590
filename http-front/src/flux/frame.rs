//! Websocket frames in FluxOS's encoding: a `qs`-style query string (RFC 3986), not JSON.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters is escaped, as `qs.stringify` does.
const QS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `key=value&…`, both sides escaped.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, QS), utf8_percent_encode(v, QS)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_fluxos_unit_test_frame() {
        let frame = super::encode(&[
            ("status", "success"),
            ("data[message]", "Successfully logged in"),
            ("data[zelid]", "1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC"),
            ("data[loginPhrase]", "12333345656"),
            ("data[signature]", "signature1"),
            ("data[privilage]", "admin"),
            ("data[createdAt]", "168450311"),
            ("data[expireAt]", "168460311"),
        ]);
        assert_eq!(
            frame,
            "status=success&data%5Bmessage%5D=Successfully%20logged%20in&data%5Bzelid%5D=1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC&data%5BloginPhrase%5D=12333345656&data%5Bsignature%5D=signature1&data%5Bprivilage%5D=admin&data%5BcreatedAt%5D=168450311&data%5BexpireAt%5D=168460311"
        );
        assert_eq!(super::encode(&[("d", "2019-11-29T01:36:14.806Z")]), "d=2019-11-29T01%3A36%3A14.806Z");
        assert_eq!(super::encode(&[("s", "H+/=")]), "s=H%2B%2F%3D");
    }
}
