//! XEP-0191 blocking and roster versioning across members: the blocker and
//! the blocked user on different nodes, the blocker's resources on two.

use starling_core::xml::{Element, ns};
use starling_tests::Client;

use crate::support::*;

const BLOCKING: &str = "urn:xmpp:blocking";

async fn command(client: &mut Client, name: &str, jid: &str) -> Element {
    iq(
        client,
        "set",
        None,
        &format!("<{name} xmlns='{BLOCKING}'><item jid='{jid}'/></{name}>"),
    )
    .await
}

fn is_blocking_push(element: &Element, name: &str, jid: &str) -> bool {
    element.is("iq", ns::CLIENT)
        && element.attr("type") == Some("set")
        && element
            .child(name, BLOCKING)
            .is_some_and(|command| command.children().any(|item| item.attr("jid") == Some(jid)))
}

fn is_error_with(element: &Element, name: &str, condition: &str) -> bool {
    element.name() == name
        && element.attr("type") == Some("error")
        && error_of(element).is_some_and(|(_, got)| got == condition)
}

/// Reads and forgets what arrived so far.
async fn forget_pending(client: &mut Client) {
    sync(client).await;
    while client.pending().next().is_some() {
        client.recv().await.unwrap();
    }
}

#[tokio::test]
async fn a_block_on_one_node_stops_a_sender_on_another() {
    let cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "one").await;
    let mut alice_two = online(node(&cluster, 2), "alice", PW, "two").await;
    let mut bob = online(node(&cluster, 3), "bob", PW, "three").await;
    befriend(&mut alice, &mut bob).await;
    introduce(&mut [&mut alice, &mut alice_two, &mut bob]).await;
    // Only resources that asked for the list get pushes.
    let listed = iq(
        &mut alice_two,
        "get",
        None,
        &format!("<blocklist xmlns='{BLOCKING}'/>"),
    )
    .await;
    assert_result(&listed);
    for client in [&mut alice, &mut alice_two, &mut bob] {
        forget_pending(client).await;
    }

    let (alice_bare, bob_bare) = (bare(&alice), bare(&bob));
    assert_result(&command(&mut alice, "block", &bob_bare).await);
    // The push crosses to alice's resource on node 2.
    alice_two
        .expect(|e| is_blocking_push(e, "block", &bob_bare), WAIT)
        .await
        .unwrap_or_else(|error| panic!("no block push on node 2: {error}"));
    // Bob, on node 3, sees both of alice's resources go offline.
    expect_presence(&mut bob, &jid(&alice), Some("unavailable")).await;
    expect_presence(&mut bob, &jid(&alice_two), Some("unavailable")).await;

    // Bob's messages bounce, to the bare JID and to the resource on node 2.
    for (id, to) in [("m1", alice_bare.clone()), ("m2", jid(&alice_two))] {
        send(
            &mut bob,
            &format!("<message to='{to}' type='chat' id='{id}'><body>{id}</body></message>"),
        )
        .await;
        let bounce = bob
            .expect(
                |e| is_error_with(e, "message", "service-unavailable") && e.attr("id") == Some(id),
                WAIT,
            )
            .await
            .unwrap_or_else(|error| panic!("no bounce of {id} to {to}: {error}"));
        assert_eq!(body(&bounce), id);
    }
    let reply = iq(
        &mut bob,
        "get",
        Some(&jid(&alice_two)),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_error(&reply, "cancel", "service-unavailable");

    // Alice's presence changes reach her other resource, not bob.
    available(&mut alice, "<presence><show>away</show></presence>").await;
    expect_presence(&mut alice_two, &jid(&alice), None).await;
    bob.send("<presence><show>chat</show></presence>")
        .await
        .unwrap();
    for client in [&mut alice, &mut alice_two, &mut bob] {
        sync(client).await;
    }
    assert_none(&bob, "a stanza from the blocker", |e| {
        e.attr("from")
            .is_some_and(|from| from.starts_with(&alice_bare))
    });
    for client in [&alice, &alice_two] {
        assert_none(client, "a stanza from the blocked user", |e| {
            e.attr("from")
                .is_some_and(|from| from.starts_with(&bob_bare))
        });
    }

    // Unblocking from node 2 restores delivery everywhere.
    assert_result(&command(&mut alice_two, "unblock", &bob_bare).await);
    expect_presence(&mut bob, &jid(&alice), None).await;
    send(
        &mut bob,
        &format!(
            "<message to='{}' type='chat'><body>again</body></message>",
            jid(&alice)
        ),
    )
    .await;
    expect_body(&mut alice, "again").await;
}

fn version_of(reply: &Element) -> String {
    reply
        .child("query", ns::ROSTER)
        .and_then(|query| query.attr("ver"))
        .unwrap_or_else(|| panic!("no ver in {reply}"))
        .to_owned()
}

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

#[tokio::test]
async fn roster_versions_hold_across_nodes() {
    let cluster = cluster(&["alice", "bob"]);
    let domain = node(&cluster, 1).domain.clone();
    let mut first = login(node(&cluster, 1), "alice", PW, "one").await;
    let old = version_of(&versioned_get(&mut first, "").await);

    // A change made on node 2 is pushed to node 1 with the new version.
    let mut second = login(node(&cluster, 2), "alice", PW, "two").await;
    let contact = format!("bob@{domain}");
    let set = iq(
        &mut second,
        "set",
        None,
        &format!("<query xmlns='jabber:iq:roster'><item jid='{contact}'/></query>"),
    )
    .await;
    assert_result(&set);
    let push = first
        .expect(|e| is_push_for(e, &contact), WAIT)
        .await
        .unwrap_or_else(|error| panic!("no push on node 1: {error}"));
    let current = version_of(&push);
    assert_ne!(current, old);

    // Node 3 agrees: the current version gets an empty result, an old one
    // the whole roster.
    let mut third = login(node(&cluster, 3), "alice", PW, "three").await;
    let up_to_date = versioned_get(&mut third, &current).await;
    assert!(up_to_date.children().next().is_none(), "{up_to_date}");
    let mut stale = login(node(&cluster, 3), "alice", PW, "four").await;
    let full = versioned_get(&mut stale, &old).await;
    assert_eq!(version_of(&full), current);
    let jids: Vec<String> = roster_items(&full)
        .into_iter()
        .map(|item| item.jid)
        .collect();
    assert_eq!(jids, [contact]);
}
