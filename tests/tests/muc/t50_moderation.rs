//! XEP-0425: moderators retract messages from a logged room's archive. The
//! archive keeps a tombstone, the occupants are told, later joiners do not
//! get the message; non-moderators, unknown ids and rooms without an
//! archive get their errors and change nothing.

use starling_core::xml::Element;
use starling_tests::{Client, TestNode};

use crate::support::*;

const MODERATE: &str = "urn:xmpp:message-moderate:1";
const RETRACT: &str = "urn:xmpp:message-retract:1";
const MAM: &str = "urn:xmpp:mam:2";

fn users(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

fn stanza_id(message: &Element) -> String {
    message
        .child("stanza-id", "urn:xmpp:sid:0")
        .and_then(|sid| sid.attr("id"))
        .unwrap_or_else(|| panic!("no stanza id in {message}"))
        .to_owned()
}

async fn moderate(client: &mut Client, name: &str, id: &str, reason: &str) -> Element {
    iq(
        client,
        "set",
        Some(&room(name)),
        &format!(
            "<moderate xmlns='{MODERATE}' id='{id}'><retract xmlns='{RETRACT}'/>\
             <reason>{reason}</reason></moderate>"
        ),
    )
    .await
}

/// Waits for the room's notice that message `id` was retracted.
async fn expect_retraction(client: &mut Client, name: &str, id: &str) -> Element {
    let from = room(name);
    client
        .expect(
            |e| {
                e.name() == "message"
                    && e.attr("from") == Some(from.as_str())
                    && e.child("retract", RETRACT).and_then(|r| r.attr("id")) == Some(id)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("{} heard no retraction of {id}: {error}", jid(client)))
}

/// The archive as `client` reads it: every result's forwarded message.
async fn archive(client: &mut Client, name: &str) -> Vec<Element> {
    let reply = iq(
        client,
        "set",
        Some(&room(name)),
        &format!("<query xmlns='{MAM}' queryid='all'/>"),
    )
    .await;
    assert_result(&reply);
    client
        .pending()
        .filter_map(|e| e.child("result", MAM))
        .filter_map(|r| r.child("forwarded", "urn:xmpp:forward:0"))
        .filter_map(|f| f.children().find(|c| c.name() == "message"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_moderator_retracts_a_message_and_the_archive_keeps_a_tombstone() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "mod", "alice").await;
    assert_result(&configure(&mut alice, "mod", &[("muc#roomconfig_enablelogging", "1")]).await);
    let info = iq(
        &mut bob,
        "get",
        Some(&room("mod")),
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await;
    assert!(
        assert_result(&info).to_string().contains(MODERATE),
        "{info}"
    );
    join(&mut bob, "mod", "bob").await;
    say(&mut bob, "mod", "rude words").await;
    say(&mut bob, "mod", "kind words").await;
    let rude =
        stanza_id(&expect_groupchat(&mut alice, &occupant("mod", "bob"), "rude words").await);
    expect_groupchat(&mut alice, &occupant("mod", "bob"), "kind words").await;

    // A participant may not; an id the archive lacks is not found.
    assert_error(
        &moderate(&mut bob, "mod", &rude, "mine").await,
        "auth",
        "forbidden",
    );
    assert_error(
        &moderate(&mut alice, "mod", "no-such-id", "x").await,
        "cancel",
        "item-not-found",
    );

    assert_result(&moderate(&mut alice, "mod", &rude, "not here").await);
    for client in [&mut alice, &mut bob] {
        let notice = expect_retraction(client, "mod", &rude).await;
        let retract = notice.child("retract", RETRACT).unwrap();
        let moderated = retract
            .child("moderated", MODERATE)
            .unwrap_or_else(|| panic!("no moderated in {notice}"));
        assert_eq!(
            moderated.attr("by"),
            Some(occupant("mod", "alice").as_str())
        );
        assert_eq!(
            retract
                .child("reason", RETRACT)
                .map(Element::text)
                .as_deref(),
            Some("not here")
        );
        // Version 0's form rides along for older clients.
        assert!(
            notice.child("apply-to", "urn:xmpp:fasten:0").is_some(),
            "{notice}"
        );
    }

    // The archive: a tombstone with the sender kept, the content gone.
    let archived = archive(&mut bob, "mod").await;
    assert_eq!(archived.len(), 2, "{archived:?}");
    let tombstone = &archived[0];
    assert_eq!(stanza_id(tombstone), rude);
    assert_eq!(
        tombstone.attr("from"),
        Some(occupant("mod", "bob").as_str())
    );
    assert_eq!(body(tombstone), "", "{tombstone}");
    assert!(
        tombstone.child("retracted", RETRACT).is_some(),
        "{tombstone}"
    );
    assert_eq!(body(&archived[1]), "kind words");

    // A newcomer's history has the tombstone, not the words.
    let mut carol = online(&node, "carol", PW, "c").await;
    join(&mut carol, "mod", "carol").await;
    sync(&mut carol).await;
    assert_none(&carol, "the retracted words", |e| body(e) == "rude words");
    assert!(
        carol
            .pending()
            .any(|e| e.child("retracted", RETRACT).is_some()),
        "no tombstone in carol's history"
    );
    assert!(carol.pending().any(|e| body(e) == "kind words"));
}

#[tokio::test]
async fn version_0_requests_are_served_and_rooms_without_archive_refuse() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "old", "alice").await;
    assert_result(&configure(&mut alice, "old", &[("muc#roomconfig_enablelogging", "1")]).await);
    join(&mut bob, "old", "bob").await;
    say(&mut bob, "old", "spam").await;
    let id = stanza_id(&expect_groupchat(&mut alice, &occupant("old", "bob"), "spam").await);
    let reply = iq(
        &mut alice,
        "set",
        Some(&room("old")),
        &format!(
            "<apply-to xmlns='urn:xmpp:fasten:0' id='{id}'>\
             <moderate xmlns='urn:xmpp:message-moderate:0'>\
             <retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to>"
        ),
    )
    .await;
    assert_result(&reply);
    let notice = expect_retraction(&mut bob, "old", &id).await;
    let legacy = notice.child("apply-to", "urn:xmpp:fasten:0").unwrap();
    assert_eq!(legacy.attr("id"), Some(id.as_str()));
    assert!(
        legacy
            .child("moderated", "urn:xmpp:message-moderate:0")
            .is_some()
    );

    // A request without a retraction is not one this room carries out.
    let reply = iq(
        &mut alice,
        "set",
        Some(&room("old")),
        &format!("<moderate xmlns='{MODERATE}' id='{id}'/>"),
    )
    .await;
    assert_error(&reply, "cancel", "feature-not-implemented");

    // A room without an archive has nothing to retract.
    create(&mut alice, "plain", "alice").await;
    join(&mut bob, "plain", "bob").await;
    say(&mut bob, "plain", "hello").await;
    expect_groupchat(&mut alice, &occupant("plain", "bob"), "hello").await;
    assert_error(
        &moderate(&mut alice, "plain", "anything", "x").await,
        "cancel",
        "item-not-found",
    );
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "a retraction", |e| {
        e.child("retract", RETRACT).is_some()
    });
}
