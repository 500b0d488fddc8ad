//! RFC 6121 sections 2 and 3: roster get/set/remove with pushes, the
//! errors of 2.3.3 and 2.5.3, and presence subscriptions end to end
//! (request, approval, cancellation, pre-approval, offline requests).

use starling_core::xml::{Element, ns};
use starling_tests::TestNode;

use crate::support::{
    Item, assert_error, assert_none, assert_result, available, barrier, befriend, expect_presence,
    expect_push, iq, is_presence, login, online, roster_get, sync,
};

const ROSTER: &str = "jabber:iq:roster";

fn roster_set(item: &str) -> String {
    format!("<query xmlns='{ROSTER}'>{item}</query>")
}

fn is_roster_iq(element: &Element) -> bool {
    element.name() == "iq" && element.has_child("query", ns::ROSTER)
}

#[tokio::test]
async fn roster_get_set_and_remove_push_to_every_interested_resource() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut a1 = login(&node, "alice", "pw", "a1").await;
    let mut a2 = login(&node, "alice", "pw", "a2").await;
    // a3 never asks for the roster, so it is not interested in pushes (2.1.6).
    let mut a3 = login(&node, "alice", "pw", "a3").await;
    assert_eq!(roster_get(&mut a1).await, []);
    assert_eq!(roster_get(&mut a2).await, []);

    // Add (2.3): result to the requester, a push to both interested resources.
    let reply = iq(
        &mut a1,
        "set",
        None,
        &roster_set("<item jid='bob@localhost' name='Bob'><group>Friends</group></item>"),
    )
    .await;
    assert_result(&reply);
    assert_eq!(
        reply.children().count(),
        0,
        "a roster set result is empty: {reply}"
    );
    let mut bob = Item::new("bob@localhost", "none");
    bob.name = Some("Bob".to_owned());
    bob.groups = vec!["Friends".to_owned()];
    assert_eq!(expect_push(&mut a1, "bob@localhost").await, bob);
    assert_eq!(expect_push(&mut a2, "bob@localhost").await, bob);
    assert_eq!(roster_get(&mut a2).await, [bob.clone()]);

    // Client-sent subscription attributes are ignored (2.1.2.5).
    let reply = iq(
        &mut a2,
        "set",
        None,
        &roster_set(
            "<item jid='bob@localhost' name='Robert' subscription='both' ask='subscribe'>\
             <group>Work</group><group>Friends</group></item>",
        ),
    )
    .await;
    assert_result(&reply);
    bob.name = Some("Robert".to_owned());
    bob.groups = vec!["Work".to_owned(), "Friends".to_owned()];
    assert_eq!(expect_push(&mut a1, "bob@localhost").await, bob);
    assert_eq!(expect_push(&mut a2, "bob@localhost").await, bob);
    let mut listed = roster_get(&mut a1).await;
    listed[0].groups.sort();
    let mut sorted = bob.clone();
    sorted.groups.sort();
    assert_eq!(listed, [sorted]);

    // Remove (2.5): result, pushes with subscription='remove', gone from the roster.
    let reply = iq(
        &mut a1,
        "set",
        None,
        &roster_set("<item jid='bob@localhost' subscription='remove'/>"),
    )
    .await;
    assert_result(&reply);
    let removed = Item::new("bob@localhost", "remove");
    assert_eq!(expect_push(&mut a1, "bob@localhost").await, removed);
    assert_eq!(expect_push(&mut a2, "bob@localhost").await, removed);
    assert_eq!(roster_get(&mut a1).await, []);

    barrier(&mut a1, &mut a3).await;
    assert_none(
        &a3,
        "roster push to a resource that never asked",
        is_roster_iq,
    );
}

#[tokio::test]
async fn invalid_roster_sets_get_the_errors_of_rfc6121() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    roster_get(&mut alice).await;
    let long_name = "n".repeat(5000);
    let cases = [
        // 2.5.3: removing an item that is not in the roster.
        (
            roster_set("<item jid='nobody@localhost' subscription='remove'/>"),
            "cancel",
            "item-not-found",
        ),
        // 2.1.5 / 2.3.3: exactly one item.
        (
            roster_set("<item jid='b@localhost'/><item jid='c@localhost'/>"),
            "modify",
            "bad-request",
        ),
        (roster_set(""), "modify", "bad-request"),
        // 2.3.3: the same group twice.
        (
            roster_set("<item jid='b@localhost'><group>G</group><group>G</group></item>"),
            "modify",
            "bad-request",
        ),
        // 2.3.3: an empty group name, a name beyond the server's limit.
        (
            roster_set("<item jid='b@localhost'><group></group></item>"),
            "modify",
            "not-acceptable",
        ),
        (
            roster_set(&format!("<item jid='b@localhost' name='{long_name}'/>")),
            "modify",
            "not-acceptable",
        ),
        // 2.3.3: an invalid JID.
        (
            roster_set("<item jid='a@b@localhost'/>"),
            "modify",
            "jid-malformed",
        ),
    ];
    for (payload, error_type, condition) in cases {
        let reply = iq(&mut alice, "set", None, &payload).await;
        assert_error(&reply, error_type, condition);
        assert_eq!(reply.attr("to"), Some("alice@localhost/a"), "{reply}");
    }
    sync(&mut alice).await;
    assert_none(&alice, "roster push after a refused set", |e| {
        e.name() == "iq" && e.attr("type") == Some("set")
    });
    assert_eq!(roster_get(&mut alice).await, []);
}

#[tokio::test]
async fn subscription_handshake_end_to_end() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    // 3.1.2: the request makes a pending roster item for the user...
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "none").asking()
    );
    // ...and reaches the contact from the user's bare JID (3.1.3).
    let request = expect_presence(&mut bob, "alice@localhost", Some("subscribe")).await;
    assert_eq!(request.attr("to"), Some("bob@localhost"));
    // The contact's roster does not list a stranger's request.
    assert_eq!(roster_get(&mut bob).await, []);

    // 3.1.5 / 3.1.6: approval.
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "from")
    );
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "to")
    );
    let approval = expect_presence(&mut alice, "bob@localhost", Some("subscribed")).await;
    assert_eq!(approval.attr("to"), Some("alice@localhost"));
    // The contact's current presence follows the approval.
    expect_presence(&mut alice, "bob@localhost/b", None).await;
    assert_eq!(
        roster_get(&mut alice).await,
        [Item::new("bob@localhost", "to")]
    );
    assert_eq!(
        roster_get(&mut bob).await,
        [Item::new("alice@localhost", "from")]
    );

    // Presence now flows from bob to alice, not the other way.
    available(&mut bob, "<presence><show>away</show></presence>").await;
    let away = expect_presence(&mut alice, "bob@localhost/b", None).await;
    assert_eq!(
        away.child("show", ns::CLIENT).map(Element::text).as_deref(),
        Some("away")
    );
    available(
        &mut alice,
        "<presence><status>only for me</status></presence>",
    )
    .await;
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "presence from a user bob is not subscribed to", |e| {
        is_presence(e, "alice@localhost/a", None)
    });

    // The other direction: both.
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "from").asking()
    );
    expect_presence(&mut alice, "bob@localhost", Some("subscribe")).await;
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "both")
    );
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "both")
    );
    expect_presence(&mut bob, "alice@localhost", Some("subscribed")).await;
    let current = expect_presence(&mut bob, "alice@localhost/a", None).await;
    assert_eq!(
        current
            .child("status", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("only for me")
    );
}

#[tokio::test]
async fn unsubscribe_and_unsubscribed_cancel_each_direction() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    befriend(&mut alice, &mut bob).await;

    // 3.3: alice stops receiving bob's presence.
    alice
        .send("<presence to='bob@localhost' type='unsubscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "from")
    );
    expect_presence(&mut bob, "alice@localhost", Some("unsubscribe")).await;
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "to")
    );
    // 3.3.3: bob's server tells alice bob is unavailable to her now.
    expect_presence(&mut alice, "bob@localhost/b", Some("unavailable")).await;

    // 3.2: alice cancels bob's subscription to her.
    alice
        .send("<presence to='bob@localhost' type='unsubscribed'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "none")
    );
    expect_presence(&mut bob, "alice@localhost", Some("unsubscribed")).await;
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "none")
    );
    // 3.2.2: and alice's resources look unavailable to bob.
    expect_presence(&mut bob, "alice@localhost/a", Some("unavailable")).await;

    // No presence flows either way any more.
    available(&mut alice, "<presence><status>after</status></presence>").await;
    available(&mut bob, "<presence><status>after</status></presence>").await;
    barrier(&mut alice, &mut bob).await;
    barrier(&mut bob, &mut alice).await;
    let from_status = |e: &Element| {
        e.name() == "presence"
            && e.child("status", ns::CLIENT).map(Element::text).as_deref() == Some("after")
    };
    assert_none(
        &alice,
        "bob's presence after both cancellations",
        from_status,
    );
    assert_none(
        &bob,
        "alice's presence after both cancellations",
        from_status,
    );
}

#[tokio::test]
async fn removing_a_contact_cancels_both_subscriptions() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    befriend(&mut alice, &mut bob).await;

    let reply = iq(
        &mut alice,
        "set",
        None,
        &roster_set("<item jid='bob@localhost' subscription='remove'/>"),
    )
    .await;
    assert_result(&reply);
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "remove")
    );
    // 2.5.2: unavailable, unsubscribe and unsubscribed reach bob.
    expect_presence(&mut bob, "alice@localhost/a", Some("unavailable")).await;
    expect_presence(&mut bob, "alice@localhost", Some("unsubscribe")).await;
    expect_presence(&mut bob, "alice@localhost", Some("unsubscribed")).await;
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "to")
    );
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "none")
    );
    assert_eq!(roster_get(&mut alice).await, []);
    assert_eq!(
        roster_get(&mut bob).await,
        [Item::new("alice@localhost", "none")]
    );
}

#[tokio::test]
async fn pre_approval_answers_the_request_without_asking_the_user() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    // 3.4.1: the feature is advertised.
    assert!(
        alice
            .features()
            .has_child("sub", "urn:xmpp:features:pre-approval"),
        "no pre-approval feature: {}",
        alice.features()
    );
    let mut bob = online(&node, "bob", "pw", "b").await;

    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "none").approved()
    );
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "a pre-approval sent on to the contact", |e| {
        is_presence(e, "alice@localhost", Some("subscribed"))
    });

    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "none").asking()
    );
    // Approved on alice's behalf: bob gets 'subscribed' and alice's presence.
    expect_presence(&mut bob, "alice@localhost", Some("subscribed")).await;
    assert_eq!(
        expect_push(&mut bob, "alice@localhost").await,
        Item::new("alice@localhost", "to")
    );
    expect_presence(&mut bob, "alice@localhost/a", None).await;
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "from")
    );
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a pre-approved request shown to the user", |e| {
        is_presence(e, "bob@localhost", Some("subscribe"))
    });
}

#[tokio::test]
async fn a_request_to_an_offline_user_waits_for_its_next_presence() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await
        .unwrap();
    expect_push(&mut alice, "bob@localhost").await;

    // Delivered when bob becomes available, to each resource until answered.
    let mut bob = online(&node, "bob", "pw", "b1").await;
    let request = expect_presence(&mut bob, "alice@localhost", Some("subscribe")).await;
    assert_eq!(request.attr("to"), Some("bob@localhost"));
    let mut bob2 = online(&node, "bob", "pw", "b2").await;
    expect_presence(&mut bob2, "alice@localhost", Some("subscribe")).await;

    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await
        .unwrap();
    expect_presence(&mut alice, "bob@localhost", Some("subscribed")).await;
    assert_eq!(
        expect_push(&mut alice, "bob@localhost").await,
        Item::new("bob@localhost", "to")
    );
    // Both bob resources are available: alice gets the presence of each.
    expect_presence(&mut alice, "bob@localhost/b1", None).await;
    expect_presence(&mut alice, "bob@localhost/b2", None).await;
    // An answered request is not shown again.
    let mut bob3 = online(&node, "bob", "pw", "b3").await;
    sync(&mut bob3).await;
    assert_none(&bob3, "an answered request shown again", |e| {
        is_presence(e, "alice@localhost", Some("subscribe"))
    });

    // 3.1.3: a request to an account that does not exist is answered with
    // 'unsubscribed', which clears the pending item.
    alice
        .send("<presence to='nobody@localhost' type='subscribe'/>")
        .await
        .unwrap();
    assert_eq!(
        expect_push(&mut alice, "nobody@localhost").await,
        Item::new("nobody@localhost", "none").asking()
    );
    expect_presence(&mut alice, "nobody@localhost", Some("unsubscribed")).await;
    assert_eq!(
        expect_push(&mut alice, "nobody@localhost").await,
        Item::new("nobody@localhost", "none")
    );
}
