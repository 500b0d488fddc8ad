//! RFC 6121 section 4: initial presence and its broadcast, probes at login,
//! updates, unavailable presence (sent and on disconnect), directed presence,
//! the user's own resources, and negative priority.
//!
//! Contacts come from `starling user provision`: u1..uN, all subscribed to
//! each other ("both"), passwords pw1..pwN.

use starling_core::xml::{Element, ns};
use starling_tests::TestNode;

use crate::support::{
    WAIT, assert_error, assert_none, available, barrier, body, expect_presence, is_presence, login,
    online, provision, roster_get, sync,
};

fn child_text(element: &Element, name: &str) -> Option<String> {
    element.child(name, ns::CLIENT).map(Element::text)
}

#[tokio::test]
async fn initial_presence_reaches_subscribers_and_probes_answer_back() {
    let node = TestNode::builder().user("stranger", "pw").start();
    provision(&node, "u", 3, 2);
    let mut u1 = online(&node, "u1", "pw1", "r").await;
    let mut stranger = online(&node, "stranger", "pw", "s").await;

    let mut u2 = login(&node, "u2", "pw2", "r").await;
    assert_eq!(roster_get(&mut u2).await.len(), 2);
    available(
        &mut u2,
        "<presence><show>dnd</show><status>busy</status><priority>3</priority></presence>",
    )
    .await;

    // 4.2.2: to each subscriber, from the full JID, with the payload as sent.
    let presence = expect_presence(&mut u1, "u2@localhost/r", None).await;
    assert_eq!(presence.attr("to"), Some("u1@localhost"));
    assert_eq!(child_text(&presence, "show").as_deref(), Some("dnd"));
    assert_eq!(child_text(&presence, "status").as_deref(), Some("busy"));
    assert_eq!(child_text(&presence, "priority").as_deref(), Some("3"));

    // 4.3: the probe on u2's behalf brings u1's current presence; u3 is
    // offline and has nothing to say.
    let probed = expect_presence(&mut u2, "u1@localhost/r", None).await;
    assert!(
        probed.attr("type").is_none(),
        "probe answer must be available presence: {probed}"
    );
    sync(&mut u2).await;
    assert_none(&u2, "presence from an offline contact", |e| {
        e.name() == "presence" && e.attr("from").is_some_and(|f| f.starts_with("u3@"))
    });
    assert_none(&u2, "a probe leaking to the client", |e| {
        e.name() == "presence" && e.attr("type") == Some("probe")
    });

    // Someone without a subscription sees nothing.
    barrier(&mut u2, &mut stranger).await;
    assert_none(&stranger, "presence without a subscription", |e| {
        is_presence(e, "u2@localhost/r", None)
    });
}

#[tokio::test]
async fn updates_and_unavailable_presence_reach_contacts() {
    let node = TestNode::builder().start();
    provision(&node, "u", 3, 2);
    let mut u1 = online(&node, "u1", "pw1", "r").await;
    let mut u2 = online(&node, "u2", "pw2", "r").await;
    expect_presence(&mut u1, "u2@localhost/r", None).await;

    // 4.4: an update is broadcast like initial presence.
    available(
        &mut u2,
        "<presence><show>away</show><status>lunch</status></presence>",
    )
    .await;
    let update = expect_presence(&mut u1, "u2@localhost/r", None).await;
    assert_eq!(child_text(&update, "show").as_deref(), Some("away"));
    assert_eq!(child_text(&update, "status").as_deref(), Some("lunch"));

    // 4.5: unavailable presence, sent explicitly, then available again.
    u2.send("<presence type='unavailable'><status>bye</status></presence>")
        .await
        .unwrap();
    let gone = expect_presence(&mut u1, "u2@localhost/r", Some("unavailable")).await;
    assert_eq!(child_text(&gone, "status").as_deref(), Some("bye"));
    available(&mut u2, "<presence/>").await;
    expect_presence(&mut u1, "u2@localhost/r", None).await;

    // A connection that just drops is unavailable too (4.5.2)...
    drop(u2);
    expect_presence(&mut u1, "u2@localhost/r", Some("unavailable")).await;

    // ...and so is a clean close of the stream.
    let mut u3 = online(&node, "u3", "pw3", "r").await;
    expect_presence(&mut u1, "u3@localhost/r", None).await;
    sync(&mut u3).await;
    u3.close().await.unwrap();
    expect_presence(&mut u1, "u3@localhost/r", Some("unavailable")).await;
}

#[tokio::test]
async fn directed_presence_and_its_unavailable_when_the_sender_leaves() {
    let node = TestNode::builder()
        .user("carol", "pw")
        .user("dave", "pw")
        .user("erin", "pw")
        .start();
    provision(&node, "u", 2, 1);
    let mut u1 = online(&node, "u1", "pw1", "r").await;
    let mut u2 = online(&node, "u2", "pw2", "r").await;
    expect_presence(&mut u1, "u2@localhost/r", None).await;
    let mut carol = online(&node, "carol", "pw", "c").await;
    let mut dave1 = online(&node, "dave", "pw", "d1").await;
    let mut dave2 = online(&node, "dave", "pw", "d2").await;
    let mut erin = online(&node, "erin", "pw", "e").await;

    // Erin gets directed presence and then directed unavailable: she is
    // not told again when u1 leaves. (She comes first so that a wrong
    // second unavailable would be sent before carol's.)
    u1.send("<presence to='erin@localhost/e'/>").await.unwrap();
    expect_presence(&mut erin, "u1@localhost/r", None).await;
    u1.send("<presence to='erin@localhost/e' type='unavailable'/>")
        .await
        .unwrap();
    expect_presence(&mut erin, "u1@localhost/r", Some("unavailable")).await;

    // 4.6: to a full JID, and to a bare JID (every available resource).
    u1.send("<presence to='carol@localhost/c'><status>hi carol</status></presence>")
        .await
        .unwrap();
    let directed = expect_presence(&mut carol, "u1@localhost/r", None).await;
    assert_eq!(directed.attr("to"), Some("carol@localhost/c"));
    assert_eq!(child_text(&directed, "status").as_deref(), Some("hi carol"));
    u1.send("<presence to='dave@localhost'/>").await.unwrap();
    expect_presence(&mut dave1, "u1@localhost/r", None).await;
    expect_presence(&mut dave2, "u1@localhost/r", None).await;
    // Directed presence is not broadcast to subscribers.
    barrier(&mut u1, &mut u2).await;
    assert_none(&u2, "directed presence broadcast to a contact", |e| {
        e.name() == "presence" && child_text(e, "status").as_deref() == Some("hi carol")
    });

    // 4.6.3: when u1 goes away, everyone it sent directed presence hears it.
    drop(u1);
    expect_presence(&mut carol, "u1@localhost/r", Some("unavailable")).await;
    expect_presence(&mut dave1, "u1@localhost/r", Some("unavailable")).await;
    expect_presence(&mut dave2, "u1@localhost/r", Some("unavailable")).await;
    expect_presence(&mut u2, "u1@localhost/r", Some("unavailable")).await;
    // Anything for erin was queued before carol's unavailable; carol's
    // marker to erin comes after it.
    barrier(&mut carol, &mut erin).await;
    assert_none(
        &erin,
        "a second unavailable after directed unavailable",
        |e| is_presence(e, "u1@localhost/r", Some("unavailable")),
    );
}

#[tokio::test]
async fn presence_reaches_the_users_other_available_resources() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut r1 = online(&node, "alice", "pw", "r1").await;
    // r3 is connected but never available: it gets no presence broadcasts.
    let mut r3 = login(&node, "alice", "pw", "r3").await;
    roster_get(&mut r3).await;
    let mut r2 = online(&node, "alice", "pw", "r2").await;

    let seen = expect_presence(&mut r1, "alice@localhost/r2", None).await;
    assert_eq!(seen.attr("to"), Some("alice@localhost/r1"));
    available(&mut r2, "<presence><show>xa</show></presence>").await;
    let update = expect_presence(&mut r1, "alice@localhost/r2", None).await;
    assert_eq!(child_text(&update, "show").as_deref(), Some("xa"));

    r1.send("<presence type='unavailable'/>").await.unwrap();
    expect_presence(&mut r2, "alice@localhost/r1", Some("unavailable")).await;

    barrier(&mut r2, &mut r3).await;
    barrier(&mut r1, &mut r3).await;
    assert_none(&r3, "presence to a resource that is not available", |e| {
        e.name() == "presence"
    });
}

#[tokio::test]
async fn negative_priority_sees_presence_but_gets_no_bare_jid_messages() {
    let node = TestNode::builder().start();
    provision(&node, "u", 2, 1);
    let mut u2 = online(&node, "u2", "pw2", "r").await;
    let mut u1 = login(&node, "u1", "pw1", "neg").await;
    roster_get(&mut u1).await;
    available(&mut u1, "<presence><priority>-1</priority></presence>").await;
    // Still available to contacts, and still told about them.
    let presence = expect_presence(&mut u2, "u1@localhost/neg", None).await;
    assert_eq!(child_text(&presence, "priority").as_deref(), Some("-1"));
    expect_presence(&mut u1, "u2@localhost/r", None).await;

    // 4.7.2.3: a message to the bare JID skips a negative-priority resource
    // and is kept offline; one to the full JID is delivered.
    u2.send("<message to='u1@localhost' type='chat'><body>to bare</body></message>")
        .await
        .unwrap();
    u2.send("<message to='u1@localhost/neg' type='chat'><body>to full</body></message>")
        .await
        .unwrap();
    let full = u1.expect(|e| e.name() == "message", WAIT).await.unwrap();
    assert_eq!(body(&full), "to full", "the bare-JID message arrived first");

    // Raising the priority makes the resource eligible: the stored message
    // is delivered now, stamped.
    u1.send("<presence><priority>1</priority></presence>")
        .await
        .unwrap();
    let stored = u1
        .expect(|e| e.name() == "message" && body(e) == "to bare", WAIT)
        .await
        .unwrap();
    assert!(stored.has_child("delay", "urn:xmpp:delay"), "{stored}");

    // A priority outside -128..127 is refused.
    let reply = {
        u1.send("<presence id='p1'><priority>128</priority></presence>")
            .await
            .unwrap();
        u1.expect(
            |e| e.name() == "presence" && e.attr("id") == Some("p1"),
            WAIT,
        )
        .await
        .unwrap()
    };
    assert_error(&reply, "modify", "bad-request");
}
