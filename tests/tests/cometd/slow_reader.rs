//! A WebSocket client's maxInterval measures its own silence, not the time
//! the server spends blocked writing to it: a client that reads slowly,
//! with the server's writes to it stalled on a full socket for longer than
//! maxInterval, keeps its session and gets every item once it reads on.

use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::load::bayeux::{BayeuxClient, Incoming};

use crate::pubsub::{WAIT, metric, online, publish};

/// Items far beyond what the kernel's socket buffers on both ends hold
/// (a few MiB on loopback), so the server's writes stall.
const ITEMS: usize = 300;
const ITEM_BYTES: usize = 60 * 1024;

#[tokio::test]
async fn a_websocket_client_the_server_waits_on_is_not_expired() {
    let cluster = TestCluster::builder(1)
        .user("alice", "pw")
        .set("cometd", "timeout_ms = 200")
        .set("cometd", "max_interval_ms = 1000")
        .start();
    let node = cluster.node(0);
    let mut alice = online(node, "alice", "pw", "pub").await;
    let mut reader = BayeuxClient::handshake(node.http, None, WAIT)
        .await
        .expect("handshake");
    reader
        .subscribe("/pubsub/flood", WAIT)
        .await
        .expect("subscribe");

    // The reader reads nothing from here on until well after the items are
    // published: its held connect is answered (200 ms) before the first
    // item, and it cannot send the next one before it reads that answer,
    // which waits behind the items the server cannot write.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let filler = "x".repeat(ITEM_BYTES);
    for number in 0..ITEMS {
        publish(&mut alice, "flood", None, &format!("{number} {filler}")).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        metric(node, "starling_cometd_expired_total").await,
        0.0,
        "the slow reader was expired while the server was blocked writing to it"
    );

    read_items(&mut reader, "/pubsub/flood").await;
    reader.disconnect(WAIT).await.expect("disconnect");
}

/// Reads until `ITEMS` events of `channel` arrived, connecting again each
/// time a held connect is answered.
async fn read_items(reader: &mut BayeuxClient, channel: &str) {
    let mut received = 0;
    while received < ITEMS {
        let incoming = tokio::time::timeout(WAIT, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {received} of {ITEMS} items arrived"))
            .expect("read");
        match incoming {
            Incoming::Event { channel: on, .. } => {
                assert_eq!(on, channel);
                received += 1;
            }
            Incoming::Meta(reply) if reply.channel == "/meta/connect" => {
                assert!(reply.successful, "connect refused: {reply:?}");
                reader.connect().await.expect("connect");
            }
            Incoming::Meta(_) => {}
        }
    }
}

/// ... but not forever: a client that reads nothing at all has its socket
/// closed after `write_timeout_ms` and is then removed after maxInterval,
/// while a subscriber of the same channel that reads gets every item.
#[tokio::test]
async fn a_websocket_client_that_reads_nothing_is_closed_after_the_write_timeout() {
    let cluster = TestCluster::builder(1)
        .user("alice", "pw")
        // Its connect is held throughout, so only the write timeout can
        // end it: maxInterval starts when the closed socket drops it.
        .set("cometd", "timeout_ms = 30000")
        .set("cometd", "max_interval_ms = 1000")
        .set("cometd", "write_timeout_ms = 1000")
        .start();
    let node = cluster.node(0);
    let mut alice = online(node, "alice", "pw", "pub").await;
    let mut hung = BayeuxClient::handshake(node.http, None, WAIT)
        .await
        .expect("handshake");
    hung.subscribe("/pubsub/stall", WAIT)
        .await
        .expect("subscribe");
    let mut reader = BayeuxClient::handshake(node.http, None, WAIT)
        .await
        .expect("handshake");
    reader
        .subscribe("/pubsub/stall", WAIT)
        .await
        .expect("subscribe");
    let reading = tokio::spawn(async move {
        read_items(&mut reader, "/pubsub/stall").await;
        reader
    });

    tokio::time::sleep(Duration::from_millis(600)).await;
    let filler = "x".repeat(ITEM_BYTES);
    for number in 0..ITEMS {
        publish(&mut alice, "stall", None, &format!("{number} {filler}")).await;
    }
    let reader = reading.await.expect("reader task");
    wait_for_metric(node, "starling_cometd_write_timeouts_total", 1.0).await;
    wait_for_metric(node, "starling_cometd_expired_total", 1.0).await;
    assert_eq!(
        metric(node, "starling_cometd_write_timeouts_total").await,
        1.0,
        "only the client that read nothing timed out"
    );
    reader.disconnect(WAIT).await.expect("disconnect");
    drop(hung);
}

async fn wait_for_metric(node: &starling_tests::TestNode, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = metric(node, name).await;
        if now >= value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {now}, expected {value} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
