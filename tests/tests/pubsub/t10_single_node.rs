//! The core use cases on one node: discover the service, create, publish,
//! subscribe and be notified, retrieve.

use starling_core::xml::ns;
use starling_tests::TestNode;

use crate::support::*;

#[tokio::test]
async fn publish_reaches_a_subscriber_and_items_are_stored() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    let items = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    let listed = items
        .child("query", ns::DISCO_ITEMS)
        .map(|q| q.children().any(|i| i.attr("jid") == Some(SERVICE)))
        .unwrap_or(false);
    assert!(listed, "service not in the server's items: {items}");

    assert_result(&pubsub(&mut alice, "set", false, "<create node='news'/>").await);
    subscribe(&mut bob, "news").await;
    let id = publish(&mut alice, "news", None, "first").await;
    assert!(!id.is_empty());
    let event = expect_published(&mut bob, "news", "first").await;
    assert_eq!(event.attr("type"), Some("headline"), "{event}");
    publish(&mut alice, "news", Some("second-id"), "second").await;
    expect_published(&mut bob, "news", "second").await;

    let reply = pubsub(&mut bob, "get", false, "<items node='news'/>").await;
    assert_eq!(
        retrieved(&reply),
        [
            (id, "first".to_owned()),
            ("second-id".to_owned(), "second".to_owned())
        ]
    );
}
