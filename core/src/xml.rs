//! The XML element tree every stanza is carried in.
//!
//! Elements keep their namespace resolved (no prefixes on element names), so
//! code compares `(name, ns)` pairs and never cares how a client spelled its
//! prefixes. Serialisation writes a default `xmlns` only where the namespace
//! changes from the parent's, which gives the compact form XMPP peers expect.
//!
//! Prefixed attributes other than `xml:*` are rare in XMPP payloads; the
//! parser puts an `xmlns:p` declaration on each element that uses one, so
//! every element serialises self-contained wherever the prefix was declared.

use std::borrow::Cow;
use std::fmt;

/// A namespace or name that is usually one of a few well-known strings.
pub type Str = Cow<'static, str>;

/// Namespaces that appear on almost every stanza; the parser maps them to
/// these statics so a stanza tree does not allocate one copy per element.
pub mod ns {
    pub const CLIENT: &str = "jabber:client";
    pub const SERVER: &str = "jabber:server";
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
    pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
    pub const ROSTER: &str = "jabber:iq:roster";
    pub const AUTH: &str = "jabber:iq:auth";
    pub const AUTH_FEATURE: &str = "http://jabber.org/features/iq-auth";
    pub const REGISTER: &str = "jabber:iq:register";
    pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
    pub const VERSION: &str = "jabber:iq:version";
    pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    pub const PING: &str = "urn:xmpp:ping";
    pub const DELAY: &str = "urn:xmpp:delay";
    pub const OFFLINE: &str = "msgoffline";
    pub const XDATA: &str = "jabber:x:data";
    pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
    pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
    pub const CAPS: &str = "http://jabber.org/protocol/caps";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    pub const XMPP_ERRORS: &str = "urn:xmpp:errors";

    /// Returns the static copy of a well-known namespace, if it is one.
    pub fn intern(uri: &str) -> Option<&'static str> {
        const KNOWN: &[&str] = &[
            CLIENT,
            SERVER,
            STREAM,
            STREAM_ERRORS,
            STANZAS,
            TLS,
            SASL,
            BIND,
            SESSION,
            ROSTER,
            AUTH,
            REGISTER,
            VERSION,
            DISCO_INFO,
            DISCO_ITEMS,
            PING,
            DELAY,
            XDATA,
            PUBSUB,
            PUBSUB_EVENT,
            PUBSUB_OWNER,
            XMPP_ERRORS,
        ];
        KNOWN.iter().copied().find(|known| *known == uri)
    }
}

/// Builds a [`Str`] for a namespace, borrowing the static copy when there is one.
pub fn ns_str(uri: &str) -> Str {
    match ns::intern(uri) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(uri.to_owned()),
    }
}

/// One XML element with its resolved namespace, attributes and children.
#[derive(Clone, PartialEq, Eq)]
pub struct Element {
    name: Str,
    ns: Str,
    attrs: Vec<(Str, String)>,
    children: Vec<Node>,
}

/// A child of an element: another element or character data.
#[derive(Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    /// Creates an element with no attributes and no children.
    pub fn new(name: impl Into<Str>, ns: impl Into<Str>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: impl Into<Str>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`Element::push_child`].
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder form of [`Element::push_text`].
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.push_text(text);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// True when the element is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Sets an attribute, replacing an existing one of the same name.
    pub fn set_attr(&mut self, name: impl Into<Str>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(key, _)| *key == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Removes an attribute and returns its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let index = self.attrs.iter().position(|(key, _)| key == name)?;
        Some(self.attrs.remove(index).1)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// Child elements, skipping character data.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    /// The first child element `name` in namespace `ns`.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|child| child.is(name, ns))
    }

    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|child| child.is(name, ns))
    }

    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.child(name, ns).is_some()
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    pub fn push_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !text.is_empty() {
            self.children.push(Node::Text(text));
        }
    }

    pub fn push_node(&mut self, node: Node) {
        self.children.push(node);
    }

    /// Removes every child element `name` in namespace `ns`.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|node| !matches!(node, Node::Element(e) if e.is(name, ns)));
    }

    /// Removes all children (elements and text).
    pub fn clear_children(&mut self) {
        self.children.clear();
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for node in &self.children {
            if let Node::Text(text) = node {
                out.push_str(text);
            }
        }
        out
    }

    /// Moves this element and every descendant in namespace `from` to `to`:
    /// a stanza crossing between a client stream (`jabber:client`) and a
    /// server stream (`jabber:server`) changes its content namespace.
    pub fn rename_ns(&mut self, from: &str, to: &'static str) {
        if self.ns == from {
            self.ns = to.into();
        }
        for child in self.children_mut() {
            child.rename_ns(from, to);
        }
    }

    /// Serialises the element as a child of an element in namespace `parent_ns`.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        out.push(b'<');
        out.extend_from_slice(self.name.as_bytes());
        if self.ns != parent_ns {
            out.extend_from_slice(b" xmlns=\"");
            escape_into(out, &self.ns, true);
            out.push(b'"');
        }
        for (key, value) in &self.attrs {
            out.push(b' ');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_into(out, value, true);
            out.push(b'"');
        }
        if self.children.is_empty() {
            out.extend_from_slice(b"/>");
            return;
        }
        out.push(b'>');
        for node in &self.children {
            match node {
                Node::Element(child) => child.write_to(out, &self.ns),
                Node::Text(text) => escape_into(out, text, false),
            }
        }
        out.extend_from_slice(b"</");
        out.extend_from_slice(self.name.as_bytes());
        out.push(b'>');
    }

    /// Serialises a top-level stanza of a client stream (`jabber:client` default).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.write_to(&mut out, ns::CLIENT);
        out
    }

    /// Serialises the element with its namespace always declared.
    pub fn to_standalone_string(&self) -> String {
        let mut out = Vec::with_capacity(128);
        self.write_to(&mut out, "");
        // Only valid UTF-8 goes in, so only valid UTF-8 comes out.
        String::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Debug for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_standalone_string())
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_standalone_string())
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Element(element) => element.fmt(f),
            Node::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// Escapes character data or an attribute value (then quotes are escaped too).
pub fn escape_into(out: &mut Vec<u8>, text: &str, attribute: bool) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let replacement: &[u8] = match byte {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' if attribute => b"&quot;",
            b'\'' if attribute => b"&apos;",
            b'\t' if attribute => b"&#9;",
            b'\n' if attribute => b"&#10;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        out.extend_from_slice(replacement);
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Escapes text into a new string (for building XML by hand in small places).
pub fn escape(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    escape_into(&mut out, text, true);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_namespace_only_where_it_changes() {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", "bob@example.com")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi <there> & \"you\""))
            .with_child(Element::new("ping", ns::PING));
        assert_eq!(
            String::from_utf8(message.to_bytes()).unwrap(),
            "<message to=\"bob@example.com\"><body>hi &lt;there&gt; &amp; \"you\"</body>\
             <ping xmlns=\"urn:xmpp:ping\"/></message>"
        );
    }

    #[test]
    fn attribute_values_escape_quotes_and_whitespace() {
        let element = Element::new("x", "urn:x").with_attr("v", "a\"b'c\nd");
        assert_eq!(
            element.to_standalone_string(),
            "<x xmlns=\"urn:x\" v=\"a&quot;b&apos;c&#10;d\"/>"
        );
    }

    #[test]
    fn set_attr_replaces_and_remove_attr_removes() {
        let mut element = Element::new("iq", ns::CLIENT).with_attr("type", "get");
        element.set_attr("type", "result");
        assert_eq!(element.attr("type"), Some("result"));
        assert_eq!(element.remove_attr("type").as_deref(), Some("result"));
        assert_eq!(element.attr("type"), None);
    }

    #[test]
    fn well_known_namespaces_are_interned() {
        assert!(matches!(ns_str(ns::CLIENT), Cow::Borrowed(_)));
        assert!(matches!(ns_str("urn:example:custom"), Cow::Owned(_)));
    }
}
