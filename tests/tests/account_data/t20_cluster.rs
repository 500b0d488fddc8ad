//! The three features across a three-node cluster: what is stored through
//! one node is answered by every other, and a logout on one node is known
//! on the others.

use crate::support::*;

/// Alice sets her vCard through node 1; bob, on node 3, reads it, and her
/// presence reaches him with the photo's hash.
#[tokio::test]
async fn a_vcard_set_on_node_1_is_read_on_node_3() {
    let cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob = online(node(&cluster, 3), "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;

    assert_result(&vcard_set(&mut alice, None, &vcard("Alice on one", true)).await);
    let read = vcard_get(&mut bob, Some("alice@localhost")).await;
    assert_eq!(full_name(&read).as_deref(), Some("Alice on one"));

    let alice_jid = jid(&alice);
    alice
        .send("<presence><status>with photo</status></presence>")
        .await
        .unwrap();
    let seen = bob
        .expect(
            |e| {
                is_presence(e, &alice_jid, None)
                    && e.children()
                        .any(|c| c.name() == "status" && c.text() == "with photo")
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(photo_in(&seen), Some(photo_sha1()), "{seen}");

    // Refused on node 3 as on one node, and nothing changed.
    let refused = vcard_set(
        &mut bob,
        Some("alice@localhost"),
        &vcard("Bob was here", false),
    )
    .await;
    assert_error(&refused, "auth", "forbidden");
    let read = vcard_get(&mut alice, None).await;
    assert_eq!(full_name(&read).as_deref(), Some("Alice on one"));
}

/// Private XML stored by alice through node 1 is read by alice logged in
/// on node 2.
#[tokio::test]
async fn private_xml_set_on_node_1_is_read_by_the_same_user_on_node_2() {
    let cluster = cluster(&["alice"]);
    let mut on_one = login(node(&cluster, 1), "alice", PW, "one").await;
    let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='room@muc.localhost' name='Room'/></storage>";
    assert_result(&private_set(&mut on_one, None, bookmarks).await);

    let mut on_two = login(node(&cluster, 2), "alice", PW, "two").await;
    let got =
        private_element(&private_get(&mut on_two, None, "storage", "storage:bookmarks").await);
    let room = got
        .child("conference", "storage:bookmarks")
        .map(|c| c.attr("name"));
    assert_eq!(room, Some(Some("Room")), "{got}");

    // Replaced through node 2, read on node 1.
    let newer = "<storage xmlns='storage:bookmarks'/>";
    assert_result(&private_set(&mut on_two, None, newer).await);
    let got =
        private_element(&private_get(&mut on_one, None, "storage", "storage:bookmarks").await);
    assert!(got.nodes().is_empty(), "{got}");
}

/// Bob logs out on node 2 with a status; alice, on node 1, gets 0 while he
/// is online and then the time since his logout with that status.
#[tokio::test]
async fn last_activity_of_a_contact_who_logged_out_on_node_2_asked_from_node_1() {
    let cluster = cluster(&["alice", "bob", "carol"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;

    let online_now = last_get(&mut alice, Some("bob@localhost")).await;
    assert_eq!(last_of(&online_now), (0, String::new()));

    bob.send("<presence type='unavailable'><status>Off to node 3</status></presence>")
        .await
        .unwrap();
    expect_presence(&mut alice, &jid(&bob), Some("unavailable")).await;
    bob.close().await.unwrap();
    let reply = last_until(&mut alice, "bob@localhost", |r| {
        is_logout_with(r, "Off to node 3")
    })
    .await;
    assert!(last_of(&reply).0 < 60, "{reply}");

    // Asked from node 3 by a non-contact: forbidden there too.
    let mut carol = login(node(&cluster, 3), "carol", PW, "c").await;
    assert_error(
        &last_get(&mut carol, Some("bob@localhost")).await,
        "auth",
        "forbidden",
    );
    // And the server's uptime from any node.
    assert_result(&last_get(&mut carol, Some("localhost")).await);
}

/// A user with sessions on two nodes is online until the last one ends:
/// closing one leaves 0, closing the other records the logout.
#[tokio::test]
async fn the_logout_is_recorded_when_the_last_session_in_the_cluster_ends() {
    let cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob_two = online(node(&cluster, 2), "bob", PW, "two").await;
    let mut bob_three = online(node(&cluster, 3), "bob", PW, "three").await;
    befriend(&mut alice, &mut bob_two).await;
    introduce_all(&mut alice, &mut bob_three).await;

    bob_two.close().await.unwrap();
    expect_presence(&mut alice, "bob@localhost/two", Some("unavailable")).await;
    assert_eq!(
        last_of(&last_get(&mut alice, Some("bob@localhost")).await),
        (0, String::new())
    );
    // His session on node 3 is the one that records the logout.
    bob_three
        .send("<presence type='unavailable'><status>last one out</status></presence>")
        .await
        .unwrap();
    expect_presence(&mut alice, "bob@localhost/three", Some("unavailable")).await;
    bob_three.close().await.unwrap();
    last_until(&mut alice, "bob@localhost", |r| {
        is_logout_with(r, "last one out")
    })
    .await;
}

/// A message each way, so both nodes know both sessions as they are now.
async fn introduce_all(a: &mut starling_tests::Client, b: &mut starling_tests::Client) {
    barrier(a, b).await;
    barrier(b, a).await;
}

/// Bob's member dies with his session: the surviving members record his
/// logout (without a status), and alice on node 1 gets it.
#[tokio::test]
async fn the_logout_of_a_user_lost_with_a_member_is_recorded() {
    let mut cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    let bob_jid = jid(&bob);

    cluster.kill(1);
    alice
        .expect(|e| is_presence(e, &bob_jid, Some("unavailable")), 3 * WAIT)
        .await
        .unwrap_or_else(|error| panic!("alice never heard bob's member die: {error}"));
    let reply = last_until(&mut alice, "bob@localhost", |r| is_logout_with(r, "")).await;
    assert!(last_of(&reply).0 < 60, "{reply}");
    drop(bob);
}
