//! XEP-0191 blocking command and RFC 6121 2.6 (XEP-0237) roster versioning
//! on one node: the list and its pushes, what a block stops both ways, bad
//! commands, and a roster get with the version a client has cached.

use starling_core::xml::{Element, ns};
use starling_tests::{Client, TestNode};

use crate::support::*;

const BLOCKING: &str = "urn:xmpp:blocking";

/// `<block/>` or `<unblock/>` with an item per JID, as an iq set; the reply.
async fn command(client: &mut Client, name: &str, jids: &[&str]) -> Element {
    let items: String = jids
        .iter()
        .map(|jid| format!("<item jid='{jid}'/>"))
        .collect();
    iq(
        client,
        "set",
        None,
        &format!("<{name} xmlns='{BLOCKING}'>{items}</{name}>"),
    )
    .await
}

/// The client's block list (which also subscribes it to pushes).
async fn blocklist(client: &mut Client) -> Vec<String> {
    let reply = iq(
        client,
        "get",
        None,
        &format!("<blocklist xmlns='{BLOCKING}'/>"),
    )
    .await;
    assert_result(&reply);
    let list = reply
        .child("blocklist", BLOCKING)
        .unwrap_or_else(|| panic!("no <blocklist/> in {reply}"));
    list.children()
        .filter(|item| item.is("item", BLOCKING))
        .map(|item| item.attr("jid").unwrap_or_default().to_owned())
        .collect()
}

/// A block or unblock push carrying exactly `jids`.
fn is_blocking_push(element: &Element, name: &str, jids: &[&str]) -> bool {
    element.is("iq", ns::CLIENT)
        && element.attr("type") == Some("set")
        && element.child(name, BLOCKING).is_some_and(|command| {
            let got: Vec<&str> = command
                .children()
                .filter_map(|item| item.attr("jid"))
                .collect();
            got == jids
        })
}

/// Waits for the push and acknowledges it, as a client must.
async fn expect_blocking_push(client: &mut Client, name: &str, jids: &[&str]) {
    let push = client
        .expect(|e| is_blocking_push(e, name, jids), WAIT)
        .await
        .unwrap_or_else(|error| panic!("no {name} push {jids:?} to {}: {error}", jid(client)));
    assert_eq!(push.attr("to"), Some(jid(client).as_str()), "{push}");
    let id = push.attr("id").unwrap_or_default();
    client
        .send(&format!("<iq type='result' id='{id}'/>"))
        .await
        .unwrap();
}

/// Reads and forgets what arrived so far, so that later checks for "none of
/// these" see only what came after.
async fn forget_pending(client: &mut Client) {
    sync(client).await;
    while client.pending().next().is_some() {
        client.recv().await.unwrap();
    }
}

fn is_error_with(element: &Element, name: &str, condition: &str) -> bool {
    element.name() == name
        && element.attr("type") == Some("error")
        && error_of(element).is_some_and(|(_, got)| got == condition)
}

#[tokio::test]
async fn a_block_stops_stanzas_both_ways_and_an_unblock_restores_them() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    befriend(&mut alice, &mut bob).await;
    expect_presence(&mut bob, &jid(&alice), None).await;
    // A second resource of alice's that asked for the list, and a third
    // that did not: only the one that asked is pushed to.
    let mut listening = login(&node, "alice", "pw", "listening").await;
    assert!(blocklist(&mut listening).await.is_empty());
    let mut deaf = login(&node, "alice", "pw", "deaf").await;

    let (alice_bare, bob_bare) = (bare(&alice), bare(&bob));
    forget_pending(&mut alice).await;
    forget_pending(&mut bob).await;
    assert_result(&command(&mut alice, "block", &[&bob_bare]).await);
    expect_blocking_push(&mut listening, "block", &[&bob_bare]).await;
    // XEP-0191 3.3: bob sees alice go offline.
    expect_presence(&mut bob, &jid(&alice), Some("unavailable")).await;
    assert_eq!(blocklist(&mut alice).await, std::slice::from_ref(&bob_bare));

    // Bob's message bounces with service-unavailable and is not delivered.
    bob.send(&format!(
        "<message to='{alice_bare}' type='chat' id='m1'><body>hello?</body></message>"
    ))
    .await
    .unwrap();
    let bounce = bob
        .expect(|e| is_error_with(e, "message", "service-unavailable"), WAIT)
        .await
        .unwrap();
    assert_eq!(bounce.attr("id"), Some("m1"), "{bounce}");
    // A request to alice's resource is refused the same way.
    let reply = iq(
        &mut bob,
        "get",
        Some(&jid(&alice)),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_error(&reply, "cancel", "service-unavailable");
    // Presence from bob is dropped without an error.
    bob.send("<presence><show>away</show></presence>")
        .await
        .unwrap();
    sync(&mut bob).await;
    sync(&mut alice).await;
    assert_none(&alice, "a stanza from a blocked contact", |e| {
        e.attr("from")
            .is_some_and(|from| from.starts_with(&bob_bare))
    });
    assert_none(&bob, "an error for blocked presence", |e| {
        e.name() == "presence" && e.attr("type") == Some("error")
    });

    // Alice's presence no longer reaches bob, and what she sends him is refused.
    available(&mut alice, "<presence><show>dnd</show></presence>").await;
    alice
        .send(&format!(
            "<message to='{bob_bare}' type='chat'><body>hi</body></message>"
        ))
        .await
        .unwrap();
    let refused = alice
        .expect(|e| is_error_with(e, "message", "not-acceptable"), WAIT)
        .await
        .unwrap();
    let error = refused.child("error", ns::CLIENT).unwrap();
    assert!(
        error.has_child("blocked", "urn:xmpp:blocking:errors"),
        "no <blocked/> in {refused}"
    );
    sync(&mut alice).await;
    sync(&mut bob).await;
    assert_none(&bob, "anything from alice while blocked", |e| {
        e.attr("from")
            .is_some_and(|from| from.starts_with(&alice_bare))
    });

    // Unblocking: a push, alice's presence again, and messages pass.
    assert_result(&command(&mut alice, "unblock", &[&bob_bare]).await);
    expect_blocking_push(&mut listening, "unblock", &[&bob_bare]).await;
    expect_presence(&mut bob, &jid(&alice), None).await;
    bob.send(&format!(
        "<message to='{}' type='chat'><body>back</body></message>",
        jid(&alice)
    ))
    .await
    .unwrap();
    alice
        .expect(|e| is_message_with_body(e, "back"), WAIT)
        .await
        .unwrap();

    sync(&mut deaf).await;
    assert_none(&deaf, "a push to a resource that never asked", |e| {
        e.name() == "iq" && (e.has_child("block", BLOCKING) || e.has_child("unblock", BLOCKING))
    });
}

#[tokio::test]
async fn a_blocked_sender_cannot_leave_offline_messages_or_subscribe() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("mallory", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut mallory = online(&node, "mallory", "pw", "m").await;
    assert_result(&command(&mut alice, "block", &[&bare(&mallory)]).await);
    alice.close().await.unwrap();

    // Alice is offline: the message would be stored, and is refused instead.
    mallory
        .send("<message to='alice@localhost' type='chat'><body>stored?</body></message>")
        .await
        .unwrap();
    mallory
        .expect(|e| is_error_with(e, "message", "service-unavailable"), WAIT)
        .await
        .unwrap();
    mallory
        .send("<presence to='alice@localhost' type='subscribe'/>")
        .await
        .unwrap();
    sync(&mut mallory).await;

    let mut alice = login(&node, "alice", "pw", "a").await;
    let items = roster_get(&mut alice).await;
    assert!(
        items.is_empty(),
        "a blocked request reached the roster: {items:?}"
    );
    available(&mut alice, "<presence/>").await;
    sync(&mut alice).await;
    assert_none(&alice, "a stanza from the blocked sender", |e| {
        e.attr("from")
            .is_some_and(|from| from.starts_with("mallory@"))
    });
}

#[tokio::test]
async fn bad_block_commands_get_the_xep_errors_and_change_nothing() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = login(&node, "alice", "pw", "a").await;

    let empty = command(&mut alice, "block", &[]).await;
    assert_error(&empty, "modify", "bad-request");
    let malformed = command(&mut alice, "block", &["x@y@z", "fine@example.org"]).await;
    assert_error(&malformed, "modify", "jid-malformed");
    let no_jid = iq(
        &mut alice,
        "set",
        None,
        &format!("<block xmlns='{BLOCKING}'><item/></block>"),
    )
    .await;
    assert_error(&no_jid, "modify", "bad-request");
    assert!(
        blocklist(&mut alice).await.is_empty(),
        "a refused block changed the list"
    );

    // Unblocking what is not blocked is fine (XEP-0191 3.4).
    assert_result(&command(&mut alice, "unblock", &["never@example.org"]).await);
    // Unblock all, with a domain and a full JID blocked.
    assert_result(&command(&mut alice, "block", &["example.org", "a@b.example/r"]).await);
    assert_eq!(
        blocklist(&mut alice).await,
        ["a@b.example/r", "example.org"]
    );
    assert_result(&command(&mut alice, "unblock", &[]).await);
    assert!(blocklist(&mut alice).await.is_empty());
}

#[tokio::test]
async fn the_server_advertises_blocking_and_roster_versioning() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    assert!(
        alice
            .features()
            .has_child("ver", "urn:xmpp:features:rosterver"),
        "no roster versioning feature: {}",
        alice.features()
    );
    let info = iq(
        &mut alice,
        "get",
        Some(&node.domain),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    let query = assert_result(&info).child("query", ns::DISCO_INFO).unwrap();
    assert!(
        query
            .children()
            .any(|feature| feature.attr("var") == Some(BLOCKING)),
        "no {BLOCKING} feature: {info}"
    );
}

/// A roster get carrying `ver`; the reply.
async fn versioned_get(client: &mut Client, ver: &str) -> Element {
    let reply = iq(
        client,
        "get",
        None,
        &format!("<query xmlns='jabber:iq:roster' ver='{ver}'/>"),
    )
    .await;
    assert_result(&reply).clone()
}

fn version_of(reply: &Element) -> String {
    reply
        .child("query", ns::ROSTER)
        .and_then(|query| query.attr("ver"))
        .unwrap_or_else(|| panic!("no ver in {reply}"))
        .to_owned()
}

#[tokio::test]
async fn a_client_with_the_current_roster_version_gets_pushes_only() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    // Bootstrapping: an empty ver asks for the roster and its version.
    let first = versioned_get(&mut alice, "").await;
    let old = version_of(&first);
    let set = iq(
        &mut alice,
        "set",
        None,
        "<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query>",
    )
    .await;
    assert_result(&set);
    let push = alice
        .expect(|e| is_push_for(e, "bob@localhost"), WAIT)
        .await
        .unwrap();
    let current = version_of(&push);
    assert_ne!(current, old, "a change must change the version");

    // The current version: an empty result, then pushes only.
    let mut again = login(&node, "alice", "pw", "b").await;
    let up_to_date = versioned_get(&mut again, &current).await;
    assert!(
        up_to_date.children().next().is_none(),
        "the current version must get an empty result: {up_to_date}"
    );
    iq(
        &mut alice,
        "set",
        None,
        "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query>",
    )
    .await;
    let push = again
        .expect(|e| is_push_for(e, "carol@localhost"), WAIT)
        .await
        .unwrap();
    let newest = version_of(&push);
    assert_ne!(newest, current);

    // An old version: the whole roster, with the current version.
    let mut stale = login(&node, "alice", "pw", "c").await;
    let full = versioned_get(&mut stale, &old).await;
    assert_eq!(version_of(&full), newest);
    let jids: Vec<String> = roster_items(&full)
        .into_iter()
        .map(|item| item.jid)
        .collect();
    assert_eq!(jids, ["bob@localhost", "carol@localhost"]);
}

#[tokio::test]
async fn a_deleted_account_leaves_no_block_list_or_roster_version_behind() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = login(&node, "alice", "pw", "a").await;
    assert_result(&command(&mut alice, "block", &["mallory@example.org"]).await);
    let set = iq(
        &mut alice,
        "set",
        None,
        "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query>",
    )
    .await;
    assert_result(&set);
    let old = version_of(&versioned_get(&mut alice, "").await);
    alice.close().await.unwrap();

    for args in [
        &["user", "del", "alice"][..],
        &["user", "add", "alice", "pw"][..],
    ] {
        let output = node.cli(args);
        assert!(
            output.status.success(),
            "starling {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut again = login(&node, "alice", "pw", "a").await;
    assert!(
        blocklist(&mut again).await.is_empty(),
        "the old block list survived"
    );
    // The old version is not the new account's: the (empty) roster is sent.
    let fresh = versioned_get(&mut again, &old).await;
    assert!(fresh.has_child("query", ns::ROSTER), "{fresh}");
    assert!(roster_items(&fresh).is_empty(), "{fresh}");
    assert_ne!(version_of(&fresh), old);
}
