//! The client messages of SCRAM (RFC 5802 section 7 grammar): splitting `client-first` and
//! `client-final` into attributes, and `saslname` escaping. Syntax only; what the values
//! mean is checked in [`super::scram`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::error::Malformed;

/// The GS2 channel-binding flag of a `client-first-message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gs2Flag<'a> {
    /// `n`: the client does not do channel binding.
    None,
    /// `y`: the client could bind but believes the server cannot.
    ClientOnly,
    /// `p=<cb-name>`: the client binds with this type.
    Binding(&'a str),
}

/// The parts of a `client-first-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientFirstParts<'a> {
    pub(super) flag: Gs2Flag<'a>,
    /// `gs2-header`, with its trailing comma: what `c=` must echo.
    pub(super) gs2_header: &'a str,
    /// The decoded `a=` saslname, if any.
    pub(super) authzid: Option<String>,
    /// The decoded `n=` saslname, not yet SASLprep'd.
    pub(super) username: String,
    pub(super) client_nonce: &'a str,
    /// `client-first-message-bare`, which goes into the AuthMessage.
    pub(super) bare: &'a str,
}

/// The parts of a `client-final-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientFinalParts<'a> {
    /// The decoded `c=` value.
    pub(super) channel_binding: Vec<u8>,
    pub(super) nonce: &'a str,
    /// `client-final-message-without-proof`, which goes into the AuthMessage.
    pub(super) without_proof: &'a str,
    /// The decoded `p=` value.
    pub(super) proof: Vec<u8>,
}

pub(super) fn parse_client_first(message: &[u8]) -> Result<ClientFirstParts<'_>, Malformed> {
    let text = text(message)?;
    let (flag, rest) = text.split_once(',').ok_or(Malformed::Gs2Header)?;
    let flag = match flag {
        "n" => Gs2Flag::None,
        "y" => Gs2Flag::ClientOnly,
        _ => match flag.strip_prefix("p=") {
            // cb-name = 1*(ALPHA / DIGIT / "." / "-")
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                Gs2Flag::Binding(name)
            }
            _ => return Err(Malformed::Gs2Header),
        },
    };
    let (authzid, bare) = rest.split_once(',').ok_or(Malformed::Gs2Header)?;
    let authzid = match authzid {
        "" => None,
        _ => Some(decode_saslname(
            authzid.strip_prefix("a=").ok_or(Malformed::Gs2Header)?,
        )?),
    };
    let gs2_header = &text[..text.len() - bare.len()];

    let mut attributes = bare.split(',');
    let first = attributes.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(Malformed::MandatoryExtension);
    }
    let username = decode_saslname(attribute(first, 'n')?)?;
    let client_nonce = nonce_and_extensions(&mut attributes)?;
    Ok(ClientFirstParts {
        flag,
        gs2_header,
        authzid,
        username,
        client_nonce,
        bare,
    })
}

pub(super) fn parse_client_final(message: &[u8]) -> Result<ClientFinalParts<'_>, Malformed> {
    let text = text(message)?;
    // The proof is always the last attribute and the only one left out of the AuthMessage.
    let (without_proof, proof) = text
        .rsplit_once(',')
        .ok_or(Malformed::MissingAttribute('p'))?;
    let proof = base64_attribute(proof, 'p')?;

    let mut attributes = without_proof.split(',');
    let channel_binding = base64_attribute(attributes.next().unwrap_or_default(), 'c')?;
    let nonce = nonce_and_extensions(&mut attributes)?;
    Ok(ClientFinalParts {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// The rest of a client message after its leading attributes: the nonce
/// (`r=`), then optional extensions only.
fn nonce_and_extensions<'a>(
    attributes: &mut impl Iterator<Item = &'a str>,
) -> Result<&'a str, Malformed> {
    let nonce = attribute(attributes.next().unwrap_or_default(), 'r')?;
    if !is_nonce(nonce) {
        return Err(Malformed::Nonce);
    }
    attributes.try_for_each(extension)?;
    Ok(nonce)
}

fn text(message: &[u8]) -> Result<&str, Malformed> {
    let text = std::str::from_utf8(message).map_err(|_| Malformed::NotUtf8)?;
    // NUL is excluded from every SCRAM value; refusing it once here covers them all.
    if text.contains('\0') {
        return Err(Malformed::Attribute);
    }
    Ok(text)
}

/// The value of `part` if it is the attribute `name`.
fn attribute(part: &str, name: char) -> Result<&str, Malformed> {
    part.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='))
        .ok_or(Malformed::MissingAttribute(name))
}

fn base64_attribute(part: &str, name: char) -> Result<Vec<u8>, Malformed> {
    BASE64
        .decode(attribute(part, name)?)
        .map_err(|source| Malformed::Base64 {
            attribute: name,
            source,
        })
}

/// An optional extension (`ALPHA "=" 1*value-char`): well-formed ones are ignored, as RFC
/// 5802 asks. A stray `p=` before the end would hide a second proof, so it is refused.
fn extension(part: &str) -> Result<(), Malformed> {
    let mut chars = part.chars();
    match (chars.next(), chars.next(), chars.as_str()) {
        (Some('p'), ..) => Err(Malformed::Attribute),
        (Some(name), Some('='), value) if name.is_ascii_alphabetic() && !value.is_empty() => Ok(()),
        _ => Err(Malformed::Attribute),
    }
}

/// `c-nonce` / `s-nonce`: printable ASCII except `,`.
pub(super) fn is_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2B | 0x2D..=0x7E))
}

/// Decodes a `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is an error.
pub(super) fn decode_saslname(name: &str) -> Result<String, Malformed> {
    if name.is_empty() {
        return Err(Malformed::Saslname);
    }
    let mut decoded = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        decoded.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3);
        decoded.push(match escape {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err(Malformed::Saslname),
        });
        rest = &rest[at + 3..];
    }
    decoded.push_str(rest);
    Ok(decoded)
}

/// Encodes a name as a `saslname`.
#[cfg(test)]
pub(super) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_parts() {
        let parts = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(parts.gs2_header, "n,,");
        assert_eq!(parts.flag, Gs2Flag::None);
        assert_eq!(parts.authzid, None);
        assert_eq!(parts.username, "user");
        assert_eq!(parts.client_nonce, "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(parts.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");

        let parts = parse_client_first(b"y,a=me@x.org,n=a=2Cb=3Dc,r=abc,x=ext").unwrap();
        assert_eq!(parts.gs2_header, "y,a=me@x.org,");
        assert_eq!(parts.flag, Gs2Flag::ClientOnly);
        assert_eq!(parts.authzid.as_deref(), Some("me@x.org"));
        assert_eq!(parts.username, "a,b=c");
        assert_eq!(parts.bare, "n=a=2Cb=3Dc,r=abc,x=ext");

        let parts = parse_client_first(b"p=tls-exporter,,n=u,r=abc").unwrap();
        assert_eq!(parts.flag, Gs2Flag::Binding("tls-exporter"));
        assert_eq!(parts.gs2_header, "p=tls-exporter,,");
    }

    #[test]
    fn saslname_escapes() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert_eq!(decode_saslname("=3D=2C").unwrap(), "=,");
        assert_eq!(decode_saslname("plain").unwrap(), "plain");
        for bad in ["", "a=", "a=2", "a=2c", "a=41", "=3d", "a=3Db=", "é=x"] {
            assert_eq!(decode_saslname(bad), Err(Malformed::Saslname), "{bad:?}");
        }
        for name in ["a,b=c", "=,=", "user", "ü,="] {
            assert_eq!(decode_saslname(&encode_saslname(name)).unwrap(), name);
        }
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
    }

    #[test]
    fn authzid_and_username_are_unescaped() {
        let parts = parse_client_first(b"n,a=x=3Dy@z,n=a=2Cb,r=abc").unwrap();
        assert_eq!(parts.authzid.as_deref(), Some("x=y@z"));
        assert_eq!(parts.username, "a,b");
    }

    #[test]
    fn client_first_errors() {
        let cases: &[(&[u8], Malformed)] = &[
            (b"", Malformed::Gs2Header),
            (b"n", Malformed::Gs2Header),
            (b"n,", Malformed::Gs2Header),
            (b"x,,n=user,r=abc", Malformed::Gs2Header),
            (b"p=,,n=user,r=abc", Malformed::Gs2Header),
            (b"p=tls_unique,,n=user,r=abc", Malformed::Gs2Header),
            (b"n,user,n=user,r=abc", Malformed::Gs2Header),
            (b"n,a=,n=user,r=abc", Malformed::Saslname),
            (b"n,,m=ext,n=user,r=abc", Malformed::MandatoryExtension),
            (b"n,,r=abc,n=user", Malformed::MissingAttribute('n')),
            (b"n,,n=user", Malformed::MissingAttribute('r')),
            (b"n,,n=user,", Malformed::MissingAttribute('r')),
            (b"n,,n=,r=abc", Malformed::Saslname),
            (b"n,,n=us=er,r=abc", Malformed::Saslname),
            (b"n,,n=user,r=", Malformed::Nonce),
            (b"n,,n=user,r=a b", Malformed::Nonce),
            (b"n,,n=user,r=abc,", Malformed::Attribute),
            (b"n,,n=user,r=abc,xx", Malformed::Attribute),
            (b"n,,n=user,r=abc,1=x", Malformed::Attribute),
            (b"n,,n=user,r=abc,x=", Malformed::Attribute),
            (b"n,,n=us\0er,r=abc", Malformed::Attribute),
            (b"n,,n=\xff,r=abc", Malformed::NotUtf8),
        ];
        for (message, expected) in cases {
            let got = parse_client_first(message);
            assert_eq!(
                got,
                Err(expected.clone()),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn client_final_parts() {
        let message = b"c=biws,r=abcdef,p=AAAA";
        let parts = parse_client_final(message).unwrap();
        assert_eq!(parts.channel_binding, b"n,,");
        assert_eq!(parts.nonce, "abcdef");
        assert_eq!(parts.without_proof, "c=biws,r=abcdef");
        assert_eq!(parts.proof, [0, 0, 0]);
        let parts = parse_client_final(b"c=biws,r=abcdef,x=ignored,p=AAAA").unwrap();
        assert_eq!(parts.without_proof, "c=biws,r=abcdef,x=ignored");
    }

    #[test]
    fn client_final_errors() {
        let cases: &[(&[u8], Malformed)] = &[
            (b"", Malformed::MissingAttribute('p')),
            (b"c=biws,r=abc", Malformed::MissingAttribute('p')),
            (b"c=biws,p=AAAA,r=abc", Malformed::MissingAttribute('p')),
            (b"r=abc,c=biws,p=AAAA", Malformed::MissingAttribute('c')),
            (b"c=biws,p=AAAA", Malformed::MissingAttribute('r')),
            (b"c=biws,x=1,r=abc,p=AAAA", Malformed::MissingAttribute('r')),
            (b"c=biws,r=,p=AAAA", Malformed::Nonce),
            (b"c=biws,r=abc,p=BBBB,p=AAAA", Malformed::Attribute),
            (b"c=biws,r=abc,m=x,", Malformed::MissingAttribute('p')),
            (b"c=biws,r=abc\0,p=AAAA", Malformed::Attribute),
        ];
        for (message, expected) in cases {
            let got = parse_client_final(message);
            assert_eq!(
                got,
                Err(expected.clone()),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
        for (message, name) in [
            (&b"c=bi!s,r=abc,p=AAAA"[..], 'c'),
            (b"c=biws,r=abc,p=AAA", 'p'),
        ] {
            assert!(
                matches!(
                    parse_client_final(message),
                    Err(Malformed::Base64 { attribute, .. }) if attribute == name
                ),
                "{message:?}"
            );
        }
    }

    #[test]
    fn nonce_characters() {
        assert!(is_nonce("fyko+d2lbbFgONRv9qkxdawL"));
        assert!(is_nonce("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"));
        assert!(!is_nonce(""));
        assert!(!is_nonce("a,b"));
        assert!(!is_nonce("a b"));
        assert!(!is_nonce("é"));
    }
}
