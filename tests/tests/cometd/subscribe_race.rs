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

use crate::bayeux::Bayeux;
use crate::pubsub::{WAIT, online, publish};

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
            let data = &event["data"];
            (
                data["node"].as_str().unwrap_or_default().to_owned(),
                data["id"].as_str().unwrap_or_default().to_owned(),
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
