//! XEP-0352 client state indication: an inactive client gets presence and
//! other stanzas without a body late, only the newest presence of each
//! contact, everything before the next urgent stanza, everything when the
//! held ones reach `max_held`, and everything when it is active again.

use starling_core::xml::Element;
use starling_tests::TestNode;

use crate::support::*;

const CSI: &str = "urn:xmpp:csi:0";
const COMPOSING: &str = "<composing xmlns='http://jabber.org/protocol/chatstates'/>";

fn status(element: &Element) -> Option<String> {
    (element.name() == "presence")
        .then(|| element.child("status", starling_core::xml::ns::CLIENT))
        .flatten()
        .map(Element::text)
}

fn is_composing(element: &Element) -> bool {
    element.name() == "message"
        && element
            .child("composing", "http://jabber.org/protocol/chatstates")
            .is_some()
}

#[tokio::test]
async fn t10_an_inactive_client_gets_presence_late_and_only_the_newest() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .set("modules.csi", "max_held = 5")
        .start();
    let mut alice = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    send(&mut alice, &format!("<inactive xmlns='{CSI}'/>")).await;
    sync(&mut alice).await;

    // Three presence updates wait; only the last is still there when an
    // urgent message releases what waits, ahead of it.
    for n in 1..=3 {
        send(
            &mut bob,
            &format!("<presence><status>s{n}</status></presence>"),
        )
        .await;
    }
    sync(&mut bob).await;
    chat(&mut bob, "alice@localhost/phone", "wake").await;
    expect_body(&mut alice, "wake").await;
    let statuses: Vec<String> = alice.pending().filter_map(status).collect();
    assert_eq!(
        statuses,
        ["s3"],
        "held presence: {:?}",
        alice.pending().collect::<Vec<_>>()
    );
    assert!(node.metric("starling_csi_superseded_total").await >= 2.0);

    // max_held stanzas without a body go out on their own.
    for _ in 0..5 {
        send(
            &mut bob,
            &format!("<message to='alice@localhost/phone' type='chat'>{COMPOSING}</message>"),
        )
        .await;
    }
    for n in 0..5 {
        alice
            .expect(is_composing, WAIT)
            .await
            .unwrap_or_else(|error| panic!("chat state {n} was not released: {error}"));
    }

    // Active again: what waits goes out at once.
    send(&mut bob, "<presence><status>s4</status></presence>").await;
    sync(&mut bob).await;
    send(&mut alice, &format!("<active xmlns='{CSI}'/>")).await;
    alice
        .expect(|e| status(e).as_deref() == Some("s4"), WAIT)
        .await
        .unwrap_or_else(|error| panic!("held presence not released on <active/>: {error}"));
}
