//! XEP-0198 on one node: counting, acknowledgements both ways, and
//! resumption after the socket is lost or left half-open, within the
//! window and after it.

use starling_core::xml::Element;
use starling_tests::{ClientError, SM, TestNode};

use crate::support::*;

fn node_with(users: &[&str], sm: &[&str]) -> TestNode {
    let mut builder = TestNode::builder();
    for user in users {
        builder = builder.user(user, PW);
    }
    for setting in sm {
        builder = builder.set("modules.sm", setting);
    }
    builder.start()
}

fn is_request(element: &Element) -> bool {
    element.is("r", SM)
}

#[tokio::test]
async fn t10_acks_count_stanzas_both_ways_and_the_server_asks_after_five() {
    let node = node_with(&["alice", "bob"], &["request_after_ms = 600000"]);
    let mut alice = login(&node, "alice", PW, "phone").await;
    let mut bob = login(&node, "bob", PW, "b").await;
    let enabled = alice.enable_sm(false).await.unwrap();
    assert_eq!(enabled.id, None, "not resumable unless asked");
    let again = alice.enable_sm(false).await.unwrap_err();
    assert!(
        matches!(&again, ClientError::SmFailed { condition, .. } if condition == "unexpected-request"),
        "a second <enable/> is refused: {again}"
    );

    // Client to server: two messages and an iq are three stanzas; <r/> is none.
    chat(&mut alice, "bob@localhost/b", "one").await;
    chat(&mut alice, "bob@localhost/b", "two").await;
    sync(&mut alice).await;
    assert_eq!(alice.request_ack().await.unwrap(), 3);
    expect_body(&mut bob, "two").await;

    // Server to client: the ping's result and four messages make five, and
    // the fifth brings the server's <r/>.
    alice.set_auto_ack(false);
    for n in 0..4 {
        chat(&mut bob, "alice@localhost/phone", &format!("in-{n}")).await;
    }
    assert_eq!(collect(&mut alice, "in-", 4).await, numbered("in", 4));
    alice
        .expect(is_request, WAIT)
        .await
        .unwrap_or_else(|error| panic!("no <r/> after five stanzas: {error}"));
    assert_eq!(alice.sm_handled(), Some(5));
    alice.send_ack().await.unwrap();
    assert_eq!(
        alice.request_ack().await.unwrap(),
        3,
        "acks and ack requests are not stanzas"
    );
    assert!(node.metric("starling_sm_enabled_total").await >= 1.0);

    // More acknowledged than was sent is a stream error.
    send(&mut alice, &format!("<a xmlns='{SM}' h='99'/>")).await;
    alice
        .expect_stream_error("undefined-condition", WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn t20_messages_sent_while_detached_arrive_once_in_order_after_resume() {
    let node = node_with(&["alice", "bob"], &[]);
    let mut alice = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    let previd = enable_resumable(&mut alice).await;

    // Five arrive; the client says it handled three of them.
    alice.set_auto_ack(false);
    for n in 0..5 {
        chat(&mut bob, "alice@localhost/phone", &format!("before-{n}")).await;
    }
    assert_eq!(
        collect(&mut alice, "before-", 5).await,
        numbered("before", 5)
    );
    alice.drop_connection();

    for n in 0..100 {
        chat(&mut bob, "alice@localhost/phone", &format!("while-{n}")).await;
    }
    let (mut alice, server_h) = resume(&node, "alice", "phone", &previd, 3).await.unwrap();
    assert_eq!(server_h, 0, "alice sent nothing since <enable/>");
    assert_eq!(
        collect(&mut alice, "before-", 2).await,
        ["before-3", "before-4"],
        "what the client did not acknowledge comes again"
    );
    assert_eq!(
        collect(&mut alice, "while-", 100).await,
        numbered("while", 100)
    );
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a message twice", |e| {
        is_message(e) && (body(e).starts_with("before-") || body(e).starts_with("while-"))
    });

    // The contact never saw the session go, and it still works both ways.
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "unavailable presence", |e| {
        is_unavailable_from(e, "alice@localhost")
    });
    chat(&mut alice, "bob@localhost/b", "back").await;
    expect_body(&mut bob, "back").await;
    assert!(node.metric("starling_sm_resumed_total").await >= 1.0);

    // It can be lost and resumed again with the same id.
    let handled = alice.sm_handled().unwrap();
    alice.drop_connection();
    chat(&mut bob, "alice@localhost/phone", "again").await;
    let (mut alice, _) = resume(&node, "alice", "phone", &previd, handled)
        .await
        .unwrap();
    expect_body(&mut alice, "again").await;
}

#[tokio::test]
async fn t30_a_half_open_old_connection_is_closed_with_conflict() {
    let node = node_with(&["alice", "bob"], &[]);
    let mut old = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let previd = enable_resumable(&mut old).await;
    old.set_auto_ack(false);

    // The old connection stays open but reads nothing.
    for n in 0..10 {
        chat(&mut bob, "alice@localhost/phone", &format!("m-{n}")).await;
    }
    sync(&mut bob).await;
    let (mut alice, _) = resume(&node, "alice", "phone", &previd, 0).await.unwrap();
    old.expect_stream_error("conflict", WAIT).await.unwrap();
    assert_eq!(collect(&mut alice, "m-", 10).await, numbered("m", 10));
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a message twice", |e| {
        is_message(e) && body(e).starts_with("m-")
    });
}

#[tokio::test]
async fn t40_after_the_window_resumption_fails_and_messages_wait_offline() {
    let node = node_with(&["alice", "bob"], &["max_resume_secs = 1"]);
    let mut alice = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    befriend(&mut alice, &mut bob).await;
    let previd = enable_resumable(&mut alice).await;
    sync(&mut alice).await;
    sync(&mut alice).await;
    alice.drop_connection();

    for n in 0..5 {
        chat(&mut bob, "alice@localhost/phone", &format!("late-{n}")).await;
    }
    sync(&mut bob).await;
    wait_metric(&node, "starling_sm_expired_total", 1.0).await;
    // Only now do contacts see the session go.
    bob.expect(|e| is_unavailable_from(e, "alice@localhost"), WAIT)
        .await
        .unwrap();

    // The refusal says what the server handled: alice's two pings.
    let error = resume(&node, "alice", "phone", &previd, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::SmFailed { condition, h: Some(2), .. } if condition == "item-not-found"),
        "{error}"
    );
    let mut alice = online(&node, "alice", PW, "phone").await;
    assert_eq!(collect(&mut alice, "late-", 5).await, numbered("late", 5));
}

#[tokio::test]
async fn t50_forged_unknown_and_foreign_ids_are_refused() {
    let node = node_with(&["alice", "bob"], &[]);
    let mut alice = online(&node, "alice", PW, "phone").await;
    let previd = enable_resumable(&mut alice).await;
    alice.drop_connection();

    let last = previd.chars().last().unwrap();
    let flipped = if last == 'A' { 'B' } else { 'A' };
    let forged = format!("{}{flipped}", &previd[..previd.len() - 1]);
    for (user, id) in [
        ("alice", forged.as_str()),
        ("alice", "not-an-id"),
        ("bob", previd.as_str()),
    ] {
        let error = resume(&node, user, "phone", id, 0).await.unwrap_err();
        assert!(
            matches!(&error, ClientError::SmFailed { condition, .. } if condition == "item-not-found"),
            "{user} resuming {id}: {error}"
        );
    }
    // None of that harmed the session.
    let (mut alice, _) = resume(&node, "alice", "phone", &previd, 0).await.unwrap();
    sync(&mut alice).await;
    assert!(node.metric("starling_sm_resume_failed_total").await >= 3.0);
}

#[tokio::test]
async fn t60_enable_before_bind_and_resume_after_it_are_unexpected() {
    let node = node_with(&["alice"], &[]);
    let options = options(&node, "alice", PW, "phone");
    let mut client = starling_tests::Client::connect(node.c2s, &node.domain)
        .await
        .unwrap();
    client.starttls().await.unwrap();
    client.authenticate("alice", PW, None).await.unwrap();
    assert!(
        client.features().has_child("sm", SM),
        "{}",
        client.features()
    );
    send(&mut client, &format!("<enable xmlns='{SM}'/>")).await;
    let failed = client.expect(|e| e.is("failed", SM), WAIT).await.unwrap();
    assert!(
        failed.has_child("unexpected-request", starling_core::xml::ns::STANZAS),
        "{failed}"
    );
    // The stream goes on: bind, then <resume/> is out of place.
    client.bind(options.resource.as_deref()).await.unwrap();
    send(
        &mut client,
        &format!("<resume xmlns='{SM}' previd='x' h='0'/>"),
    )
    .await;
    let failed = client.expect(|e| e.is("failed", SM), WAIT).await.unwrap();
    assert!(
        failed.has_child("unexpected-request", starling_core::xml::ns::STANZAS),
        "{failed}"
    );
    sync(&mut client).await;
}

#[tokio::test]
async fn t70_an_unanswered_ack_request_detaches_the_session() {
    let node = node_with(&["alice", "bob"], &["ack_timeout_ms = 1000"]);
    let mut alice = online(&node, "alice", PW, "phone").await;
    let mut bob = online(&node, "bob", PW, "b").await;
    let previd = enable_resumable(&mut alice).await;
    alice.set_auto_ack(false);
    for n in 0..5 {
        chat(
            &mut bob,
            "alice@localhost/phone",
            &format!("unanswered-{n}"),
        )
        .await;
    }
    alice.expect(is_request, WAIT).await.unwrap();
    // Silence: the server takes the connection for lost.
    alice
        .expect_stream_error("connection-timeout", WAIT)
        .await
        .unwrap();
    let handled = alice.sm_handled().unwrap();
    assert_eq!(handled, 5);
    chat(&mut bob, "alice@localhost/phone", "after").await;
    let (mut alice, _) = resume(&node, "alice", "phone", &previd, handled)
        .await
        .unwrap();
    expect_body(&mut alice, "after").await;
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a message twice", |e| {
        is_message(e) && body(e).starts_with("unanswered-")
    });
}
