//! Bayeux handshakes beyond a node's limits are refused with a Bayeux
//! error and create nothing: `[cometd] max_clients`, `max_clients_per_ip`,
//! and the per-address rate of `[limits] connections_per_ip_per_sec`.
//! Requests come from different loopback addresses (127.0.0.x).

use std::net::IpAddr;

use serde_json::Value;
use starling_tests::TestNode;

use crate::bayeux::{Bayeux, handshake_from};
use crate::pubsub::metric;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Checks a refused handshake: the error, no client id, advice to retry later.
fn assert_refused(reply: &Value, error: &str) {
    assert_eq!(reply["successful"], false, "{reply}");
    assert_eq!(reply["error"], error, "{reply}");
    assert!(reply.get("clientId").is_none(), "{reply}");
    assert_eq!(reply["advice"]["reconnect"], "handshake", "{reply}");
    assert!(
        reply["advice"]["interval"]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{reply}"
    );
}

async fn refused(node: &TestNode, reason: &str) -> f64 {
    let name = format!("starling_cometd_handshakes_refused_total{{reason=\"{reason}\"}}");
    metric(node, &name).await
}

#[tokio::test]
async fn handshakes_beyond_the_client_caps_are_refused_until_a_client_leaves() {
    let node = TestNode::builder()
        .set("cometd", "max_clients = 3")
        .set("cometd", "max_clients_per_ip = 2")
        .start();
    let first = Bayeux::start_from(ip(1), node.http).await;
    let _second = Bayeux::start_from(ip(1), node.http).await;
    let reply = handshake_from(ip(1), node.http).await;
    assert_refused(&reply, "503::Too many clients from this address");
    // Another address still has room, until the node is full.
    let _third = Bayeux::start_from(ip(2), node.http).await;
    let reply = handshake_from(ip(3), node.http).await;
    assert_refused(&reply, "503::Too many clients on this server");
    assert_eq!(metric(&node, "starling_cometd_clients").await, 3.0);
    assert_eq!(refused(&node, "address_full").await, 1.0);
    assert_eq!(refused(&node, "node_full").await, 1.0);

    // A client leaving makes room for its address again.
    let bye = first.disconnect().await;
    assert_eq!(bye["successful"], true, "{bye}");
    assert_eq!(metric(&node, "starling_cometd_clients").await, 2.0);
    let again = Bayeux::start_from(ip(1), node.http).await;
    assert_eq!(again.subscribe("/pubsub/news").await["successful"], true);
    assert_eq!(metric(&node, "starling_cometd_clients").await, 3.0);
    assert_eq!(
        metric(&node, "starling_cometd_handshake_failures_total").await,
        2.0
    );
}

#[tokio::test]
async fn handshakes_beyond_the_address_rate_are_refused() {
    const BURST: usize = 3;
    let node = TestNode::builder()
        .set("limits", "connections_per_ip_per_sec = 1")
        .set("limits", &format!("connection_burst_per_ip = {BURST}"))
        .start();
    // 127.0.0.5: an address the harness's own checks do not use.
    let mut replies = Vec::new();
    for _ in 0..BURST + 10 {
        replies.push(handshake_from(ip(5), node.http).await);
    }
    let accepted = replies.iter().filter(|r| r["successful"] == true).count();
    assert!(accepted >= BURST, "the burst is allowed: {replies:?}");
    let refusal = replies
        .iter()
        .find(|r| r["successful"] == false)
        .unwrap_or_else(|| panic!("no handshake refused beyond the burst: {replies:?}"));
    assert_refused(refusal, "429::Too many handshakes from this address");
    assert!(refused(&node, "rate").await >= 1.0);
    assert_eq!(
        metric(&node, "starling_cometd_clients").await,
        accepted as f64,
        "refused handshakes created nothing"
    );
    // Another address has its own bucket.
    Bayeux::start_from(ip(6), node.http).await;
}
