//! The field checks of `/id/verifylogin` and `/id/providesign`, in FluxOS's order.

use super::{FluxError, Fields};
use crate::secret::phrase_timestamp;
use crate::store::Millis;
use crate::verify::bitcoin_message::segwit_v0_program;

/// The three fields of a login or a provided signature, after the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPhrase {
    pub zelid: String,
    pub phrase: String,
    pub signature: String,
}

/// Which identities may log in (spec/flux-id.md §2.1 and decision 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRules {
    /// Also `3…` (P2SH-P2WPKH or P2SH multisig) and `bc1q…` (P2WPKH or P2WSH multisig).
    pub accept_segwit: bool,
}

impl AddressRules {
    pub fn accepts(self, address: &str) -> bool {
        let base58 = |a: &str| a.bytes().all(|b| b.is_ascii_alphanumeric() && !b"0OIl".contains(&b));
        match address.as_bytes().first() {
            Some(b'1') => (25..=34).contains(&address.len()) && base58(address),
            Some(b'0') => {
                address.len() == 42 && address.starts_with("0x") && address.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
            }
            Some(b'3') if self.accept_segwit => (25..=35).contains(&address.len()) && base58(address),
            Some(b'b' | b't') if self.accept_segwit => segwit_v0_program(address).is_some(),
            _ => false,
        }
    }
}

/// JavaScript `String.length`: UTF-16 code units.
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn address_and_message(fields: &Fields, rules: AddressRules) -> Result<(String, String), FluxError> {
    let zelid = fields.string(&["zelid", "address"])?.ok_or(FluxError::NoFluxId)?;
    if !rules.accepts(&zelid) {
        return Err(FluxError::InvalidFluxId);
    }
    let phrase = fields.string(&["loginPhrase", "message"])?.ok_or(FluxError::NoMessage)?;
    if js_len(&phrase) < 40 {
        return Err(FluxError::InvalidMessage);
    }
    Ok((zelid, phrase))
}

/// Steps 1–6 of `verifylogin`: identity, phrase shape and age, signature present.
/// The phrase's timestamp must lie in `[now - phrase_ttl, now]`; a prefix that is not
/// 13 digits passes here (JavaScript's NaN compares false) and fails at the lookup.
pub fn check_login(fields: &Fields, rules: AddressRules, now: Millis, phrase_ttl: Millis) -> Result<SignedPhrase, FluxError> {
    let (zelid, phrase) = address_and_message(fields, rules)?;
    if let Some(t) = phrase_timestamp(&phrase)
        && (t < now.saturating_sub(phrase_ttl) || t > now)
    {
        return Err(FluxError::InvalidMessage);
    }
    let signature = fields.string(&["signature"])?.ok_or(FluxError::NoSignature)?;
    Ok(SignedPhrase { zelid, phrase, signature })
}

/// Steps 1–4 and 6 of `verifylogin`, which is all `providesign` checks.
pub fn check_provided(fields: &Fields, rules: AddressRules) -> Result<SignedPhrase, FluxError> {
    let (zelid, phrase) = address_and_message(fields, rules)?;
    let signature = fields.string(&["signature"])?.ok_or(FluxError::NoSignature)?;
    Ok(SignedPhrase { zelid, phrase, signature })
}

/// `providesign`'s identifier: the address followed by the last 13 characters of the message.
pub fn sign_identifier(address: &str, message: &str) -> String {
    let units: Vec<u16> = message.encode_utf16().collect();
    let tail = String::from_utf16_lossy(units.get(units.len().saturating_sub(13)..).unwrap_or_default());
    format!("{address}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: AddressRules = AddressRules { accept_segwit: true };
    const FLUX: AddressRules = AddressRules { accept_segwit: false };
    const NOW: u64 = 1_700_000_000_000;
    const TTL: u64 = 900_000;

    fn login(json: &str) -> Result<SignedPhrase, String> {
        check_login(&Fields::parse(json.as_bytes()), RULES, NOW, TTL).map_err(|e| e.to_string())
    }

    #[test]
    fn checks_run_in_fluxos_order() {
        let phrase = format!("{NOW}abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(login("{}").unwrap_err(), "No Flux ID is specified");
        assert_eq!(login(r#"{"zelid":"2abc"}"#).unwrap_err(), "Flux ID is not valid");
        assert_eq!(login(r#"{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC"}"#).unwrap_err(), "No message is specified");
        assert_eq!(
            login(r#"{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","loginPhrase":"short"}"#).unwrap_err(),
            "Signed message is not valid"
        );
        let old = format!("{}abcdefghijklmnopqrstuvwxyz0123456789", NOW - TTL - 1);
        assert_eq!(
            login(&format!(r#"{{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","loginPhrase":"{old}"}}"#)).unwrap_err(),
            "Signed message is not valid"
        );
        let future = format!("{}abcdefghijklmnopqrstuvwxyz0123456789", NOW + 1);
        assert_eq!(
            login(&format!(r#"{{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","message":"{future}"}}"#)).unwrap_err(),
            "Signed message is not valid"
        );
        assert_eq!(
            login(&format!(r#"{{"address":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","message":"{phrase}"}}"#)).unwrap_err(),
            "No signature is specified"
        );
        let ok = login(&format!(
            r#"{{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","loginPhrase":"{phrase}","signature":"H"}}"#
        ))
        .unwrap();
        assert_eq!(ok.phrase, phrase);
        // A non-numeric prefix slips past the age check, as NaN does in FluxOS.
        assert!(login(r#"{"zelid":"1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC","loginPhrase":"x234567890123abcdefghijklmnopqrstuvwxyz0123","signature":"H"}"#).is_ok());
    }

    #[test]
    fn addresses() {
        assert!(FLUX.accepts("1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3uC"));
        assert!(FLUX.accepts("0xfaA2cA6454F2815C0900da1d4BfbD53072C736eb"));
        assert!(!FLUX.accepts("0xfaA2cA6454F2815C0900da1d4BfbD53072C736e"));
        assert!(!FLUX.accepts("1CbErtneaX2QVyUfwU7JGB7VzvPgrgc3u0"), "0 is not base58");
        assert!(!FLUX.accepts("3JvL6Ymt8MVWiCNHC7oWU6nLeHNJKLZGLN"));
        assert!(!FLUX.accepts("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"));
        assert!(RULES.accepts("3JvL6Ymt8MVWiCNHC7oWU6nLeHNJKLZGLN"));
        assert!(RULES.accepts("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"));
        assert!(!RULES.accepts("t1dKNPzaQvexwSk9QaTG1rbBibQ8btGdGLG"));
        assert!(!RULES.accepts(""));
    }

    #[test]
    fn identifier_is_address_plus_last_13() {
        assert_eq!(
            sign_identifier("1Z1234341Z1234341Z1234341Z1234341", "anything ending 1111111111111"),
            "1Z1234341Z1234341Z1234341Z12343411111111111111"
        );
        assert_eq!(sign_identifier("1a", "short"), "1ashort");
    }
}
