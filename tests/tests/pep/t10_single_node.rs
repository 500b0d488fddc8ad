//! PEP on one node: who is notified, who may read, the newest item at
//! login, publish-options, owner operations, disco, account deletion.

use starling_core::xml::ns;
use starling_tests::{Client, TestNode};

use crate::support::*;

const AVATAR: &str = "<metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' bytes='10' type='image/png'/></metadata>";

fn devices(ids: &[u32]) -> String {
    let list: String = ids
        .iter()
        .map(|id| format!("<device id='{id}'/>"))
        .collect();
    format!("<list xmlns='eu.siacs.conversations.axolotl'>{list}</list>")
}

fn users(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

#[tokio::test]
async fn a_publish_reaches_the_contacts_and_resources_that_want_the_node_only() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "laptop").await;
    let mut bob_quiet = online(&node, "bob", PW, "quiet").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    befriend(&mut alice, &mut bob).await;
    online_wanting(&mut alice, &[AVATAR_METADATA]).await;
    online_wanting(&mut bob, &[AVATAR_METADATA, DEVICE_LIST]).await;
    // bob's other resource wants devices only; carol is no contact.
    online_wanting(&mut bob_quiet, &[DEVICE_LIST]).await;
    online_wanting(&mut carol, &[AVATAR_METADATA]).await;

    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    let event = expect_event(&mut bob, "alice@localhost", AVATAR_METADATA, "abc").await;
    assert_eq!(event.attr("type"), Some("headline"), "{event}");
    assert!(
        event.to_string().contains("image/png"),
        "the payload travels: {event}"
    );
    // The owner's own resource that wants it hears too (XEP-0163 4.3.1).
    expect_event(&mut alice, "alice@localhost", AVATAR_METADATA, "abc").await;

    barrier(&mut alice, &mut bob_quiet).await;
    barrier(&mut alice, &mut carol).await;
    assert_none(&bob_quiet, "an avatar event", |e| {
        is_event_of(e, AVATAR_METADATA)
    });
    assert_none(&carol, "an event for a stranger", |e| {
        is_event_of(e, AVATAR_METADATA)
    });
    assert!(
        node.metric("starling_pep_notifications_withheld_total")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn contacts_read_presence_nodes_strangers_do_not_and_access_models_hold() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    befriend(&mut alice, &mut bob).await;

    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    assert_eq!(
        item_ids(
            &assert_result(&items(&mut bob, "alice@localhost", AVATAR_METADATA).await).clone()
        ),
        ["abc"]
    );
    let refused = items(&mut carol, "alice@localhost", AVATAR_METADATA).await;
    assert_error(&refused, "auth", "not-authorized");
    assert!(
        refused
            .to_string()
            .contains("presence-subscription-required"),
        "{refused}"
    );

    // Open: anyone here reads (OMEMO device lists are published so).
    let open = options(&[("pubsub#access_model", "open")]);
    assert_result(
        &publish_with(&mut alice, DEVICE_LIST, "current", &devices(&[1, 2]), &open).await,
    );
    assert_eq!(
        item_ids(&items(&mut carol, "alice@localhost", DEVICE_LIST).await),
        ["current"]
    );

    // Whitelist (XEP-0223 private PEP): the owner only.
    let private = options(&[
        ("pubsub#access_model", "whitelist"),
        ("pubsub#persist_items", "true"),
    ]);
    assert_result(
        &publish_with(
            &mut alice,
            "urn:xmpp:bookmarks:1",
            "room@conference.localhost",
            "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>",
            &private,
        )
        .await,
    );
    let closed = items(&mut bob, "alice@localhost", "urn:xmpp:bookmarks:1").await;
    assert_error(&closed, "cancel", "not-allowed");
    assert!(closed.to_string().contains("closed-node"), "{closed}");
    let own = items(&mut alice, "alice@localhost", "urn:xmpp:bookmarks:1").await;
    assert_eq!(item_ids(&own), ["room@conference.localhost"]);

    // No such node.
    let missing = items(&mut bob, "alice@localhost", "urn:example:none").await;
    assert_error(&missing, "cancel", "item-not-found");

    // disco#items lists the nodes each may read, the owner's all.
    let mut everything = vec![AVATAR_METADATA, DEVICE_LIST, "urn:xmpp:bookmarks:1"];
    everything.sort_unstable();
    assert_eq!(disco_nodes(&mut alice, "alice@localhost").await, everything);
    let mut contact = vec![AVATAR_METADATA, DEVICE_LIST];
    contact.sort_unstable();
    assert_eq!(disco_nodes(&mut bob, "alice@localhost").await, contact);
    assert_eq!(
        disco_nodes(&mut carol, "alice@localhost").await,
        [DEVICE_LIST]
    );
    assert!(disco_nodes(&mut alice, "carol@localhost").await.is_empty());
}

/// The PEP nodes a disco#items to `owner` lists, in the order given.
async fn disco_nodes(client: &mut Client, owner: &str) -> Vec<String> {
    let reply = iq(
        client,
        "get",
        Some(owner),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert_result(&reply)
        .child("query", ns::DISCO_ITEMS)
        .unwrap_or_else(|| panic!("no query: {reply}"))
        .children()
        .filter(|item| item.attr("jid") == Some(owner))
        .filter_map(|item| item.attr("node").map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_session_that_starts_wanting_a_node_gets_its_newest_item_once_per_node() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    for id in ["old", "new"] {
        assert_result(&publish(&mut alice, AVATAR_METADATA, id, AVATAR).await);
    }
    drop(bob);

    // bob comes back wanting avatars: the newest item (only), with a delay stamp.
    let mut bob = online(&node, "bob", PW, "b2").await;
    let asked = online_wanting(&mut bob, &[AVATAR_METADATA]).await;
    let last = expect_event(&mut bob, "alice@localhost", AVATAR_METADATA, "new").await;
    assert!(last.has_child("delay", ns::DELAY), "{last}");
    assert_none(&bob, "the older item", |e| {
        is_event(e, "alice@localhost", AVATAR_METADATA, "old")
    });

    // A second session with the same capabilities: the hash is known now,
    // so the server does not ask again, and the item still comes.
    let mut again = online(&node, "bob", PW, "b3").await;
    let asked_again = online_wanting(&mut again, &[AVATAR_METADATA]).await;
    assert!(asked, "an unknown hash is asked about");
    assert!(!asked_again, "a known hash is not asked about again");
    expect_event(&mut again, "alice@localhost", AVATAR_METADATA, "new").await;
}

#[tokio::test]
async fn publish_options_are_preconditions_and_max_items_keeps_that_many() {
    let node = users(&["alice"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let keep = options(&[
        ("pubsub#max_items", "max"),
        ("pubsub#access_model", "whitelist"),
    ]);
    for id in ["1", "2", "3"] {
        assert_result(
            &publish_with(
                &mut alice,
                "urn:xmpp:bookmarks:1",
                id,
                "<conference xmlns='urn:xmpp:bookmarks:1'/>",
                &keep,
            )
            .await,
        );
    }
    assert_eq!(
        item_ids(&items(&mut alice, "alice@localhost", "urn:xmpp:bookmarks:1").await),
        ["1", "2", "3"]
    );
    let other = options(&[("pubsub#access_model", "open")]);
    let conflict = publish_with(
        &mut alice,
        "urn:xmpp:bookmarks:1",
        "4",
        "<conference xmlns='urn:xmpp:bookmarks:1'/>",
        &other,
    )
    .await;
    assert_error(&conflict, "cancel", "conflict");
    assert!(
        conflict.to_string().contains("precondition-not-met"),
        "{conflict}"
    );
    // The default node keeps one item.
    for id in ["x", "y"] {
        assert_result(&publish(&mut alice, AVATAR_METADATA, id, AVATAR).await);
    }
    assert_eq!(
        item_ids(&items(&mut alice, "alice@localhost", AVATAR_METADATA).await),
        ["y"]
    );
}

#[tokio::test]
async fn only_the_owner_publishes_and_manages_and_contacts_hear_retracts_and_deletes() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    online_wanting(&mut bob, &[AVATAR_METADATA]).await;
    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    expect_event(&mut bob, "alice@localhost", AVATAR_METADATA, "abc").await;

    let forged = iq(
        &mut bob,
        "set",
        Some("alice@localhost"),
        &format!("<pubsub xmlns='{}'><publish node='{AVATAR_METADATA}'><item id='x'>{AVATAR}</item></publish></pubsub>", ns::PUBSUB),
    )
    .await;
    assert_error(&forged, "auth", "forbidden");
    let delete = format!(
        "<pubsub xmlns='{}'><delete node='{AVATAR_METADATA}'/></pubsub>",
        ns::PUBSUB_OWNER
    );
    assert_error(
        &iq(&mut bob, "set", Some("alice@localhost"), &delete).await,
        "auth",
        "forbidden",
    );

    let retract = format!(
        "<pubsub xmlns='{}'><retract node='{AVATAR_METADATA}' notify='true'><item id='abc'/></retract></pubsub>",
        ns::PUBSUB
    );
    assert_result(&iq(&mut alice, "set", None, &retract).await);
    bob.expect(
        |e| is_event_of(e, AVATAR_METADATA) && e.to_string().contains("retract"),
        WAIT,
    )
    .await
    .unwrap();
    assert_result(&iq(&mut alice, "set", None, &delete).await);
    bob.expect(
        |e| is_event_of(e, AVATAR_METADATA) && e.to_string().contains("delete"),
        WAIT,
    )
    .await
    .unwrap();
    assert_error(
        &items(&mut bob, "alice@localhost", AVATAR_METADATA).await,
        "cancel",
        "item-not-found",
    );

    // The owner reads and changes the configuration.
    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    let configure = format!(
        "<pubsub xmlns='{}'><configure node='{AVATAR_METADATA}'/></pubsub>",
        ns::PUBSUB_OWNER
    );
    let form = iq(&mut alice, "get", None, &configure).await;
    assert!(form.to_string().contains("pubsub#access_model"), "{form}");
    assert_error(
        &iq(&mut bob, "get", Some("alice@localhost"), &configure).await,
        "auth",
        "forbidden",
    );
}

#[tokio::test]
async fn the_account_is_a_pep_service_in_disco() {
    let node = users(&["alice"]);
    let mut alice = login(&node, "alice", PW, "a").await;
    let info = iq(
        &mut alice,
        "get",
        Some("alice@localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let text = assert_result(&info).to_string();
    assert!(
        text.contains("category=\"pubsub\"") || text.contains("category='pubsub'"),
        "{text}"
    );
    for feature in [
        "pubsub#publish-options",
        "pubsub#auto-create",
        "pubsub#access-presence",
    ] {
        assert!(text.contains(feature), "{feature} missing: {text}");
    }
}

#[tokio::test]
async fn deleting_an_account_removes_its_pep_nodes() {
    let node = users(&["alice"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    assert_result(&publish(&mut alice, AVATAR_METADATA, "abc", AVATAR).await);
    drop(alice);
    let deleted = node.cli(&["user", "del", "alice"]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let added = node.cli(&["user", "add", "alice", PW]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut alice = login(&node, "alice", PW, "a").await;
    assert_error(
        &items(&mut alice, "alice@localhost", AVATAR_METADATA).await,
        "cancel",
        "item-not-found",
    );
}

const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";

/// The conferences (jid, autojoin, nick) and URLs of a private-storage
/// bookmarks get, in order.
async fn legacy_bookmarks(client: &mut Client) -> (Vec<(String, String, String)>, Vec<String>) {
    let reply = iq(
        client,
        "get",
        None,
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
    )
    .await;
    let storage = assert_result(&reply)
        .child("query", "jabber:iq:private")
        .and_then(|query| query.child("storage", "storage:bookmarks"))
        .unwrap_or_else(|| panic!("no storage: {reply}"))
        .clone();
    let conferences = storage
        .children()
        .filter(|c| c.name() == "conference")
        .map(|c| {
            let nick = c
                .children()
                .find(|n| n.name() == "nick")
                .map(|n| n.text())
                .unwrap_or_default();
            (
                c.attr("jid").unwrap_or_default().to_owned(),
                c.attr("autojoin").unwrap_or_default().to_owned(),
                nick,
            )
        })
        .collect();
    let urls = storage
        .children()
        .filter(|c| c.name() == "url")
        .filter_map(|c| c.attr("url").map(str::to_owned))
        .collect();
    (conferences, urls)
}

#[tokio::test]
async fn private_storage_bookmarks_and_pep_bookmarks_are_one_list() {
    let node = users(&["alice"]);
    let mut legacy = online(&node, "alice", PW, "legacy").await;
    let mut modern = online(&node, "alice", PW, "modern").await;

    // Stored the XEP-0048 way: read back the XEP-0402 way.
    let set = iq(
        &mut legacy,
        "set",
        None,
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
           <conference jid='a@conference.localhost' autojoin='true' name='A'><nick>al</nick></conference>\
           <conference jid='b@conference.localhost'/>\
           <url name='Site' url='https://example.org/'/>\
         </storage></query>",
    )
    .await;
    assert_result(&set);
    let pep = items(&mut modern, "alice@localhost", BOOKMARKS).await;
    let mut ids = item_ids(&pep);
    ids.sort_unstable();
    assert_eq!(ids, ["a@conference.localhost", "b@conference.localhost"]);
    let text = pep.to_string();
    assert!(text.contains("autojoin") && text.contains(">al<"), "{text}");

    // Published the XEP-0402 way: read back the XEP-0048 way, URLs kept.
    let private = options(&[
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ]);
    let published = publish_with(
        &mut modern,
        BOOKMARKS,
        "c@conference.localhost",
        &format!("<conference xmlns='{BOOKMARKS}' autojoin='true'><nick>c</nick></conference>"),
        &private,
    )
    .await;
    assert_result(&published);
    let retract = iq(
        &mut modern,
        "set",
        None,
        &format!(
            "<pubsub xmlns='{}'><retract node='{BOOKMARKS}'><item id='b@conference.localhost'/></retract></pubsub>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_result(&retract);
    let (conferences, urls) = legacy_bookmarks(&mut legacy).await;
    assert_eq!(
        conferences,
        [
            ("a@conference.localhost".into(), "true".into(), "al".into()),
            ("c@conference.localhost".into(), "true".into(), "c".into()),
        ]
    );
    assert_eq!(urls, ["https://example.org/"]);

    // A legacy set that drops a room retracts it from PEP.
    let set = iq(
        &mut legacy,
        "set",
        None,
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
           <conference jid='c@conference.localhost' autojoin='false'/>\
         </storage></query>",
    )
    .await;
    assert_result(&set);
    let pep = items(&mut modern, "alice@localhost", BOOKMARKS).await;
    assert_eq!(item_ids(&pep), ["c@conference.localhost"]);
    assert!(!pep.to_string().contains("autojoin=\"true\""), "{pep}");
    let (conferences, urls) = legacy_bookmarks(&mut modern).await;
    assert_eq!(
        conferences,
        [(
            "c@conference.localhost".into(),
            "false".into(),
            String::new()
        )]
    );
    assert!(urls.is_empty());

    // A bookmark without a room is refused, and nothing changes.
    let bad = iq(
        &mut legacy,
        "set",
        None,
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
           <conference name='nowhere'/></storage></query>",
    )
    .await;
    assert_error(&bad, "modify", "bad-request");
    assert_eq!(
        item_ids(&items(&mut modern, "alice@localhost", BOOKMARKS).await),
        ["c@conference.localhost"]
    );

    let info = iq(
        &mut modern,
        "get",
        Some("alice@localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert!(
        assert_result(&info)
            .to_string()
            .contains("urn:xmpp:bookmarks:1#compat"),
        "{info}"
    );
}
