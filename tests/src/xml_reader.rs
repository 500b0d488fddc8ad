//! Incremental reader for the server-to-client half of an XMPP stream (RFC 6120 §4, §11).
//!
//! Bytes arrive in arbitrary pieces; the reader turns them into the stream header, complete
//! top-level elements (stanzas, features, stream errors) and the stream close. It owns its
//! buffer so socket reads can go straight into it, and it keeps every partial element it has
//! seen, so parsing never has to start again from the beginning of a stanza.
//!
//! It is deliberately independent of the server's codec: quick-xml only tokenises, and the
//! namespace scopes, element tree and XMPP restrictions (no DTD, comments or processing
//! instructions) are handled here.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};
use quick_xml::XmlVersion;
use quick_xml::errors::{Error as QuickError, SyntaxError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use starling_core::xml::{Element, ns, ns_str};

/// Largest amount of unparsed data the reader will hold before giving up: a server that
/// sends a megabyte without closing a tag is broken or hostile.
pub const DEFAULT_MAX_BUFFER: usize = 1 << 20;

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The `<stream:stream>` header, as an element without children.
    Open(Element),
    /// A complete top-level element.
    Stanza(Element),
    /// `</stream:stream>`.
    Close,
}

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(#[source] QuickError),
    #[error("bad attribute: {0}")]
    Attribute(#[source] quick_xml::events::attributes::AttrError),
    #[error("unknown entity or bad character reference `&{0};`")]
    Entity(String),
    #[error("namespace prefix `{0}` is not bound")]
    UnboundPrefix(String),
    #[error("end tag `</{found}>` does not close `<{open}>`")]
    MismatchedEnd { open: String, found: String },
    #[error("end tag `</{0}>` with no open element")]
    UnexpectedEnd(String),
    #[error("restricted XML (RFC 6120 §11.1): {0}")]
    Restricted(&'static str),
    #[error("first element is `<{0}>`, not a stream header")]
    NotAStream(String),
    #[error("text outside any stanza: {0:?}")]
    StrayText(String),
    #[error("more than {0} bytes without a complete tag")]
    TooLarge(usize),
}

/// Namespace declarations in force: `(prefix, uri)`, `None` being the default namespace.
/// `marks[d]` is where the declarations of the element at depth `d` start.
#[derive(Debug, Default)]
struct Scopes {
    bindings: Vec<(Option<String>, String)>,
    marks: Vec<usize>,
}

impl Scopes {
    fn push(&mut self, declared: Vec<(Option<String>, String)>) {
        self.marks.push(self.bindings.len());
        self.bindings.extend(declared);
    }

    fn pop(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.bindings.truncate(mark);
        }
    }

    fn resolve(&self, prefix: Option<&str>) -> Result<&str, XmlError> {
        if prefix == Some("xml") {
            return Ok(ns::XML);
        }
        let found = self
            .bindings
            .iter()
            .rev()
            .find(|(bound, _)| bound.as_deref() == prefix)
            .map(|(_, uri)| uri.as_str());
        match (found, prefix) {
            (Some(uri), _) => Ok(uri),
            // An unprefixed element outside any default declaration is in no namespace.
            (None, None) => Ok(""),
            (None, Some(prefix)) => Err(XmlError::UnboundPrefix(prefix.to_owned())),
        }
    }
}

/// Incremental reader: [`XmlReader::buffer`] receives bytes, [`XmlReader::next_event`]
/// returns what they completed.
#[derive(Debug)]
pub struct XmlReader {
    buf: BytesMut,
    tree: TreeBuilder,
    max_buffer: usize,
}

/// Everything the reader knows about the stream apart from the raw bytes.
#[derive(Debug, Default)]
struct TreeBuilder {
    scopes: Scopes,
    /// Whether the stream header has been read since the last reset.
    open: bool,
    /// Elements opened inside the current top-level element, outermost first, with the
    /// qualified name they were opened with (to check the end tag).
    stack: Vec<(String, Element)>,
    /// Character data not yet attached to the innermost open element; pieces split by
    /// entity references, CDATA or reads end up in one text node.
    text: String,
    ready: VecDeque<StreamEvent>,
}

impl Default for XmlReader {
    fn default() -> Self {
        Self::new()
    }
}

impl XmlReader {
    pub fn new() -> Self {
        Self::with_max_buffer(DEFAULT_MAX_BUFFER)
    }

    pub fn with_max_buffer(max_buffer: usize) -> Self {
        XmlReader {
            buf: BytesMut::new(),
            tree: TreeBuilder::default(),
            max_buffer,
        }
    }

    /// The buffer to read socket data into (e.g. with `AsyncReadExt::read_buf`).
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends bytes (for callers that do not read into [`XmlReader::buffer`]).
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not parsed yet.
    pub fn unparsed(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the stream state for a stream restart (after STARTTLS or SASL success) while
    /// keeping unparsed bytes, which belong to the new stream.
    pub fn reset(&mut self) {
        self.tree = TreeBuilder::default();
    }

    /// Whether a top-level element has been started but not finished.
    pub fn in_stanza(&self) -> bool {
        !self.tree.stack.is_empty()
    }

    /// Returns the next complete event, or `None` when more bytes are needed.
    ///
    /// Parsing stops after each top-level event so that a [`XmlReader::reset`] between two
    /// events applies to everything after the first.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(event) = self.tree.ready.pop_front() {
            return Ok(Some(event));
        }
        // Every markup construct ends in `>`, so parsing up to the last one never cuts a
        // tag in half except inside an attribute value, which quick-xml reports as unclosed.
        let Some(last_gt) = memchr::memrchr(b'>', &self.buf) else {
            return self.check_size().map(|()| None);
        };
        let mut reader = Reader::from_reader(&self.buf[..=last_gt]);
        reader.config_mut().check_end_names = false;
        reader.config_mut().allow_unmatched_ends = true;
        let mut consumed = 0usize;
        while self.tree.ready.is_empty() {
            match reader.read_event() {
                Ok(Event::Eof) => break,
                Ok(event) => {
                    self.tree.apply(event)?;
                    consumed = position(&reader);
                }
                Err(QuickError::Syntax(error)) if is_incomplete(&error) => break,
                Err(error) => return Err(XmlError::Malformed(error)),
            }
        }
        self.buf.advance(consumed);
        self.check_size()?;
        Ok(self.tree.ready.pop_front())
    }

    fn check_size(&self) -> Result<(), XmlError> {
        if self.buf.len() > self.max_buffer {
            return Err(XmlError::TooLarge(self.max_buffer));
        }
        Ok(())
    }
}

impl TreeBuilder {
    fn apply(&mut self, event: Event<'_>) -> Result<(), XmlError> {
        match event {
            Event::Start(start) => self.start(&start, false),
            Event::Empty(start) => self.start(&start, true),
            Event::End(end) => self.end(end.name().0),
            Event::Text(text) => self.text(&text.xml10_content()),
            Event::CData(cdata) => self.text(&cdata.xml10_content()),
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content();
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or_else(|| XmlError::Entity(name.to_string()))?
                        .to_owned(),
                    Err(_) => return Err(XmlError::Entity(name.to_string())),
                };
                self.text(&resolved)
            }
            Event::Decl(_) if !self.open => Ok(()),
            Event::Decl(_) => Err(XmlError::Restricted("XML declaration inside the stream")),
            Event::Comment(_) => Err(XmlError::Restricted("comment")),
            Event::PI(_) => Err(XmlError::Restricted("processing instruction")),
            Event::DocType(_) => Err(XmlError::Restricted("document type declaration")),
            Event::Eof => Ok(()),
        }
    }

    fn start(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<(), XmlError> {
        let qname = start.name().0.to_owned();
        let mut declared = Vec::new();
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(XmlError::Attribute)?;
            let key = attr.key.0;
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|error| match error {
                    QuickError::Escape(escape) => XmlError::Entity(escape.to_string()),
                    other => XmlError::Malformed(other),
                })?
                .into_owned();
            if key == "xmlns" {
                declared.push((None, value));
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                declared.push((Some(prefix.to_owned()), value.clone()));
                attrs.push((key.to_owned(), value));
            } else {
                attrs.push((key.to_owned(), value));
            }
        }
        self.scopes.push(declared);
        let (prefix, local) = match qname.split_once(':') {
            Some((prefix, local)) => (Some(prefix), local),
            None => (None, qname.as_str()),
        };
        let namespace = ns_str(self.scopes.resolve(prefix)?);
        let mut element = Element::new(local.to_owned(), namespace);
        for (key, value) in attrs {
            element.set_attr(key, value);
        }

        if !self.open {
            if !element.is("stream", ns::STREAM) {
                return Err(XmlError::NotAStream(qname));
            }
            self.open = true;
            // The header stays open for the whole stream; its scope is the stream's.
            self.ready.push_back(StreamEvent::Open(element));
            if empty {
                self.ready.push_back(StreamEvent::Close);
            }
            return Ok(());
        }
        self.flush_text();
        self.stack.push((qname.clone(), element));
        if empty {
            self.end(&qname)?;
        }
        Ok(())
    }

    fn end(&mut self, qname: &str) -> Result<(), XmlError> {
        self.flush_text();
        let Some((open_name, element)) = self.stack.pop() else {
            if self.open {
                self.scopes.pop();
                self.open = false;
                self.ready.push_back(StreamEvent::Close);
                return Ok(());
            }
            return Err(XmlError::UnexpectedEnd(qname.to_owned()));
        };
        if open_name != qname {
            return Err(XmlError::MismatchedEnd {
                open: open_name,
                found: qname.to_owned(),
            });
        }
        self.scopes.pop();
        match self.stack.last_mut() {
            Some((_, parent)) => parent.push_child(element),
            None => self.ready.push_back(StreamEvent::Stanza(element)),
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<(), XmlError> {
        if self.stack.is_empty() {
            // Whitespace between stanzas is a keepalive (RFC 6120 §4.6.1).
            if text.trim().is_empty() {
                return Ok(());
            }
            return Err(XmlError::StrayText(text.chars().take(80).collect()));
        }
        self.text.push_str(text);
        Ok(())
    }

    /// Attaches pending text to the innermost open element. Called before every child and
    /// every end tag, so two text nodes are never adjacent.
    fn flush_text(&mut self) {
        let text = std::mem::take(&mut self.text);
        if let Some((_, element)) = self.stack.last_mut() {
            element.push_text(text);
        }
    }
}

fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// Syntax errors quick-xml reports when the input ends inside a construct.
fn is_incomplete(error: &SyntaxError) -> bool {
    !matches!(error, SyntaxError::InvalidBangMarkup)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='localhost' \
        version='1.0'>";

    fn events(input: &[u8]) -> Vec<StreamEvent> {
        let mut reader = XmlReader::new();
        reader.feed(input);
        let mut out = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            out.push(event);
        }
        out
    }

    fn stanza(event: &StreamEvent) -> &Element {
        match event {
            StreamEvent::Stanza(element) => element,
            other => panic!("expected a stanza, got {other:?}"),
        }
    }

    #[test]
    fn reads_header_stanzas_and_close() {
        let input = format!(
            "{HEADER}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\
             <required/></starttls></stream:features>\n \
             <message to='a@b'><body>x &amp; y &#x41;</body></message></stream:stream>"
        );
        let events = events(input.as_bytes());
        assert_eq!(events.len(), 4);
        let StreamEvent::Open(header) = &events[0] else {
            panic!("no header: {events:?}")
        };
        assert!(header.is("stream", ns::STREAM));
        assert_eq!(header.attr("id"), Some("abc"));
        let features = stanza(&events[1]);
        assert!(features.is("features", ns::STREAM));
        let starttls = features.child("starttls", ns::TLS).unwrap();
        assert!(starttls.has_child("required", ns::TLS));
        let message = stanza(&events[2]);
        assert!(message.is("message", ns::CLIENT));
        let body = message.child("body", ns::CLIENT).unwrap();
        assert_eq!(body.text(), "x & y A");
        assert_eq!(body.nodes().len(), 1, "text pieces are merged: {body:?}");
        assert_eq!(events[3], StreamEvent::Close);
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let input = format!(
            "{HEADER}<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <jid>u@localhost/r&lt;1&gt;</jid></bind></iq><presence/>\
             <message><body>caf\u{e9} \u{1F600}</body></message>"
        );
        let whole = events(input.as_bytes());
        let mut reader = XmlReader::new();
        let mut piecewise = Vec::new();
        for byte in input.as_bytes() {
            reader.feed(std::slice::from_ref(byte));
            while let Some(event) = reader.next_event().unwrap() {
                piecewise.push(event);
            }
        }
        assert_eq!(whole, piecewise);
        assert_eq!(whole.len(), 4);
        let jid = stanza(&whole[1])
            .child("bind", ns::BIND)
            .and_then(|bind| bind.child("jid", ns::BIND))
            .unwrap()
            .text();
        assert_eq!(jid, "u@localhost/r<1>");
        let body = stanza(&whole[3]).child("body", ns::CLIENT).unwrap().text();
        assert_eq!(body, "caf\u{e9} \u{1F600}");
    }

    #[test]
    fn gt_inside_attribute_value_waits_for_the_rest() {
        let mut reader = XmlReader::new();
        reader.feed(HEADER.as_bytes());
        assert!(matches!(
            reader.next_event().unwrap(),
            Some(StreamEvent::Open(_))
        ));
        reader.feed(b"<message id='a>b");
        assert_eq!(reader.next_event().unwrap(), None);
        reader.feed(b"'/>");
        let message = reader.next_event().unwrap().unwrap();
        assert_eq!(stanza(&message).attr("id"), Some("a>b"));
    }

    #[test]
    fn prefixed_stream_error_resolves_namespaces() {
        let input = format!(
            "{HEADER}<stream:error><not-well-formed \
             xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text \
             xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>bad</text>\
             </stream:error></stream:stream>"
        );
        let events = events(input.as_bytes());
        let error = stanza(&events[1]);
        assert!(error.is("error", ns::STREAM));
        assert!(error.has_child("not-well-formed", ns::STREAM_ERRORS));
        let text = error.child("text", ns::STREAM_ERRORS).unwrap();
        assert_eq!(text.attr("xml:lang"), Some("en"));
        assert_eq!(events[2], StreamEvent::Close);
    }

    #[test]
    fn reset_starts_a_new_stream_with_leftover_bytes() {
        let mut reader = XmlReader::new();
        reader.feed(
            format!("{HEADER}<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>").as_bytes(),
        );
        assert!(matches!(
            reader.next_event().unwrap(),
            Some(StreamEvent::Open(_))
        ));
        let success = reader.next_event().unwrap().unwrap();
        assert!(stanza(&success).is("success", ns::SASL));
        reader.feed(HEADER.as_bytes());
        reader.reset();
        assert!(matches!(
            reader.next_event().unwrap(),
            Some(StreamEvent::Open(_))
        ));
    }

    #[test]
    fn rejects_restricted_xml_and_mismatched_tags() {
        let mut reader = XmlReader::new();
        reader.feed(format!("{HEADER}<!-- hi -->").as_bytes());
        reader.next_event().unwrap();
        assert!(matches!(reader.next_event(), Err(XmlError::Restricted(_))));

        let mut reader = XmlReader::new();
        reader.feed(format!("{HEADER}<a><b></a>").as_bytes());
        reader.next_event().unwrap();
        assert!(matches!(
            reader.next_event(),
            Err(XmlError::MismatchedEnd { .. })
        ));

        let mut reader = XmlReader::new();
        reader.feed(b"<html>");
        assert!(matches!(reader.next_event(), Err(XmlError::NotAStream(_))));

        let mut reader = XmlReader::new();
        reader.feed(format!("{HEADER}<p:x/>").as_bytes());
        reader.next_event().unwrap();
        assert!(matches!(
            reader.next_event(),
            Err(XmlError::UnboundPrefix(_))
        ));
    }

    #[test]
    fn unknown_entities_are_errors() {
        let mut reader = XmlReader::new();
        reader.feed(format!("{HEADER}<message><body>&nbsp;</body></message>").as_bytes());
        reader.next_event().unwrap();
        assert!(matches!(reader.next_event(), Err(XmlError::Entity(_))));
    }

    #[test]
    fn refuses_to_buffer_without_bound() {
        let mut reader = XmlReader::with_max_buffer(64);
        reader.feed(HEADER.as_bytes());
        reader.next_event().unwrap();
        reader.feed(&[b'<'; 100]);
        assert!(matches!(reader.next_event(), Err(XmlError::TooLarge(64))));
    }
}
