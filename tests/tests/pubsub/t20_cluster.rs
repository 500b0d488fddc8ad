//! Pub/sub across a three-node cluster: events reach subscribers on every
//! node in publish order, each event crosses once to each node with
//! subscribers and never to a node without, and stored items and
//! subscriptions outlive a node.

use starling_core::xml::ns;
use starling_tests::{Client, TestCluster, TestNode};

use crate::support::*;

const PW: &str = "pw";

fn cluster(users: &[&str]) -> TestCluster {
    let mut builder = TestCluster::builder(3);
    for user in users {
        builder = builder.user(user, PW);
    }
    builder.start()
}

async fn on(node: &TestNode, user: &str, resource: &str) -> Client {
    online(node, user, PW, resource).await
}

const SENT: &str = "starling_pubsub_cluster_events_sent_total";
const RECEIVED: &str = "starling_pubsub_cluster_events_received_total";

#[tokio::test]
async fn events_cross_once_to_nodes_with_subscribers_in_order() {
    let cluster = cluster(&["alice", "bob", "carol"]);
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let mut alice = on(n1, "alice", "a").await;
    let mut bob = on(n2, "bob", "b").await;
    let mut carol = on(n3, "carol", "c").await;
    introduce(&mut [&mut alice, &mut bob, &mut carol]).await;

    assert_result(&pubsub(&mut alice, "set", false, "<create node='feed'/>").await);
    subscribe(&mut bob, "feed").await;
    // Carol is online on node 3 but not subscribed: node 3 gets nothing.
    let first: Vec<String> = (0..20).map(|i| format!("one-{i}")).collect();
    for text in &first {
        publish(&mut alice, "feed", None, text).await;
    }
    let mut got = Vec::new();
    while got.len() < first.len() {
        let event = bob
            .expect(|e| event_items(e, "feed").is_some(), WAIT)
            .await
            .expect("bob's events");
        got.extend(published_texts(&event, "feed"));
    }
    assert_eq!(got, first, "bob's events in publish order");

    // Now carol subscribes; the next events go to nodes 2 and 3.
    subscribe(&mut carol, "feed").await;
    // Her subscribe sent her the last item (XEP-0060 6.1.7) from node 3's own store.
    expect_published(&mut carol, "feed", "one-19").await;
    let second: Vec<String> = (0..10).map(|i| format!("two-{i}")).collect();
    for text in &second {
        publish(&mut alice, "feed", None, text).await;
    }
    for client in [&mut bob, &mut carol] {
        let mut got = Vec::new();
        while got.len() < second.len() {
            let event = client
                .expect(|e| event_items(e, "feed").is_some(), WAIT)
                .await
                .expect("events");
            got.extend(published_texts(&event, "feed"));
        }
        assert_eq!(got, second, "{}'s events in publish order", jid(client));
    }
    // Node 1 -> node 3 is one ordered link: carol's last event arrived, so
    // every event ever sent to node 3 has arrived too.
    assert_eq!(
        metric(n3, RECEIVED).await,
        second.len() as f64,
        "node 3 only got phase two"
    );
    assert_eq!(
        metric(n2, RECEIVED).await,
        (first.len() + second.len()) as f64
    );
    assert_eq!(
        metric(n1, SENT).await,
        (first.len() + 2 * second.len()) as f64,
        "once per node with subscribers and event"
    );
    assert_eq!(metric(n1, RECEIVED).await, 0.0);
}

#[tokio::test]
async fn a_subscriber_whose_node_dies_retrieves_everything_elsewhere() {
    let mut cluster = cluster(&["alice", "bob"]);
    let mut alice = on(cluster.node(0), "alice", "a").await;
    let mut bob = on(cluster.node(1), "bob", "b").await;
    introduce(&mut [&mut alice, &mut bob]).await;
    let configure = format!(
        "<create node='log'/><configure><x xmlns='{}' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{}</value></field>\
         <field var='pubsub#max_items'><value>100</value></field></x></configure>",
        ns::XDATA,
        "http://jabber.org/protocol/pubsub#node_config"
    );
    assert_result(&pubsub(&mut alice, "set", false, &configure).await);
    subscribe(&mut bob, "log").await;
    publish(&mut alice, "log", Some("before"), "before").await;
    expect_published(&mut bob, "log", "before").await;

    cluster.kill(1);
    drop(bob);
    for i in 0..5 {
        publish(
            &mut alice,
            "log",
            Some(&format!("while-{i}")),
            &format!("while-{i}"),
        )
        .await;
    }
    let mut bob = on(cluster.node(2), "bob", "b2").await;
    let subscriptions = pubsub(&mut bob, "get", false, "<subscriptions/>").await;
    let subscribed = subscriptions
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscriptions", ns::PUBSUB))
        .map(|s| {
            s.children().any(|sub| {
                sub.attr("node") == Some("log") && sub.attr("subscription") == Some("subscribed")
            })
        })
        .unwrap_or(false);
    assert!(subscribed, "subscription kept: {subscriptions}");
    let reply = pubsub(&mut bob, "get", false, "<items node='log'/>").await;
    let ids: Vec<String> = retrieved(&reply).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "before", "while-0", "while-1", "while-2", "while-3", "while-4"
        ],
        "{reply}"
    );
    // And the live subscription works from the new node.
    introduce(&mut [&mut alice, &mut bob]).await;
    publish(&mut alice, "log", None, "after").await;
    expect_published(&mut bob, "log", "after").await;
}
