//! The XEP-0198 elements the server sends, and reading the client's `h`.

use starling_core::xml::{Element, ns};

pub const NS: &str = "urn:xmpp:sm:3";

/// `<enabled/>`; with a resumption id and `max` when the session is resumable.
pub fn enabled(resumption: Option<(&str, u32)>) -> Element {
    let mut enabled = Element::new("enabled", NS);
    if let Some((id, max)) = resumption {
        enabled = enabled
            .with_attr("id", id)
            .with_attr("resume", "true")
            .with_attr("max", max.to_string());
    }
    enabled
}

/// `<failed/>` with a stanza error condition and, when known, the `h` of
/// what the server handled.
pub fn failed(condition: &str, h: Option<u32>, text: Option<&str>) -> Element {
    let mut failed =
        Element::new("failed", NS).with_child(Element::new(condition.to_owned(), ns::STANZAS));
    if let Some(h) = h {
        failed.set_attr("h", h.to_string());
    }
    if let Some(text) = text {
        failed.push_child(Element::new("text", ns::STANZAS).with_text(text));
    }
    failed
}

pub fn resumed(previd: &str, h: u32) -> Element {
    Element::new("resumed", NS)
        .with_attr("previd", previd)
        .with_attr("h", h.to_string())
}

pub fn ack(h: u32) -> Element {
    Element::new("a", NS).with_attr("h", h.to_string())
}

pub fn request() -> Element {
    Element::new("r", NS)
}

/// The `h` attribute of `<a/>` or `<resume/>`.
pub fn h_of(element: &Element) -> Option<u32> {
    element.attr("h")?.trim().parse().ok()
}
