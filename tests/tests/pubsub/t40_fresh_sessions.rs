//! A subscriber's session that another member's directory does not know
//! yet. The publishing member finds sessions in its replica of the session
//! directory, which hears of a login one link latency late; a subscriber it
//! finds nowhere is looked up again (the cluster's miss-retry policy: 5
//! lookups within 500 ms), with later events waiting behind, before it is
//! handled as offline.

use std::time::{Duration, Instant};

use starling_tests::{Client, TestCluster, TestNode};

use crate::support::*;

const PW: &str = "pw";
const ROUNDS: usize = 12;
const ITEMS: usize = 5;
/// Members in different data centres: every peer link carries this each way.
const LINK_LATENCY: Duration = Duration::from_millis(25);

const LATE: &str = "starling_pubsub_notify_late_total";
const RETRIES: &str = "starling_pubsub_notify_lookup_retries_total";
const MISSES: &str = "starling_pubsub_notify_misses_total";
const WAITING: &str = "starling_pubsub_notify_waiting_subscribers";
const REMOTE_ENTRIES: &str = "starling_directory_entries{owner=\"remote\"}";
const LOCAL_SESSIONS: &str = "starling_sessions{scope=\"local\"}";

fn fresh(round: usize) -> String {
    format!("fresh{round}")
}

/// The texts of `client`'s events on `node` until `count` have come.
async fn events(client: &mut Client, node: &str, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match client
            .expect(|e| event_items(e, node).is_some(), WAIT)
            .await
        {
            Ok(event) => got.extend(published_texts(&event, node)),
            Err(_) => break,
        }
    }
    got
}

#[tokio::test]
async fn a_session_that_just_logged_in_gets_every_event_published_right_after_its_subscribe() {
    let mut builder = TestCluster::builder(3)
        .link_latency(LINK_LATENCY)
        .user("alice", PW);
    for round in 0..ROUNDS {
        builder = builder.user(&fresh(round), PW);
    }
    let cluster = builder.start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut alice = online(n1, "alice", PW, "pub").await;

    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let node = format!("fresh-{round}");
        assert_result(
            &pubsub(
                &mut alice,
                "set",
                false,
                &format!("<create node='{node}'/>"),
            )
            .await,
        );
        // Logs in on node 2, subscribes, and node 1 publishes at once: node
        // 1's directory has not heard of the session yet.
        let mut subscriber = online(n2, &fresh(round), PW, "new").await;
        subscribe(&mut subscriber, &node).await;
        let texts: Vec<String> = (0..ITEMS).map(|i| format!("{round}-{i}")).collect();
        for text in &texts {
            publish(&mut alice, &node, None, text).await;
        }
        rounds.push((subscriber, node, texts));
    }

    let mut failures = Vec::new();
    for (subscriber, node, texts) in &mut rounds {
        let got = events(subscriber, node, texts.len()).await;
        if got != *texts {
            failures.push(format!(
                "{}: got {got:?}, published {texts:?}",
                jid(subscriber)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} fresh subscribers did not get every event in publish order:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The race was real: node 1 found some of them only when it looked again.
    assert!(
        metric(n1, LATE).await > 0.0,
        "no notification went out late"
    );
    assert_eq!(metric(n1, MISSES).await, 0.0);
}

/// Polls node `node`'s metric until `done` holds for it; panics after WAIT.
async fn metric_until(node: &TestNode, name: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = metric(node, name).await;
        if done(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {value} on {}",
            node.http
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_offline_subscriber_is_looked_up_for_a_bounded_time_then_not_notified() {
    let cluster = TestCluster::builder(2)
        .user("alice", PW)
        .user("carol", PW)
        .start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut alice = online(n1, "alice", PW, "pub").await;
    assert_result(&pubsub(&mut alice, "set", false, "<create node='quiet'/>").await);
    let mut carol = online(n2, "carol", PW, "c").await;
    subscribe(&mut carol, "quiet").await;
    carol.close().await.expect("carol logs out");
    // Node 1 has heard that carol is gone.
    metric_until(n1, REMOTE_ENTRIES, |entries| entries == 0.0).await;

    let texts = ["one", "two", "three"];
    for text in texts {
        publish(&mut alice, "quiet", None, text).await;
    }
    let misses = metric_until(n1, MISSES, |misses| misses >= texts.len() as f64).await;
    assert_eq!(misses, texts.len() as f64, "each notification missed once");
    let retries = metric(n1, RETRIES).await;
    assert!(
        retries >= 5.0 && retries <= 5.0 * texts.len() as f64,
        "5 lookups per lane (later events wait behind the first): {retries}"
    );
    // Three times the policy's window later, nobody looks for carol any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        metric(n1, RETRIES).await,
        retries,
        "no lookups after giving up"
    );
    assert_eq!(metric(n1, MISSES).await, misses);
    assert_eq!(metric(n1, LATE).await, 0.0);
    assert_eq!(metric(n1, WAITING).await, 0.0);

    // Nothing is lost: the items are stored for carol's next login.
    let mut carol = online(n2, "carol", PW, "again").await;
    let reply = pubsub(&mut carol, "get", false, "<items node='quiet'/>").await;
    let stored: Vec<String> = retrieved(&reply)
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(stored, texts);
}

#[tokio::test]
async fn a_single_node_does_not_look_again_for_an_offline_subscriber() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("carol", PW)
        .start();
    let mut alice = online(&node, "alice", PW, "pub").await;
    assert_result(&pubsub(&mut alice, "set", false, "<create node='solo'/>").await);
    let mut carol = online(&node, "carol", PW, "c").await;
    subscribe(&mut carol, "solo").await;
    carol.close().await.expect("carol logs out");
    metric_until(&node, LOCAL_SESSIONS, |sessions| sessions == 1.0).await;

    publish(&mut alice, "solo", None, "one").await;
    // A retry would hold a lane from the publish on for 500 ms.
    assert_eq!(metric(&node, WAITING).await, 0.0, "nothing waits");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(metric(&node, RETRIES).await, 0.0);
    assert_eq!(metric(&node, MISSES).await, 0.0);
}
