//! Helpers shared by the web transport tests: nodes with HTTPS, logins over
//! WebSocket and TCP, and stanza predicates.

use std::time::Duration;

use starling_core::xml::Element;
use starling_tests::websocket::WsOptions;
use starling_tests::{Client, LoginOptions, Mechanism, NodeBuilder, TestNode, TlsMode};

/// The bound for anything that should arrive; only reached when it does not.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) const PASSWORD: &str = "secret";

/// A node with HTTPS (so WebSocket and BOSH count as encrypted) and `users`.
pub(crate) fn https_node(users: &[&str]) -> NodeBuilder {
    users.iter().fold(
        TestNode::builder().set("http", "tls = true"),
        |builder, user| builder.user(user, PASSWORD),
    )
}

pub(crate) fn options(node: &TestNode, user: &str, resource: &str) -> LoginOptions {
    let mut options = LoginOptions::new(&node.domain, user, PASSWORD);
    options.resource = Some(resource.to_owned());
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    options
}

/// `wss://` with the `xmpp` subprotocol.
pub(crate) fn wss() -> WsOptions {
    WsOptions {
        tls: true,
        ..WsOptions::default()
    }
}

/// Logs in over WebSocket (wss) with SCRAM-SHA-256.
pub(crate) async fn login_ws(node: &TestNode, user: &str, resource: &str) -> Client {
    Client::login_websocket(node.http, &wss(), &options(node, user, resource))
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in over WebSocket: {error}"))
}

/// Logs in over TCP with STARTTLS and SCRAM-SHA-256.
pub(crate) async fn login_tcp(node: &TestNode, user: &str, resource: &str) -> Client {
    Client::login(node.c2s, &options(node, user, resource))
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in over TCP: {error}"))
}

pub(crate) fn jid(client: &Client) -> String {
    client.jid().expect("a bound client").to_string()
}

pub(crate) fn body(message: &Element) -> String {
    message
        .children()
        .find(|child| child.name() == "body")
        .map(Element::text)
        .unwrap_or_default()
}

pub(crate) fn is_message_with_body(element: &Element, text: &str) -> bool {
    element.name() == "message" && body(element) == text
}

/// Sends a chat message from `from` to `to` and waits for it there.
pub(crate) async fn chat(from: &mut Client, to: &mut Client, text: &str) {
    from.send(&format!(
        "<message to='{}' type='chat'><body>{text}</body></message>",
        jid(to)
    ))
    .await
    .unwrap();
    let message = to
        .expect(|e| is_message_with_body(e, text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?}: {error}", jid(to)));
    assert_eq!(message.attr("from"), Some(jid(from).as_str()), "{message}");
}

/// Sends an iq and waits for its result or error.
pub(crate) async fn iq(client: &mut Client, ty: &str, payload: &str) -> Element {
    let id = client.next_id();
    client
        .send(&format!("<iq type='{ty}' id='{id}'>{payload}</iq>"))
        .await
        .unwrap();
    client
        .expect(
            |e| e.name() == "iq" && e.attr("id") == Some(id.as_str()),
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no reply to iq {id}: {error}"))
}
