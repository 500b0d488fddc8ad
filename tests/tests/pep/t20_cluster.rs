//! PEP across a three-node cluster: the publisher and its contacts on
//! different members. A notification crosses only to members holding a
//! session of a recipient, once per such session.

use crate::support::*;

const AVATAR: &str = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='10' type='image/png'/></metadata>";

#[tokio::test]
async fn contacts_on_other_members_are_notified_read_and_get_the_newest_item() {
    let cluster = cluster(&["alice", "bob", "carol", "dave"]);
    let (n1, n2, n3) = (node(&cluster, 1), node(&cluster, 2), node(&cluster, 3));
    let mut alice = online(n1, "alice", PW, "a").await;
    let mut bob = online(n2, "bob", PW, "b").await;
    let mut carol = online(n3, "carol", PW, "c").await;
    befriend(&mut alice, &mut bob).await;
    online_wanting(&mut bob, &[AVATAR_METADATA]).await;
    online_wanting(&mut carol, &[AVATAR_METADATA]).await;

    let sent_before = n1.metric("starling_pep_notifications_remote_total").await;
    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    expect_event(&mut bob, "alice@localhost", AVATAR_METADATA, "abc").await;
    // carol (node 3) is no contact: nothing crossed to node 3.
    barrier(&mut alice, &mut carol).await;
    assert_none(&carol, "an event for a stranger", |e| {
        is_event_of(e, AVATAR_METADATA)
    });
    let sent = n1.metric("starling_pep_notifications_remote_total").await - sent_before;
    assert_eq!(
        sent, 1.0,
        "one notification crossed: to bob's session on node 2"
    );
    assert_eq!(
        n3.metric("starling_pep_notifications_withheld_total").await,
        0.0
    );

    // bob reads it from node 2; carol may not from node 3.
    assert_eq!(
        item_ids(&items(&mut bob, "alice@localhost", AVATAR_METADATA).await),
        ["abc"]
    );
    let refused = items(&mut carol, "alice@localhost", AVATAR_METADATA).await;
    assert_error(&refused, "auth", "not-authorized");

    // dave, a contact on node 3 who wants no avatars: the notification
    // crosses to node 3 for his session and is withheld there.
    let mut dave = online(n3, "dave", PW, "d").await;
    befriend(&mut alice, &mut dave).await;
    online_wanting(&mut dave, &[DEVICE_LIST]).await;
    assert_result(&publish(&mut alice, AVATAR_METADATA, "def", AVATAR).await);
    expect_event(&mut bob, "alice@localhost", AVATAR_METADATA, "def").await;
    barrier(&mut alice, &mut dave).await;
    assert_none(&dave, "an avatar event", |e| {
        is_event_of(e, AVATAR_METADATA)
    });
    assert_eq!(
        n3.metric("starling_pep_notifications_withheld_total").await,
        1.0
    );

    // bob logs in again on node 3: the newest item comes from the store,
    // and the capabilities hash node 2 verified is not asked about again.
    let mut bob_again = online(n3, "bob", PW, "b2").await;
    let asked = online_wanting(&mut bob_again, &[AVATAR_METADATA]).await;
    assert!(
        !asked,
        "the hash verified on node 2 is shared through the store"
    );
    expect_event(&mut bob_again, "alice@localhost", AVATAR_METADATA, "def").await;
}

#[tokio::test]
async fn pep_items_survive_the_death_of_the_member_they_were_published_on() {
    let mut cluster = cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    drop(alice);
    cluster.kill(0);
    assert_eq!(
        item_ids(&items(&mut bob, "alice@localhost", AVATAR_METADATA).await),
        ["abc"]
    );
}
