//! The base64 text of `<auth/>`, `<challenge/>`, `<response/>` and `<success/>` (RFC 6120
//! section 6.4), where a lone `=` stands for a present but empty payload.
//!
//! An element with no text at all means "no data" (for `<auth/>`: no initial response); the
//! connection tells that apart from `=` before decoding, since both decode to nothing here.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::error::SaslError;

/// Decodes the text of an `<auth/>` or `<response/>` element. Whitespace around the text is
/// ignored (pretty-printed XML); anything else that is not canonical, padded base64 is
/// `incorrect-encoding`.
pub fn decode_payload(text: &str) -> Result<Vec<u8>, SaslError> {
    let text = text.trim_ascii();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    BASE64.decode(text).map_err(SaslError::IncorrectEncoding)
}

/// Encodes data for a `<challenge/>` or `<success/>`; empty data becomes `=`.
pub fn encode_payload(data: &[u8]) -> String {
    if data.is_empty() {
        "=".to_owned()
    } else {
        BASE64.encode(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_sign_and_nothing_are_empty() {
        assert_eq!(decode_payload("="), Ok(Vec::new()));
        assert_eq!(decode_payload(""), Ok(Vec::new()));
        assert_eq!(encode_payload(b""), "=");
    }

    #[test]
    fn round_trip() {
        let data = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
        let text = encode_payload(data);
        assert_eq!(text, "biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM");
        assert_eq!(decode_payload(&text).unwrap(), data);
        assert_eq!(decode_payload(&format!("\n  {text}\n")).unwrap(), data);
    }

    #[test]
    fn bad_base64_is_incorrect_encoding() {
        for text in ["biws!", "biw", "bi ws", "biws=", "==", "YQ"] {
            let error = decode_payload(text).unwrap_err();
            assert_eq!(error.condition(), "incorrect-encoding", "{text:?}");
        }
    }
}
