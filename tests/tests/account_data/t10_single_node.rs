//! The three features on one node: what each answers, who may do what,
//! the limits and the reserved namespaces (the right error, nothing
//! changed), the photo hash in presence, and account deletion.

use starling_core::xml::ns;
use starling_tests::TestNode;

use crate::support::*;

fn node_with(users: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for user in users {
        builder = builder.user(user, PW);
    }
    builder.start()
}

#[tokio::test]
async fn vcard_get_own_set_own_and_read_by_another_user() {
    let node = node_with(&["alice", "bob"]);
    let mut alice = login(&node, "alice", PW, "a").await;
    let mut bob = login(&node, "bob", PW, "b").await;

    // Nothing set yet: an empty vCard, without `to` and to the own JID.
    assert_eq!(full_name(&vcard_get(&mut alice, None).await), None);
    assert_eq!(
        full_name(&vcard_get(&mut alice, Some("alice@localhost")).await),
        None
    );

    assert_result(&vcard_set(&mut alice, None, &vcard("Alice Liddell", true)).await);
    let own = vcard_get(&mut alice, None).await;
    assert_eq!(full_name(&own).as_deref(), Some("Alice Liddell"));
    let photo = own
        .child("vCard", VCARD)
        .and_then(|vcard| vcard.child("PHOTO", VCARD))
        .and_then(|photo| photo.child("BINVAL", VCARD))
        .map(|binval| binval.text().split_whitespace().collect::<String>());
    assert_eq!(photo.as_deref(), Some(PHOTO), "{own}");

    // Any local user reads it; a user who never set one has an empty one.
    let read = vcard_get(&mut bob, Some("alice@localhost")).await;
    assert_eq!(full_name(&read).as_deref(), Some("Alice Liddell"));
    assert_eq!(
        full_name(&vcard_get(&mut alice, Some("bob@localhost")).await),
        None
    );
    // An account that does not exist (RFC 6121 8.5.1).
    let nobody = vcard_get(&mut alice, Some("nobody@localhost")).await;
    assert_error(&nobody, "cancel", "service-unavailable");
    // The server's own vCard is empty.
    assert_eq!(
        full_name(&vcard_get(&mut alice, Some("localhost")).await),
        None
    );
}

#[tokio::test]
async fn setting_another_users_vcard_is_forbidden_and_changes_nothing() {
    let node = node_with(&["alice", "mallory"]);
    let mut alice = login(&node, "alice", PW, "a").await;
    let mut mallory = login(&node, "mallory", PW, "m").await;
    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", false)).await);

    let refused = vcard_set(
        &mut mallory,
        Some("alice@localhost"),
        &vcard("Hacked", false),
    )
    .await;
    assert_error(&refused, "auth", "forbidden");
    let refused = vcard_set(&mut mallory, Some("localhost"), &vcard("Server", false)).await;
    assert_error(&refused, "auth", "forbidden");

    assert_eq!(
        full_name(&vcard_get(&mut alice, None).await).as_deref(),
        Some("Alice")
    );
    assert_eq!(full_name(&vcard_get(&mut mallory, None).await), None);
}

#[tokio::test]
async fn an_oversized_or_malformed_vcard_is_refused_and_changes_nothing() {
    let node = TestNode::builder()
        .user("alice", PW)
        .set("modules.vcard", "max_bytes = 2048")
        .start();
    let mut alice = login(&node, "alice", PW, "a").await;
    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", false)).await);

    let big = vcard(&"x".repeat(3000), false);
    let refused = vcard_set(&mut alice, None, &big).await;
    assert_error(&refused, "modify", "not-acceptable");
    let text = error_text(&refused);
    assert!(
        text.contains("2048"),
        "the error names the limit: {refused}"
    );

    let bad_photo =
        "<vCard xmlns='vcard-temp'><FN>B</FN><PHOTO><BINVAL>*not base64*</BINVAL></PHOTO></vCard>";
    assert_error(
        &vcard_set(&mut alice, None, bad_photo).await,
        "modify",
        "bad-request",
    );
    let wrong_element = "<card xmlns='vcard-temp'/>";
    assert_error(
        &vcard_set(&mut alice, None, wrong_element).await,
        "modify",
        "bad-request",
    );

    assert_eq!(
        full_name(&vcard_get(&mut alice, None).await).as_deref(),
        Some("Alice")
    );
}

/// Sends an available presence with this status (and `extra` inside) and
/// returns it as `to` received it.
async fn presence_seen_by(
    from: &mut starling_tests::Client,
    to: &mut starling_tests::Client,
    status: &str,
    extra: &str,
) -> starling_core::xml::Element {
    let from_jid = jid(from);
    available(
        from,
        &format!("<presence><status>{status}</status>{extra}</presence>"),
    )
    .await;
    to.expect(
        |e| {
            is_presence(e, &from_jid, None)
                && e.child("status", ns::CLIENT).map(|s| s.text()).as_deref() == Some(status)
        },
        WAIT,
    )
    .await
    .unwrap_or_else(|error| panic!("no presence {status:?} from {from_jid}: {error}"))
}

/// XEP-0153: the server adds the photo's hash to available presence that
/// has none, and leaves a client's own element alone.
#[tokio::test]
async fn presence_carries_the_photo_hash_of_the_vcard() {
    let node = node_with(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;

    // No vCard: presence goes out as sent.
    let seen = presence_seen_by(&mut alice, &mut bob, "no vcard", "").await;
    assert_eq!(photo_in(&seen), None, "{seen}");

    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", true)).await);
    let seen = presence_seen_by(&mut alice, &mut bob, "photo", "").await;
    assert_eq!(photo_in(&seen), Some(photo_sha1()), "{seen}");

    // A client that says it is not ready (empty <x/>) is not overruled.
    let not_ready = format!("<x xmlns='{VCARD_UPDATE}'/>");
    let seen = presence_seen_by(&mut alice, &mut bob, "not ready", &not_ready).await;
    assert_eq!(photo_in(&seen), Some(String::new()), "{seen}");

    // A vCard without a photo: an empty <photo/>, "no avatar".
    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", false)).await);
    let seen = presence_seen_by(&mut alice, &mut bob, "no photo", "").await;
    assert_eq!(photo_in(&seen), Some(String::new()), "{seen}");
}

#[tokio::test]
async fn disco_lists_the_features_on_the_server_and_the_account() {
    let node = node_with(&["alice"]);
    let mut alice = login(&node, "alice", PW, "a").await;
    let info = format!("<query xmlns='{}'/>", ns::DISCO_INFO);
    let server = features(&iq(&mut alice, "get", Some("localhost"), &info).await);
    for feature in [VCARD, LAST] {
        assert!(server.iter().any(|f| f == feature), "{feature}: {server:?}");
    }
    let account = features(&iq(&mut alice, "get", Some("alice@localhost"), &info).await);
    for feature in [VCARD, PRIVATE, LAST] {
        assert!(
            account.iter().any(|f| f == feature),
            "{feature}: {account:?}"
        );
    }
}

#[tokio::test]
async fn private_storage_keeps_one_element_per_namespace_for_its_owner() {
    let node = node_with(&["alice", "bob"]);
    let mut alice = login(&node, "alice", PW, "a").await;
    let mut bob = login(&node, "bob", PW, "b").await;

    // Unknown namespace: the element as asked for, empty.
    let empty = private_element(&private_get(&mut alice, None, "prefs", "urn:test:prefs").await);
    assert!(
        empty.is("prefs", "urn:test:prefs") && empty.nodes().is_empty(),
        "{empty}"
    );

    let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='a@muc.localhost' autojoin='true'/></storage>";
    let prefs = "<prefs xmlns='urn:test:prefs'><colour>blue</colour></prefs>";
    assert_result(&private_set(&mut alice, None, &format!("{bookmarks}{prefs}")).await);
    let newer = "<prefs xmlns='urn:test:prefs'><colour>green</colour></prefs>";
    assert_result(&private_set(&mut alice, Some("alice@localhost"), newer).await);

    let got = private_element(&private_get(&mut alice, None, "storage", "storage:bookmarks").await);
    let conference = got
        .child("conference", "storage:bookmarks")
        .expect("the stored bookmark");
    assert_eq!(conference.attr("jid"), Some("a@muc.localhost"), "{got}");
    let got = private_element(&private_get(&mut alice, None, "prefs", "urn:test:prefs").await);
    assert_eq!(
        got.child("colour", "urn:test:prefs")
            .map(|c| c.text())
            .as_deref(),
        Some("green"),
        "{got}"
    );

    // Another account's storage: neither read nor written.
    let refused = private_get(&mut bob, Some("alice@localhost"), "prefs", "urn:test:prefs").await;
    assert_error(&refused, "auth", "forbidden");
    let refused = private_set(&mut bob, Some("alice@localhost"), prefs).await;
    assert_error(&refused, "auth", "forbidden");
    let own = private_element(&private_get(&mut bob, None, "prefs", "urn:test:prefs").await);
    assert!(own.nodes().is_empty(), "bob's own is separate: {own}");
}

#[tokio::test]
async fn private_storage_refuses_reserved_namespaces_and_oversized_data() {
    let node = TestNode::builder()
        .user("alice", PW)
        .set("modules.private", "max_bytes = 1000")
        .start();
    let mut alice = login(&node, "alice", PW, "a").await;
    let kept = "<prefs xmlns='urn:test:prefs'>kept</prefs>";
    assert_result(&private_set(&mut alice, None, kept).await);

    for reserved in [
        "<x xmlns='jabber:client'>no</x>",
        "<x xmlns='jabber:server'>no</x>",
        "<x>inherits jabber:iq:private</x>",
        "<x xmlns=''>no namespace</x>",
        "",
    ] {
        let refused = private_set(&mut alice, None, reserved).await;
        assert_error(&refused, "modify", "not-acceptable");
    }
    let refused = private_get(&mut alice, None, "x", "jabber:client").await;
    assert_error(&refused, "modify", "not-acceptable");

    let big = format!("<big xmlns='urn:test:big'>{}</big>", "y".repeat(1200));
    let refused = private_set(
        &mut alice,
        None,
        &format!("{big}<prefs xmlns='urn:test:prefs'>new</prefs>"),
    )
    .await;
    assert_error(&refused, "modify", "not-acceptable");
    assert!(
        error_text(&refused).contains("1000"),
        "the error names the limit: {refused}"
    );

    // All or nothing: the refused request changed neither namespace.
    let got = private_element(&private_get(&mut alice, None, "prefs", "urn:test:prefs").await);
    assert_eq!(got.text(), "kept");
    let got = private_element(&private_get(&mut alice, None, "big", "urn:test:big").await);
    assert!(got.nodes().is_empty(), "{got}");
}

#[tokio::test]
async fn last_activity_of_the_server_and_of_contacts() {
    let node = node_with(&["alice", "bob", "carol"]);
    let mut bob = online(&node, "bob", PW, "b").await;
    let mut alice = online(&node, "alice", PW, "a").await;
    befriend(&mut alice, &mut bob).await;

    // The server: its uptime.
    let uptime = last_get(&mut bob, Some("localhost")).await;
    assert!(last_of(&uptime).0 < 3600, "{uptime}");

    // Online somewhere: 0.
    assert_eq!(
        last_of(&last_get(&mut bob, Some("alice@localhost")).await),
        (0, String::new())
    );

    alice
        .send("<presence type='unavailable'><status>Gone fishing</status></presence>")
        .await
        .unwrap();
    expect_presence(&mut bob, &jid(&alice), Some("unavailable")).await;
    alice.close().await.unwrap();
    let reply = last_until(&mut bob, "alice@localhost", |r| {
        is_logout_with(r, "Gone fishing")
    })
    .await;
    assert!(last_of(&reply).0 < 60, "{reply}");

    // Not subscribed to alice's presence: forbidden.
    let mut carol = login(&node, "carol", PW, "c").await;
    assert_error(
        &last_get(&mut carol, Some("alice@localhost")).await,
        "auth",
        "forbidden",
    );

    // A contact never seen to log out (provisioned p1 and p2 are contacts).
    provision(&node, "p", 2, 1);
    let mut p1 = login(&node, "p1", "pw1", "r").await;
    let never = last_get(&mut p1, Some("p2@localhost")).await;
    assert_error(&never, "cancel", "item-not-found");
}

/// `starling user del` removes the vCard, the private XML and the last
/// activity: the account made again under the same name has none of it.
#[tokio::test]
async fn a_deleted_then_recreated_account_has_no_account_data() {
    let node = node_with(&["alice", "bob"]);
    let mut alice = online(&node, "alice", PW, "a").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", true)).await);
    assert_result(&private_set(&mut alice, None, "<prefs xmlns='urn:test:prefs'>p</prefs>").await);
    alice.close().await.unwrap();
    last_until(&mut bob, "alice@localhost", |r| is_logout_with(r, "")).await;

    cli_ok(&node, &["user", "del", "alice"]);
    cli_ok(&node, &["user", "add", "alice", PW]);

    // Logged in, no presence sent: the own last activity comes from the store.
    let mut alice = login(&node, "alice", PW, "a").await;
    assert_eq!(full_name(&vcard_get(&mut alice, None).await), None);
    assert_eq!(
        full_name(&vcard_get(&mut bob, Some("alice@localhost")).await),
        None
    );
    let prefs = private_element(&private_get(&mut alice, None, "prefs", "urn:test:prefs").await);
    assert!(prefs.nodes().is_empty(), "{prefs}");
    let last = last_get(&mut alice, Some("alice@localhost")).await;
    assert_error(&last, "cancel", "item-not-found");
}

/// XEP-0077 account removal runs the same clean-up: an account removed
/// in-band and registered again has no vCard and no private XML.
#[tokio::test]
async fn an_account_removed_in_band_and_registered_again_has_no_account_data() {
    let node = TestNode::builder()
        .user("bob", PW)
        .set("c2s", "registration = true")
        .start();
    register(&node, "alice").await;
    let mut alice = login(&node, "alice", PW, "a").await;
    assert_result(&vcard_set(&mut alice, None, &vcard("Alice", true)).await);
    assert_result(&private_set(&mut alice, None, "<prefs xmlns='urn:test:prefs'>p</prefs>").await);

    let removed = iq(
        &mut alice,
        "set",
        None,
        "<query xmlns='jabber:iq:register'><remove/></query>",
    )
    .await;
    assert_result(&removed);
    register(&node, "alice").await;

    let mut alice = login(&node, "alice", PW, "a").await;
    assert_eq!(full_name(&vcard_get(&mut alice, None).await), None);
    let mut bob = login(&node, "bob", PW, "b").await;
    assert_eq!(
        full_name(&vcard_get(&mut bob, Some("alice@localhost")).await),
        None
    );
    let prefs = private_element(&private_get(&mut alice, None, "prefs", "urn:test:prefs").await);
    assert!(prefs.nodes().is_empty(), "{prefs}");
}

/// Registers `user` (password [`PW`]) in-band on a new TLS stream.
async fn register(node: &TestNode, user: &str) {
    let mut client = starling_tests::Client::connect(node.c2s, &node.domain)
        .await
        .unwrap();
    client.starttls().await.unwrap();
    let created = iq(
        &mut client,
        "set",
        None,
        &format!(
            "<query xmlns='jabber:iq:register'><username>{user}</username><password>{PW}</password></query>"
        ),
    )
    .await;
    assert_result(&created);
}
