//! Node.js `Buffer.from(s, "base64")` and `Buffer.from(s, "hex")`, reproduced exactly.
//!
//! FluxOS hands client strings straight to these decoders, and their leniency is part of the
//! verdict: URL-safe base64 signatures verify, a signature missing its padding verifies, a
//! space where a `+` was (an un-encoded query string) silently shortens the signature to 64
//! bytes and fails. Standard strict decoders would disagree with FluxOS on real vectors, so
//! we keep Node's rules here and nowhere else.

/// Decodes base64 the way Node's `Buffer.from(s, "base64")` does.
///
/// - both alphabets (`+/` and `-_`) are accepted;
/// - any other character is skipped, except `=`, which ends decoding;
/// - a trailing group of 2 or 3 characters yields 1 or 2 bytes, a lone character nothing;
/// - the output is cut to the length Node allocates from the raw string length
///   (`(len - trailing '=') * 3 / 4`, counted in UTF-16 units).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let units: Vec<u16> = s.encode_utf16().collect();
    let mut len = units.len();
    if len > 0 && units.get(len - 1) == Some(&u16::from(b'=')) {
        len -= 1;
    }
    if len > 1 && units.get(len - 1) == Some(&u16::from(b'=')) {
        len -= 1;
    }
    let allocated = (len * 3) >> 2;

    let mut out = Vec::with_capacity(allocated);
    let mut group = [0u8; 4];
    let mut filled = 0;
    for &unit in &units {
        if unit == u16::from(b'=') {
            break;
        }
        let Some(value) = u8::try_from(unit).ok().and_then(base64_value) else {
            continue;
        };
        if let Some(slot) = group.get_mut(filled) {
            *slot = value;
        }
        filled += 1;
        if filled == 4 {
            let [a, b, c, d] = group;
            out.extend_from_slice(&[(a << 2) | (b >> 4), (b << 4) | (c >> 2), (c << 6) | d]);
            filled = 0;
        }
    }
    let [a, b, c, _] = group;
    if filled >= 2 {
        out.push((a << 2) | (b >> 4));
    }
    if filled == 3 {
        out.push((b << 4) | (c >> 2));
    }
    out.truncate(allocated);
    out
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes hex the way Node's `Buffer.from(s, "hex")` does: pairs are read until the first
/// pair that is not two hex digits, and an odd trailing digit is dropped.
pub fn hex_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 2);
    for pair in bytes.chunks_exact(2) {
        let &[hi, lo] = pair else { break };
        match (hex_value(hi), hex_value(lo)) {
            (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
            _ => break,
        }
    }
    out
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn standard_base64_round_trips() {
        for len in 0..70usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(base64_decode(&encoded), data, "len {len}");
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&data);
            assert_eq!(base64_decode(&url), data, "url-safe, no padding, len {len}");
        }
    }

    #[test]
    fn junk_is_skipped_and_padding_stops() {
        assert_eq!(base64_decode("QU JD"), b"ABC".to_vec());
        assert_eq!(base64_decode("QUI"), b"AB".to_vec(), "missing padding is tolerated");
        assert_eq!(base64_decode("QUJD\nRA=="), b"ABCD".to_vec());
        assert_eq!(base64_decode("QQ==QUJD"), b"A".to_vec());
        assert_eq!(base64_decode("Q"), Vec::<u8>::new());
        assert_eq!(base64_decode("é"), Vec::<u8>::new());
    }

    #[test]
    fn hex_stops_at_first_bad_pair() {
        assert_eq!(hex_decode("0aFfzz00"), vec![0x0a, 0xff]);
        assert_eq!(hex_decode("abc"), vec![0xab]);
        assert_eq!(hex_decode("bc1qw5"), vec![0xbc]);
        assert_eq!(hex_decode(""), Vec::<u8>::new());
    }
}
