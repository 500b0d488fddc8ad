//! XEP-0092 software version.

use starling_core::xml::{Element, ns};

pub fn answer() -> Element {
    Element::new("query", ns::VERSION)
        .with_child(Element::new("name", ns::VERSION).with_text("Starling"))
        .with_child(Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")))
        .with_child(Element::new("os", ns::VERSION).with_text(std::env::consts::OS))
}
