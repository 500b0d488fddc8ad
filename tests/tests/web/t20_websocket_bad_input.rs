//! RFC 7395 bad input: each case ends that client's stream with the right
//! stream error (or refuses the upgrade), while another user's session on
//! the same node keeps working.

use starling_tests::websocket::{self, WsError, WsOptions};
use starling_tests::{Client, TestNode};

use crate::support::*;

/// The stanza size limit of the node under test.
const MAX_STANZA: usize = 8192;

fn node() -> TestNode {
    https_node(&["alice", "bob", "carol"])
        .set("limits", &format!("max_stanza_size = {MAX_STANZA}"))
        .start()
}

/// Logs carol in over WebSocket, sends `bad` as one frame, and expects the
/// stream error `condition` then the close.
async fn bad_frame(node: &TestNode, bad: &str, condition: &str) {
    let mut carol = login_ws(node, "carol", "bad").await;
    carol.send(bad).await.unwrap();
    carol
        .expect_stream_error(condition, WAIT)
        .await
        .unwrap_or_else(|error| panic!("{bad:.60}: expected <{condition}/>: {error}"));
}

#[tokio::test]
async fn t20_wrong_or_missing_subprotocol_is_refused() {
    let node = node();
    for subprotocol in [None, Some("xmpp-bogus")] {
        let options = WsOptions {
            subprotocol: subprotocol.map(str::to_owned),
            ..wss()
        };
        match websocket::connect(node.http, &options).await {
            Err(WsError::Refused { status, body }) => {
                assert_eq!(status, 400, "{subprotocol:?}: {body}");
                assert!(body.contains("xmpp"), "{body}");
            }
            other => panic!("{subprotocol:?}: expected a 400, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn t21_bad_frames_end_only_their_stream() {
    let node = node();
    let mut alice = login_ws(&node, "alice", "web").await;
    let mut bob = login_tcp(&node, "bob", "desk").await;
    let oversized = format!(
        "<message to='bob@localhost'><body>{}</body></message>",
        "a".repeat(MAX_STANZA + 100)
    );
    let cases = [
        (oversized.as_str(), "policy-violation"),
        (
            "<message to='bob@localhost'><body>1</body></message><message to='bob@localhost'/>",
            "policy-violation",
        ),
        ("<message to='bob@localhost'><body>half", "not-well-formed"),
        ("<message><body></message>", "not-well-formed"),
    ];
    for (round, (bad, condition)) in cases.into_iter().enumerate() {
        bad_frame(&node, bad, condition).await;
        chat(&mut alice, &mut bob, &format!("still here {round}")).await;
        chat(&mut bob, &mut alice, &format!("me too {round}")).await;
    }
    // None of the bad stanzas reached bob: carol's stanzas would have been
    // routed before her stream error, so before the chats above.
    let leaked: Vec<String> = bob
        .pending()
        .filter(|e| e.name() == "message" && body(e) == "1")
        .map(ToString::to_string)
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test]
async fn t22_a_fresh_login_after_bad_input() {
    let node = node();
    bad_frame(
        &node,
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/>",
        "not-well-formed",
    )
    .await;
    let mut alice = login_ws(&node, "alice", "again").await;
    let mut bob = Client::login(node.c2s, &options(&node, "bob", "desk"))
        .await
        .unwrap();
    chat(&mut alice, &mut bob, "fine").await;
}

/// `[c2s] max_connections` counts WebSocket and BOSH clients as it counts
/// TCP ones: a full node refuses the upgrade and the session creation.
#[tokio::test]
async fn t23_the_connection_cap_covers_websocket_and_bosh() {
    use starling_tests::bosh::{BoshOptions, HTTPBIND};
    let node = https_node(&["alice"])
        .set("c2s", "max_connections = 1")
        .start();
    let alice = login_ws(&node, "alice", "web").await;
    match websocket::connect(node.http, &wss()).await {
        Err(WsError::Refused { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("connection limit"), "{body}");
        }
        other => panic!("expected a 503, got {other:?}"),
    }
    let bosh = BoshOptions::new(node.http, true);
    let create = format!("<body xmlns='{HTTPBIND}' rid='1' to='localhost' wait='5' hold='1'/>");
    let refused = bosh.post(&create).await.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    let tcp = Client::connect(node.c2s, &node.domain).await;
    assert!(tcp.is_err(), "a TCP client got in past the cap");
    alice.close().await.unwrap();
}
