//! A successful Bayeux subscribe reply means "subscribed cluster-wide": a
//! publish made on another node the moment the client reads the reply
//! reaches it. Every subscribe here is the first watch of a fresh node on
//! node 2, so each one announces new interest to the other nodes, and the
//! publish on node 1 races that announcement. The peer links carry 25 ms
//! of latency each way (members in different data centres), so an
//! announcement the reply does not wait for always loses that race.

use std::collections::BTreeSet;
use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::node::send_signal;

use crate::bayeux::Bayeux;
use crate::pubsub::{WAIT, metric, online, publish};

const ROUNDS: usize = 50;
const LINK_LATENCY: Duration = Duration::from_millis(25);

#[tokio::test]
async fn a_publish_right_after_the_subscribe_reply_is_delivered_across_nodes() {
    let cluster = TestCluster::builder(3)
        .link_latency(LINK_LATENCY)
        .user("alice", "pw")
        // The test client connects only once every round is done.
        .set("cometd", "max_interval_ms = 120000")
        .set("cometd", "timeout_ms = 1000")
        .start();
    let mut alice = online(cluster.node(0), "alice", "pw", "pub").await;
    let subscriber = Bayeux::start(cluster.node(1).http).await;

    let mut expected = BTreeSet::new();
    for round in 0..ROUNDS {
        let node = format!("race-{round}");
        let reply = subscriber.subscribe(&format!("/pubsub/{node}")).await;
        assert_eq!(reply["successful"], true, "subscribe refused: {reply}");
        // At once, on another node: the subscriber must get this item.
        let id = publish(&mut alice, &node, None, &format!("round {round}")).await;
        expected.insert((node, id));
    }

    let events = subscriber
        .events_until(WAIT + Duration::from_secs(5), |events| {
            events.len() >= expected.len()
        })
        .await;
    let received: BTreeSet<(String, String)> = events
        .iter()
        .map(|event| {
            let item = &event["ext"]["xmpp"];
            (
                item["node"].as_str().unwrap_or_default().to_owned(),
                item["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let missing: Vec<_> = expected.difference(&received).collect();
    assert!(
        missing.is_empty(),
        "{} of {ROUNDS} publishes made right after a successful subscribe reply never arrived: {missing:?}\nnode 2 log:\n{}",
        missing.len(),
        cluster.node(1).log()
    );
    assert_eq!(events.len(), ROUNDS, "each item once: {events:?}");
}

const ACK_TIMEOUTS: &str = "starling_cluster_pubsub_interest_ack_timeouts_total";

/// A member that stops answering holds a subscribe reply only for the
/// bounded wait (counted); once its link is gone it is not waited for.
#[tokio::test]
async fn a_silent_member_delays_the_reply_only_for_the_bounded_wait() {
    let mut cluster = TestCluster::builder(3)
        .user("alice", "pw")
        .set("cometd", "max_interval_ms = 120000")
        .set("cometd", "timeout_ms = 1000")
        .start();
    let mut alice = online(cluster.node(0), "alice", "pw", "pub").await;
    let subscriber = Bayeux::start(cluster.node(1).http).await;
    let mut items = Vec::new();

    // Node 3 freezes: linked, but it applies and acknowledges nothing.
    send_signal("-STOP", cluster.node(2).pid().expect("node 3 runs"));
    let reply = subscriber.subscribe("/pubsub/frozen").await;
    assert_eq!(reply["successful"], true, "answered anyway: {reply}");
    assert_eq!(metric(cluster.node(1), ACK_TIMEOUTS).await, 1.0);
    items.push(publish(&mut alice, "frozen", None, "while node 3 is frozen").await);

    // Gone for good: its link drops, and nobody waits for it any more.
    let downs = cluster.node(1).log().matches("cluster link down").count();
    cluster.kill(2);
    cluster.wait_log_count(1, "cluster link down", downs + 1, WAIT);
    let reply = subscriber.subscribe("/pubsub/after").await;
    assert_eq!(reply["successful"], true, "{reply}");
    items.push(publish(&mut alice, "after", None, "node 3 is gone").await);
    assert_eq!(
        metric(cluster.node(1), ACK_TIMEOUTS).await,
        1.0,
        "no wait for a member whose link is down"
    );

    let events = subscriber
        .events_until(WAIT, |events| events.len() >= items.len())
        .await;
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|event| event["ext"]["xmpp"]["id"].as_str())
        .collect();
    assert_eq!(ids, items, "both items delivered: {events:?}");
}
