//! The stream prolog: the optional XML declaration and the `<stream:stream>`
//! header (RFC 6120 sections 4.2, 4.7, 4.8 and 11.6).
//!
//! Checks that the header is in the streams namespace and that the content
//! namespace is `jabber:client` or `jabber:server`, and keeps the header's
//! namespace declarations so first-level elements resolve against them.
//! Judging the header's `to`, `version` and `xml:lang` values is the
//! connection's business; this module only reports them.

use quick_xml::events::BytesStart;
use starling_core::xml::{Str, ns, ns_str};

use super::StreamHeader;
use super::error::{Malformed, StreamError};
use super::lexical::{check_chars, decode_attribute, is_ncname, is_whitespace, split_qname};

/// What the stream header establishes for the rest of the stream.
#[derive(Debug, Clone)]
pub(super) struct StreamContext {
    /// The content namespace, in scope for unprefixed first-level elements.
    pub(super) default_ns: Str,
    /// Prefixes the header declared, the stream prefix among them.
    pub(super) prefixes: Vec<(Str, Str)>,
    /// The header's qualified name, which the stream's end tag must repeat.
    pub(super) close_name: Box<str>,
}

impl StreamContext {
    /// The namespace a prefix is bound to by the header.
    pub(super) fn prefix(&self, prefix: &str) -> Option<&Str> {
        self.prefixes
            .iter()
            .rev()
            .find(|(known, _)| known == prefix)
            .map(|(_, uri)| uri)
    }
}

/// Validates `<?xml ...?>`: version 1.x, and UTF-8 if an encoding is named.
pub(super) fn parse_declaration(unit: &[u8], offset: u64) -> Result<(), StreamError> {
    let bad = |what: String| StreamError::malformed(offset, Malformed::BadDeclaration(what));
    // The scanner hands over `<?xml` ... `?>`.
    let inner = unit
        .get(2..unit.len().saturating_sub(2))
        .ok_or_else(|| bad("truncated".to_owned()))?;
    let inner = std::str::from_utf8(inner)
        .map_err(|e| StreamError::malformed(offset, Malformed::Utf8(e)))?;
    check_chars(inner.as_bytes(), offset)?;
    let declaration = BytesStart::from_content(inner, 3);
    let mut seen_version = false;
    for attribute in declaration.attributes() {
        let attribute =
            attribute.map_err(|e| StreamError::malformed(offset, Malformed::Xml(e.into())))?;
        let value = decode_attribute(&attribute.value, offset)?;
        match (attribute.key.0, seen_version) {
            ("version", false) => {
                let minor = value.strip_prefix("1.");
                if !minor.is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(bad(format!("unknown XML version '{value}'")));
                }
                seen_version = true;
            }
            ("encoding", true) => {
                if !value.eq_ignore_ascii_case("UTF-8") {
                    return Err(StreamError::UnsupportedEncoding {
                        offset,
                        encoding: format!("'{value}'"),
                    });
                }
            }
            ("standalone", true) if matches!(&*value, "yes" | "no") => {}
            (key, _) => return Err(bad(format!("unexpected '{key}'"))),
        }
    }
    if !seen_version {
        return Err(bad("missing version".to_owned()));
    }
    Ok(())
}

/// Parses the header's start tag, `<` to `>` inclusive.
pub(super) fn parse_header(
    unit: &[u8],
    offset: u64,
) -> Result<(StreamHeader, StreamContext), StreamError> {
    let inner = unit
        .get(1..unit.len().saturating_sub(1))
        .unwrap_or_default();
    let inner = std::str::from_utf8(inner)
        .map_err(|e| StreamError::malformed(offset, Malformed::Utf8(e)))?;
    check_chars(inner.as_bytes(), offset + 1)?;
    let name_len = inner
        .bytes()
        .position(|b| is_whitespace(b) || b == b'/')
        .unwrap_or(inner.len());
    let name = &inner[..name_len];
    let bad_name = || StreamError::malformed(offset, Malformed::BadName(name.to_owned()));
    let (prefix, local) = split_qname(name).ok_or_else(bad_name)?;
    if local != "stream" {
        return Err(StreamError::malformed(
            offset,
            Malformed::NotStreamHeader(name.to_owned()),
        ));
    }
    if inner.ends_with('/') {
        return Err(StreamError::malformed(offset, Malformed::EmptyHeader));
    }
    let tag = BytesStart::from_content(inner, name_len);

    // Declarations first: they apply to the whole tag whatever their position.
    let mut default_ns: Option<String> = None;
    let mut prefixes: Vec<(Str, Str)> = Vec::new();
    for attribute in tag.attributes() {
        let attribute =
            attribute.map_err(|e| StreamError::malformed(offset, Malformed::Xml(e.into())))?;
        let key = attribute.key.0;
        if key == "xmlns" {
            default_ns = Some(decode_attribute(&attribute.value, offset)?.into_owned());
        } else if let Some(declared) = key.strip_prefix("xmlns:") {
            let uri = decode_attribute(&attribute.value, offset)?;
            if !is_ncname(declared) || declared == "xmlns" || uri.is_empty() {
                return Err(StreamError::malformed(
                    offset,
                    Malformed::BadNamespaceDeclaration(key.to_owned()),
                ));
            }
            if (declared == "xml") != (uri == ns::XML) {
                return Err(StreamError::malformed(
                    offset,
                    Malformed::BadNamespaceDeclaration(key.to_owned()),
                ));
            }
            if declared != "xml" {
                prefixes.push((Str::Owned(declared.to_owned()), ns_str(&uri)));
            }
        }
    }

    let mut header = StreamHeader::default();
    for attribute in tag.attributes() {
        let attribute =
            attribute.map_err(|e| StreamError::malformed(offset, Malformed::Xml(e.into())))?;
        let key = attribute.key.0;
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = || decode_attribute(&attribute.value, offset).map(|v| Some(v.into_owned()));
        match key {
            "to" => header.to = value()?,
            "from" => header.from = value()?,
            "id" => header.id = value()?,
            "version" => header.version = value()?,
            "xml:lang" => header.lang = value()?,
            _ => {
                let (attribute_prefix, _) = split_qname(key).ok_or_else(|| {
                    StreamError::malformed(offset, Malformed::BadName(key.to_owned()))
                })?;
                if let Some(p) = attribute_prefix {
                    if p != "xml" && !prefixes.iter().any(|(known, _)| known == p) {
                        return Err(StreamError::BadNamespacePrefix {
                            offset,
                            prefix: p.to_owned(),
                            element: name.to_owned(),
                        });
                    }
                }
                // Unknown header attributes are ignored (RFC 6120 section 4.7).
                decode_attribute(&attribute.value, offset)?;
            }
        }
    }

    let stream_ns = match prefix {
        None => default_ns.clone(),
        Some("xml") => Some(ns::XML.to_owned()),
        Some(p) => match prefixes.iter().rev().find(|(known, _)| known == p) {
            Some((_, uri)) => Some(uri.to_string()),
            None => {
                return Err(StreamError::BadNamespacePrefix {
                    offset,
                    prefix: p.to_owned(),
                    element: name.to_owned(),
                });
            }
        },
    };
    if stream_ns.as_deref() != Some(ns::STREAM) {
        return Err(StreamError::InvalidStreamNamespace {
            offset,
            found: stream_ns.unwrap_or_default(),
        });
    }
    let default_ns = match default_ns.as_deref() {
        Some(ns::CLIENT) => Str::Borrowed(ns::CLIENT),
        Some(ns::SERVER) => Str::Borrowed(ns::SERVER),
        _ => {
            return Err(StreamError::InvalidContentNamespace {
                offset,
                found: default_ns,
            });
        }
    };
    header.ns = default_ns.clone();
    let context = StreamContext {
        default_ns,
        prefixes,
        close_name: name.into(),
    };
    Ok((header, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(xml: &str) -> Result<(StreamHeader, StreamContext), StreamError> {
        parse_header(xml.as_bytes(), 0)
    }

    #[test]
    fn reads_the_usual_client_header() {
        let (header, context) = header(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='example.com' from='juliet@example.com' version='1.0' xml:lang='en'>",
        )
        .unwrap();
        assert_eq!(header.to.as_deref(), Some("example.com"));
        assert_eq!(header.from.as_deref(), Some("juliet@example.com"));
        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(header.lang.as_deref(), Some("en"));
        assert_eq!(header.id, None);
        assert_eq!(header.ns, ns::CLIENT);
        assert_eq!(&*context.close_name, "stream:stream");
        assert_eq!(context.prefix("stream").map(|s| &**s), Some(ns::STREAM));
    }

    #[test]
    fn any_stream_prefix_works() {
        let (_, context) =
            header("<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:server'>")
                .unwrap();
        assert_eq!(&*context.close_name, "s:stream");
        assert_eq!(context.default_ns, ns::SERVER);
    }

    #[test]
    fn namespace_problems_are_classified() {
        let wrong_stream =
            header("<stream:stream xmlns='jabber:client' xmlns:stream='urn:nope'>").unwrap_err();
        assert!(matches!(
            wrong_stream,
            StreamError::InvalidStreamNamespace { .. }
        ));
        let wrong_content = header(
            "<stream:stream xmlns='urn:nope' xmlns:stream='http://etherx.jabber.org/streams'>",
        )
        .unwrap_err();
        assert!(matches!(
            wrong_content,
            StreamError::InvalidContentNamespace { .. }
        ));
        let missing_content =
            header("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>").unwrap_err();
        assert_eq!(missing_content.condition(), "invalid-namespace");
        let undeclared = header("<stream:stream xmlns='jabber:client'>").unwrap_err();
        assert_eq!(undeclared.condition(), "bad-namespace-prefix");
        let unprefixed = header("<stream xmlns='http://etherx.jabber.org/streams'>").unwrap_err();
        assert!(matches!(
            unprefixed,
            StreamError::InvalidContentNamespace { .. }
        ));
    }

    #[test]
    fn declarations_accept_utf8_only() {
        assert!(parse_declaration(b"<?xml version='1.0'?>", 0).is_ok());
        assert!(parse_declaration(b"<?xml version=\"1.0\" encoding=\"utf-8\" ?>", 0).is_ok());
        let error = parse_declaration(b"<?xml version='1.0' encoding='ISO-8859-1'?>", 0);
        assert_eq!(error.unwrap_err().condition(), "unsupported-encoding");
        assert!(parse_declaration(b"<?xml encoding='UTF-8'?>", 0).is_err());
        assert!(parse_declaration(b"<?xml version='2.0'?>", 0).is_err());
    }
}
