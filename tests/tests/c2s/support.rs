//! Helpers shared by the c2s tests.

use std::time::Duration;

use starling_core::xml::Element;
use starling_tests::{Client, LoginOptions, Mechanism, TestNode, TlsMode};

pub const WAIT: Duration = Duration::from_secs(10);

/// Logs in over STARTTLS with SCRAM-SHA-256 and binds `resource`.
pub async fn login(node: &TestNode, user: &str, password: &str, resource: &str) -> Client {
    let mut options = LoginOptions::new(&node.domain, user, password);
    options.resource = Some(resource.to_owned());
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    Client::login(node.c2s, &options)
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in: {error}"))
}

/// The text of the `<body/>` of a message.
pub fn body(message: &Element) -> String {
    message
        .children()
        .find(|child| child.name() == "body")
        .map(Element::text)
        .unwrap_or_default()
}

pub fn is_message_with_body(element: &Element, text: &str) -> bool {
    element.name() == "message" && body(element) == text
}
