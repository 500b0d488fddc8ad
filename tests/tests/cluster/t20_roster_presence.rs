//! RFC 6121 sections 2 to 4 across nodes: logging in anywhere, roster
//! pushes to a user's resources on every node, cluster-wide roster and
//! account changes, the subscription handshake between users on different
//! nodes, presence broadcast, probes and directed presence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use starling_core::xml::{Element, ns};
use starling_tests::Client;

use crate::support::*;

const ROSTER: &str = "jabber:iq:roster";

fn is_roster_iq(element: &Element) -> bool {
    element.name() == "iq" && element.has_child("query", ns::ROSTER)
}

/// Waits for the roster push about `contact` and checks all of it: sent to
/// this resource by the server, carrying exactly `item`.
async fn expect_exact_push(client: &mut Client, contact: &str, item: &str) {
    let push = client
        .expect(|e| is_push_for(e, contact), WAIT)
        .await
        .unwrap_or_else(|error| panic!("no push about {contact} to {}: {error}", jid(client)));
    let id = push.attr("id").unwrap_or_default();
    // RFC 6121 2.6.3: every push carries the roster's new version.
    let ver = push
        .child("query", ROSTER)
        .and_then(|query| query.attr("ver"))
        .unwrap_or_else(|| panic!("a push without the roster version: {push}"));
    assert_stanza(
        &push,
        &format!(
            "<iq type='set' id='{id}' to='{}'><query xmlns='{ROSTER}' ver='{ver}'>{item}</query></iq>",
            jid(client)
        ),
    );
}

/// Waits for a presence from `from` of type `ty` and checks all of it.
async fn expect_exact_presence(client: &mut Client, from: &str, ty: Option<&str>, xml: &str) {
    let presence = expect_presence(client, from, ty).await;
    assert_stanza(&presence, xml);
}

async fn roster_set(client: &mut Client, item: &str) {
    let reply = iq(
        client,
        "set",
        None,
        &format!("<query xmlns='{ROSTER}'>{item}</query>"),
    )
    .await;
    assert_result(&reply);
}

/// Alice is logged in on all three nodes. A roster change made on any node
/// is pushed at once to her interested resources on every node, a roster
/// get on another node returns it at once (the cached roster there was
/// dropped before the change was acknowledged), and a resource that never
/// asked for the roster gets no pushes, wherever it is.
#[tokio::test]
async fn roster_changes_reach_the_users_resources_on_every_node() {
    let cluster = cluster(&["alice"]);
    let mut a1 = login(node(&cluster, 1), "alice", PW, "a1").await;
    let mut a2 = login(node(&cluster, 2), "alice", PW, "a2").await;
    let mut a3 = login(node(&cluster, 3), "alice", PW, "a3").await;
    // Never asks for the roster, so it is not interested in pushes (2.1.6).
    let mut quiet = login(node(&cluster, 2), "alice", PW, "quiet").await;
    for client in [&mut a1, &mut a2, &mut a3] {
        // Also fills each node's roster cache with the empty roster.
        assert_eq!(roster_get(client).await, []);
    }
    // Every node knows every session before the first push.
    introduce(&mut [&mut a1, &mut a2, &mut a3, &mut quiet]).await;

    roster_set(
        &mut a1,
        "<item jid='bob@localhost' name='Bob'><group>Friends</group></item>",
    )
    .await;
    let added = "<item jid='bob@localhost' name='Bob' subscription='none'>\
                 <group>Friends</group></item>";
    for client in [&mut a1, &mut a2, &mut a3] {
        expect_exact_push(client, "bob@localhost", added).await;
    }
    let mut bob = Item::new("bob@localhost", "none");
    bob.name = Some("Bob".to_owned());
    bob.groups = vec!["Friends".to_owned()];
    assert_eq!(roster_get(&mut a2).await, [bob.clone()]);
    assert_eq!(roster_get(&mut a3).await, [bob.clone()]);

    // Changed on node 3, seen on node 1.
    roster_set(
        &mut a3,
        "<item jid='bob@localhost' name='Robert'><group>Work</group></item>",
    )
    .await;
    let renamed = "<item jid='bob@localhost' name='Robert' subscription='none'>\
                   <group>Work</group></item>";
    for client in [&mut a1, &mut a2, &mut a3] {
        expect_exact_push(client, "bob@localhost", renamed).await;
    }
    bob.name = Some("Robert".to_owned());
    bob.groups = vec!["Work".to_owned()];
    assert_eq!(roster_get(&mut a1).await, [bob]);

    // Removed on node 2, gone everywhere.
    roster_set(&mut a2, "<item jid='bob@localhost' subscription='remove'/>").await;
    for client in [&mut a1, &mut a2, &mut a3] {
        expect_exact_push(
            client,
            "bob@localhost",
            "<item jid='bob@localhost' subscription='remove'/>",
        )
        .await;
    }
    for client in [&mut a1, &mut a2, &mut a3] {
        assert_eq!(roster_get(client).await, []);
    }

    for client in [&mut a1, &mut a2, &mut a3] {
        barrier(client, &mut quiet).await;
        sync(client).await;
        assert_none(client, "a second push", is_roster_iq);
    }
    assert_none(
        &quiet,
        "a push to a resource that never asked",
        is_roster_iq,
    );
}

/// Alice (node 1) and Bob (nodes 2 and 3) subscribe to each other: every
/// step of RFC 6121 3.1 reaches every resource concerned, on its node, and
/// once subscribed each sees the presence of all the other's resources.
/// Then presence updates, directed presence (to Carol on node 2 and to
/// Dave's bare JID on nodes 1 and 3) and unavailable presence at logout.
#[tokio::test]
async fn subscriptions_and_presence_between_users_on_different_nodes() {
    let cluster = cluster(&["alice", "bob", "carol", "dave"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut b2 = online(node(&cluster, 2), "bob", PW, "b2").await;
    available(&mut b2, "<presence><status>on two</status></presence>").await;
    let mut b3 = online(node(&cluster, 3), "bob", PW, "b3").await;
    expect_exact_presence(
        &mut b2,
        "bob@localhost/b3",
        None,
        "<presence from='bob@localhost/b3' to='bob@localhost/b2'/>",
    )
    .await;
    for bob in [&mut b2, &mut b3] {
        barrier(bob, &mut alice).await;
        barrier(&mut alice, bob).await;
    }

    // 3.1.1-3.1.3: the request, pending on Alice's side, shown to both of
    // Bob's resources.
    send(
        &mut alice,
        "<presence to='bob@localhost' type='subscribe'/>",
    )
    .await;
    expect_exact_push(
        &mut alice,
        "bob@localhost",
        "<item jid='bob@localhost' subscription='none' ask='subscribe'/>",
    )
    .await;
    for bob in [&mut b2, &mut b3] {
        expect_exact_presence(
            bob,
            "alice@localhost",
            Some("subscribe"),
            "<presence from='alice@localhost' to='bob@localhost' type='subscribe'/>",
        )
        .await;
    }

    // 3.1.4-3.1.5: approved on node 3; both of Bob's resources get the
    // push; Alice gets hers, the approval and the presence of each of
    // Bob's available resources, wherever they are.
    send(
        &mut b3,
        "<presence to='alice@localhost' type='subscribed'/>",
    )
    .await;
    for bob in [&mut b2, &mut b3] {
        expect_exact_push(
            bob,
            "alice@localhost",
            "<item jid='alice@localhost' subscription='from'/>",
        )
        .await;
    }
    expect_exact_push(
        &mut alice,
        "bob@localhost",
        "<item jid='bob@localhost' subscription='to'/>",
    )
    .await;
    expect_exact_presence(
        &mut alice,
        "bob@localhost",
        Some("subscribed"),
        "<presence from='bob@localhost' to='alice@localhost' type='subscribed'/>",
    )
    .await;
    expect_exact_presence(
        &mut alice,
        "bob@localhost/b3",
        None,
        "<presence from='bob@localhost/b3' to='alice@localhost'/>",
    )
    .await;
    expect_exact_presence(
        &mut alice,
        "bob@localhost/b2",
        None,
        "<presence from='bob@localhost/b2' to='alice@localhost'><status>on two</status></presence>",
    )
    .await;

    // The other way round, asked from node 2 and approved on node 1.
    send(&mut b2, "<presence to='alice@localhost' type='subscribe'/>").await;
    for bob in [&mut b2, &mut b3] {
        expect_exact_push(
            bob,
            "alice@localhost",
            "<item jid='alice@localhost' subscription='from' ask='subscribe'/>",
        )
        .await;
    }
    expect_exact_presence(
        &mut alice,
        "bob@localhost",
        Some("subscribe"),
        "<presence from='bob@localhost' to='alice@localhost' type='subscribe'/>",
    )
    .await;
    send(
        &mut alice,
        "<presence to='bob@localhost' type='subscribed'/>",
    )
    .await;
    expect_exact_push(
        &mut alice,
        "bob@localhost",
        "<item jid='bob@localhost' subscription='both'/>",
    )
    .await;
    for bob in [&mut b2, &mut b3] {
        expect_exact_push(
            bob,
            "alice@localhost",
            "<item jid='alice@localhost' subscription='both'/>",
        )
        .await;
        expect_exact_presence(
            bob,
            "alice@localhost",
            Some("subscribed"),
            "<presence from='alice@localhost' to='bob@localhost' type='subscribed'/>",
        )
        .await;
        expect_exact_presence(
            bob,
            "alice@localhost/a",
            None,
            "<presence from='alice@localhost/a' to='bob@localhost'/>",
        )
        .await;
    }
    // Stored the same whichever node reads it.
    assert_eq!(
        roster_get(&mut alice).await,
        [Item::new("bob@localhost", "both")]
    );
    for bob in [&mut b2, &mut b3] {
        assert_eq!(
            roster_get(bob).await,
            [Item::new("alice@localhost", "both")]
        );
    }

    // 4.4: an update from node 2 reaches the contact on node 1 and the
    // user's own resource on node 3; one from node 1 reaches both of Bob's.
    send(&mut b2, "<presence><show>away</show></presence>").await;
    expect_exact_presence(
        &mut alice,
        "bob@localhost/b2",
        None,
        "<presence from='bob@localhost/b2' to='alice@localhost'><show>away</show></presence>",
    )
    .await;
    expect_exact_presence(
        &mut b3,
        "bob@localhost/b2",
        None,
        "<presence from='bob@localhost/b2' to='bob@localhost/b3'><show>away</show></presence>",
    )
    .await;
    send(&mut alice, "<presence><status>reading</status></presence>").await;
    for bob in [&mut b2, &mut b3] {
        expect_exact_presence(
            bob,
            "alice@localhost/a",
            None,
            "<presence from='alice@localhost/a' to='bob@localhost'>\
             <status>reading</status></presence>",
        )
        .await;
    }

    // 4.6: directed presence to a full JID on node 2 and to a bare JID
    // with resources on nodes 1 and 3; not broadcast to subscribers.
    let mut carol = online(node(&cluster, 2), "carol", PW, "c").await;
    let mut d1 = online(node(&cluster, 1), "dave", PW, "d1").await;
    let mut d3 = online(node(&cluster, 3), "dave", PW, "d3").await;
    for other in [&mut carol, &mut d1, &mut d3] {
        barrier(other, &mut alice).await;
    }
    send(
        &mut alice,
        "<presence to='carol@localhost/c'><status>hi carol</status></presence>\
         <presence to='dave@localhost'/>",
    )
    .await;
    expect_exact_presence(
        &mut carol,
        "alice@localhost/a",
        None,
        "<presence from='alice@localhost/a' to='carol@localhost/c'>\
         <status>hi carol</status></presence>",
    )
    .await;
    for dave in [&mut d1, &mut d3] {
        expect_exact_presence(
            dave,
            "alice@localhost/a",
            None,
            "<presence from='alice@localhost/a' to='dave@localhost'/>",
        )
        .await;
    }
    for bob in [&mut b2, &mut b3] {
        barrier(&mut alice, bob).await;
        assert_none(bob, "directed presence broadcast to a contact", |e| {
            e.name() == "presence" && e.attr("to").is_some_and(|to| to.starts_with("carol"))
        });
    }

    // 4.5.2 and 4.6.3: Alice leaves; her contacts and everyone she sent
    // directed presence to hear it, on their nodes.
    alice.close().await.unwrap();
    for bob in [&mut b2, &mut b3] {
        expect_exact_presence(
            bob,
            "alice@localhost/a",
            Some("unavailable"),
            "<presence from='alice@localhost/a' to='bob@localhost' type='unavailable'/>",
        )
        .await;
    }
    expect_exact_presence(
        &mut carol,
        "alice@localhost/a",
        Some("unavailable"),
        "<presence from='alice@localhost/a' to='carol@localhost/c' type='unavailable'/>",
    )
    .await;
    for dave in [&mut d1, &mut d3] {
        expect_exact_presence(
            dave,
            "alice@localhost/a",
            Some("unavailable"),
            "<presence from='alice@localhost/a' to='dave@localhost' type='unavailable'/>",
        )
        .await;
    }
}

/// u1..u4 are all subscribed to each other. u1 (node 1), u3 (node 3, and a
/// second resource on node 1) are online; u2 logs in on node 2: probes
/// bring it the current presence of every contact resource on the other
/// nodes, its own presence reaches them, and the offline u4 says nothing.
#[tokio::test]
async fn logging_in_on_one_node_probes_contacts_on_the_others() {
    let cluster = cluster(&[]);
    provision(node(&cluster, 1), "u", 4, 3);
    let mut u1 = login(node(&cluster, 1), "u1", "pw1", "r").await;
    roster_get(&mut u1).await;
    available(
        &mut u1,
        "<presence><show>away</show><status>out</status></presence>",
    )
    .await;
    let mut u3 = login(node(&cluster, 3), "u3", "pw3", "r").await;
    roster_get(&mut u3).await;
    available(&mut u3, "<presence><priority>2</priority></presence>").await;
    let mut u3b = online(node(&cluster, 1), "u3", "pw3", "second").await;
    expect_presence(&mut u1, "u3@localhost/r", None).await;
    expect_presence(&mut u1, "u3@localhost/second", None).await;
    expect_presence(&mut u3, "u1@localhost/r", None).await;

    // u2's node learns of them from their markers.
    let mut u2 = login(node(&cluster, 2), "u2", "pw2", "r").await;
    for contact in [&mut u1, &mut u3, &mut u3b] {
        barrier(contact, &mut u2).await;
    }
    assert_eq!(roster_get(&mut u2).await.len(), 3);
    available(&mut u2, "<presence><status>hello</status></presence>").await;

    expect_exact_presence(
        &mut u2,
        "u1@localhost/r",
        None,
        "<presence from='u1@localhost/r' to='u2@localhost/r'>\
         <show>away</show><status>out</status></presence>",
    )
    .await;
    expect_exact_presence(
        &mut u2,
        "u3@localhost/r",
        None,
        "<presence from='u3@localhost/r' to='u2@localhost/r'><priority>2</priority></presence>",
    )
    .await;
    expect_exact_presence(
        &mut u2,
        "u3@localhost/second",
        None,
        "<presence from='u3@localhost/second' to='u2@localhost/r'/>",
    )
    .await;
    for (contact, bare) in [
        (&mut u1, "u1@localhost"),
        (&mut u3, "u3@localhost"),
        (&mut u3b, "u3@localhost"),
    ] {
        expect_exact_presence(
            contact,
            "u2@localhost/r",
            None,
            &format!(
                "<presence from='u2@localhost/r' to='{bare}'><status>hello</status></presence>"
            ),
        )
        .await;
    }

    // Every answer came once, and nothing from the offline contact.
    for contact in [&mut u1, &mut u3, &mut u3b] {
        barrier(contact, &mut u2).await;
    }
    assert_none(&u2, "a second probe answer or offline presence", |e| {
        e.name() == "presence" && e.attr("from").is_some_and(|from| !from.starts_with("u2@"))
    });
    assert_none(&u2, "a probe leaking to the client", |e| {
        e.attr("type") == Some("probe")
    });
}

/// A password change made on node 1 applies to logins on nodes 2 and 3
/// (which had the account cached); removing the account on node 3 closes
/// its sessions on every node, refuses logins everywhere, and a message to
/// it from another node is refused rather than stored.
#[tokio::test]
async fn password_changes_and_account_removal_apply_on_every_node() {
    let cluster = cluster(&["carol", "dave"]);
    let mut c1 = online(node(&cluster, 1), "carol", PW, "c1").await;
    let mut c2 = online(node(&cluster, 2), "carol", PW, "c2").await;
    let mut dave = online(node(&cluster, 2), "dave", PW, "d").await;

    let changed = iq(
        &mut c1,
        "set",
        None,
        "<query xmlns='jabber:iq:register'><username>carol</username>\
         <password>new-pw</password></query>",
    )
    .await;
    assert_result(&changed);
    for n in [2, 3] {
        let at = node(&cluster, n);
        let old = Client::login(at.c2s, &options(at, "carol", PW, "old")).await;
        assert_eq!(
            sasl_condition(old),
            "not-authorized",
            "old password on node {n}"
        );
    }
    let mut c3 = online(node(&cluster, 3), "carol", "new-pw", "c3").await;
    // Sessions opened before the change go on.
    sync(&mut c2).await;

    let removed = iq(
        &mut c3,
        "set",
        None,
        "<query xmlns='jabber:iq:register'><remove/></query>",
    )
    .await;
    assert_result(&removed);
    for client in [&mut c3, &mut c1, &mut c2] {
        client
            .expect_stream_error("not-authorized", WAIT)
            .await
            .unwrap_or_else(|error| panic!("{} was not closed: {error}", jid(client)));
    }
    for n in 1..=NODES {
        let at = node(&cluster, n);
        let gone = Client::login(at.c2s, &options(at, "carol", "new-pw", "x")).await;
        assert_eq!(sasl_condition(gone), "not-authorized", "login on node {n}");
    }
    // Node 2 knew the account existed; now a message to it bounces.
    send(
        &mut dave,
        "<message to='carol@localhost' type='chat' id='m1'><body>still there?</body></message>",
    )
    .await;
    let bounce = expect_reply_message(&mut dave, "m1").await;
    assert_error(&bounce, "cancel", "service-unavailable");
    assert_eq!(bounce.attr("from"), Some("carol@localhost"), "{bounce}");
}

/// Waits for the error reply to the message with `id`.
async fn expect_reply_message(client: &mut Client, id: &str) -> Element {
    client
        .expect(
            |e| {
                e.name() == "message" && e.attr("id") == Some(id) && e.attr("type") == Some("error")
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no error for message {id}: {error}"))
}

/// Alice changes her roster on node 1 again and again while another of
/// her resources keeps reading it on node 2, so that reads on node 2 race
/// the invalidations: a roster get on node 2 right after each change still
/// shows it (a read that raced an invalidation is not kept in the cache).
#[tokio::test]
async fn a_roster_read_racing_a_change_is_not_cached_stale() {
    const CHANGES: usize = 300;
    /// Roster gets the reader keeps in flight.
    const PIPELINE: usize = 8;
    let cluster = cluster(&["alice"]);
    let mut writer = online(node(&cluster, 1), "alice", PW, "writer").await;
    let mut checker = online(node(&cluster, 2), "alice", PW, "checker").await;
    let mut reader = login(node(&cluster, 2), "alice", PW, "reader").await;
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let get = format!("<query xmlns='{ROSTER}'/>");
            while !stop.load(Ordering::Relaxed) {
                let mut ids = Vec::new();
                for _ in 0..PIPELINE {
                    let id = reader.next_id();
                    send(&mut reader, &format!("<iq type='get' id='{id}'>{get}</iq>")).await;
                    ids.push(id);
                }
                for id in ids {
                    assert_result(&expect_reply(&mut reader, &id).await);
                }
            }
        })
    };
    for n in 0..CHANGES {
        let contact = format!("c{n}@localhost");
        roster_set(&mut writer, &format!("<item jid='{contact}'/>")).await;
        let items = roster_get(&mut checker).await;
        assert!(
            items.len() == n + 1 && items.iter().any(|item| item.jid == contact),
            "change {n} not seen on node 2: {} items",
            items.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    reading.await.unwrap();
}

/// Two contacts come online at the same moment on different nodes, again
/// and again: neither node may know of the other's session yet when it
/// broadcasts or probes, yet each always gets the other's presence (the
/// late probe comes once the directory has caught up).
#[tokio::test]
async fn contacts_coming_online_together_on_two_nodes_see_each_other() {
    const ROUNDS: usize = 10;
    let cluster = cluster(&[]);
    provision(node(&cluster, 1), "u", 2, 1);
    for round in 0..ROUNDS {
        let resource = format!("r{round}");
        let (mut u1, mut u2) = tokio::join!(
            online(node(&cluster, 1), "u1", "pw1", &resource),
            online(node(&cluster, 2), "u2", "pw2", &resource),
        );
        expect_presence(&mut u1, &format!("u2@localhost/{resource}"), None).await;
        expect_presence(&mut u2, &format!("u1@localhost/{resource}"), None).await;
        u1.close().await.unwrap();
        expect_presence(
            &mut u2,
            &format!("u1@localhost/{resource}"),
            Some("unavailable"),
        )
        .await;
        u2.close().await.unwrap();
    }
}
