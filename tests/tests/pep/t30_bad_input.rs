//! PEP requests that must be refused with the right error and change nothing.

use starling_core::xml::ns;
use starling_tests::TestNode;

use crate::support::*;

const SMALL: &str = "<metadata xmlns='urn:xmpp:avatar:metadata'/>";

#[tokio::test]
async fn malformed_and_oversized_publishes_are_refused_and_store_nothing() {
    let node = TestNode::builder()
        .user("alice", PW)
        .set("modules.pep", "max_item_bytes = 512")
        .start();
    let mut alice = online(&node, "alice", PW, "a").await;
    let big = format!(
        "<data xmlns='urn:xmpp:avatar:data'>{}</data>",
        "A".repeat(600)
    );
    let too_big = publish(&mut alice, "urn:xmpp:avatar:data", "x", &big).await;
    assert_error(&too_big, "modify", "not-acceptable");
    assert!(too_big.to_string().contains("payload-too-big"), "{too_big}");

    let two = publish(&mut alice, "n", "x", &format!("{SMALL}{SMALL}")).await;
    assert_error(&two, "modify", "bad-request");
    assert!(two.to_string().contains("invalid-payload"), "{two}");

    let no_item = iq(
        &mut alice,
        "set",
        None,
        &format!(
            "<pubsub xmlns='{}'><publish node='n'/></pubsub>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_error(&no_item, "modify", "bad-request");

    let no_node = iq(
        &mut alice,
        "set",
        None,
        &format!(
            "<pubsub xmlns='{}'><publish><item>{SMALL}</item></publish></pubsub>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_error(&no_node, "modify", "bad-request");

    // An access model this server does not have.
    let roster = options(&[("pubsub#access_model", "roster")]);
    let refused = publish_with(&mut alice, "n", "x", SMALL, &roster).await;
    assert_error(&refused, "modify", "not-acceptable");

    // None of it created a node.
    for node_name in ["urn:xmpp:avatar:data", "n"] {
        assert_error(
            &items(&mut alice, "alice@localhost", node_name).await,
            "cancel",
            "item-not-found",
        );
    }
}

#[tokio::test]
async fn a_client_cannot_publish_for_another_and_a_node_count_is_bounded() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("mallory", PW)
        .set("modules.pep", "max_nodes_per_user = 2")
        .start();
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut mallory = online(&node, "mallory", PW, "m").await;
    let forged = iq(
        &mut mallory,
        "set",
        Some("alice@localhost"),
        &format!(
            "<pubsub xmlns='{}'><publish node='n'><item>{SMALL}</item></publish></pubsub>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_error(&forged, "auth", "forbidden");
    assert_error(
        &items(&mut alice, "alice@localhost", "n").await,
        "cancel",
        "item-not-found",
    );

    assert_result(&publish(&mut alice, "one", "x", SMALL).await);
    assert_result(&publish(&mut alice, "two", "x", SMALL).await);
    let third = publish(&mut alice, "three", "x", SMALL).await;
    assert_error(&third, "wait", "resource-constraint");
}
