//! RFC 7395 framing: XMPP over WebSocket (and the element lists of BOSH)
//! carry whole elements, not a byte stream. This module converts between
//! the two, so that the session code only ever sees an ordinary stream:
//!
//! ```text
//!  client frame ──parse_client_frame──> stream bytes ──> the session's StreamParser
//!  session bytes ──FrameSplitter──> one frame per element (header -> <open/>, end -> <close/>)
//! ```
//!
//! Each client frame is checked on its own: exactly one complete,
//! well-formed element, within the stanza size limit.

use std::sync::LazyLock;

use starling_core::xml::{Element, escape_into, ns};

use super::codec::Event;
use super::lexical::is_whitespace;
use super::scan::{Scanner, Unit, UnitKind};
use super::{Limits, StreamEvent, StreamHeader, StreamParser, write};

/// The namespace of `<open/>` and `<close/>` (RFC 7395 section 3.3.1).
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// Searches frames for [`FRAMING`]; built once, as building a searcher
/// costs more than searching a chat message with it.
static FRAMING_FINDER: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(FRAMING));

/// The streams namespace prefix declared by a bare client stream header.
const CLIENT_STREAM_START: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

/// Why a client frame is refused; the condition is an RFC 6120 stream error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("<{condition}/>: {text}")]
pub struct FrameError {
    pub condition: &'static str,
    pub text: String,
}

impl FrameError {
    fn new(condition: &'static str, text: impl Into<String>) -> FrameError {
        FrameError {
            condition,
            text: text.into(),
        }
    }
}

impl From<super::StreamError> for FrameError {
    fn from(error: super::StreamError) -> Self {
        FrameError::new(error.condition(), error.to_string())
    }
}

/// What one client frame is, turned into bytes of an ordinary client stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `<open/>`: a new stream header (the start, or a restart after SASL).
    Open(Vec<u8>),
    /// `<close/>`: `</stream:stream>`.
    Close,
    /// One first-level element, passed on as received.
    Element,
}

/// Checks one client frame and says what it is. `Open` carries the stream
/// header to feed the session in its place.
///
/// A stanza is checked by its markup alone (one complete first-level
/// element, within the limits): the session's own parser reads it in full
/// next, so it is parsed once. Only a frame that names the framing
/// namespace (`<open/>`, `<close/>`) is parsed here.
pub fn parse_client_frame(frame: &str, limits: Limits) -> Result<ClientFrame, FrameError> {
    if frame.len() > limits.max_stanza_size {
        return Err(FrameError::new(
            "policy-violation",
            format!(
                "A frame of {} bytes is over the limit of {} bytes",
                frame.len(),
                limits.max_stanza_size
            ),
        ));
    }
    if FRAMING_FINDER.find(frame.as_bytes()).is_none() {
        check_one_element(frame.as_bytes(), limits)?;
        return Ok(ClientFrame::Element);
    }
    let element = single_element(frame.as_bytes(), limits)?;
    if element.ns() != FRAMING {
        return Ok(ClientFrame::Element);
    }
    match element.name() {
        "open" => Ok(ClientFrame::Open(client_header(&element))),
        "close" => Ok(ClientFrame::Close),
        other => Err(FrameError::new(
            "unsupported-stanza-type",
            format!("<{other}/> is not an RFC 7395 framing element"),
        )),
    }
}

/// That `bytes` hold exactly one complete first-level element, told from
/// the markup (nesting, end tags, quotes, limits) without building it.
fn check_one_element(bytes: &[u8], limits: Limits) -> Result<(), FrameError> {
    let mut start = 0;
    match Scanner::new().next_unit(bytes, &mut start, false, &limits, 0)? {
        Some(Unit {
            kind: UnitKind::Element,
            end,
        }) if bytes[end..].iter().all(|&byte| is_whitespace(byte)) => Ok(()),
        Some(Unit {
            kind: UnitKind::Element,
            ..
        }) => Err(FrameError::new(
            "policy-violation",
            "A frame must hold exactly one XML element (RFC 7395 3.3.3)",
        )),
        Some(Unit {
            kind: UnitKind::Close,
            ..
        }) => Err(FrameError::new(
            "not-well-formed",
            "</stream:stream> in a frame: send <close/> instead (RFC 7395 3.6)",
        )),
        Some(_) | None => Err(FrameError::new(
            "not-well-formed",
            "A frame must hold one complete XML element (RFC 7395 3.3.3)",
        )),
    }
}

/// A BOSH `<body/>` (XEP-0124): one complete element, parsed as inside a
/// client stream so that its children are ready to pass on.
pub fn parse_body(bytes: &[u8], limits: Limits) -> Result<Element, FrameError> {
    single_element(bytes, limits)
}

/// The one complete element in `bytes`, parsed as inside a client stream.
fn single_element(bytes: &[u8], limits: Limits) -> Result<Element, FrameError> {
    let mut parser = StreamParser::new(limits);
    parser.feed(CLIENT_STREAM_START.as_bytes());
    parser.feed(b">");
    parser.feed(bytes);
    if !matches!(parser.next_event()?, Some(StreamEvent::Header(_))) {
        return Err(FrameError::new("internal-server-error", "framing header"));
    }
    let element = match parser.next_event()? {
        Some(StreamEvent::Stanza(element)) => element,
        Some(StreamEvent::End) => {
            return Err(FrameError::new(
                "not-well-formed",
                "</stream:stream> in a frame: send <close/> instead (RFC 7395 3.6)",
            ));
        }
        Some(StreamEvent::Header(_)) | None => {
            return Err(FrameError::new(
                "not-well-formed",
                "A frame must hold one complete XML element (RFC 7395 3.3.3)",
            ));
        }
    };
    match parser.next_event()? {
        None if !parser.in_partial_stanza() && parser.buffered_is_whitespace() => Ok(element),
        _ => Err(FrameError::new(
            "policy-violation",
            "A frame must hold exactly one XML element (RFC 7395 3.3.3)",
        )),
    }
}

/// The client stream header equivalent to an `<open/>` frame.
fn client_header(open: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(CLIENT_STREAM_START.as_bytes());
    for name in ["to", "from", "version", "xml:lang"] {
        if let Some(value) = open.attr(name) {
            push_attr(&mut out, name, value, b'\'');
        }
    }
    out.push(b'>');
    out
}

/// Appends ` name=<quote>value<quote>`, the value escaped.
fn push_attr(out: &mut Vec<u8>, name: &str, value: &str, quote: u8) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.push(quote);
    escape_into(out, value, true);
    out.push(quote);
}

/// Splits the bytes the session writes into one frame per element.
///
/// The session writes each stream header at the start of a write (a new
/// header is a restart), so `push` restarts its reader on a chunk that
/// begins with the XML declaration.
#[derive(Debug)]
pub struct FrameSplitter {
    parser: StreamParser,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        FrameSplitter::new()
    }
}

impl FrameSplitter {
    pub fn new() -> FrameSplitter {
        // Our own output: no limit is there to protect us, only to bound a bug.
        let limits = Limits {
            max_stanza_size: 64 * 1024 * 1024,
            max_depth: 4096,
        };
        FrameSplitter {
            parser: StreamParser::new(limits),
        }
    }

    /// Reads `chunk` and appends one frame per complete element to `frames`.
    /// The elements are the server's own output, so each is passed on as
    /// written, with only its namespace declared (see [`standalone`]).
    pub fn push(&mut self, chunk: &[u8], frames: &mut Vec<String>) -> Result<(), FrameError> {
        if chunk.starts_with(b"<?xml") {
            self.parser.reset();
        }
        self.parser.feed(chunk);
        while let Some(event) = self
            .parser
            .next_with(|written, _, _| Ok(standalone(written)))?
        {
            let frame = match event {
                Event::Header(header) => open_frame(&header),
                Event::Element(frame) => frame,
                Event::End => close_frame(),
            };
            // Only valid UTF-8 goes in, so only valid UTF-8 comes out.
            frames.push(String::from_utf8(frame).unwrap_or_default());
        }
        Ok(())
    }

    /// Reads `chunk` and hands each complete event to `sink` (BOSH wraps
    /// elements in its own `<body/>`).
    pub fn push_events(
        &mut self,
        chunk: &[u8],
        mut sink: impl FnMut(StreamEvent),
    ) -> Result<(), FrameError> {
        if chunk.starts_with(b"<?xml") {
            self.parser.reset();
        }
        self.parser.feed(chunk);
        while let Some(event) = self.parser.next_event()? {
            sink(event);
        }
        Ok(())
    }
}

/// One first-level element the server wrote inside its stream, made a
/// document of its own: a frame has no stream header around it, so the
/// namespace the header declared is declared on the element (RFC 7395 3.4),
/// the same as [`element_frame`] writes it.
fn standalone(written: &[u8]) -> Vec<u8> {
    let name_end = written
        .iter()
        .skip(1)
        .position(|&byte| is_whitespace(byte) || byte == b'/' || byte == b'>')
        .map_or(written.len(), |at| at + 1);
    let name = &written[1..name_end];
    let declaration: &[u8] = if name.starts_with(b"stream:") {
        b" xmlns:stream=\"http://etherx.jabber.org/streams\""
    } else if name.contains(&b':') || declares_default_namespace(&written[name_end..]) {
        return written.to_vec();
    } else {
        b" xmlns=\"jabber:client\""
    };
    let mut out = Vec::with_capacity(written.len() + declaration.len());
    out.extend_from_slice(&written[..name_end]);
    out.extend_from_slice(declaration);
    out.extend_from_slice(&written[name_end..]);
    out
}

/// Whether the start tag whose attributes begin `tag` has an `xmlns`
/// attribute. `tag` was checked by the scanner (quotes closed).
fn declares_default_namespace(mut tag: &[u8]) -> bool {
    loop {
        let Some(at) = tag.iter().position(|&byte| !is_whitespace(byte)) else {
            return false;
        };
        tag = &tag[at..];
        if matches!(tag[0], b'/' | b'>') {
            return false;
        }
        let Some(equals) = memchr::memchr(b'=', tag) else {
            return false;
        };
        if tag[..equals].trim_ascii_end() == b"xmlns" {
            return true;
        }
        let value = tag[equals + 1..].trim_ascii_start();
        let Some(&quote) = value.first() else {
            return false;
        };
        let Some(close) = memchr::memchr(quote, &value[1..]) else {
            return false;
        };
        tag = &value[close + 2..];
    }
}

/// `<open/>` for the server's stream header (RFC 7395 3.4).
fn open_frame(header: &StreamHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"<open xmlns=\"");
    out.extend_from_slice(FRAMING.as_bytes());
    out.push(b'"');
    let attributes = [
        ("from", &header.from),
        ("id", &header.id),
        ("version", &header.version),
        ("xml:lang", &header.lang),
    ];
    for (name, value) in attributes {
        if let Some(value) = value {
            push_attr(&mut out, name, value, b'"');
        }
    }
    out.extend_from_slice(b"/>");
    out
}

/// `<close/>`: the end of the server's stream (RFC 7395 3.6).
pub fn close_frame() -> Vec<u8> {
    format!("<close xmlns=\"{FRAMING}\"/>").into_bytes()
}

/// `<close see-other-uri='…'/>`: go to that WebSocket endpoint instead
/// (RFC 7395 3.6.1).
pub fn see_other_uri_frame(uri: &str) -> String {
    format!(
        "<close xmlns=\"{FRAMING}\" see-other-uri=\"{}\"/>",
        starling_core::xml::escape(uri)
    )
}

/// One element as a frame: its namespace declared, since a frame has no
/// stream around it; `stream:` elements declare the prefix (RFC 7395 3.4).
pub fn element_frame(element: &Element) -> Vec<u8> {
    if element.ns() != ns::STREAM {
        let mut out = Vec::with_capacity(128);
        element.write_to(&mut out, "");
        return out;
    }
    let written = write::element_to_bytes(element);
    let name_end = "<stream:".len() + element.name().len();
    if !written.starts_with(b"<stream:") || written.len() < name_end {
        // Written without the prefix: it carries its own declaration.
        return written;
    }
    let mut out = Vec::with_capacity(written.len() + 48);
    out.extend_from_slice(&written[..name_end]);
    out.extend_from_slice(b" xmlns:stream=\"");
    out.extend_from_slice(ns::STREAM.as_bytes());
    out.push(b'"');
    out.extend_from_slice(&written[name_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_stanza_size: 1000,
            max_depth: 16,
        }
    }

    #[test]
    fn open_becomes_a_client_stream_header() {
        let frame =
            r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>"#;
        let ClientFrame::Open(header) = parse_client_frame(frame, limits()).unwrap() else {
            panic!("not an open frame");
        };
        let mut parser = StreamParser::new(limits());
        parser.feed(&header);
        let Some(StreamEvent::Header(header)) = parser.next_event().unwrap() else {
            panic!("no header");
        };
        assert_eq!(header.to.as_deref(), Some("example.com"));
        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(&*header.ns, ns::CLIENT);
    }

    #[test]
    fn one_stanza_per_frame() {
        let frame = "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>";
        assert_eq!(
            parse_client_frame(frame, limits()),
            Ok(ClientFrame::Element)
        );
        let close = r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#;
        assert_eq!(parse_client_frame(close, limits()), Ok(ClientFrame::Close));
    }

    #[test]
    fn bad_frames_are_stream_errors() {
        let condition = |frame: &str| parse_client_frame(frame, limits()).unwrap_err().condition;
        assert_eq!(condition("<message/><message/>"), "policy-violation");
        assert_eq!(condition("<message><body>"), "not-well-formed");
        assert_eq!(condition("<message></iq>"), "not-well-formed");
        assert_eq!(condition(&"x".repeat(1001)), "policy-violation");
    }

    #[test]
    fn a_frame_must_be_one_whole_element() {
        let condition = |frame: &str| parse_client_frame(frame, limits()).unwrap_err().condition;
        // Told from the markup: quotes and CDATA may hold what looks like tags.
        let quoted =
            "<message id='a/>b' xmlns='jabber:client'><body><![CDATA[<x>]]></body></message>";
        assert_eq!(
            parse_client_frame(quoted, limits()),
            Ok(ClientFrame::Element)
        );
        assert_eq!(
            parse_client_frame("  <presence/>\n", limits()),
            Ok(ClientFrame::Element)
        );
        assert_eq!(condition("<presence/>text"), "policy-violation");
        assert_eq!(condition("</stream:stream>"), "not-well-formed");
        assert_eq!(condition(""), "not-well-formed");
        assert_eq!(condition("<a><b><c/></b>"), "not-well-formed");
        let deep = format!("{}{}", "<a>".repeat(17), "</a>".repeat(17));
        assert_eq!(condition(&deep), "policy-violation");
        // A framing element with a prefix is still one.
        let prefixed = r#"<f:close xmlns:f="urn:ietf:params:xml:ns:xmpp-framing"/>"#;
        assert_eq!(
            parse_client_frame(prefixed, limits()),
            Ok(ClientFrame::Close)
        );
        // The namespace named in a stanza does not make it a framing element.
        let mention = "<message><body>urn:ietf:params:xml:ns:xmpp-framing</body></message>";
        assert_eq!(
            parse_client_frame(mention, limits()),
            Ok(ClientFrame::Element)
        );
    }

    #[test]
    fn each_frame_declares_the_namespace_the_stream_header_did() {
        let frames = |written: &[u8]| {
            let mut splitter = FrameSplitter::new();
            let mut frames = Vec::new();
            let header = write::stream_header("example.com", "abc", None, Some("1.0"));
            splitter.push(&header, &mut frames).unwrap();
            splitter.push(written, &mut frames).unwrap();
            frames.split_off(1)
        };
        // An element in its own namespace keeps it, wherever its xmlns is.
        assert_eq!(
            frames(b"<r xmlns='urn:xmpp:sm:3'/><a h='1' xmlns=\"urn:xmpp:sm:3\"/>"),
            [
                "<r xmlns='urn:xmpp:sm:3'/>",
                "<a h='1' xmlns=\"urn:xmpp:sm:3\"/>"
            ]
        );
        // An attribute value that mentions xmlns is not a declaration.
        assert_eq!(
            frames(b"<message id=' xmlns=&apos;x&apos;'><body>a</body></message>"),
            [
                r#"<message xmlns="jabber:client" id=' xmlns=&apos;x&apos;'><body>a</body></message>"#
            ]
        );
        // What the stream's writer produces reads back as the same element.
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("to", "a@b/c")
            .with_child(Element::new("body", ns::CLIENT).with_text("<hi> & 'bye'"))
            .with_child(Element::new("x", "urn:x").with_attr("y", "\"z\""));
        let mut written = Vec::new();
        stanza.write_to(&mut written, ns::CLIENT);
        let frame = frames(&written).remove(0);
        assert_eq!(frame.as_bytes(), element_frame(&stanza).as_slice());
    }

    #[test]
    fn server_output_is_split_per_element() {
        let mut splitter = FrameSplitter::new();
        let mut frames = Vec::new();
        let header = write::stream_header("example.com", "abc", Some("en"), Some("1.0"));
        splitter.push(&header, &mut frames).unwrap();
        let features =
            Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        splitter
            .push(&write::element_to_bytes(&features), &mut frames)
            .unwrap();
        splitter
            .push(
                b"<message to='a@b/c'/><iq type='result' id='1'/>",
                &mut frames,
            )
            .unwrap();
        splitter.push(write::STREAM_CLOSE, &mut frames).unwrap();
        assert_eq!(
            frames,
            [
                r#"<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from="example.com" id="abc" version="1.0" xml:lang="en"/>"#,
                r#"<stream:features xmlns:stream="http://etherx.jabber.org/streams"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></stream:features>"#,
                r#"<message xmlns="jabber:client" to='a@b/c'/>"#,
                r#"<iq xmlns="jabber:client" type='result' id='1'/>"#,
                r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#,
            ]
        );
        // A restart: the next header starts a new stream.
        let mut frames = Vec::new();
        splitter.push(&header, &mut frames).unwrap();
        assert_eq!(frames.len(), 1, "{frames:?}");
    }
}
