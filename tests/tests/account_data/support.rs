//! Helpers for the account data tests: the c2s suite's helpers plus the
//! requests of the three features and a three-node cluster.

#[path = "../c2s/support.rs"]
#[allow(dead_code)]
mod single;

use std::time::Instant;

use starling_core::xml::{Element, ns};
use starling_tests::{Client, TestCluster, TestNode};

#[allow(unused_imports)]
pub(crate) use single::*;

pub(crate) const VCARD: &str = "vcard-temp";
pub(crate) const VCARD_UPDATE: &str = "vcard-temp:x:update";
pub(crate) const PRIVATE: &str = "jabber:iq:private";
pub(crate) const LAST: &str = "jabber:iq:last";

/// The password of every account the tests create.
pub(crate) const PW: &str = "pw";

/// A 1x1 PNG, base64, and the SHA-1 of its bytes.
pub(crate) const PHOTO: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// The XEP-0153 hash of [`PHOTO`], computed here as a client would.
pub(crate) fn photo_sha1() -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(PHOTO)
        .unwrap();
    Sha1::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A vCard with this full name and, if asked, [`PHOTO`] (wrapped as
/// clients wrap base64).
pub(crate) fn vcard(full_name: &str, photo: bool) -> String {
    let photo = if photo {
        let (head, tail) = PHOTO.split_at(40);
        format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{head}\n{tail}</BINVAL></PHOTO>")
    } else {
        String::new()
    };
    format!("<vCard xmlns='{VCARD}'><FN>{full_name}</FN>{photo}</vCard>")
}

/// Gets the vCard of `to` (`None`: one's own).
pub(crate) async fn vcard_get(client: &mut Client, to: Option<&str>) -> Element {
    iq(client, "get", to, &format!("<vCard xmlns='{VCARD}'/>")).await
}

/// The `<FN/>` of the vCard in a result; `None` for an empty vCard.
pub(crate) fn full_name(reply: &Element) -> Option<String> {
    let vcard = assert_result(reply)
        .child("vCard", VCARD)
        .unwrap_or_else(|| panic!("no vCard in {reply}"));
    vcard.child("FN", VCARD).map(Element::text)
}

/// Sets one's own vCard (or, with `to`, someone else's) and returns the reply.
pub(crate) async fn vcard_set(client: &mut Client, to: Option<&str>, vcard: &str) -> Element {
    iq(client, "set", to, vcard).await
}

/// Stores private XML (the children of the query) and returns the reply.
pub(crate) async fn private_set(client: &mut Client, to: Option<&str>, children: &str) -> Element {
    iq(
        client,
        "set",
        to,
        &format!("<query xmlns='{PRIVATE}'>{children}</query>"),
    )
    .await
}

/// Reads the private element `<name xmlns=namespace/>` and returns the reply.
pub(crate) async fn private_get(
    client: &mut Client,
    to: Option<&str>,
    name: &str,
    namespace: &str,
) -> Element {
    iq(
        client,
        "get",
        to,
        &format!("<query xmlns='{PRIVATE}'><{name} xmlns='{namespace}'/></query>"),
    )
    .await
}

/// The element a private storage result carries.
pub(crate) fn private_element(reply: &Element) -> Element {
    let query = assert_result(reply)
        .child("query", PRIVATE)
        .unwrap_or_else(|| panic!("no private query in {reply}"));
    let children: Vec<&Element> = query.children().collect();
    assert_eq!(children.len(), 1, "one element: {reply}");
    children[0].clone()
}

/// Asks `to` (a bare JID or the domain) for its last activity.
pub(crate) async fn last_get(client: &mut Client, to: Option<&str>) -> Element {
    iq(client, "get", to, &format!("<query xmlns='{LAST}'/>")).await
}

/// The seconds and status text of a last activity result.
pub(crate) fn last_of(reply: &Element) -> (u64, String) {
    let query = assert_result(reply)
        .child("query", LAST)
        .unwrap_or_else(|| panic!("no last activity in {reply}"));
    let seconds = query
        .attr("seconds")
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {reply}"));
    (seconds, query.text())
}

/// Asks until the answer satisfies `done` (a logout is recorded after the
/// stream has closed), returning that answer.
pub(crate) async fn last_until(
    client: &mut Client,
    to: &str,
    done: impl Fn(&Element) -> bool,
) -> Element {
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = last_get(client, Some(to)).await;
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "last activity of {to} never became what was expected: {reply}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A result that reports a logout (not an available session) with this status.
pub(crate) fn is_logout_with(reply: &Element, status: &str) -> bool {
    reply.attr("type") == Some("result") && last_of(reply).1 == status
}

/// The text of a stanza error, empty when it has none.
pub(crate) fn error_text(stanza: &Element) -> String {
    stanza
        .child("error", stanza.ns())
        .and_then(|error| error.child("text", ns::STANZAS))
        .map(Element::text)
        .unwrap_or_default()
}

/// The XEP-0153 photo hash a presence carries (`Some("")`: no photo).
pub(crate) fn photo_in(presence: &Element) -> Option<String> {
    presence.child("x", VCARD_UPDATE).map(|x| {
        x.child("photo", VCARD_UPDATE)
            .map(Element::text)
            .unwrap_or_default()
    })
}

/// The `var`s of a disco#info result.
pub(crate) fn features(reply: &Element) -> Vec<String> {
    assert_result(reply)
        .child("query", ns::DISCO_INFO)
        .map(|query| {
            query
                .children()
                .filter(|child| child.name() == "feature")
                .filter_map(|feature| feature.attr("var").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A three-node cluster with these accounts (password [`PW`]).
pub(crate) fn cluster(users: &[&str]) -> TestCluster {
    let mut builder = TestCluster::builder(3);
    for user in users {
        builder = builder.user(user, PW);
    }
    builder.start()
}

/// Node `number` (1-based, as in the nodes' names).
pub(crate) fn node(cluster: &TestCluster, number: usize) -> &TestNode {
    cluster.node(number - 1)
}

/// Runs `starling ARGS` against the node's store and checks it succeeded.
pub(crate) fn cli_ok(node: &TestNode, args: &[&str]) {
    let output = node.cli(args);
    assert!(
        output.status.success(),
        "starling {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
