//! XEP-0280: copies of sent and received chats to the user's other
//! sessions that enabled carbons, never to the others, never twice.

use starling_core::xml::ns;
use starling_tests::TestNode;

use crate::support::*;

#[tokio::test]
async fn sent_and_received_chats_are_copied_to_the_sessions_that_enabled_carbons() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut phone = online(&node, "alice", PW, "phone").await;
    let mut laptop = online(&node, "alice", PW, "laptop").await;
    let mut tablet = online(&node, "alice", PW, "tablet").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    enable_carbons(&mut phone).await;
    enable_carbons(&mut laptop).await;

    chat(&mut bob, "alice@localhost/phone", "to the phone").await;
    expect_body(&mut phone, "to the phone").await;
    let copy = expect_carbon(&mut laptop, "alice@localhost", "received", "to the phone").await;
    let forwarded = carbon(&copy, "alice@localhost", "received").unwrap();
    assert_eq!(forwarded.attr("from"), Some("bob@localhost/b"), "{copy}");
    assert_eq!(copy.attr("type"), Some("chat"), "{copy}");

    chat(&mut phone, "bob@localhost/b", "from the phone").await;
    expect_body(&mut bob, "from the phone").await;
    let copy = expect_carbon(&mut laptop, "alice@localhost", "sent", "from the phone").await;
    let forwarded = carbon(&copy, "alice@localhost", "sent").unwrap();
    assert_eq!(forwarded.attr("to"), Some("bob@localhost/b"), "{copy}");

    // The sender gets no copy of its own message; the tablet never enabled carbons.
    sync(&mut phone).await;
    barrier(&mut bob, &mut tablet).await;
    assert_none(&phone, "a carbon of its own message", |e| {
        carbon(e, "alice@localhost", "sent").is_some()
    });
    assert_none(&tablet, "a carbon", is_any_carbon);
    assert!(node.metric("starling_carbons_withheld_total").await >= 2.0);

    // After <disable/> the laptop gets no more copies.
    let disabled = iq(
        &mut laptop,
        "set",
        None,
        &format!("<disable xmlns='{CARBONS}'/>"),
    )
    .await;
    assert_result(&disabled);
    chat(&mut bob, "alice@localhost/phone", "after disable").await;
    expect_body(&mut phone, "after disable").await;
    barrier(&mut bob, &mut laptop).await;
    assert_none(&laptop, "a carbon after disable", |e| {
        carbon(e, "alice@localhost", "received").is_some_and(|m| body(m) == "after disable")
    });
}

/// A user's one session is the recipient or the sender of every chat of
/// theirs: it gets each message once and never a copy. A second session
/// gets copies from its first message on.
#[tokio::test]
async fn a_single_session_gets_no_copies_and_a_second_one_gets_them_at_once() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut phone = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    enable_carbons(&mut phone).await;
    enable_carbons(&mut bob).await;

    chat(&mut bob, "alice@localhost/phone", "alone in").await;
    expect_body(&mut phone, "alone in").await;
    chat(&mut phone, "bob@localhost/b", "alone out").await;
    expect_body(&mut bob, "alone out").await;
    barrier(&mut bob, &mut phone).await;
    barrier(&mut phone, &mut bob).await;
    for client in [&phone, &bob] {
        assert_none(client, "a carbon", is_any_carbon);
        assert_none(client, "a second delivery", |e| {
            body(e) == "alone in" || body(e) == "alone out"
        });
    }

    let mut laptop = online(&node, "alice", PW, "laptop").await;
    enable_carbons(&mut laptop).await;
    chat(&mut bob, "alice@localhost/phone", "now two in").await;
    expect_body(&mut phone, "now two in").await;
    expect_carbon(&mut laptop, "alice@localhost", "received", "now two in").await;
    chat(&mut phone, "bob@localhost/b", "now two out").await;
    expect_body(&mut bob, "now two out").await;
    expect_carbon(&mut laptop, "alice@localhost", "sent", "now two out").await;
    barrier(&mut bob, &mut phone).await;
    assert_none(&phone, "a carbon", is_any_carbon);
}

#[tokio::test]
async fn private_headline_and_bare_jid_messages_are_not_copied_twice_or_at_all() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut phone = online(&node, "alice", PW, "phone").await;
    let mut laptop = online(&node, "alice", PW, "laptop").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    enable_carbons(&mut phone).await;
    enable_carbons(&mut laptop).await;

    send(
        &mut bob,
        &format!(
            "<message to='alice@localhost/phone' type='chat'><body>secret</body><private xmlns='{CARBONS}'/></message>"
        ),
    )
    .await;
    expect_body(&mut phone, "secret").await;
    send(
        &mut bob,
        "<message to='alice@localhost/phone' type='headline'><body>news</body></message>",
    )
    .await;
    expect_body(&mut phone, "news").await;
    // To the bare JID, equal priorities: both get the original, neither a copy.
    chat(&mut bob, "alice@localhost", "to both").await;
    expect_body(&mut phone, "to both").await;
    expect_body(&mut laptop, "to both").await;
    barrier(&mut bob, &mut laptop).await;
    barrier(&mut bob, &mut phone).await;
    for client in [&phone, &laptop] {
        assert_none(client, "a carbon", is_any_carbon);
    }
}

#[tokio::test]
async fn carbons_reach_devices_on_other_members() {
    let cluster = cluster(&["alice", "bob"]);
    let mut phone = online(node(&cluster, 1), "alice", PW, "phone").await;
    let mut laptop = online(node(&cluster, 2), "alice", PW, "laptop").await;
    let mut bob = online(node(&cluster, 3), "bob", PW, "b").await;
    enable_carbons(&mut phone).await;
    enable_carbons(&mut laptop).await;
    // Each member's directory knows each session from here on.
    barrier(&mut bob, &mut phone).await;
    barrier(&mut bob, &mut laptop).await;
    barrier(&mut phone, &mut laptop).await;

    chat(&mut bob, "alice@localhost/phone", "from node 3").await;
    expect_body(&mut phone, "from node 3").await;
    expect_carbon(&mut laptop, "alice@localhost", "received", "from node 3").await;
    chat(&mut phone, "bob@localhost/b", "from node 1").await;
    expect_body(&mut bob, "from node 1").await;
    expect_carbon(&mut laptop, "alice@localhost", "sent", "from node 1").await;
}

#[tokio::test]
async fn carbons_are_advertised_and_only_a_session_enables_its_own() {
    let node = TestNode::builder()
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut alice = login(&node, "alice", PW, "a").await;
    let mut bob = login(&node, "bob", PW, "b").await;
    let info = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert!(assert_result(&info).to_string().contains(CARBONS), "{info}");
    let forged = iq(
        &mut bob,
        "set",
        Some("alice@localhost"),
        &format!("<enable xmlns='{CARBONS}'/>"),
    )
    .await;
    assert_error(&forged, "auth", "forbidden");
    let nonsense = iq(
        &mut alice,
        "set",
        None,
        &format!("<sideways xmlns='{CARBONS}'/>"),
    )
    .await;
    assert_error(&nonsense, "modify", "bad-request");
}
