//! Iqs between occupants through the room: the request reaches the target
//! from the asker's room JID, the answer comes back from the target's,
//! and neither sees the other's JID. vCard requests go to the account and
//! are answered by its server. Strangers, unknown nicks, unsolicited
//! answers and rooms that forbid queries get their errors or nothing.

use starling_core::xml::Element;
use starling_tests::{Client, TestNode};

use crate::support::*;

fn users(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

/// Waits for an iq get `client` is asked, from `from`.
async fn expect_request(client: &mut Client, from: &str) -> Element {
    client
        .expect(
            |e| e.name() == "iq" && e.attr("type") == Some("get") && e.attr("from") == Some(from),
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("{} was asked nothing by {from}: {error}", jid(client)))
}

#[tokio::test]
async fn an_iq_to_an_occupant_goes_through_the_room_and_back() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;

    // Bob asks Alice's client its version; Alice answers the room JID.
    send(
        &mut bob,
        &format!(
            "<iq type='get' id='v1' to='{}'><query xmlns='jabber:iq:version'/></iq>",
            occupant("tea", "alice")
        ),
    )
    .await;
    let request = expect_request(&mut alice, &occupant("tea", "bob")).await;
    assert_eq!(request.attr("id"), Some("v1"));
    assert!(!request.to_string().contains("bob@localhost"), "{request}");
    send(
        &mut alice,
        &format!(
            "<iq type='result' id='v1' to='{}'><query xmlns='jabber:iq:version'>\
             <name>tea-client</name><version>1</version></query></iq>",
            occupant("tea", "bob")
        ),
    )
    .await;
    let answer = expect_reply(&mut bob, "v1").await;
    assert_result(&answer);
    assert_eq!(answer.attr("from"), Some(occupant("tea", "alice").as_str()));
    assert!(answer.to_string().contains("tea-client"), "{answer}");
    assert!(!answer.to_string().contains("alice@localhost"), "{answer}");

    // A vCard request is the account's: its server answers.
    assert_result(
        &iq(
            &mut alice,
            "set",
            None,
            "<vCard xmlns='vcard-temp'><FN>Alice Tea</FN></vCard>",
        )
        .await,
    );
    let vcard = iq(
        &mut bob,
        "get",
        Some(&occupant("tea", "alice")),
        "<vCard xmlns='vcard-temp'/>",
    )
    .await;
    assert_result(&vcard);
    assert_eq!(vcard.attr("from"), Some(occupant("tea", "alice").as_str()));
    assert!(vcard.to_string().contains("Alice Tea"), "{vcard}");

    // An answer nobody asked for goes nowhere.
    send(
        &mut alice,
        &format!(
            "<iq type='result' id='unasked' to='{}'/>",
            occupant("tea", "bob")
        ),
    )
    .await;
    // Errors: nobody by that nick; a stranger to the room.
    let missing = iq(
        &mut bob,
        "get",
        Some(&occupant("tea", "nobody")),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_error(&missing, "cancel", "item-not-found");
    let mut carol = online(&node, "carol", PW, "c").await;
    let stranger = iq(
        &mut carol,
        "get",
        Some(&occupant("tea", "alice")),
        "<query xmlns='jabber:iq:version'/>",
    )
    .await;
    assert_error(&stranger, "modify", "not-acceptable");
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "an unasked answer", |e| {
        e.attr("id") == Some("unasked")
    });
    assert_none(&alice, "a stranger's request", |e| {
        e.name() == "iq" && e.attr("type") == Some("get")
    });
}

#[tokio::test]
async fn a_room_can_forbid_queries_between_occupants() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "quiet", "alice").await;
    assert_result(&configure(&mut alice, "quiet", &[("allow_query_users", "0")]).await);
    join(&mut bob, "quiet", "bob").await;
    for payload in [
        "<query xmlns='jabber:iq:version'/>",
        "<vCard xmlns='vcard-temp'/>",
    ] {
        let refused = iq(&mut bob, "get", Some(&occupant("quiet", "alice")), payload).await;
        assert_error(&refused, "cancel", "not-allowed");
    }
    // Self-ping (XEP-0410) is the room's own answer, still allowed.
    assert_result(
        &iq(
            &mut bob,
            "get",
            Some(&occupant("quiet", "bob")),
            "<ping xmlns='urn:xmpp:ping'/>",
        )
        .await,
    );
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a request", |e| {
        e.name() == "iq" && e.attr("type") == Some("get")
    });
}
