//! Two servers, a.test and b.test, federating both ways.

use starling_tests::pki::Pki;
use starling_tests::{Client, TestNode, free_port};

use crate::support::*;

/// Everything local users do with each other, across the two servers.
pub(crate) async fn exchange(a: &TestNode, b: &TestNode) -> (Client, Client) {
    let mut alice = online(a, "alice", PW, "phone").await;
    let mut bob = online(b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "hello from a.test").await;
    chat(&mut bob, &mut alice, "hello from b.test").await;

    // Presence subscriptions both ways, then a broadcast.
    befriend(&mut alice, &mut bob).await;
    let bob_jid = jid(&bob);
    bob.send("<presence><show>away</show><status>at lunch</status></presence>")
        .await
        .unwrap();
    let seen = alice
        .expect(
            |e| is_presence(e, &bob_jid, None) && has_status(e, "at lunch"),
            FEDERATION_WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("alice did not see bob's presence: {error}"));
    assert_eq!(seen.attr("from"), Some(bob_jid.as_str()));

    // Iqs to the remote server and to a remote account.
    let ping = iq(
        &mut alice,
        "get",
        Some("b.test"),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_result(&ping);
    assert_eq!(ping.attr("from"), Some("b.test"), "{ping}");
    let disco = iq(
        &mut alice,
        "get",
        Some("bob@b.test"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert_result(&disco);
    let disco = iq(
        &mut bob,
        "get",
        Some("a.test"),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(
        assert_result(&disco)
            .children()
            .any(|c| c.name() == "query"),
        "{disco}"
    );
    // A message to a remote user who does not exist comes back as an error.
    alice
        .send("<message to='nobody@b.test' type='chat'><body>anyone?</body></message>")
        .await
        .unwrap();
    assert_eq!(
        expect_bounce(&mut alice, "nobody@b.test").await,
        "service-unavailable"
    );
    (alice, bob)
}

fn has_status(presence: &starling_core::xml::Element, text: &str) -> bool {
    presence
        .children()
        .any(|child| child.name() == "status" && child.text() == text)
}

#[tokio::test]
async fn servers_without_valid_certificates_federate_with_dialback() {
    // Without XEP-0288 (t65 has it), so each server dials its own stream.
    let (pa, pb) = (free_port(), free_port());
    let a = server("a.test", pa, &[("b.test", pb)])
        .set("s2s", "bidi = false")
        .start();
    let b = server("b.test", pb, &[("a.test", pa)])
        .set("s2s", "bidi = false")
        .start();
    let (alice, mut bob) = exchange(&a, &b).await;

    // Unavailable at logout reaches the remote contact.
    let alice_jid = jid(&alice);
    alice.close().await.unwrap();
    expect_presence(&mut bob, &alice_jid, Some("unavailable")).await;

    for node in [&a, &b] {
        assert!(
            authentications(node, "out", "dialback").await >= 1.0,
            "{}",
            node.log()
        );
        assert!(
            authentications(node, "in", "dialback").await >= 1.0,
            "{}",
            node.log()
        );
        assert_eq!(authentications(node, "in", "external").await, 0.0);
        assert!(
            node.metric("starling_s2s_stanzas_total{direction=\"in\"}")
                .await
                >= 3.0
        );
    }
}

#[tokio::test]
async fn servers_with_certificates_of_a_trusted_ca_use_sasl_external() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "federation");
    let (pa, pb) = (free_port(), free_port());
    let a = certified(server("a.test", pa, &[("b.test", pb)]), &pki, "a.test").start();
    let b = certified(server("b.test", pb, &[("a.test", pa)]), &pki, "b.test").start();
    let mut alice = online(&a, "alice", PW, "phone").await;
    let mut bob = online(&b, "bob", PW, "laptop").await;
    chat(&mut alice, &mut bob, "certified hello").await;
    chat(&mut bob, &mut alice, "certified answer").await;
    // a.test dialed (alice spoke first); b.test answered on the same,
    // bidirectional, stream.
    for (node, direction, count) in [
        (&a, "out", 1.0),
        (&a, "in", 0.0),
        (&b, "in", 1.0),
        (&b, "out", 0.0),
    ] {
        assert_eq!(
            authentications(node, direction, "external").await,
            count,
            "{direction}\n{}",
            node.log()
        );
        assert_eq!(authentications(node, direction, "dialback").await, 0.0);
    }
}
