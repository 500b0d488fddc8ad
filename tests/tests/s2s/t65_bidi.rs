//! XEP-0288 bidirectional streams between two Starling servers: one TCP
//! connection carries both directions; with bidi off on one side, two
//! streams as before; a stream closed from either side is replaced by the
//! next stanza, and nothing is lost.

use starling_tests::http::HttpRequest;
use starling_tests::{TestNode, free_port};

use crate::support::*;
use crate::t10_two_servers::exchange;

/// Sums `metric` over `nodes`.
async fn total(nodes: &[&TestNode], metric: &str) -> f64 {
    let mut sum = 0.0;
    for node in nodes {
        sum += node.metric(metric).await;
    }
    sum
}

const STREAMS_IN: &str = "starling_s2s_streams{direction=\"in\"}";
const STREAMS_OUT: &str = "starling_s2s_streams{direction=\"out\"}";
const BIDI_IN: &str = "starling_s2s_bidi_streams{direction=\"in\"}";
const BIDI_OUT: &str = "starling_s2s_bidi_streams{direction=\"out\"}";

/// Waits until the streams open between `a` and `b` are `(out, in)`:
/// a dialback verification's own connection closes just after its answer.
async fn streams_settle(a: &TestNode, b: &TestNode, out: f64, inbound: f64) {
    let nodes = [a, b];
    let settled = async {
        loop {
            if total(&nodes, STREAMS_OUT).await == out && total(&nodes, STREAMS_IN).await == inbound
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(FEDERATION_WAIT, settled)
        .await
        .is_err()
    {
        panic!(
            "streams out {} in {} (expected {out} and {inbound})\n--- a ---\n{}\n--- b ---\n{}",
            total(&nodes, STREAMS_OUT).await,
            total(&nodes, STREAMS_IN).await,
            a.log(),
            b.log()
        );
    }
}

#[tokio::test]
async fn two_servers_with_bidi_use_one_connection_both_ways() {
    let (pa, pb) = (free_port(), free_port());
    let a = server("a.test", pa, &[("b.test", pb)]).start();
    let b = server("b.test", pb, &[("a.test", pa)])
        .admin("admin", PW)
        .start();
    // alice on a.test speaks first: a.test dials, b.test answers on it.
    let (_alice, _bob) = exchange(&a, &b).await;
    streams_settle(&a, &b, 1.0, 1.0).await;
    assert_eq!(a.metric(STREAMS_OUT).await, 1.0, "{}", a.log());
    assert_eq!(b.metric(STREAMS_IN).await, 1.0, "{}", b.log());
    assert_eq!(a.metric(BIDI_OUT).await, 1.0, "{}", a.log());
    assert_eq!(b.metric(BIDI_IN).await, 1.0, "{}", b.log());
    // /api/cluster shows b.test's link to a.test carried by the incoming stream.
    let view = HttpRequest::new(b.http, "GET", "/api/cluster")
        .basic("admin", PW)
        .send()
        .await
        .unwrap()
        .json();
    let pair = serde_json::json!([["b.test", "a.test"]]);
    assert_eq!(view["s2s"]["outgoing"], pair, "{view}");
    assert_eq!(view["s2s"]["outgoing_over_inbound"], pair, "{view}");
    // b.test never authenticated a stream of its own.
    assert_eq!(authentications(&b, "out", "dialback").await, 0.0);
    assert_eq!(authentications(&a, "in", "dialback").await, 0.0);
    assert!(
        a.metric("starling_s2s_stanzas_total{direction=\"in\"}")
            .await
            >= 3.0,
        "{}",
        a.log()
    );
    assert!(
        b.metric("starling_s2s_stanzas_total{direction=\"out\"}")
            .await
            >= 3.0,
        "{}",
        b.log()
    );
    // What b.test wrote over the incoming stream is confirmed with barriers
    // there too (it has no stream of its own), and nothing is left waiting.
    let confirmed = async {
        loop {
            if b.metric("starling_s2s_confirmed_total").await >= 3.0
                && b.metric("starling_s2s_unconfirmed").await == 0.0
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(FEDERATION_WAIT, confirmed)
        .await
        .is_err()
    {
        panic!(
            "b.test confirmed {} and waits for {}\n{}",
            b.metric("starling_s2s_confirmed_total").await,
            b.metric("starling_s2s_unconfirmed").await,
            b.log()
        );
    }
    assert!(b.metric("starling_s2s_barriers_total").await >= 1.0);
}

#[tokio::test]
async fn with_bidi_off_on_one_side_each_server_dials_its_own_stream() {
    let (pa, pb) = (free_port(), free_port());
    let a = server("a.test", pa, &[("b.test", pb)]).start();
    let b = server("b.test", pb, &[("a.test", pa)])
        .set("s2s", "bidi = false")
        .start();
    let (_alice, _bob) = exchange(&a, &b).await;
    streams_settle(&a, &b, 2.0, 2.0).await;
    for node in [&a, &b] {
        assert_eq!(node.metric(STREAMS_OUT).await, 1.0, "{}", node.log());
        assert_eq!(node.metric(BIDI_OUT).await, 0.0);
        assert_eq!(node.metric(BIDI_IN).await, 0.0);
        assert_eq!(authentications(node, "out", "dialback").await, 1.0);
    }
}

/// Closes the stream from the side with a short idle timeout, then
/// checks that messages still go both ways over a new one.
async fn stream_closed_by(closer_is_initiator: bool) {
    let (pa, pb) = (free_port(), free_port());
    let mut a = server("a.test", pa, &[("b.test", pb)]);
    let mut b = server("b.test", pb, &[("a.test", pa)]);
    if closer_is_initiator {
        a = a.set("s2s", "idle_timeout_secs = 1");
    } else {
        b = b.set("s2s", "idle_timeout_secs = 1");
    }
    let (a, b) = (a.start(), b.start());
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "first").await;
    chat(&mut bob, &mut alice, "first answer").await;
    // The idle side closes the stream.
    streams_settle(&a, &b, 0.0, 0.0).await;
    // From the receiving side first: b.test has no stream now and dials.
    chat(&mut bob, &mut alice, "after the close, from b").await;
    chat(&mut alice, &mut bob, "after the close, from a").await;
    for index in 0..5 {
        chat(&mut alice, &mut bob, &format!("more from a {index}")).await;
        chat(&mut bob, &mut alice, &format!("more from b {index}")).await;
    }
    assert_eq!(b.metric("starling_s2s_bounced_total").await, 0.0);
    assert_eq!(a.metric("starling_s2s_bounced_total").await, 0.0);
}

#[tokio::test]
async fn a_bidi_stream_closed_by_the_initiator_is_replaced() {
    stream_closed_by(true).await;
}

#[tokio::test]
async fn a_bidi_stream_closed_by_the_receiver_is_replaced() {
    stream_closed_by(false).await;
}
