//! Helpers for the cluster tests: the single-node helpers of the c2s suite
//! (login, iq round trips, presence and roster predicates, barriers), plus
//! starting a cluster and addressing its nodes by number.
//!
//! The barriers of the c2s suite hold across nodes too: everything a client
//! causes is routed by the node it is connected to, inside that client's
//! connection task, and crosses to another node over one ordered link that
//! the receiving node delivers from in order. So a marker sent after an
//! action still arrives after everything the action caused for the same
//! recipient.

#[path = "../c2s/support.rs"]
#[allow(dead_code)]
mod single;

use std::time::{Duration, Instant};

use starling_core::xml::{Element, Node};
use starling_tests::xml_reader::{StreamEvent, XmlReader};
use starling_tests::{Client, TestCluster, TestNode};

#[allow(unused_imports)]
pub(crate) use single::*;

/// Every cluster here has three nodes; tests number them 1..=3 as the logs do.
pub(crate) const NODES: usize = 3;

/// The password of every account the tests create.
pub(crate) const PW: &str = "pw";

/// A three-node cluster with these accounts (password [`PW`]).
pub(crate) fn cluster(users: &[&str]) -> TestCluster {
    let mut builder = TestCluster::builder(NODES);
    for user in users {
        builder = builder.user(user, PW);
    }
    builder.start()
}

/// Node `number` (1-based, as in the nodes' names).
pub(crate) fn node(cluster: &TestCluster, number: usize) -> &TestNode {
    cluster.node(number - 1)
}

/// Sends raw XML, panicking on a write error.
pub(crate) async fn send(client: &mut Client, xml: &str) {
    client
        .send(xml)
        .await
        .unwrap_or_else(|error| panic!("{} cannot send: {error}", jid(client)));
}

/// Waits for a message with this body.
pub(crate) async fn expect_body(client: &mut Client, text: &str) -> Element {
    client
        .expect(|e| is_message_with_body(e, text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?}: {error}", jid(client)))
}

/// A message stanza of any kind.
pub(crate) fn is_message(element: &Element) -> bool {
    element.name() == "message"
}

/// A message that is not a barrier marker.
pub(crate) fn is_payload_message(element: &Element) -> bool {
    is_message(element) && !body(element).starts_with("barrier-")
}

/// Parses one stanza written as a client writes it (default namespace
/// `jabber:client`), for comparison with what arrived.
pub(crate) fn parse(xml: &str) -> Element {
    let mut reader = XmlReader::new();
    reader.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    reader.feed(xml.as_bytes());
    loop {
        match reader.next_event() {
            Ok(Some(StreamEvent::Stanza(element))) => return element,
            Ok(Some(_)) => {}
            Ok(None) => panic!("incomplete XML: {xml}"),
            Err(error) => panic!("bad XML ({error}): {xml}"),
        }
    }
}

/// An element as comparable text: namespaces spelled out, attributes
/// sorted, whitespace between elements dropped.
fn canonical(element: &Element) -> String {
    let mut attrs: Vec<(&str, &str)> = element.attrs().collect();
    attrs.sort_unstable();
    let mut out = format!("<{{{}}}{}", element.ns(), element.name());
    for (name, value) in attrs {
        out.push_str(&format!(" {name}={value:?}"));
    }
    out.push('>');
    for node in element.nodes() {
        match node {
            Node::Element(child) => out.push_str(&canonical(child)),
            Node::Text(text) if text.trim().is_empty() => {}
            Node::Text(text) => out.push_str(&format!("{text:?}")),
        }
    }
    out.push_str("</>");
    out
}

/// Asserts that `got` is exactly the stanza `expected` (attribute order and
/// whitespace between elements aside), but for the XEP-0359 stanza id the
/// recipient's archive adds to a message it archives.
pub(crate) fn assert_stanza(got: &Element, expected: &str) {
    let want = parse(expected);
    let archive = got
        .attr("to")
        .map(|to| to.split('/').next().unwrap_or(to).to_owned());
    let mut compared = got.clone();
    let archive_ids = got
        .children()
        .filter(|c| c.is("stanza-id", SID) && c.attr("by") == archive.as_deref())
        .count();
    assert!(archive_ids <= 1, "more than one archive id: {got}");
    if archive_ids == 1 && !want.has_child("stanza-id", SID) {
        compared.remove_children("stanza-id", SID);
    }
    assert_eq!(
        canonical(&compared),
        canonical(&want),
        "\n got: {got}\nwant: {want}"
    );
}

/// XEP-0359 unique and stable stanza ids.
const SID: &str = "urn:xmpp:sid:0";

/// Every client sends a marker to every other one: afterwards each of
/// their nodes knows each of these sessions as it is now (see the module
/// docs), and nothing sent before is still on its way between them.
pub(crate) async fn introduce(clients: &mut [&mut Client]) {
    for from in 0..clients.len() {
        for to in 0..clients.len() {
            if from != to {
                let (sender, receiver) = two(clients, from, to);
                barrier(sender, receiver).await;
            }
        }
    }
}

/// Two different clients of a slice, both mutable.
fn two<'a>(
    clients: &'a mut [&mut Client],
    first: usize,
    second: usize,
) -> (&'a mut Client, &'a mut Client) {
    if first < second {
        let (left, right) = clients.split_at_mut(second);
        (&mut *left[first], &mut *right[0])
    } else {
        let (left, right) = clients.split_at_mut(first);
        (&mut *right[0], &mut *left[second])
    }
}

/// A node's log without terminal colour codes.
pub(crate) fn plain_log(node: &TestNode) -> String {
    let log = node.log();
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Waits until the node's log contains `needle` `count` times.
pub(crate) async fn wait_log_count(node: &TestNode, needle: &str, count: usize, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        if plain_log(node).matches(needle).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not log {needle:?} {count} times within {bound:?}:\n{}",
            plain_log(node)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The types (`available` for none) of the presences from `from` that
/// `client` has received, in order, until none comes for 300 ms.
pub(crate) async fn presence_types_from(client: &mut Client, from: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(stanza) = client.next_stanza(Duration::from_millis(300)).await {
        if stanza.name() == "presence" && stanza.attr("from") == Some(from) {
            seen.push(stanza.attr("type").unwrap_or("available").to_owned());
        }
    }
    seen
}

/// Asserts that the last presence `client` got from `from` (once none comes
/// for 300 ms) says it is available.
pub(crate) async fn assert_ends_up_available(client: &mut Client, from: &str) {
    let seen = presence_types_from(client, from).await;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("available"),
        "{} ends up seeing {from} as: {seen:?}",
        jid(client)
    );
}
