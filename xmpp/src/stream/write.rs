//! The writing side of a client stream: the server's stream header, stream
//! errors and the stream's end (RFC 6120 sections 4.7, 4.9), and first-level
//! elements, which need the `stream:` prefix when they are in the streams
//! namespace (`<stream:features/>`, `<stream:error/>`).
//!
//! Output streams always declare `jabber:client` as the default namespace
//! and `stream` as the streams prefix.

use starling_core::xml::{Element, Node, escape_into, ns};

/// Ends the server's half of the stream.
pub const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// The server's response header: XML declaration and `<stream:stream>`.
///
/// `version` is omitted when `None`: RFC 6120 section 4.7.5 says not to
/// answer with a version to a client that sent none.
pub fn stream_header(
    from_domain: &str,
    id: &str,
    lang: Option<&str>,
    version: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
          xmlns:stream='http://etherx.jabber.org/streams'",
    );
    push_attribute(&mut out, b"from", from_domain);
    push_attribute(&mut out, b"id", id);
    if let Some(version) = version {
        push_attribute(&mut out, b"version", version);
    }
    if let Some(lang) = lang {
        push_attribute(&mut out, b"xml:lang", lang);
    }
    out.push(b'>');
    out
}

/// The header of a server-to-server stream (RFC 6120 4.7, XEP-0220):
/// content namespace `jabber:server`, the dialback prefix declared,
/// version 1.0. The initiating side sends no `id`.
pub fn server_stream_header(from: &str, to: &str, id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(224);
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
          xmlns:db='jabber:server:dialback' xmlns:stream='http://etherx.jabber.org/streams'",
    );
    push_attribute(&mut out, b"from", from);
    push_attribute(&mut out, b"to", to);
    if let Some(id) = id {
        push_attribute(&mut out, b"id", id);
    }
    push_attribute(&mut out, b"version", "1.0");
    out.push(b'>');
    out
}

fn push_attribute(out: &mut Vec<u8>, name: &[u8], value: &str) {
    out.push(b' ');
    out.extend_from_slice(name);
    out.extend_from_slice(b"='");
    escape_into(out, value, true);
    out.push(b'\'');
}

/// `<stream:error><condition/><text>..</text></stream:error>` for an RFC 6120
/// condition name such as `not-well-formed`.
pub fn stream_error(condition: &str, text: Option<&str>) -> Element {
    let mut error = Element::new("error", ns::STREAM)
        .with_child(Element::new(condition.to_owned(), ns::STREAM_ERRORS));
    if let Some(text) = text {
        error.push_child(
            Element::new("text", ns::STREAM_ERRORS)
                .with_attr("xml:lang", "en")
                .with_text(text),
        );
    }
    error
}

/// The bytes that end a stream on an error: the `<stream:error/>` element
/// followed by the closing `</stream:stream>`.
pub fn stream_error_bytes(condition: &str, text: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    write_element(&stream_error(condition, text), &mut out);
    out.extend_from_slice(STREAM_CLOSE);
    out
}

/// Serialises a first-level element of an output stream.
///
/// Elements in the streams namespace are written with the `stream:` prefix
/// (what every client expects); anything else as a child of a
/// `jabber:client` stream, as [`Element::to_bytes`] does.
pub fn write_element(element: &Element, out: &mut Vec<u8>) {
    // An element that binds `stream` to something else for its attributes
    // cannot use the prefix; the unprefixed form means the same.
    let prefix_taken = element
        .attrs()
        .any(|(key, value)| key == "xmlns:stream" && value != ns::STREAM);
    if element.ns() != ns::STREAM || prefix_taken {
        element.write_to(out, ns::CLIENT);
        return;
    }
    write_prefixed(element, "stream", ns::CLIENT, out);
}

/// Serialises `element` with `prefix` on its name (declared by the stream
/// header), its children in the stream's default namespace `default_ns`.
pub(crate) fn write_prefixed(element: &Element, prefix: &str, default_ns: &str, out: &mut Vec<u8>) {
    out.push(b'<');
    out.extend_from_slice(prefix.as_bytes());
    out.push(b':');
    out.extend_from_slice(element.name().as_bytes());
    for (key, value) in element.attrs() {
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_into(out, value, true);
        out.push(b'"');
    }
    if element.nodes().is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in element.nodes() {
        match node {
            // The prefix leaves the default namespace as the stream's.
            Node::Element(child) => child.write_to(out, default_ns),
            Node::Text(text) => escape_into(out, text, false),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(prefix.as_bytes());
    out.push(b':');
    out.extend_from_slice(element.name().as_bytes());
    out.push(b'>');
}

/// [`write_element`] into a new buffer.
pub fn element_to_bytes(element: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_element(element, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn header_names_the_server_and_escapes_values() {
        let header = text(stream_header("example.com", "a'b", Some("en"), Some("1.0")));
        assert_eq!(
            header,
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='a&apos;b' \
             version='1.0' xml:lang='en'>"
        );
        let old_client = text(stream_header("example.com", "1", None, None));
        assert!(!old_client.contains("' version="));
        assert!(!old_client.contains("xml:lang"));
    }

    #[test]
    fn stream_errors_use_the_stream_prefix() {
        assert_eq!(
            text(stream_error_bytes("not-well-formed", Some("bad <xml>"))),
            "<stream:error><not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\" xml:lang=\"en\">bad &lt;xml&gt;\
             </text></stream:error></stream:stream>"
        );
        assert_eq!(
            text(element_to_bytes(&stream_error("conflict", None))),
            "<stream:error><conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
        );
    }

    #[test]
    fn features_children_keep_their_namespaces() {
        let features = Element::new("features", ns::STREAM)
            .with_child(
                Element::new("starttls", ns::TLS).with_child(Element::new("required", ns::TLS)),
            )
            .with_child(
                Element::new("mechanisms", ns::SASL)
                    .with_child(Element::new("mechanism", ns::SASL).with_text("PLAIN")),
            );
        assert_eq!(
            text(element_to_bytes(&features)),
            "<stream:features><starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/>\
             </starttls><mechanisms xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\">\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        );
        let empty = Element::new("features", ns::STREAM);
        assert_eq!(text(element_to_bytes(&empty)), "<stream:features/>");
    }

    #[test]
    fn other_elements_are_written_as_client_stanzas() {
        let message = Element::new("message", ns::CLIENT).with_attr("to", "a@b");
        assert_eq!(element_to_bytes(&message), message.to_bytes());
    }
}
