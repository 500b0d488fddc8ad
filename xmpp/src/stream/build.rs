//! Builds the [`Element`] tree of one complete first-level element, with
//! namespaces resolved (Namespaces in XML 1.0; RFC 6120 sections 4.8 and 11).
//!
//! The scanner has already found the element's extent and checked its tag
//! structure; quick-xml splits the slice into events and this module checks
//! names, characters, references and namespace prefixes while it builds.
//!
//! The tree keeps no prefixes on element names. A prefixed attribute (other
//! than `xml:*`) keeps its qualified name, and the element carrying it gets
//! an `xmlns:p` attribute declaring that prefix, placed right after the first
//! attribute that uses it; declarations written by the sender are not kept.
//! That makes every element self-contained and the tree canonical: writing
//! it out and reading it back gives the same tree.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use starling_core::xml::{Element, Str, ns, ns_str};

use super::error::{Malformed, Restricted, StreamError};
use super::header::StreamContext;
use super::lexical::{check_chars, decode_attribute, is_ncname, resolve_reference, split_qname};

/// The namespace of `xmlns` itself, which nothing may be bound to.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// More attributes than this on one element is a policy violation: no XMPP
/// payload needs them, and each attribute costs a scan of the ones before it.
pub(super) const MAX_ATTRIBUTES: usize = 64;

/// Builds the element in `xml`, which starts at stream offset `offset`.
pub(super) fn build_element(
    xml: &[u8],
    context: &StreamContext,
    offset: u64,
) -> Result<Element, StreamError> {
    check_chars(xml, offset)?;
    let mut reader = Reader::from_reader(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);
    let mut builder = Builder {
        context,
        scopes: Vec::new(),
        stack: Vec::new(),
        text: String::new(),
    };
    loop {
        let at = offset + reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            StreamError::malformed(offset + reader.error_position(), Malformed::Xml(e))
        })?;
        match event {
            Event::Start(start) => {
                let element = builder.open(&start, at)?;
                builder.stack.push(element);
            }
            Event::Empty(start) => {
                let element = builder.open(&start, at)?;
                if let Some(root) = builder.close(element) {
                    return Ok(root);
                }
            }
            Event::End(_) => {
                // quick-xml has matched the end tag to its start tag.
                let Some(mut element) = builder.stack.pop() else {
                    break;
                };
                builder.flush_text(&mut element.element);
                if let Some(root) = builder.close(element) {
                    return Ok(root);
                }
            }
            Event::Text(text) => builder.text.push_str(&text.xml10_content()),
            Event::CData(cdata) => builder.text.push_str(&cdata.xml10_content()),
            Event::GeneralRef(reference) => {
                let c = resolve_reference(&reference).map_err(|bad| bad.at(at))?;
                builder.text.push(c);
            }
            Event::Comment(_) => {
                return Err(StreamError::restricted(at, Restricted::Comment));
            }
            Event::PI(_) | Event::Decl(_) => {
                return Err(StreamError::restricted(
                    at,
                    Restricted::ProcessingInstruction,
                ));
            }
            Event::DocType(_) => return Err(StreamError::restricted(at, Restricted::Dtd)),
            Event::Eof => break,
        }
    }
    // The scanner only hands over complete elements, so this means it and
    // quick-xml disagree about the markup; the input is to blame either way.
    Err(StreamError::malformed(
        offset + reader.buffer_position(),
        Malformed::Xml(quick_xml::Error::IllFormed(
            quick_xml::errors::IllFormedError::MissingEndTag(String::new()),
        )),
    ))
}

/// An element being built, with the length the namespace scope stack had
/// before its declarations were pushed.
struct Open {
    element: Element,
    scope_mark: usize,
}

struct Builder<'c> {
    context: &'c StreamContext,
    /// Namespace bindings declared inside this element, innermost last.
    scopes: Vec<(Str, Str)>,
    stack: Vec<Open>,
    /// Character data not yet attached to the innermost open element.
    text: String,
}

impl Builder<'_> {
    fn lookup(&self, prefix: &str) -> Option<&Str> {
        self.scopes
            .iter()
            .rev()
            .find(|(known, _)| known == prefix)
            .map(|(_, uri)| uri)
            .or_else(|| match prefix {
                "" => Some(&self.context.default_ns),
                _ => self.context.prefix(prefix),
            })
    }

    fn flush_text(&mut self, element: &mut Element) {
        if !self.text.is_empty() {
            element.push_text(std::mem::take(&mut self.text));
        }
    }

    /// Attaches a finished element to its parent; returns it if it is the root.
    fn close(&mut self, open: Open) -> Option<Element> {
        self.scopes.truncate(open.scope_mark);
        match self.stack.last_mut() {
            Some(parent) => {
                parent.element.push_child(open.element);
                None
            }
            None => Some(open.element),
        }
    }

    /// Starts an element: declarations, name resolution, attributes.
    fn open(&mut self, start: &BytesStart<'_>, at: u64) -> Result<Open, StreamError> {
        if let Some(parent) = self.stack.last_mut() {
            let pending = std::mem::take(&mut self.text);
            if !pending.is_empty() {
                parent.element.push_text(pending);
            }
        }
        let qname = start.name().0;
        let malformed = |problem| StreamError::malformed(at, problem);
        let (prefix, local) =
            split_qname(qname).ok_or_else(|| malformed(Malformed::BadName(qname.to_owned())))?;
        let scope_mark = self.scopes.len();

        let mut count = 0;
        for attribute in start.attributes().with_checks(false) {
            let attribute = attribute.map_err(|e| malformed(Malformed::Xml(e.into())))?;
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(StreamError::TooManyAttributes {
                    offset: at,
                    element: qname.to_owned(),
                    limit: MAX_ATTRIBUTES,
                });
            }
            let key = attribute.key.0;
            let declared = match key.strip_prefix("xmlns") {
                Some("") => "",
                Some(rest) => match rest.strip_prefix(':') {
                    Some(declared) => declared,
                    None => continue,
                },
                None => continue,
            };
            let uri = decode_attribute(&attribute.value, at)?;
            let bad_declaration = (!declared.is_empty()
                && (!is_ncname(declared) || declared == "xmlns" || uri.is_empty()))
                || ((declared == "xml") != (uri == ns::XML))
                || uri == XMLNS_NS;
            if bad_declaration {
                return Err(malformed(Malformed::BadNamespaceDeclaration(
                    key.to_owned(),
                )));
            }
            if self.scopes[scope_mark..].iter().any(|(p, _)| p == declared) {
                return Err(malformed(Malformed::DuplicateAttribute(key.to_owned())));
            }
            let declared = match declared {
                "" => Str::Borrowed(""),
                _ => Str::Owned(declared.to_owned()),
            };
            self.scopes.push((declared, ns_str(&uri)));
        }

        let element_ns = match prefix {
            // Legal XML, but no XMPP element lives there and the tree could
            // not be written back (the xml namespace cannot be a default).
            Some("xml") => {
                return Err(malformed(Malformed::ReservedNamespace(qname.to_owned())));
            }
            Some("xmlns") => return Err(malformed(Malformed::BadName(qname.to_owned()))),
            _ => match self.lookup(prefix.unwrap_or("")) {
                Some(uri) => uri.clone(),
                None => {
                    return Err(StreamError::BadNamespacePrefix {
                        offset: at,
                        prefix: prefix.unwrap_or_default().to_owned(),
                        element: qname.to_owned(),
                    });
                }
            },
        };
        let mut element = Element::new(intern_name(local), element_ns);

        for attribute in start.attributes().with_checks(false) {
            let attribute = attribute.map_err(|e| malformed(Malformed::Xml(e.into())))?;
            let key = attribute.key.0;
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let (attribute_prefix, _) =
                split_qname(key).ok_or_else(|| malformed(Malformed::BadName(key.to_owned())))?;
            if element.attr(key).is_some() {
                return Err(malformed(Malformed::DuplicateAttribute(key.to_owned())));
            }
            let value = decode_attribute(&attribute.value, at)?.into_owned();
            element.set_attr(intern_name(key), value);
            let Some(p) = attribute_prefix.filter(|p| *p != "xml") else {
                continue;
            };
            let Some(uri) = self.lookup(p) else {
                return Err(StreamError::BadNamespacePrefix {
                    offset: at,
                    prefix: p.to_owned(),
                    element: qname.to_owned(),
                });
            };
            let declaration = format!("xmlns:{p}");
            if element.attr(&declaration).is_none() {
                element.set_attr(declaration, uri.to_string());
            }
        }
        Ok(Open {
            element,
            scope_mark,
        })
    }
}

/// Borrows the static copy of names that occur in nearly every stanza, so
/// building a tree does not allocate a string per element and attribute.
fn intern_name(name: &str) -> Str {
    const KNOWN: &[&str] = &[
        "message",
        "presence",
        "iq",
        "body",
        "subject",
        "thread",
        "show",
        "status",
        "priority",
        "query",
        "item",
        "group",
        "error",
        "text",
        "delay",
        "c",
        "x",
        "to",
        "from",
        "id",
        "type",
        "xml:lang",
        "jid",
        "name",
        "subscription",
        "ask",
        "node",
        "ver",
        "hash",
        "stamp",
        "by",
        "code",
        "bind",
        "resource",
        "session",
        "ping",
        "pubsub",
        "publish",
        "items",
        "event",
        "auth",
        "mechanism",
        "request",
        "received",
        "active",
        "composing",
        "paused",
    ];
    match KNOWN.iter().find(|known| **known == name) {
        Some(known) => Str::Borrowed(known),
        None => Str::Owned(name.to_owned()),
    }
}
