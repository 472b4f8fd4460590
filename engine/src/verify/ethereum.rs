//! Ethereum `personal_sign` signatures, with FluxOS's exact acceptance rules.
//!
//! FluxOS builds the signed bytes from the message's UTF-16 code units written as unpadded
//! hex and re-split into pairs (identical to EIP-191 for U+0010…U+007F, so for every login
//! phrase), assumes a `0x` prefix without checking it, takes `v` from whatever follows `r‖s`
//! and maps it to a recovery id (`v < 2` as is, otherwise `1 − v mod 2`), and compares the
//! recovered address case-insensitively. High-S signatures are accepted.

use bitcoin::secp256k1::Message;
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use sha3::{Digest, Keccak256};

use super::{VerifyError, node_compat::hex_value, secp};

/// The keccak256 digest FluxOS checks an Ethereum signature against.
pub fn message_hash(message: &str) -> [u8; 32] {
    let body = flux_message_bytes(message);
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(body.len().to_string().as_bytes());
    hasher.update(&body);
    hasher.finalize().into()
}

/// The bytes FluxOS feeds to keccak for `message`.
fn flux_message_bytes(message: &str) -> std::borrow::Cow<'_, [u8]> {
    // Every code unit in 0x10..=0x7f is exactly two hex digits, so the bytes are the message's
    // own: the common (login phrase) case needs no re-encoding.
    if message.bytes().all(|b| (0x10..0x80).contains(&b)) {
        return std::borrow::Cow::Borrowed(message.as_bytes());
    }
    let digits: String = message.encode_utf16().map(|unit| format!("{unit:x}")).collect();
    let bytes = digits
        .as_bytes()
        .chunks(2)
        .map(|pair| pair.iter().filter_map(|c| hex_value(*c)).fold(0u8, |acc, d| (acc << 4) | d))
        .collect();
    std::borrow::Cow::Owned(bytes)
}

/// The lower-case `0x…` address of the key that signed `message`.
pub fn recover_address(message: &str, signature: &str) -> Result<String, VerifyError> {
    let sig = signature.as_bytes();
    // nano-ethereum-signer slices r, s and v at fixed offsets behind two skipped characters.
    let (Some(r_s), Some(v)) = (sig.get(2..130), sig.get(130..)) else {
        return Err(VerifyError::SignatureLength);
    };
    let mut compact = [0u8; 64];
    for (out, pair) in compact.iter_mut().zip(r_s.chunks_exact(2)) {
        let &[hi, lo] = pair else { return Err(VerifyError::SignatureEncoding) };
        let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
            return Err(VerifyError::SignatureEncoding);
        };
        *out = (hi << 4) | lo;
    }
    let recid = recovery_id(v)?;
    let signature = RecoverableSignature::from_compact(&compact, recid).map_err(|_| VerifyError::Recovery)?;
    let key = secp()
        .recover_ecdsa(&Message::from_digest(message_hash(message)), &signature)
        .map_err(|_| VerifyError::Recovery)?;
    Ok(address_of_uncompressed(&key.serialize_uncompressed()))
}

/// `0x` + hex of the last 20 bytes of keccak256(X‖Y).
pub fn address_of_uncompressed(key: &[u8; 65]) -> String {
    let digest: [u8; 32] = Keccak256::digest(&key[1..]).into();
    format!("0x{}", hex::encode(&digest[12..]))
}

fn recovery_id(v_hex: &[u8]) -> Result<RecoveryId, VerifyError> {
    if v_hex.is_empty() || !v_hex.iter().all(|c| hex_value(*c).is_some()) {
        return Err(VerifyError::SignatureEncoding);
    }
    let significant = v_hex.iter().skip_while(|c| **c == b'0').count();
    let last = v_hex.last().and_then(|c| hex_value(*c)).unwrap_or(0);
    let v_below_two = significant == 0 || (significant == 1 && last < 2);
    let recid = if v_below_two { last } else { 1 - (last & 1) };
    RecoveryId::from_i32(i32::from(recid)).map_err(|_| VerifyError::SignatureEncoding)
}

/// Verifies an Ethereum `personal_sign` signature against a `0x…` address.
pub fn verify(message: &str, address: &str, signature: &str) -> Result<(), VerifyError> {
    let recovered = recover_address(message, signature)?;
    if recovered.eq_ignore_ascii_case(address) { Ok(()) } else { Err(VerifyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_id_conventions() {
        let id = |v: &str| recovery_id(v.as_bytes()).map(|r| r.to_i32());
        assert_eq!(id("00"), Ok(0));
        assert_eq!(id("01"), Ok(1));
        assert_eq!(id("1b"), Ok(0));
        assert_eq!(id("1c"), Ok(1));
        assert_eq!(id("25"), Ok(0), "EIP-155 style 37");
        assert_eq!(id("26"), Ok(1), "EIP-155 style 38");
        assert_eq!(id("2"), Ok(1), "v = 2 maps to 1 - 0");
        assert_eq!(id("0000000000000000000000000000001b"), Ok(0));
        assert!(id("").is_err());
        assert!(id("zz").is_err());
    }

    #[test]
    fn flux_bytes_diverge_only_outside_printable_ascii() {
        assert_eq!(&*flux_message_bytes("login 123"), b"login 123");
        assert_eq!(&*flux_message_bytes("é"), &[0xe9]);
        // U+0005 is one hex digit, so the following digits shift: "5" + "41" -> 0x54, 0x01.
        assert_eq!(&*flux_message_bytes("\u{5}A"), &[0x54, 0x01]);
    }
}
