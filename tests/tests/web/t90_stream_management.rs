//! XEP-0198 over WebSocket and BOSH: the same session code, so stream
//! management is offered there too, and a session resumes across
//! transports and members: a phone whose WebSocket on one member drops
//! resumes over TCP on another, and back.

use starling_tests::bosh::BoshOptions;
use starling_tests::{Client, SM, TestCluster};

use crate::support::*;

const COUNT: usize = 50;

fn cluster() -> TestCluster {
    TestCluster::builder(2)
        .set("http", "tls = true")
        .user("alice", PASSWORD)
        .user("bob", PASSWORD)
        .start()
}

/// Sends `COUNT` numbered chats from `bob` to alice's `resource`.
async fn send_numbered(bob: &mut Client, resource: &str, prefix: &str) {
    for n in 0..COUNT {
        bob.send(&format!(
            "<message to='alice@localhost/{resource}' type='chat'><body>{prefix}-{n}</body></message>"
        ))
        .await
        .unwrap();
    }
    // An iq answered after the messages were routed: they are all queued.
    let pong = iq(bob, "get", "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");
}

/// Receives the `COUNT` numbered chats, each once and in order.
async fn receive_numbered(alice: &mut Client, prefix: &str) {
    for n in 0..COUNT {
        let expected = format!("{prefix}-{n}");
        let message = alice
            .expect(
                |e| e.name() == "message" && body(e).starts_with(prefix),
                WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("missing {expected}: {error}"));
        assert_eq!(body(&message), expected);
    }
    // Nothing more with the prefix: no duplicate.
    let pong = iq(alice, "get", "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");
    assert!(
        alice
            .expect(
                |e| e.name() == "message" && body(e).starts_with(prefix),
                std::time::Duration::ZERO
            )
            .await
            .is_err(),
        "a {prefix} message arrived twice"
    );
}

async fn enable_resumable(client: &mut Client) -> String {
    let enabled = client.enable_sm(true).await.expect("stream management");
    enabled.id.expect("a resumption id")
}

#[tokio::test]
async fn t90_resume_from_websocket_to_tcp_and_back() {
    let cluster = cluster();
    let (one, two) = (cluster.node(0), cluster.node(1));
    let mut bob = login_tcp(two, "bob", "desk").await;

    // WebSocket on member 1 → TCP on member 2.
    let mut alice = login_ws(one, "alice", "phone").await;
    assert!(alice.features().has_child("sm", SM), "{}", alice.features());
    let previd = enable_resumable(&mut alice).await;
    chat(&mut bob, &mut alice, "before").await;
    let handled = alice.sm_handled().unwrap();
    alice.drop_connection();
    send_numbered(&mut bob, "phone", "ws-gone").await;
    let (mut alice, _) = Client::resume(two.c2s, &options(two, "alice", "phone"), &previd, handled)
        .await
        .unwrap_or_else(|error| panic!("resuming a WebSocket session over TCP: {error}"));
    receive_numbered(&mut alice, "ws-gone").await;
    chat(&mut alice, &mut bob, "back over TCP").await;

    // TCP on member 2 → WebSocket on member 1, the same session again (a
    // resumed stream keeps stream management and its id).
    let handled = alice.sm_handled().unwrap();
    alice.drop_connection();
    send_numbered(&mut bob, "phone", "tcp-gone").await;
    let (mut alice, _) = Client::resume_websocket(
        one.http,
        &wss(),
        &options(one, "alice", "phone"),
        &previd,
        handled,
    )
    .await
    .unwrap_or_else(|error| panic!("resuming a TCP session over WebSocket: {error}"));
    receive_numbered(&mut alice, "tcp-gone").await;
    chat(&mut alice, &mut bob, "back over WebSocket").await;
    chat(&mut bob, &mut alice, "reachable over WebSocket").await;
}

#[tokio::test]
async fn t91_stream_management_over_bosh() {
    let cluster = cluster();
    let node = cluster.node(0);
    let mut alice = Client::login_bosh(
        &BoshOptions::new(node.http, true),
        &options(node, "alice", "bosh"),
    )
    .await
    .unwrap();
    assert!(alice.features().has_child("sm", SM), "{}", alice.features());
    enable_resumable(&mut alice).await;
    let mut bob = login_tcp(cluster.node(1), "bob", "desk").await;
    chat(&mut alice, &mut bob, "counted over BOSH").await;
    chat(&mut bob, &mut alice, "acked over BOSH").await;
    let h = alice.request_ack().await.expect("an <a/> over BOSH");
    assert!(h >= 1, "the server counts what alice sent: {h}");
}
