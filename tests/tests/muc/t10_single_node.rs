//! Group chat on one node: creating and joining with the status codes,
//! groupchat, private messages, subject, history limits, the
//! configuration form, password and members-only rooms, kick, ban,
//! destroy, invitations, disco, self-ping and occupant ids, persistent
//! rooms across a restart.

use starling_core::xml::{Element, ns};
use starling_tests::TestNode;

use crate::support::*;

fn users(names: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for name in names {
        builder = builder.user(name, PW);
    }
    builder.start()
}

fn occupant_id(stanza: &Element) -> String {
    stanza
        .child("occupant-id", "urn:xmpp:occupant-id:0")
        .and_then(|o| o.attr("id"))
        .unwrap_or_else(|| panic!("no occupant id in {stanza}"))
        .to_owned()
}

#[tokio::test]
async fn a_creator_gets_201_and_110_others_join_and_everyone_hears_the_room() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;

    let created = create(&mut alice, "tea", "alice").await;
    assert_eq!(item(&created).attr("affiliation"), Some("owner"));
    assert_eq!(item(&created).attr("role"), Some("moderator"));

    send_join(&mut bob, "tea", "bob", "").await;
    // Bob hears who is there first, then himself (110, no 201).
    let alice_seen = expect_presence(&mut bob, &occupant("tea", "alice"), None).await;
    assert_eq!(item(&alice_seen).attr("affiliation"), Some("owner"));
    assert_eq!(
        item(&alice_seen).attr("jid"),
        None,
        "a semi-anonymous room hides JIDs from participants: {alice_seen}"
    );
    let own = expect_codes(&mut bob, &occupant("tea", "bob"), &[110]).await;
    assert_eq!(codes(&own), [110]);
    assert_eq!(item(&own).attr("role"), Some("participant"));
    expect_subject(&mut bob, "tea").await;
    // The moderator sees Bob's real JID.
    let bob_seen = expect_presence(&mut alice, &occupant("tea", "bob"), None).await;
    assert_eq!(item(&bob_seen).attr("jid"), Some(jid(&bob).as_str()));
    assert!(codes(&bob_seen).is_empty(), "{bob_seen}");

    say(&mut alice, "tea", "hello room").await;
    let to_bob = expect_groupchat(&mut bob, &occupant("tea", "alice"), "hello room").await;
    let to_alice = expect_groupchat(&mut alice, &occupant("tea", "alice"), "hello room").await;
    assert_eq!(occupant_id(&to_bob), occupant_id(&to_alice));
    assert_ne!(occupant_id(&to_bob), occupant_id(&bob_seen));
    assert!(node.metric("starling_muc_messages_total").await >= 1.0);

    // Leaving: unavailable to everyone, 110 for the leaver.
    send(
        &mut bob,
        &format!(
            "<presence type='unavailable' to='{}'/>",
            occupant("tea", "bob")
        ),
    )
    .await;
    let gone = expect_presence(&mut bob, &occupant("tea", "bob"), Some("unavailable")).await;
    assert_eq!(codes(&gone), [110]);
    expect_presence(&mut alice, &occupant("tea", "bob"), Some("unavailable")).await;
}

#[tokio::test]
async fn nick_conflicts_private_messages_and_the_subject() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;

    send_join(&mut carol, "tea", "alice", "").await;
    let refused = expect_error_from(&mut carol, "presence", &occupant("tea", "alice")).await;
    assert_error(&refused, "cancel", "conflict");

    send(
        &mut bob,
        &format!(
            "<message to='{}' type='chat'><body>psst</body></message>",
            occupant("tea", "alice")
        ),
    )
    .await;
    let private = expect_body(&mut alice, "psst").await;
    assert_eq!(private.attr("from"), Some(occupant("tea", "bob").as_str()));
    assert!(private.child("x", MUC_USER).is_some(), "{private}");

    // A participant may not change the subject by default; a moderator may.
    send(
        &mut bob,
        &format!(
            "<message to='{}' type='groupchat'><subject>mine</subject></message>",
            room("tea")
        ),
    )
    .await;
    let refused = expect_error_from(&mut bob, "message", &room("tea")).await;
    assert_error(&refused, "auth", "forbidden");
    send(
        &mut alice,
        &format!(
            "<message to='{}' type='groupchat'><subject>Tea time</subject></message>",
            room("tea")
        ),
    )
    .await;
    let subject = expect_subject(&mut bob, "tea").await;
    assert_eq!(
        subject.attr("from"),
        Some(occupant("tea", "alice").as_str())
    );
    assert_eq!(
        subject.child("subject", ns::CLIENT).unwrap().text(),
        "Tea time"
    );
    join(&mut carol, "tea", "carol").await;
    // join() waited for the subject; it is the one set above.
    let pending: Vec<&Element> = carol.pending().collect();
    assert!(pending.is_empty() || pending.iter().all(|e| e.name() != "error"));
}

#[tokio::test]
async fn history_on_join_respects_maxstanzas_maxchars_and_since() {
    let node = users(&["alice", "bob", "carol", "dave"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    create(&mut alice, "tea", "alice").await;
    for i in 1..=5 {
        say(&mut alice, "tea", &format!("m{i}")).await;
    }
    expect_groupchat(&mut alice, &occupant("tea", "alice"), "m5").await;

    let mut bob = online(&node, "bob", PW, "b").await;
    send_join(&mut bob, "tea", "bob", "<history maxstanzas='2'/>").await;
    let subject = expect_subject(&mut bob, "tea").await;
    let _ = subject;
    let history: Vec<String> = bob
        .pending()
        .filter(|e| e.name() == "message" && e.attr("type") == Some("groupchat"))
        .map(body)
        .collect();
    assert_eq!(history, ["m4", "m5"]);
    let delayed = bob
        .pending()
        .find(|e| body(e) == "m4")
        .and_then(|e| e.child("delay", ns::DELAY))
        .cloned();
    assert!(delayed.is_some(), "history carries a delay stamp");

    let mut carol = online(&node, "carol", PW, "c").await;
    send_join(&mut carol, "tea", "carol", "<history maxchars='0'/>").await;
    expect_subject(&mut carol, "tea").await;
    assert_none(&carol, "history", |e| {
        e.name() == "message" && !body(e).is_empty()
    });

    let mut dave = online(&node, "dave", PW, "d").await;
    send_join(
        &mut dave,
        "tea",
        "dave",
        "<history since='2100-01-01T00:00:00Z'/>",
    )
    .await;
    expect_subject(&mut dave, "tea").await;
    assert_none(&dave, "history", |e| {
        e.name() == "message" && !body(e).is_empty()
    });
}

#[tokio::test]
async fn the_config_form_passwords_and_members_only_rooms() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;

    let form = iq(
        &mut alice,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{MUC_OWNER}'/>"),
    )
    .await;
    let form = assert_result(&form).to_string();
    for var in [
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_whois",
        "muc#roomconfig_roomsecret",
        "muc#roomconfig_allowpm",
    ] {
        assert!(form.contains(var), "{var} missing from {form}");
    }
    // Only the owner reads it.
    let refused = iq(
        &mut bob,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{MUC_OWNER}'/>"),
    )
    .await;
    assert_error(&refused, "auth", "forbidden");

    assert_result(
        &configure(
            &mut alice,
            "tea",
            &[
                ("muc#roomconfig_passwordprotectedroom", "1"),
                ("muc#roomconfig_roomsecret", "s3"),
            ],
        )
        .await,
    );
    send_join(&mut bob, "tea", "bob", "").await;
    let refused = expect_error_from(&mut bob, "presence", &occupant("tea", "bob")).await;
    assert_error(&refused, "auth", "not-authorized");
    join_with(&mut bob, "tea", "bob", "<password>s3</password>").await;

    // Members-only: Bob, no member, is removed (322) and cannot come back
    // until he is made a member.
    assert_result(&configure(&mut alice, "tea", &[("muc#roomconfig_membersonly", "1")]).await);
    expect_codes(&mut bob, &occupant("tea", "bob"), &[110, 322]).await;
    send_join(&mut bob, "tea", "bob", "<password>s3</password>").await;
    let refused = expect_error_from(&mut bob, "presence", &occupant("tea", "bob")).await;
    assert_error(&refused, "auth", "registration-required");
    assert_result(
        &admin(
            &mut alice,
            "tea",
            "<item affiliation='member' jid='bob@localhost'/>",
        )
        .await,
    );
    join_with(&mut bob, "tea", "bob", "<password>s3</password>").await;
    let members = iq(
        &mut alice,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='member'/></query>"),
    )
    .await;
    assert!(
        assert_result(&members)
            .to_string()
            .contains("bob@localhost"),
        "{members}"
    );
}

#[tokio::test]
async fn kick_and_ban_with_their_status_codes() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut carol = online(&node, "carol", PW, "c").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;
    join(&mut carol, "tea", "carol").await;

    // A participant cannot kick.
    let refused = admin(&mut carol, "tea", "<item nick='bob' role='none'/>").await;
    assert_error(&refused, "auth", "forbidden");

    assert_result(
        &admin(
            &mut alice,
            "tea",
            "<item nick='bob' role='none'><reason>noise</reason></item>",
        )
        .await,
    );
    let kicked = expect_codes(&mut bob, &occupant("tea", "bob"), &[110, 307]).await;
    assert_eq!(kicked.attr("type"), Some("unavailable"));
    assert!(kicked.to_string().contains("noise"), "{kicked}");
    expect_codes(&mut carol, &occupant("tea", "bob"), &[307]).await;

    // Kicked is not banned: Bob comes back, then is banned.
    join(&mut bob, "tea", "bob").await;
    assert_result(
        &admin(
            &mut alice,
            "tea",
            "<item affiliation='outcast' jid='bob@localhost'/>",
        )
        .await,
    );
    let banned = expect_codes(&mut bob, &occupant("tea", "bob"), &[110, 301]).await;
    assert_eq!(item(&banned).attr("affiliation"), Some("outcast"));
    expect_codes(&mut carol, &occupant("tea", "bob"), &[301]).await;
    send_join(&mut bob, "tea", "bob", "").await;
    let refused = expect_error_from(&mut bob, "presence", &occupant("tea", "bob")).await;
    assert_error(&refused, "auth", "forbidden");
    let outcasts = iq(
        &mut alice,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='outcast'/></query>"),
    )
    .await;
    assert!(
        assert_result(&outcasts)
            .to_string()
            .contains("bob@localhost")
    );

    // Voice: a moderator makes Carol a visitor, who then may not speak.
    assert_result(&admin(&mut alice, "tea", "<item nick='carol' role='visitor'/>").await);
    say(&mut carol, "tea", "can I?").await;
    let refused = expect_error_from(&mut carol, "message", &room("tea")).await;
    assert_error(&refused, "auth", "forbidden");
}

#[tokio::test]
async fn destroy_sends_everyone_to_the_alternate_venue() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;

    let refused = iq(
        &mut bob,
        "set",
        Some(&room("tea")),
        &format!("<query xmlns='{MUC_OWNER}'><destroy/></query>"),
    )
    .await;
    assert_error(&refused, "auth", "forbidden");
    let reply = iq(
        &mut alice,
        "set",
        Some(&room("tea")),
        &format!(
            "<query xmlns='{MUC_OWNER}'><destroy jid='{}'><reason>moved</reason></destroy></query>",
            room("coffee")
        ),
    )
    .await;
    assert_result(&reply);
    let gone = expect_presence(&mut bob, &occupant("tea", "bob"), Some("unavailable")).await;
    let destroy = gone
        .child("x", MUC_USER)
        .and_then(|x| x.child("destroy", MUC_USER))
        .unwrap_or_else(|| panic!("no destroy in {gone}"));
    assert_eq!(destroy.attr("jid"), Some(room("coffee").as_str()));
    let info = iq(
        &mut bob,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    assert_error(&info, "cancel", "item-not-found");
}

#[tokio::test]
async fn disco_self_ping_and_invitations() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut carol = online(&node, "carol", PW, "c").await;

    let items = iq(
        &mut alice,
        "get",
        Some("localhost"),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(
        assert_result(&items).to_string().contains(SERVICE),
        "{items}"
    );
    let info = iq(
        &mut alice,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let info = assert_result(&info).to_string();
    assert!(info.contains("conference") && info.contains(MUC), "{info}");

    create(&mut alice, "tea", "alice").await;
    let rooms = iq(
        &mut carol,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(
        assert_result(&rooms).to_string().contains(&room("tea")),
        "{rooms}"
    );
    let room_info = iq(
        &mut carol,
        "get",
        Some(&room("tea")),
        &format!("<query xmlns='{}'/>", ns::DISCO_INFO),
    )
    .await;
    let room_info = assert_result(&room_info).to_string();
    for feature in [
        MUC,
        "muc_temporary",
        "muc_semianonymous",
        "urn:xmpp:occupant-id:0",
    ] {
        assert!(
            room_info.contains(feature),
            "{feature} missing: {room_info}"
        );
    }

    // XEP-0410: an occupant pings itself; a stranger is not in the room.
    let pong = iq(
        &mut alice,
        "get",
        Some(&occupant("tea", "alice")),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_result(&pong);
    let stranger = iq(
        &mut carol,
        "get",
        Some(&occupant("tea", "alice")),
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    assert_error(&stranger, "modify", "not-acceptable");

    send(
        &mut alice,
        &format!(
            "<message to='{}'><x xmlns='{MUC_USER}'><invite to='carol@localhost'><reason>join us</reason></invite></x></message>",
            room("tea")
        ),
    )
    .await;
    let invitation = carol
        .expect(
            |e| e.name() == "message" && e.attr("from") == Some(room("tea").as_str()),
            WAIT,
        )
        .await
        .unwrap();
    let invite = invitation
        .child("x", MUC_USER)
        .and_then(|x| x.child("invite", MUC_USER))
        .unwrap_or_else(|| panic!("no invite in {invitation}"));
    assert_eq!(invite.attr("from"), Some(jid(&alice).as_str()));
    assert!(invitation.to_string().contains("join us"));
}

#[tokio::test]
async fn a_persistent_room_comes_back_after_a_restart() {
    let mut node = users(&["alice", "bob"]);
    {
        let mut alice = online(&node, "alice", PW, "a").await;
        create(&mut alice, "club", "alice").await;
        assert_result(
            &configure(
                &mut alice,
                "club",
                &[
                    ("muc#roomconfig_persistentroom", "1"),
                    ("muc#roomconfig_roomname", "The Club"),
                ],
            )
            .await,
        );
        send(
            &mut alice,
            &format!(
                "<message to='{}' type='groupchat'><subject>Members</subject></message>",
                room("club")
            ),
        )
        .await;
        expect_subject(&mut alice, "club").await;
        assert_result(
            &admin(
                &mut alice,
                "club",
                "<item affiliation='outcast' jid='bob@localhost'/>",
            )
            .await,
        );
    }
    assert!(node.stop(), "clean stop");
    node.spawn();

    let mut alice = online(&node, "alice", PW, "a").await;
    let rooms = iq(
        &mut alice,
        "get",
        Some(SERVICE),
        &format!("<query xmlns='{}'/>", ns::DISCO_ITEMS),
    )
    .await;
    assert!(
        assert_result(&rooms).to_string().contains("The Club"),
        "{rooms}"
    );
    send_join(&mut alice, "club", "alice", "").await;
    let own = expect_codes(&mut alice, &occupant("club", "alice"), &[110]).await;
    assert!(!codes(&own).contains(&201), "the room existed: {own}");
    assert_eq!(item(&own).attr("affiliation"), Some("owner"));
    let subject = expect_subject(&mut alice, "club").await;
    assert_eq!(
        subject.child("subject", ns::CLIENT).unwrap().text(),
        "Members"
    );
    let mut bob = online(&node, "bob", PW, "b").await;
    send_join(&mut bob, "club", "bob", "").await;
    let refused = expect_error_from(&mut bob, "presence", &occupant("club", "bob")).await;
    assert_error(&refused, "auth", "forbidden");
}

#[tokio::test]
async fn a_logged_room_archives_its_messages_for_its_occupants() {
    let node = users(&["alice", "bob", "carol"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    create(&mut alice, "log", "alice").await;
    assert_result(&configure(&mut alice, "log", &[("muc#roomconfig_enablelogging", "1")]).await);
    for i in 1..=3 {
        say(&mut alice, "log", &format!("kept {i}")).await;
    }
    let heard = expect_groupchat(&mut alice, &occupant("log", "alice"), "kept 3").await;
    let sid = heard
        .child("stanza-id", "urn:xmpp:sid:0")
        .unwrap_or_else(|| panic!("no stanza id from a logged room: {heard}"));
    assert_eq!(sid.attr("by"), Some(room("log").as_str()));

    let mut bob = online(&node, "bob", PW, "b").await;
    let own = join_with(&mut bob, "log", "bob", "<history maxstanzas='0'/>").await;
    assert!(codes(&own).contains(&170), "logging announced: {own}");
    let reply = iq(
        &mut bob,
        "set",
        Some(&room("log")),
        "<query xmlns='urn:xmpp:mam:2' queryid='q1'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query>",
    )
    .await;
    let fin = assert_result(&reply)
        .child("fin", "urn:xmpp:mam:2")
        .unwrap_or_else(|| panic!("no fin: {reply}"))
        .clone();
    assert_eq!(fin.attr("complete"), Some("false"), "{fin}");
    let results: Vec<String> = bob
        .pending()
        .filter_map(|e| e.child("result", "urn:xmpp:mam:2"))
        .map(|r| r.to_string())
        .collect();
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results[0].contains("kept 2") && results[1].contains("kept 3"),
        "{results:?}"
    );

    // Someone outside the room does not read it.
    let mut carol = online(&node, "carol", PW, "c").await;
    let refused = iq(
        &mut carol,
        "set",
        Some(&room("log")),
        "<query xmlns='urn:xmpp:mam:2'/>",
    )
    .await;
    assert_error(&refused, "auth", "forbidden");
}

#[tokio::test]
async fn a_shutdown_tells_the_occupants_with_332() {
    let mut node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;
    join(&mut bob, "tea", "bob").await;
    let stopper = std::thread::spawn(move || {
        let clean = node.stop();
        (node, clean)
    });
    let gone = expect_codes(&mut bob, &occupant("tea", "bob"), &[110, 332]).await;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    let (_node, clean) = stopper.join().unwrap();
    assert!(clean, "clean stop");
}

#[tokio::test]
async fn a_visitor_asks_for_voice_and_a_moderator_grants_it() {
    let node = users(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    create(&mut alice, "tea", "alice").await;
    assert_result(&configure(&mut alice, "tea", &[("muc#roomconfig_moderatedroom", "1")]).await);
    let own = join(&mut bob, "tea", "bob").await;
    assert_eq!(item(&own).attr("role"), Some("visitor"));

    let request = "<x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
        <field var='muc#role'><value>participant</value></field></x>";
    send(
        &mut bob,
        &format!("<message to='{}'>{request}</message>", room("tea")),
    )
    .await;
    let form = alice
        .expect(
            |e| e.name() == "message" && e.to_string().contains("muc#request_allow"),
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        form.to_string().contains(&jid(&bob)),
        "the moderator sees who asks: {form}"
    );
    let answer = "<x xmlns='jabber:x:data' type='submit'>\
        <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
        <field var='muc#roomnick'><value>bob</value></field>\
        <field var='muc#request_allow'><value>true</value></field></x>";
    send(
        &mut alice,
        &format!("<message to='{}'>{answer}</message>", room("tea")),
    )
    .await;
    let voiced = bob
        .expect(
            |e| {
                is_self_presence(e, &occupant("tea", "bob"))
                    && e.to_string().contains("participant")
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(item(&voiced).attr("role"), Some("participant"));
    say(&mut bob, "tea", "thanks").await;
    expect_groupchat(&mut alice, &occupant("tea", "bob"), "thanks").await;
}
