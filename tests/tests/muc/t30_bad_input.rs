//! Bad input to rooms: each gets its error, and nothing else changes.

use starling_core::xml::ns;
use starling_tests::TestNode;

use crate::support::*;

/// One node whose occupants may send three messages and then nearly none.
fn node(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder()
        .set("modules.muc", "messages_per_second = 0.001")
        .set("modules.muc", "message_burst = 3")
        .set("modules.muc", "max_subject_chars = 100");
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

#[tokio::test]
async fn nicks_with_forbidden_characters_are_refused() {
    let node = node(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;

    // Bidirectional overrides and marks: refused at the JID or at the room.
    for nick in ["bob\u{202E}", "\u{200F}bob"] {
        send_join(&mut bob, "tea", nick, "").await;
        let refused = bob
            .expect(
                |e| e.name() == "presence" && e.attr("type") == Some("error"),
                WAIT,
            )
            .await
            .unwrap();
        assert_error(&refused, "modify", "jid-malformed");
    }
    let long = "b".repeat(65);
    send_join(&mut bob, "tea", &long, "").await;
    let refused = expect_error_from(&mut bob, "presence", &occupant("tea", &long)).await;
    assert_error(&refused, "modify", "jid-malformed");
    // Alice saw nobody join.
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a join", |e| {
        e.name() == "presence"
            && e.attr("from") != Some(&occupant("tea", "alice"))
            && e.attr("from").is_some_and(|f| f.starts_with(&room("tea")))
    });
}

#[tokio::test]
async fn an_oversize_subject_is_refused_and_the_old_one_stays() {
    let node = node(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    create(&mut alice, "tea", "alice").await;
    send(
        &mut alice,
        &format!(
            "<message to='{}' type='groupchat'><subject>short</subject></message>",
            room("tea")
        ),
    )
    .await;
    expect_subject(&mut alice, "tea").await;
    let long = "x".repeat(101);
    send(
        &mut alice,
        &format!(
            "<message to='{}' type='groupchat'><subject>{long}</subject></message>",
            room("tea")
        ),
    )
    .await;
    let refused = expect_error_from(&mut alice, "message", &room("tea")).await;
    assert_error(&refused, "modify", "not-acceptable");
    let mut bob = online(&node, "bob", PW, "b").await;
    send_join(&mut bob, "tea", "bob", "").await;
    let subject = expect_subject(&mut bob, "tea").await;
    assert_eq!(
        subject.child("subject", ns::CLIENT).unwrap().text(),
        "short"
    );
}

#[tokio::test]
async fn a_flooding_occupant_gets_policy_violation_and_the_room_hears_only_its_burst() {
    let node = node(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;

    for i in 0..8 {
        say(&mut bob, "tea", &format!("flood{i}")).await;
    }
    for _ in 0..5 {
        let refused = expect_error_from(&mut bob, "message", &room("tea")).await;
        assert_error(&refused, "wait", "policy-violation");
    }
    // The burst of three went through, in order; nothing after it.
    for i in 0..3 {
        expect_groupchat(&mut alice, &occupant("tea", "bob"), &format!("flood{i}")).await;
    }
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a refused message", |e| {
        body(e).starts_with("flood")
    });
}

#[tokio::test]
async fn a_banned_user_is_refused_and_a_forged_sender_is_ignored() {
    let node = node(&["alice", "bob", "carol", "mallory"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut mallory = online(&node, "mallory", PW, "m").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;
    join(&mut mallory, "tea", "mallory").await;
    assert_result(
        &admin(
            &mut alice,
            "tea",
            "<item affiliation='outcast' jid='mallory@localhost'/>",
        )
        .await,
    );
    expect_codes(&mut mallory, &occupant("tea", "mallory"), &[110, 301]).await;

    // The banned user's message and join are refused.
    say(&mut mallory, "tea", "let me in").await;
    let refused = expect_error_from(&mut mallory, "message", &room("tea")).await;
    assert_error(&refused, "modify", "not-acceptable");
    send_join(&mut mallory, "tea", "mallory", "").await;
    let refused = expect_error_from(&mut mallory, "presence", &occupant("tea", "mallory")).await;
    assert_error(&refused, "auth", "forbidden");

    // A `from` naming another occupant is spoofing (RFC 6120 8.1.2.1): the
    // stream ends with invalid-from, Bob leaves the room as any closed
    // session does, and nobody hears the forged message.
    send(
        &mut bob,
        &format!(
            "<message from='{}' to='{}' type='groupchat'><body>I am alice</body></message>",
            jid(&alice),
            room("tea")
        ),
    )
    .await;
    bob.expect_stream_error("invalid-from", WAIT).await.unwrap();
    let left = expect_presence(&mut alice, &occupant("tea", "bob"), Some("unavailable")).await;
    assert!(codes(&left).is_empty(), "an ordinary leave: {left}");
    let mut carol = online(&node, "carol", PW, "c").await;
    join(&mut carol, "tea", "carol").await;
    say(&mut carol, "tea", "still here").await;
    expect_groupchat(&mut alice, &occupant("tea", "carol"), "still here").await;
    assert_none(&alice, "the forged message", |e| body(e) == "I am alice");
    assert_none(&alice, "the banned user's message", |e| {
        body(e) == "let me in"
    });
}

#[tokio::test]
async fn a_client_posing_as_a_cluster_member_or_another_occupant_changes_nothing() {
    let node = node(&["alice", "bob", "mallory"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut mallory = online(&node, "mallory", PW, "m").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;
    let alice_id = expect_groupchat_id(&mut alice, &mut bob).await;

    // The members' own traffic from a client: a rejoin would seat Mallory
    // as owner under Alice's nick, a relay would speak for the room.
    for forged in [
        format!(
            "<message to='{SERVICE}'><rejoin xmlns='urn:xmpp:starling:muc:relay' room='{}' node='1'>\
             <occupant jid='{}' nick='boss' role='moderator' affiliation='owner'/></rejoin></message>",
            room("tea"),
            jid(&mallory)
        ),
        format!(
            "<message to='{SERVICE}'><relay xmlns='urn:xmpp:starling:muc:relay' room='{}'>\
             <message xmlns='jabber:client' from='{}' type='groupchat'><body>relayed lie</body></message>\
             </relay></message>",
            room("tea"),
            occupant("tea", "alice")
        ),
    ] {
        send(&mut mallory, &forged).await;
        let refused = expect_error_from(&mut mallory, "message", SERVICE).await;
        assert_error(&refused, "auth", "forbidden");
    }
    // Mallory is not seated: the room refuses her message.
    say(&mut mallory, "tea", "as boss").await;
    let refused = expect_error_from(&mut mallory, "message", &room("tea")).await;
    assert_error(&refused, "modify", "not-acceptable");

    // An occupant id is the room's to set (XEP-0421 3): Bob's claim of
    // Alice's id is replaced by his own.
    send(
        &mut bob,
        &format!(
            "<message to='{}' type='groupchat'><body>from alice?</body>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='{alice_id}'/></message>",
            room("tea")
        ),
    )
    .await;
    let heard = expect_groupchat(&mut alice, &occupant("tea", "bob"), "from alice?").await;
    let ids: Vec<&str> = heard
        .children()
        .filter(|c| c.is("occupant-id", "urn:xmpp:occupant-id:0"))
        .filter_map(|c| c.attr("id"))
        .collect();
    assert_eq!(ids.len(), 1, "{heard}");
    assert_ne!(ids[0], alice_id, "{heard}");

    barrier(&mut mallory, &mut alice).await;
    barrier(&mut mallory, &mut bob).await;
    for client in [&alice, &bob] {
        assert_none(client, "a forged stanza", |e| {
            body(e) == "relayed lie"
                || body(e) == "as boss"
                || e.attr("from") == Some(&occupant("tea", "boss"))
        });
    }
}

/// Alice speaks once; her occupant id as Bob saw it.
async fn expect_groupchat_id(
    alice: &mut starling_tests::Client,
    bob: &mut starling_tests::Client,
) -> String {
    say(alice, "tea", "my id").await;
    let heard = expect_groupchat(bob, &occupant("tea", "alice"), "my id").await;
    heard
        .child("occupant-id", "urn:xmpp:occupant-id:0")
        .and_then(|o| o.attr("id"))
        .unwrap_or_else(|| panic!("no occupant id in {heard}"))
        .to_owned()
}
