//! XEP-0045 7.12: registering with a room reserves a nick. Others cannot
//! take it (join, nick change, registration), its holder finds it through
//! disco, becomes a member, and keeps it across a restart of a persistent
//! room; banned users and non-members of members-only rooms are refused.

use starling_core::xml::Element;
use starling_tests::{Client, TestNode};

use crate::support::*;

const REGISTER: &str = "jabber:iq:register";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

fn users(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

async fn register(client: &mut Client, name: &str, nick: &str) -> Element {
    iq(
        client,
        "set",
        Some(&room(name)),
        &format!(
            "<query xmlns='{REGISTER}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
        ),
    )
    .await
}

/// The nick disco#info on `x-roomuser-item` names, if any.
async fn reserved_nick(client: &mut Client, name: &str) -> Option<String> {
    let reply = iq(
        client,
        "get",
        Some(&room(name)),
        &format!("<query xmlns='{DISCO_INFO}' node='x-roomuser-item'/>"),
    )
    .await;
    let query = assert_result(&reply)
        .child("query", DISCO_INFO)
        .unwrap_or_else(|| panic!("no query in {reply}"));
    query
        .child("identity", DISCO_INFO)
        .and_then(|identity| identity.attr("name"))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_reserved_nick_is_held_for_its_owner() {
    let mut node = users(&["alice", "bob", "carol", "mallory"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    create(&mut alice, "club", "alice").await;
    assert_result(
        &configure(
            &mut alice,
            "club",
            &[("muc#roomconfig_persistentroom", "1")],
        )
        .await,
    );

    // The form, then the reservation; asking again shows it.
    let form = iq(
        &mut bob,
        "get",
        Some(&room("club")),
        &format!("<query xmlns='{REGISTER}'/>"),
    )
    .await;
    assert!(
        assert_result(&form)
            .to_string()
            .contains("muc#register_roomnick"),
        "{form}"
    );
    assert_eq!(reserved_nick(&mut bob, "club").await, None);
    assert_result(&register(&mut bob, "club", "bobby").await);
    let held = iq(
        &mut bob,
        "get",
        Some(&room("club")),
        &format!("<query xmlns='{REGISTER}'/>"),
    )
    .await;
    let held = assert_result(&held)
        .child("query", REGISTER)
        .unwrap()
        .clone();
    assert!(held.child("registered", REGISTER).is_some(), "{held}");
    assert_eq!(
        held.child("username", REGISTER)
            .map(Element::text)
            .as_deref(),
        Some("bobby")
    );
    assert_eq!(
        reserved_nick(&mut bob, "club").await.as_deref(),
        Some("bobby")
    );
    assert_eq!(reserved_nick(&mut carol, "club").await, None);

    // Nobody else takes it: not by joining, changing nick or registering;
    // nor a nick an occupant is using.
    send_join(&mut carol, "club", "bobby", "").await;
    let refused = expect_error_from(&mut carol, "presence", &occupant("club", "bobby")).await;
    assert_error(&refused, "cancel", "conflict");
    join(&mut carol, "club", "carol").await;
    send(
        &mut carol,
        &format!("<presence to='{}'/>", occupant("club", "bobby")),
    )
    .await;
    let refused = expect_error_from(&mut carol, "presence", &occupant("club", "bobby")).await;
    assert_error(&refused, "cancel", "conflict");
    assert_error(
        &register(&mut carol, "club", "bobby").await,
        "cancel",
        "conflict",
    );
    assert_error(
        &register(&mut carol, "club", "alice").await,
        "cancel",
        "conflict",
    );
    // A nick that breaks the rules is no registration either.
    assert_error(
        &register(&mut carol, "club", " spaced").await,
        "modify",
        "jid-malformed",
    );

    // Its holder enters with it, as a member.
    let own = join(&mut bob, "club", "bobby").await;
    assert_eq!(item(&own).attr("affiliation"), Some("member"), "{own}");

    // A banned user registers nothing.
    assert_result(
        &admin(
            &mut alice,
            "club",
            "<item affiliation='outcast' jid='mallory@localhost'/>",
        )
        .await,
    );
    let mut mallory = online(&node, "mallory", PW, "m").await;
    assert_error(
        &register(&mut mallory, "club", "mal").await,
        "auth",
        "forbidden",
    );

    // The reservation is stored with the persistent room.
    drop((alice, bob, carol, mallory));
    assert!(node.stop(), "clean stop");
    node.spawn();
    let mut carol = online(&node, "carol", PW, "c").await;
    send_join(&mut carol, "club", "bobby", "").await;
    let refused = expect_error_from(&mut carol, "presence", &occupant("club", "bobby")).await;
    assert_error(&refused, "cancel", "conflict");
    let mut bob = online(&node, "bob", PW, "b").await;
    assert_eq!(
        reserved_nick(&mut bob, "club").await.as_deref(),
        Some("bobby")
    );

    // Given up, the nick is free again.
    let removed = iq(
        &mut bob,
        "set",
        Some(&room("club")),
        &format!("<query xmlns='{REGISTER}'><remove/></query>"),
    )
    .await;
    assert_result(&removed);
    join(&mut carol, "club", "bobby").await;
}

#[tokio::test]
async fn a_members_only_room_keeps_registration_for_its_members() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "inner", "alice").await;
    assert_result(&configure(&mut alice, "inner", &[("muc#roomconfig_membersonly", "1")]).await);
    assert_error(
        &register(&mut bob, "inner", "bob").await,
        "auth",
        "registration-required",
    );
    assert_result(
        &admin(
            &mut alice,
            "inner",
            "<item affiliation='member' jid='bob@localhost'/>",
        )
        .await,
    );
    assert_result(&register(&mut bob, "inner", "bob").await);
    assert_eq!(
        reserved_nick(&mut bob, "inner").await.as_deref(),
        Some("bob")
    );
    // Losing membership loses the nick.
    assert_result(
        &admin(
            &mut alice,
            "inner",
            "<item affiliation='none' jid='bob@localhost'/>",
        )
        .await,
    );
    assert_eq!(reserved_nick(&mut bob, "inner").await, None);
}
