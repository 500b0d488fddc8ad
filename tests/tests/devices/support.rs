//! Helpers for the multi-device tests: the c2s and cluster suites' login,
//! iq, barrier and predicate helpers, plus carbons.

#[path = "../cluster/support.rs"]
#[allow(dead_code)]
mod cluster;

use starling_core::xml::Element;
use starling_tests::Client;

#[allow(unused_imports)]
pub(crate) use cluster::*;

pub(crate) const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

/// Sends a chat with `text` from `from` to `to`.
pub(crate) async fn chat(from: &mut Client, to: &str, text: &str) {
    send(
        from,
        &format!("<message to='{to}' type='chat'><body>{text}</body></message>"),
    )
    .await;
}

/// Enables carbons for this session.
pub(crate) async fn enable_carbons(client: &mut Client) {
    let reply = iq(client, "set", None, &format!("<enable xmlns='{CARBONS}'/>")).await;
    assert_result(&reply);
}

/// The message a `<sent/>` or `<received/>` carbon forwards, if `element`
/// is such a carbon from `user` (a bare JID).
pub(crate) fn carbon<'a>(element: &'a Element, user: &str, direction: &str) -> Option<&'a Element> {
    if element.name() != "message" || element.attr("from") != Some(user) {
        return None;
    }
    element
        .child(direction, CARBONS)?
        .child("forwarded", FORWARD)?
        .children()
        .find(|child| child.name() == "message")
}

/// A carbon of anything but a barrier marker (barriers are chats too, and
/// are copied like any other).
pub(crate) fn is_any_carbon(element: &Element) -> bool {
    ["sent", "received"].iter().any(|direction| {
        element
            .child(direction, CARBONS)
            .and_then(|wrapper| wrapper.child("forwarded", FORWARD))
            .and_then(|forwarded| forwarded.children().next())
            .is_some_and(|message| !body(message).starts_with("barrier-"))
    })
}

/// Waits for a carbon of `direction` from `user` forwarding a message with `text`.
pub(crate) async fn expect_carbon(
    client: &mut Client,
    user: &str,
    direction: &str,
    text: &str,
) -> Element {
    client
        .expect(
            |e| carbon(e, user, direction).is_some_and(|m| body(m) == text),
            WAIT,
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{} got no {direction} carbon of {text:?}: {error}",
                jid(client)
            )
        })
}
