//! XML 1.0 lexical rules the stream reader enforces itself: which characters
//! may appear, what a (qualified) name is, and how references and attribute
//! values decode (XML 1.0 sections 2.2, 2.3, 3.3.3 and 4.1; Namespaces in
//! XML 1.0 section 3).
//!
//! quick-xml splits markup for us but leaves these checks to the caller, and
//! RFC 6120 section 11.1 wants undeclared entities reported as restricted XML
//! rather than as a generic syntax error, so they live here.

use std::borrow::Cow;

use super::error::{Malformed, Restricted, StreamError};

/// XML's `S` production.
pub(super) fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a byte can begin a name; non-ASCII lead bytes are checked later in full.
pub(super) fn is_name_start_byte(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':' || byte >= 0x80
}

/// XML 1.0 `Char`: what any character of a document must be.
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Finds the first character XML forbids in raw input (control characters,
/// U+FFFE and U+FFFF). Surrogates cannot occur in valid UTF-8, which is
/// checked separately.
pub(super) fn check_chars(bytes: &[u8], offset: u64) -> Result<(), StreamError> {
    // Skip eight bytes at a time while none of them could be a problem.
    let mut clean = 0;
    for word in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        if may_need_check(word) {
            break;
        }
        clean += 8;
    }
    for (index, &byte) in bytes.iter().enumerate().skip(clean) {
        let bad = if byte < 0x20 {
            (!matches!(byte, b'\t' | b'\n' | b'\r')).then_some(u32::from(byte))
        } else if byte == 0xEF && bytes.get(index + 1) == Some(&0xBF) {
            match bytes.get(index + 2) {
                Some(0xBE) => Some(0xFFFE),
                Some(0xBF) => Some(0xFFFF),
                _ => None,
            }
        } else {
            None
        };
        if let Some(code) = bad {
            return Err(StreamError::malformed(
                offset + index as u64,
                Malformed::IllegalCharacter(code),
            ));
        }
    }
    Ok(())
}

/// Whether any byte of `word` is below 0x20 or is 0xEF (the lead byte of
/// U+FFFE and U+FFFF). May not miss one; a false alarm only costs time.
fn may_need_check(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    let flipped = word ^ (ONES * 0xEF);
    let is_ef = flipped.wrapping_sub(ONES) & !flipped & HIGH_BITS;
    below_space | is_ef != 0
}

fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}'
            | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Namespaces in XML's `NCName`: an XML name without colons.
pub(super) fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if is_name_start_char(first) => chars.all(is_name_char),
        _ => false,
    }
}

/// Splits a `QName` into its optional prefix and local part, or `None` if
/// it is not one.
pub(super) fn split_qname(name: &str) -> Option<(Option<&str>, &str)> {
    match name.split_once(':') {
        None => is_ncname(name).then_some((None, name)),
        Some((prefix, local)) => {
            (is_ncname(prefix) && is_ncname(local)).then_some((Some(prefix), local))
        }
    }
}

/// Why a `&name;` reference could not be expanded.
pub(super) enum BadRef {
    Restricted(Restricted),
    Malformed(Malformed),
}

impl BadRef {
    pub(super) fn at(self, offset: u64) -> StreamError {
        match self {
            BadRef::Restricted(construct) => StreamError::restricted(offset, construct),
            BadRef::Malformed(problem) => StreamError::malformed(offset, problem),
        }
    }
}

/// Expands the name of a reference (what stands between `&` and `;`): one
/// of the five predefined entities or a character reference.
pub(super) fn resolve_reference(name: &str) -> Result<char, BadRef> {
    let malformed = || BadRef::Malformed(Malformed::BadReference(name.to_owned()));
    match name {
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "amp" => return Ok('&'),
        "apos" => return Ok('\''),
        "quot" => return Ok('"'),
        _ => {}
    }
    let Some(number) = name.strip_prefix('#') else {
        return Err(if is_ncname(name) {
            BadRef::Restricted(Restricted::EntityReference(name.to_owned()))
        } else {
            malformed()
        });
    };
    let (digits, radix) = match number.strip_prefix('x') {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    // from_str_radix would accept a leading '+', which XML does not.
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return Err(malformed());
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .and_then(char::from_u32)
        .filter(|c| is_xml_char(*c))
        .ok_or_else(malformed)
}

/// Decodes a raw attribute value: expands references and applies XML's
/// attribute-value normalisation (each literal tab, newline or CR LF
/// becomes one space; characters written as references are kept).
pub(super) fn decode_attribute(raw: &str, offset: u64) -> Result<Cow<'_, str>, StreamError> {
    let special = |b: &u8| matches!(b, b'&' | b'<' | b'\t' | b'\n' | b'\r');
    let Some(first) = raw.bytes().position(|b| special(&b)) else {
        return Ok(Cow::Borrowed(raw));
    };
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut index = first;
    while index < bytes.len() {
        let run = bytes[index..]
            .iter()
            .position(special)
            .map_or(bytes.len(), |n| index + n);
        // Specials are ASCII, so `index` and `run` are character boundaries.
        out.push_str(&raw[index..run]);
        index = run;
        let Some(&byte) = bytes.get(index) else {
            break;
        };
        match byte {
            b'<' => return Err(StreamError::malformed(offset, Malformed::LtInAttribute)),
            b'&' => {
                let rest = &raw[index + 1..];
                let Some(end) = rest.find(';') else {
                    return Err(StreamError::malformed(
                        offset,
                        Malformed::UnterminatedReference,
                    ));
                };
                out.push(resolve_reference(&rest[..end]).map_err(|bad| bad.at(offset))?);
                index += end + 2;
            }
            b'\r' => {
                out.push(' ');
                index += if bytes.get(index + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            _ => {
                out.push(' ');
                index += 1;
            }
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_once() {
        assert_eq!(split_qname("message"), Some((None, "message")));
        assert_eq!(
            split_qname("stream:stream"),
            Some((Some("stream"), "stream"))
        );
        assert_eq!(split_qname("a:b:c"), None);
        assert_eq!(split_qname(":a"), None);
        assert_eq!(split_qname("a:"), None);
        assert_eq!(split_qname("1a"), None);
        assert_eq!(split_qname(""), None);
        assert_eq!(split_qname("é-x.1"), Some((None, "é-x.1")));
    }

    #[test]
    fn references_expand_predefined_and_character_forms_only() {
        assert_eq!(resolve_reference("amp").ok(), Some('&'));
        assert_eq!(resolve_reference("#x41").ok(), Some('A'));
        assert_eq!(resolve_reference("#65").ok(), Some('A'));
        assert_eq!(resolve_reference("#x1F600").ok(), Some('😀'));
        assert!(matches!(
            resolve_reference("nbsp"),
            Err(BadRef::Restricted(Restricted::EntityReference(_)))
        ));
        for bad in [
            "#0", "#x1", "#xD800", "#xFFFE", "#x110000", "#+65", "#x", "#", "a b",
        ] {
            assert!(
                matches!(resolve_reference(bad), Err(BadRef::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn attribute_values_are_normalised() {
        assert!(matches!(
            decode_attribute("plain", 0),
            Ok(Cow::Borrowed("plain"))
        ));
        assert_eq!(
            decode_attribute("a\r\nb\tc\nd\re&#10;&lt;", 0).unwrap(),
            "a b c d e\n<"
        );
        assert!(decode_attribute("a<b", 0).is_err());
        assert!(decode_attribute("a&b", 0).is_err());
        assert_eq!(
            decode_attribute("&foo;", 7).unwrap_err().condition(),
            "restricted-xml"
        );
    }

    #[test]
    fn control_characters_and_noncharacters_are_rejected() {
        assert!(check_chars("tab\tnl\ncr\r é �".as_bytes(), 0).is_ok());
        let error = check_chars(b"ab\x01", 10).unwrap_err();
        assert_eq!(error.offset(), 12);
        assert!(check_chars("x\u{FFFE}".as_bytes(), 0).is_err());
        assert!(check_chars("x\u{FFFF}".as_bytes(), 0).is_err());
    }

    #[test]
    fn word_at_a_time_check_finds_problems_anywhere() {
        let clean = "0123456789abcdef0123456789abcdef";
        for position in 0..clean.len() {
            for bad in [&b"\x00"[..], b"\x1f", b"\x0b", "\u{FFFE}".as_bytes()] {
                let mut input = clean.as_bytes()[..position].to_vec();
                input.extend_from_slice(bad);
                input.extend_from_slice(&clean.as_bytes()[position..]);
                let error = check_chars(&input, 100).unwrap_err();
                assert_eq!(error.offset(), 100 + position as u64);
            }
            let mut fine = clean.as_bytes()[..position].to_vec();
            fine.extend_from_slice("\t\n\ré\u{FFFD}\u{EFFF}".as_bytes());
            fine.extend_from_slice(&clean.as_bytes()[position..]);
            assert!(check_chars(&fine, 0).is_ok());
        }
    }
}
