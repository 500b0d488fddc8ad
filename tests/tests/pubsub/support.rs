//! Helpers for the pub/sub tests: the c2s suite's helpers plus pub/sub
//! requests and notification predicates.

#[path = "../c2s/support.rs"]
#[allow(dead_code)]
mod single;

use starling_core::xml::{Element, ns};
use starling_tests::Client;

#[allow(unused_imports)]
pub(crate) use single::*;

/// The service every test node runs.
pub(crate) const SERVICE: &str = "pubsub.localhost";

/// Sends a pub/sub iq (`owner` selects the `#owner` namespace) and returns the reply.
pub(crate) async fn pubsub(client: &mut Client, ty: &str, owner: bool, inner: &str) -> Element {
    let namespace = if owner { ns::PUBSUB_OWNER } else { ns::PUBSUB };
    iq(
        client,
        ty,
        Some(SERVICE),
        &format!("<pubsub xmlns='{namespace}'>{inner}</pubsub>"),
    )
    .await
}

/// Publishes `<entry xmlns='urn:test'>text</entry>` and returns the item id.
pub(crate) async fn publish(
    client: &mut Client,
    node: &str,
    id: Option<&str>,
    text: &str,
) -> String {
    let id_attr = id.map(|id| format!(" id='{id}'")).unwrap_or_default();
    let reply = pubsub(
        client,
        "set",
        false,
        &format!(
            "<publish node='{node}'><item{id_attr}><entry xmlns='urn:test'>{text}</entry></item></publish>"
        ),
    )
    .await;
    assert_result(&reply);
    reply
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("publish", ns::PUBSUB))
        .and_then(|p| p.child("item", ns::PUBSUB))
        .and_then(|item| item.attr("id"))
        .unwrap_or_else(|| panic!("no item id in {reply}"))
        .to_owned()
}

pub(crate) async fn subscribe(client: &mut Client, node: &str) -> Element {
    let me = bare(client);
    let reply = pubsub(
        client,
        "set",
        false,
        &format!("<subscribe node='{node}' jid='{me}'/>"),
    )
    .await;
    assert_result(&reply);
    reply
}

/// The `pubsub#errors` condition of an error reply.
#[allow(dead_code)]
pub(crate) fn pubsub_condition(reply: &Element) -> Option<String> {
    reply
        .child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::PUBSUB_ERRORS)
        .map(|c| c.name().to_owned())
}

/// The `<items/>` of a pub/sub event notification for `node`, if it is one.
pub(crate) fn event_items<'a>(stanza: &'a Element, node: &str) -> Option<&'a Element> {
    if stanza.name() != "message" || stanza.attr("from") != Some(SERVICE) {
        return None;
    }
    stanza
        .child("event", ns::PUBSUB_EVENT)?
        .child("items", ns::PUBSUB_EVENT)
        .filter(|items| items.attr("node") == Some(node))
}

/// The text of the published entries in a notification, in order.
pub(crate) fn published_texts(stanza: &Element, node: &str) -> Vec<String> {
    event_items(stanza, node)
        .map(|items| {
            items
                .children()
                .filter(|c| c.is("item", ns::PUBSUB_EVENT))
                .filter_map(|item| item.child("entry", "urn:test").map(Element::text))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for the notification that carries `text` on `node`.
pub(crate) async fn expect_published(client: &mut Client, node: &str, text: &str) -> Element {
    client
        .expect(|e| published_texts(e, node).iter().any(|t| t == text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} got no event {text:?} on {node}: {error}", jid(client)))
}

/// The item ids (and their entry texts) of an items result.
pub(crate) fn retrieved(reply: &Element) -> Vec<(String, String)> {
    reply
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|items| {
            items
                .children()
                .filter(|c| c.is("item", ns::PUBSUB))
                .map(|item| {
                    (
                        item.attr("id").unwrap_or_default().to_owned(),
                        item.child("entry", "urn:test")
                            .map(Element::text)
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A sample of node `node`'s `/metrics` (0 when the metric is absent).
pub(crate) async fn metric(node: &starling_tests::TestNode, name: &str) -> f64 {
    node.metric(name).await
}

/// Messages both ways between every pair: each node's directory then knows
/// every one of these sessions (a barrier arrives after what preceded it).
pub(crate) async fn introduce(clients: &mut [&mut Client]) {
    for from in 0..clients.len() {
        for to in 0..clients.len() {
            if from == to {
                continue;
            }
            let (left, right) = clients.split_at_mut(from.max(to));
            let (low, high) = (&mut *left[from.min(to)], &mut *right[0]);
            if from < to {
                barrier(low, high).await;
            } else {
                barrier(high, low).await;
            }
        }
    }
}
