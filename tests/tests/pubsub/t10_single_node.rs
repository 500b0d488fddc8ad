//! The core use cases on one node: discover the service, create, publish,
//! subscribe and be notified, retrieve.

use starling_core::xml::{Element, ns};
use starling_tests::TestNode;

use crate::support::*;

#[tokio::test]
async fn publish_reaches_a_subscriber_and_items_are_stored() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    let items = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    let listed = items
        .child("query", ns::DISCO_ITEMS)
        .map(|q| q.children().any(|i| i.attr("jid") == Some(SERVICE)))
        .unwrap_or(false);
    assert!(listed, "service not in the server's items: {items}");

    assert_result(&pubsub(&mut alice, "set", false, "<create node='news'/>").await);
    subscribe(&mut bob, "news").await;
    let id = publish(&mut alice, "news", None, "first").await;
    assert!(!id.is_empty());
    let event = expect_published(&mut bob, "news", "first").await;
    assert_eq!(event.attr("type"), Some("headline"), "{event}");
    publish(&mut alice, "news", Some("second-id"), "second").await;
    expect_published(&mut bob, "news", "second").await;

    let reply = pubsub(&mut bob, "get", false, "<items node='news'/>").await;
    assert_eq!(
        retrieved(&reply),
        [
            (id, "first".to_owned()),
            ("second-id".to_owned(), "second".to_owned())
        ]
    );
}

const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// A submitted node_config form with these fields.
fn config_form(fields: &[(&str, &str)]) -> String {
    let mut form = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>{NODE_CONFIG}</value></field>"
    );
    for (var, value) in fields {
        form.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    form.push_str("</x>");
    form
}

fn assert_pubsub_error(reply: &Element, error_type: &str, condition: &str, pubsub: Option<&str>) {
    assert_error(reply, error_type, condition);
    assert_eq!(pubsub_condition(reply).as_deref(), pubsub, "{reply}");
}

#[tokio::test]
async fn error_cases_carry_the_xep_conditions() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    assert_result(&pubsub(&mut alice, "set", false, "<create node='n'/>").await);

    let reply = pubsub(&mut alice, "set", false, "<create node='n'/>").await;
    assert_pubsub_error(&reply, "cancel", "conflict", None);
    let reply = pubsub(&mut bob, "get", false, "<items node='missing'/>").await;
    assert_pubsub_error(&reply, "cancel", "item-not-found", None);
    let reply = pubsub(&mut bob, "get", false, "<items/>").await;
    assert_pubsub_error(&reply, "modify", "bad-request", Some("nodeid-required"));
    let reply = pubsub(
        &mut bob,
        "set",
        false,
        "<subscribe node='n' jid='alice@localhost'/>",
    )
    .await;
    assert_pubsub_error(&reply, "modify", "bad-request", Some("invalid-jid"));
    let reply = pubsub(
        &mut bob,
        "set",
        false,
        "<unsubscribe node='n' jid='bob@localhost'/>",
    )
    .await;
    assert_pubsub_error(
        &reply,
        "cancel",
        "unexpected-request",
        Some("not-subscribed"),
    );
    // Default publish model: publishers only.
    let reply = pubsub(
        &mut bob,
        "set",
        false,
        "<publish node='n'><item><entry xmlns='urn:test'>x</entry></item></publish>",
    )
    .await;
    assert_pubsub_error(&reply, "auth", "forbidden", None);
    let reply = pubsub(
        &mut alice,
        "set",
        false,
        "<publish node='n'><item/></publish>",
    )
    .await;
    assert_pubsub_error(&reply, "modify", "bad-request", Some("payload-required"));
    let reply = pubsub(&mut alice, "set", false, "<publish node='n'/>").await;
    assert_pubsub_error(&reply, "modify", "bad-request", Some("item-required"));
    let reply = pubsub(
        &mut alice,
        "set",
        false,
        "<retract node='n'><item id='nope'/></retract>",
    )
    .await;
    assert_pubsub_error(&reply, "cancel", "item-not-found", None);
    let reply = pubsub(&mut bob, "get", true, "<configure node='n'/>").await;
    assert_pubsub_error(&reply, "auth", "forbidden", None);
    let reply = pubsub(&mut bob, "set", true, "<delete node='n'/>").await;
    assert_pubsub_error(&reply, "auth", "forbidden", None);
    let options = format!(
        "<publish node='n'><item><entry xmlns='urn:test'>x</entry></item></publish>\
         <publish-options>{}</publish-options>",
        config_form(&[("pubsub#access_model", "whitelist")]).replace(
            NODE_CONFIG,
            "http://jabber.org/protocol/pubsub#publish-options"
        )
    );
    let reply = pubsub(&mut alice, "set", false, &options).await;
    assert_pubsub_error(&reply, "cancel", "conflict", Some("precondition-not-met"));
    let reply = pubsub(
        &mut alice,
        "set",
        true,
        &format!(
            "<configure node='n'>{}</configure>",
            config_form(&[("pubsub#access_model", "authorize")])
        ),
    )
    .await;
    assert_pubsub_error(&reply, "modify", "not-acceptable", None);

    // Access models: whitelist, then presence.
    let whitelist = format!(
        "<configure node='n'>{}</configure>",
        config_form(&[("pubsub#access_model", "whitelist")])
    );
    assert_result(&pubsub(&mut alice, "set", true, &whitelist).await);
    let reply = pubsub(
        &mut bob,
        "set",
        false,
        "<subscribe node='n' jid='bob@localhost'/>",
    )
    .await;
    assert_pubsub_error(&reply, "cancel", "not-allowed", Some("closed-node"));
    let presence = format!(
        "<configure node='n'>{}</configure>",
        config_form(&[("pubsub#access_model", "presence")])
    );
    assert_result(&pubsub(&mut alice, "set", true, &presence).await);
    let reply = pubsub(&mut bob, "get", false, "<items node='n'/>").await;
    assert_pubsub_error(
        &reply,
        "auth",
        "not-authorized",
        Some("presence-subscription-required"),
    );
    // An outcast is forbidden whatever the model.
    let open = format!(
        "<configure node='n'>{}</configure>",
        config_form(&[("pubsub#access_model", "open")])
    );
    assert_result(&pubsub(&mut alice, "set", true, &open).await);
    let ban = "<affiliations node='n'><affiliation jid='bob@localhost' affiliation='outcast'/></affiliations>";
    assert_result(&pubsub(&mut alice, "set", true, ban).await);
    let reply = pubsub(
        &mut bob,
        "set",
        false,
        "<subscribe node='n' jid='bob@localhost'/>",
    )
    .await;
    assert_pubsub_error(&reply, "auth", "forbidden", None);
    // A node must keep an owner.
    let orphan = "<affiliations node='n'><affiliation jid='alice@localhost' affiliation='none'/></affiliations>";
    let reply = pubsub(&mut alice, "set", true, orphan).await;
    assert_pubsub_error(&reply, "modify", "not-acceptable", None);
    // Messages to the service bounce; nothing is silently dropped.
    bob.send("<message to='pubsub.localhost' id='m1'><body>hi</body></message>")
        .await
        .unwrap();
    let bounced = bob
        .expect(
            |e| e.name() == "message" && e.attr("id") == Some("m1"),
            WAIT,
        )
        .await
        .unwrap();
    assert_error(&bounced, "cancel", "service-unavailable");
}

#[tokio::test]
async fn owner_configures_retracts_purges_and_deletes_with_notifications() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    let create = format!(
        "<create node='blog'/><configure>{}</configure>",
        config_form(&[("pubsub#max_items", "2"), ("pubsub#title", "Blog")])
    );
    assert_result(&pubsub(&mut alice, "set", false, &create).await);
    let form = pubsub(&mut alice, "get", true, "<configure node='blog'/>").await;
    let xml = form.to_string();
    assert!(
        xml.contains("pubsub#max_items") && xml.contains("<value>2</value>"),
        "{xml}"
    );
    assert!(xml.contains("<value>Blog</value>"), "{xml}");
    let defaults = pubsub(&mut alice, "get", true, "<default/>").await;
    assert!(
        defaults.to_string().contains("pubsub#access_model"),
        "{defaults}"
    );

    subscribe(&mut bob, "blog").await;
    for (id, text) in [("1", "one"), ("2", "two"), ("3", "three")] {
        publish(&mut alice, "blog", Some(id), text).await;
        expect_published(&mut bob, "blog", text).await;
    }
    // max_items 2: the oldest went.
    let reply = pubsub(&mut bob, "get", false, "<items node='blog'/>").await;
    let ids: Vec<String> = retrieved(&reply).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["2", "3"]);
    let reply = pubsub(&mut bob, "get", false, "<items node='blog' max_items='1'/>").await;
    assert_eq!(retrieved(&reply), [("3".to_owned(), "three".to_owned())]);
    let reply = pubsub(
        &mut bob,
        "get",
        false,
        "<items node='blog'><item id='2'/></items>",
    )
    .await;
    assert_eq!(retrieved(&reply), [("2".to_owned(), "two".to_owned())]);

    let retract = "<retract node='blog' notify='true'><item id='2'/></retract>";
    assert_result(&pubsub(&mut alice, "set", false, retract).await);
    let event = bob
        .expect(
            |e| {
                event_items(e, "blog")
                    .and_then(|items| items.child("retract", ns::PUBSUB_EVENT))
                    .is_some_and(|r| r.attr("id") == Some("2"))
            },
            WAIT,
        )
        .await;
    assert!(event.is_ok(), "no retract notification");

    assert_result(&pubsub(&mut alice, "set", true, "<purge node='blog'/>").await);
    let purge = bob
        .expect(
            |e| {
                e.child("event", ns::PUBSUB_EVENT)
                    .and_then(|ev| ev.child("purge", ns::PUBSUB_EVENT))
                    .is_some_and(|p| p.attr("node") == Some("blog"))
            },
            WAIT,
        )
        .await;
    assert!(purge.is_ok(), "no purge notification");
    let reply = pubsub(&mut bob, "get", false, "<items node='blog'/>").await;
    assert!(retrieved(&reply).is_empty(), "{reply}");

    assert_result(&pubsub(&mut alice, "set", true, "<delete node='blog'/>").await);
    let delete = bob
        .expect(
            |e| {
                e.child("event", ns::PUBSUB_EVENT)
                    .and_then(|ev| ev.child("delete", ns::PUBSUB_EVENT))
                    .is_some_and(|d| d.attr("node") == Some("blog"))
            },
            WAIT,
        )
        .await;
    assert!(delete.is_ok(), "no delete notification");
    let reply = pubsub(&mut bob, "get", false, "<items node='blog'/>").await;
    assert_error(&reply, "cancel", "item-not-found");
}

#[tokio::test]
async fn instant_nodes_auto_create_affiliations_subscriptions_and_options() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    let reply = pubsub(&mut alice, "set", false, "<create/>").await;
    let instant = reply
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("create", ns::PUBSUB))
        .and_then(|c| c.attr("node"))
        .unwrap_or_else(|| panic!("no instant node name: {reply}"))
        .to_owned();
    // Publishing to a missing node creates it, owned by the publisher.
    publish(&mut alice, "auto", Some("x"), "created").await;
    let reply = pubsub(&mut alice, "get", false, "<affiliations/>").await;
    let xml = reply.to_string();
    assert!(
        xml.contains(&format!("node=\"{instant}\"")) && xml.contains("node=\"auto\""),
        "{xml}"
    );
    assert!(xml.contains("affiliation=\"owner\""), "{xml}");

    // Disco on the service and a node.
    let info = iq(
        &mut bob,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let xml = info.to_string();
    assert!(
        xml.contains("category=\"pubsub\"") && xml.contains("type=\"service\""),
        "{xml}"
    );
    assert!(
        xml.contains("http://jabber.org/protocol/pubsub#publish"),
        "{xml}"
    );
    let info = iq(
        &mut bob,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}' node='auto'/>", ns::DISCO_INFO),
    )
    .await;
    assert!(info.to_string().contains("type=\"leaf\""), "{info}");
    let items = iq(
        &mut bob,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(items.to_string().contains("node=\"auto\""), "{items}");
    let items = iq(
        &mut bob,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}' node='auto'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(items.to_string().contains("name=\"x\""), "{items}");

    // The owner makes bob a publisher; bob publishes.
    let set = "<affiliations node='auto'><affiliation jid='bob@localhost' affiliation='publisher'/></affiliations>";
    assert_result(&pubsub(&mut alice, "set", true, set).await);
    let list = pubsub(&mut alice, "get", true, "<affiliations node='auto'/>").await;
    assert!(
        list.to_string().contains("affiliation=\"publisher\""),
        "{list}"
    );
    subscribe(&mut alice, "auto").await;
    publish(&mut bob, "auto", None, "from bob").await;
    let event = expect_published(&mut alice, "auto", "from bob").await;
    assert!(
        event.to_string().contains("publisher=\"bob@localhost\""),
        "{event}"
    );

    // Subscription options: deliver off means no notifications.
    subscribe(&mut bob, "auto").await;
    let options = pubsub(
        &mut bob,
        "get",
        false,
        "<options node='auto' jid='bob@localhost'/>",
    )
    .await;
    assert!(options.to_string().contains("pubsub#deliver"), "{options}");
    let off = "<options node='auto' jid='bob@localhost'><x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#subscribe_options</value></field>\
        <field var='pubsub#deliver'><value>0</value></field></x></options>";
    assert_result(&pubsub(&mut bob, "set", false, off).await);
    publish(&mut alice, "auto", None, "muted").await;
    let on = off.replace("<value>0</value>", "<value>1</value>");
    assert_result(&pubsub(&mut bob, "set", false, &on).await);
    publish(&mut alice, "auto", None, "heard").await;
    let event = expect_published(&mut bob, "auto", "heard").await;
    assert!(event.attr("from") == Some(SERVICE));
    assert_none(&bob, "muted event", |e| {
        published_texts(e, "auto").iter().any(|t| t == "muted")
    });

    // Own subscriptions, then the owner removes bob's.
    let mine = pubsub(&mut bob, "get", false, "<subscriptions/>").await;
    assert!(mine.to_string().contains("node=\"auto\""), "{mine}");
    let all = pubsub(&mut alice, "get", true, "<subscriptions node='auto'/>").await;
    assert!(all.to_string().contains("jid=\"bob@localhost\""), "{all}");
    let remove = "<subscriptions node='auto'><subscription jid='bob@localhost' subscription='none'/></subscriptions>";
    assert_result(&pubsub(&mut alice, "set", true, remove).await);
    let mine = pubsub(&mut bob, "get", false, "<subscriptions node='auto'/>").await;
    assert!(
        !mine.to_string().contains("jid=\"bob@localhost\""),
        "{mine}"
    );
    // Unsubscribe of one's own subscription.
    let unsubscribe = "<unsubscribe node='auto' jid='alice@localhost'/>";
    assert_result(&pubsub(&mut alice, "set", false, unsubscribe).await);
}
