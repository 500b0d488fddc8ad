//! XEP-0368 direct TLS on `[c2s] direct_tls_bind`: TLS from the first byte
//! (ALPN `xmpp-client`), a stream without STARTTLS, the same session.

use starling_core::xml::ns;
use starling_tests::transport::connect_direct_tls;
use starling_tests::{Client, TestNode};

use crate::support::*;

#[tokio::test]
async fn t30_login_over_direct_tls_and_chat() {
    let node = TestNode::builder()
        .user("alice", PASSWORD)
        .user("bob", PASSWORD)
        .start();
    let transport = connect_direct_tls(node.direct_tls)
        .await
        .expect("a TLS handshake with ALPN xmpp-client");
    let probe = Client::connect_over(transport, &node.domain)
        .await
        .expect("a stream inside TLS");
    assert!(probe.is_tls());
    assert!(
        !probe.features().has_child("starttls", ns::TLS),
        "{}",
        probe.features()
    );
    assert!(
        probe.mechanisms().iter().any(|m| m == "SCRAM-SHA-256"),
        "{:?}",
        probe.mechanisms()
    );
    let mut alice = Client::login_direct_tls(node.direct_tls, &options(&node, "alice", "phone"))
        .await
        .expect("login over direct TLS");
    let mut bob = login_tcp(&node, "bob", "desk").await;
    chat(&mut alice, &mut bob, "direct").await;
    chat(&mut bob, &mut alice, "starttls").await;
}
