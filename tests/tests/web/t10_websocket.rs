//! RFC 7395: a client over WebSocket logs in with SCRAM, binds, reads its
//! roster and chats with a TCP client, both ways.

use starling_core::xml::ns;
use starling_tests::websocket::{self, WsError, WsOptions};
use starling_tests::{Client, LoginOptions, TlsMode};

use crate::support::*;

#[tokio::test]
async fn t10_login_roster_and_chat_with_a_tcp_user() {
    let node = https_node(&["alice", "bob"]).start();
    let mut alice = login_ws(&node, "alice", "web").await;
    let mut bob = login_tcp(&node, "bob", "desk").await;
    assert_eq!(jid(&alice), "alice@localhost/web");
    let roster = iq(&mut alice, "get", "<query xmlns='jabber:iq:roster'/>").await;
    assert_eq!(roster.attr("type"), Some("result"), "{roster}");
    assert!(roster.has_child("query", ns::ROSTER), "{roster}");
    chat(&mut alice, &mut bob, "hello from the browser").await;
    chat(&mut bob, &mut alice, "hello from the desk").await;
    // The session is the c2s session: the server's ping works too.
    let pong = iq(&mut alice, "get", "<ping xmlns='urn:xmpp:ping'/>").await;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");
    alice.close().await.expect("a clean <close/>");
}

#[tokio::test]
async fn t11_no_starttls_and_scram_over_wss() {
    let node = https_node(&["alice"]).start();
    let client = Client::connect_websocket(node.http, &wss(), &node.domain)
        .await
        .expect("a stream over wss");
    let features = client.features();
    assert!(!features.has_child("starttls", ns::TLS), "{features}");
    let mechanisms = client.mechanisms();
    assert!(
        mechanisms.iter().any(|m| m == "SCRAM-SHA-256"),
        "{mechanisms:?}"
    );
    assert_eq!(
        client.stream_header().attr("from"),
        Some("localhost"),
        "{}",
        client.stream_header()
    );
}

#[tokio::test]
async fn t12_plain_http_needs_allow_plain_without_tls() {
    // HTTP without TLS and no permission for plain authentication: refused.
    let strict = starling_tests::TestNode::builder().start();
    match websocket::connect(strict.http, &WsOptions::default()).await {
        Err(WsError::Refused { status, body }) => {
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("tls"), "{body}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    // Allowed: the same policy as TCP clients without STARTTLS.
    let relaxed = starling_tests::TestNode::builder()
        .plain_without_tls()
        .user("alice", PASSWORD)
        .start();
    let mut options = LoginOptions::new(&relaxed.domain, "alice", PASSWORD);
    options.tls = TlsMode::Off;
    let client = Client::login_websocket(relaxed.http, &WsOptions::default(), &options)
        .await
        .expect("login over ws:// when plain is allowed");
    client.close().await.unwrap();
}

#[tokio::test]
async fn t13_shutdown_ends_websocket_sessions_cleanly() {
    let mut node = https_node(&["alice"]).start();
    let mut alice = login_ws(&node, "alice", "web").await;
    let stopping = tokio::task::spawn_blocking(move || {
        let clean = node.stop();
        (clean, node.log())
    });
    let told = alice.expect_stream_error("system-shutdown", WAIT).await;
    let (clean, log) = stopping.await.unwrap();
    assert!(told.is_ok(), "alice: {told:?}\n{log}");
    assert!(clean, "the node did not exit cleanly:\n{log}");
}
