//! Stream-level errors of the reader (RFC 6120 section 4.9.3).
//!
//! Each variant is one way a client can break its stream; [`StreamError::condition`]
//! names the RFC 6120 condition the connection sends before closing, and the
//! `Display` text (sent as the error's `<text/>`) says what was wrong and where.
//! Offsets count bytes from the start of the current stream, that is from the
//! connection's first byte or from the last stream restart.

use std::fmt;
use std::str::Utf8Error;

use starling_core::xml::Element;

use super::write;

/// A fatal error on an XMPP stream: the connection reports it and closes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not well-formed XML, or not a well-formed XMPP stream.
    #[error("XML not well-formed at byte {offset}: {problem}")]
    NotWellFormed {
        offset: u64,
        #[source]
        problem: Malformed,
    },
    /// Well-formed XML that XMPP forbids (RFC 6120 section 11.1).
    #[error("restricted XML at byte {offset}: {construct} not allowed on an XMPP stream")]
    RestrictedXml { offset: u64, construct: Restricted },
    /// An element or attribute uses a namespace prefix nobody declared.
    #[error("namespace prefix '{prefix}' of <{element}> at byte {offset} is not declared")]
    BadNamespacePrefix {
        offset: u64,
        prefix: String,
        element: String,
    },
    /// The stream header's own prefix is bound to something other than the
    /// streams namespace.
    #[error(
        "stream header at byte {offset} is in namespace '{found}', expected '{}'",
        starling_core::xml::ns::STREAM
    )]
    InvalidStreamNamespace { offset: u64, found: String },
    /// The stream header's default namespace is missing or is not one XMPP defines.
    #[error(
        "stream header at byte {offset} declares content namespace {}, \
         expected 'jabber:client' or 'jabber:server'",
        DisplayFound(.found.as_deref())
    )]
    InvalidContentNamespace { offset: u64, found: Option<String> },
    /// A stanza (or the header) grew past the configured size limit.
    #[error("stanza starting at byte {offset} exceeds the limit of {limit} bytes")]
    StanzaTooLarge { offset: u64, limit: usize },
    /// Elements are nested deeper than the configured limit.
    #[error("element at byte {offset} is nested deeper than the limit of {limit} levels")]
    TooDeep { offset: u64, limit: usize },
    /// An element carries more attributes than the reader accepts.
    #[error("element <{element}> at byte {offset} has more than {limit} attributes")]
    TooManyAttributes {
        offset: u64,
        element: String,
        limit: usize,
    },
    /// The stream is not UTF-8.
    #[error("unsupported encoding {encoding} at byte {offset}: only UTF-8 is accepted")]
    UnsupportedEncoding { offset: u64, encoding: String },
}

impl StreamError {
    /// The RFC 6120 stream error condition (the child element's name).
    pub fn condition(&self) -> &'static str {
        match self {
            StreamError::NotWellFormed { .. } => "not-well-formed",
            StreamError::RestrictedXml { .. } => "restricted-xml",
            StreamError::BadNamespacePrefix { .. } => "bad-namespace-prefix",
            StreamError::InvalidStreamNamespace { .. }
            | StreamError::InvalidContentNamespace { .. } => "invalid-namespace",
            StreamError::StanzaTooLarge { .. }
            | StreamError::TooDeep { .. }
            | StreamError::TooManyAttributes { .. } => "policy-violation",
            StreamError::UnsupportedEncoding { .. } => "unsupported-encoding",
        }
    }

    /// Byte offset in the current stream where the problem was found.
    pub fn offset(&self) -> u64 {
        match self {
            StreamError::NotWellFormed { offset, .. }
            | StreamError::RestrictedXml { offset, .. }
            | StreamError::BadNamespacePrefix { offset, .. }
            | StreamError::InvalidStreamNamespace { offset, .. }
            | StreamError::InvalidContentNamespace { offset, .. }
            | StreamError::StanzaTooLarge { offset, .. }
            | StreamError::TooDeep { offset, .. }
            | StreamError::TooManyAttributes { offset, .. }
            | StreamError::UnsupportedEncoding { offset, .. } => *offset,
        }
    }

    /// The `<stream:error/>` element reporting this error to the peer.
    pub fn to_element(&self) -> Element {
        write::stream_error(self.condition(), Some(&self.to_string()))
    }

    pub(super) fn malformed(offset: u64, problem: Malformed) -> Self {
        StreamError::NotWellFormed { offset, problem }
    }

    pub(super) fn restricted(offset: u64, construct: Restricted) -> Self {
        StreamError::RestrictedXml { offset, construct }
    }
}

/// What exactly made the input not well-formed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Malformed {
    #[error(transparent)]
    Xml(#[from] quick_xml::Error),
    #[error("invalid UTF-8")]
    Utf8(#[source] Utf8Error),
    #[error("character U+{0:04X} is not allowed in XML")]
    IllegalCharacter(u32),
    #[error("character data outside of any stanza")]
    TextAtTopLevel,
    #[error("expected the stream header, found {0}")]
    BeforeHeader(String),
    #[error("expected <stream:stream>, found <{0}>")]
    NotStreamHeader(String),
    #[error("the stream header must not be an empty element")]
    EmptyHeader,
    #[error("the XML declaration may only open the stream")]
    MisplacedDeclaration,
    #[error("bad XML declaration: {0}")]
    BadDeclaration(String),
    #[error("closing tag </{found}> does not match <{expected}>")]
    MismatchedEnd { expected: String, found: String },
    #[error("invalid name '{0}'")]
    BadName(String),
    #[error("malformed reference '&{0};'")]
    BadReference(String),
    #[error("'&' without a reference name and ';'")]
    UnterminatedReference,
    #[error("'<' inside an attribute value")]
    LtInAttribute,
    #[error("attribute '{0}' appears twice")]
    DuplicateAttribute(String),
    #[error("bad namespace declaration '{0}'")]
    BadNamespaceDeclaration(String),
    #[error("element <{0}> is in a reserved namespace")]
    ReservedNamespace(String),
    #[error("unrecognised markup after '<!'")]
    UnknownMarkup,
    #[error("the input ended inside an element")]
    UnexpectedEof,
}

/// XML constructs that RFC 6120 section 11.1 rules out of XMPP streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restricted {
    Comment,
    ProcessingInstruction,
    Dtd,
    /// A reference to an entity other than the five XML predefines.
    EntityReference(String),
}

impl fmt::Display for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restricted::Comment => f.write_str("comments are"),
            Restricted::ProcessingInstruction => f.write_str("processing instructions are"),
            Restricted::Dtd => f.write_str("document type declarations are"),
            Restricted::EntityReference(name) => {
                write!(f, "the entity reference '&{name};' (undeclared entity) is")
            }
        }
    }
}

struct DisplayFound<'a>(Option<&'a str>);

impl fmt::Display for DisplayFound<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(found) => write!(f, "'{found}'"),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_follow_rfc_6120_names() {
        let cases: Vec<(StreamError, &str)> = vec![
            (
                StreamError::malformed(3, Malformed::TextAtTopLevel),
                "not-well-formed",
            ),
            (
                StreamError::restricted(3, Restricted::Comment),
                "restricted-xml",
            ),
            (
                StreamError::InvalidContentNamespace {
                    offset: 0,
                    found: None,
                },
                "invalid-namespace",
            ),
            (
                StreamError::StanzaTooLarge {
                    offset: 0,
                    limit: 10,
                },
                "policy-violation",
            ),
            (
                StreamError::UnsupportedEncoding {
                    offset: 0,
                    encoding: "'UTF-16'".into(),
                },
                "unsupported-encoding",
            ),
        ];
        for (error, condition) in cases {
            assert_eq!(error.condition(), condition, "{error}");
        }
    }

    #[test]
    fn text_says_what_and_where() {
        let error = StreamError::BadNamespacePrefix {
            offset: 42,
            prefix: "foo".into(),
            element: "foo:bar".into(),
        };
        assert_eq!(
            error.to_string(),
            "namespace prefix 'foo' of <foo:bar> at byte 42 is not declared"
        );
        let error = StreamError::InvalidContentNamespace {
            offset: 0,
            found: None,
        };
        assert!(error.to_string().contains("content namespace none"));
    }
}
