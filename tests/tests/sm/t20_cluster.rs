//! XEP-0198 across the members of a three-node cluster: a session detached
//! on one member is resumed on another with everything sent meanwhile,
//! exactly once and in order, keeps its carbons and client state, and is
//! reachable there from every member; a
//! session on a member that was killed cannot be resumed, and what was
//! sent to it after the kill waits in offline storage; a session whose
//! handover came after the resuming member gave up keeps what it held, and
//! one that came after its client logged in again leaves the new session
//! alone; a login that replaces a session says goodbye for it.

use std::time::Duration;

use starling_tests::node::send_signal;
use starling_tests::{Client, ClientError, TestCluster};

use crate::support::*;

const CARBONS: &str = "urn:xmpp:carbons:2";

/// Members declare a silent peer down after 2 s instead of 3.
fn quick_cluster(users: &[&str]) -> TestCluster {
    let mut builder = TestCluster::builder(NODES)
        .set("cluster", "heartbeat_ms = 250")
        .set("cluster", "suspect_after_ms = 1000")
        .set("cluster", "down_after_ms = 2000");
    for user in users {
        builder = builder.user(user, PW);
    }
    builder.start()
}

#[tokio::test]
async fn t10_detached_on_one_member_resumed_on_another_with_a_thousand_messages() {
    const COUNT: usize = 1000;
    let cluster = cluster(&["alice", "bob", "carol"]);
    let (one, two, three) = (node(&cluster, 1), node(&cluster, 2), node(&cluster, 3));
    let mut alice = online(one, "alice", PW, "phone").await;
    let mut laptop = online(three, "alice", PW, "laptop").await;
    let mut bob = online(two, "bob", PW, "b").await;
    let mut carol = online(three, "carol", PW, "c").await;
    befriend(&mut alice, &mut bob).await;
    let enabled = iq(
        &mut alice,
        "set",
        None,
        &format!("<enable xmlns='{CARBONS}'/>"),
    )
    .await;
    assert_result(&enabled);
    let previd = enable_resumable(&mut alice).await;
    // Inactive (XEP-0352): that too moves with the session.
    send(&mut alice, "<inactive xmlns='urn:xmpp:csi:0'/>").await;
    sync(&mut alice).await;
    let handled = alice.sm_handled().unwrap();
    alice.drop_connection();

    for n in 0..COUNT {
        chat(&mut bob, "alice@localhost/phone", &format!("while-{n}")).await;
    }
    sync(&mut bob).await;
    let (mut alice, server_h) = resume(two, "alice", "phone", &previd, handled)
        .await
        .unwrap_or_else(|error| panic!("resuming on node 2: {error}"));
    assert_eq!(server_h, 1, "alice sent one ping since <enable/>");
    assert_eq!(
        collect(&mut alice, "while-", COUNT).await,
        numbered("while", COUNT)
    );
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a message twice", |e| {
        is_message(e) && body(e).starts_with("while-")
    });
    assert!(two.metric("starling_sm_resumed_from_peer_total").await >= 1.0);
    assert!(one.metric("starling_sm_handed_over_total").await >= 1.0);

    // The directory points at node 2: a third member reaches the session.
    chat(&mut carol, "alice@localhost/phone", "from node 3").await;
    expect_body(&mut alice, "from node 3").await;

    // Carbons stayed enabled: the laptop's chat is copied to the phone.
    chat(&mut laptop, "bob@localhost/b", "from the laptop").await;
    expect_body(&mut bob, "from the laptop").await;
    alice
        .expect(
            |e| {
                e.child("sent", CARBONS)
                    .and_then(|sent| sent.child("forwarded", "urn:xmpp:forward:0"))
                    .and_then(|forwarded| forwarded.children().next())
                    .is_some_and(|message| body(message) == "from the laptop")
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no carbon after the move: {error}"));

    // Still inactive on node 2: of bob's presence updates only the newest
    // waits, and comes before his next message.
    for n in 1..=3 {
        send(
            &mut bob,
            &format!("<presence><status>s{n}</status></presence>"),
        )
        .await;
    }
    sync(&mut bob).await;
    chat(&mut bob, "alice@localhost/phone", "wake").await;
    expect_body(&mut alice, "wake").await;
    let statuses: Vec<String> = alice
        .pending()
        .filter(|e| e.name() == "presence" && e.attr("from") == Some("bob@localhost/b"))
        .filter_map(|e| {
            e.child("status", starling_core::xml::ns::CLIENT)
                .map(|s| s.text())
        })
        .collect();
    assert_eq!(statuses, ["s3"], "bob's presence at the inactive session");

    // Contacts never saw the session go.
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "unavailable presence", |e| {
        is_unavailable_from(e, "alice@localhost")
    });
}

#[tokio::test]
async fn t20_a_session_on_a_killed_member_cannot_resume_and_messages_wait_offline() {
    let mut cluster = quick_cluster(&["alice", "bob"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "phone").await;
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    let previd = enable_resumable(&mut alice).await;
    alice.drop_connection();
    cluster.kill(0);
    cluster.wait_log(1, "cluster member is down", Duration::from_secs(30));

    for n in 0..10 {
        chat(&mut bob, "alice@localhost/phone", &format!("after-{n}")).await;
    }
    sync(&mut bob).await;
    let error = resume(node(&cluster, 2), "alice", "phone", &previd, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::SmFailed { condition, .. } if condition == "item-not-found"),
        "{error}"
    );
    let mut alice = online(node(&cluster, 3), "alice", PW, "phone").await;
    assert_eq!(
        collect(&mut alice, "after-", 10).await,
        numbered("after", 10)
    );
}

#[tokio::test]
async fn t30_a_session_that_moved_is_found_where_it_went() {
    let cluster = cluster(&["alice", "bob"]);
    let (one, two, three) = (node(&cluster, 1), node(&cluster, 2), node(&cluster, 3));
    let mut alice = online(one, "alice", PW, "phone").await;
    let mut bob = online(one, "bob", PW, "b").await;
    let previd = enable_resumable(&mut alice).await;

    // Node 1 made the id; the session goes to node 2, then to node 3, whose
    // first guess (node 1) no longer has it: the directory says where.
    for (hop, to) in [(1, two), (2, three)] {
        let handled = alice.sm_handled().unwrap();
        alice.drop_connection();
        chat(&mut bob, "alice@localhost/phone", &format!("hop-{hop}")).await;
        sync(&mut bob).await;
        let (mut resumed, _) = resume(to, "alice", "phone", &previd, handled)
            .await
            .unwrap_or_else(|error| panic!("resumption {hop}: {error}"));
        expect_body(&mut resumed, &format!("hop-{hop}")).await;
        alice = resumed;
    }
    chat(&mut bob, "alice@localhost/phone", "found").await;
    expect_body(&mut alice, "found").await;
    barrier(&mut bob, &mut alice).await;
    assert_none(&alice, "a message twice", |e| {
        is_message(e) && body(e).starts_with("hop-")
    });
}

/// The member holding a detached session is frozen while a client resumes
/// it on another member, which gives up waiting (the resumption fails);
/// then the frozen member wakes and hands the session over, too late. The
/// session is bound nowhere then: the member that got the late reply ends
/// it as for a closed window, and what it held waits offline instead of
/// vanishing with the reply.
#[tokio::test]
async fn t40_a_session_handed_over_too_late_keeps_what_it_held() {
    // Nobody is declared down during the freeze, so the late reply comes
    // back on the link that carried the request.
    let cluster = TestCluster::builder(NODES)
        .set("cluster", "suspect_after_ms = 60000")
        .set("cluster", "down_after_ms = 120000")
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let (one, two) = (node(&cluster, 1), node(&cluster, 2));
    let mut alice = online(one, "alice", PW, "phone").await;
    let mut bob = online(two, "bob", PW, "b").await;
    let previd = enable_resumable(&mut alice).await;
    let handled = alice.sm_handled().unwrap();
    alice.drop_connection();
    // Node 1 reads them before the handover request: one link, in order.
    for n in 0..5 {
        chat(&mut bob, "alice@localhost/phone", &format!("held-{n}")).await;
    }
    sync(&mut bob).await;

    let frozen = one.pid().expect("node 1 runs");
    send_signal("-STOP", frozen);
    let mut patient = options(two, "alice", PW, "phone");
    patient.timeout = Duration::from_secs(60);
    let refused = Client::resume(two.c2s, &patient, &previd, handled).await;
    send_signal("-CONT", frozen);
    let error = refused.err().expect("the holder was frozen: no resumption");
    assert!(
        matches!(&error, ClientError::SmFailed { condition, .. } if condition == "item-not-found"),
        "{error}"
    );
    wait_metric(two, "starling_sm_handovers_abandoned_total", 1.0).await;

    let mut alice = online(two, "alice", PW, "phone").await;
    assert_eq!(collect(&mut alice, "held-", 5).await, numbered("held", 5));
}

/// Found by the fault campaign under 50 ms latency and 5 % loss: a client
/// whose resumption on another member waited too long for the handover
/// gave up and logged in again there with the same resource; then the
/// handover arrived, and the handed-over session was bound over the new
/// one, which ended it (the client was kicked) while nobody used the old
/// one. The new session now stays, and what the old one held goes on to
/// it. (Node 1 may also take the new login's kick before it lets the
/// session go, and end it itself: the same outcome for the client.)
#[tokio::test]
async fn t50_a_handover_after_the_client_logged_in_again_leaves_the_new_session() {
    // The links stall for seconds without a member given up.
    let cluster = TestCluster::builder(2)
        .link_latency(Duration::ZERO)
        .set("cluster", "suspect_after_ms = 15000")
        .set("cluster", "down_after_ms = 30000")
        .start();
    provision(cluster.node(0), "f", 2, 1);
    let (one, two) = (cluster.node(0), cluster.node(1));
    let two_c2s = two.c2s;
    let mut watcher = online(two, "f1", "pw1", "w").await;
    let mut phone = online(one, "f2", "pw2", "phone").await;
    let phone_jid = jid(&phone);
    expect_presence(&mut watcher, &phone_jid, None).await;
    let previd = enable_resumable(&mut phone).await;
    let handled = phone.sm_handled().unwrap();
    phone.drop_connection();
    chat(&mut watcher, &phone_jid, "held").await;
    // Node 1 has it (queued for the session) before the links stall.
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.hold_links();
    let mut patient = options(two, "f2", "pw2", "phone");
    patient.timeout = Duration::from_secs(60);
    let resuming =
        tokio::spawn(async move { Client::resume(two_c2s, &patient, &previd, handled).await });
    // Node 2 has asked node 1, on the held link; the client then logs in
    // again there as if it had given up (the server cannot tell).
    wait_log_count(two, "asking a member for a session to resume here", 1, WAIT).await;
    let mut again = online(two, "f2", "pw2", "phone").await;
    assert_eq!(jid(&again), phone_jid, "the same full JID");
    cluster.release_links();
    let refused = resuming.await.expect("the resuming task ends");
    let error = refused.err().expect("resumed over the newer login");
    assert!(
        matches!(&error, ClientError::SmFailed { condition, .. } if condition == "item-not-found"),
        "{error}"
    );

    // Node 1 hands the session over (node 2 lets it go) or ends it on the
    // kick: either way what it held reaches the new session.
    let held = again
        .expect(|e| is_message_with_body(e, "held"), WAIT)
        .await
        .unwrap_or_else(|error| panic!("the new session lost what the old one held: {error}"));
    assert_eq!(held.attr("from"), Some(jid(&watcher).as_str()), "{held}");
    chat(&mut watcher, &phone_jid, "after").await;
    again
        .expect(|e| is_message_with_body(e, "after"), WAIT)
        .await
        .unwrap_or_else(|error| panic!("the new session does not get new messages: {error}"));
    assert_ends_up_available(&mut watcher, &phone_jid).await;
}

/// A login that replaces a session under the same full JID on the same
/// member says goodbye for it before its own presence, to the contacts
/// and to whoever had directed presence from it; the old session, kicked
/// with `<conflict/>`, says nothing of its own (its goodbye could come
/// after the new presence and tell the contacts for good the client left).
#[tokio::test]
async fn t60_a_session_replaced_on_its_member_is_said_goodbye_for_by_the_new_one() {
    let cluster = TestCluster::builder(2).start();
    provision(cluster.node(0), "g", 2, 1);
    provision(cluster.node(0), "stranger", 1, 0);
    let (one, two) = (cluster.node(0), cluster.node(1));
    let mut watcher = online(two, "g1", "pw1", "w").await;
    let mut stranger = online(two, "stranger1", "pw1", "s").await;
    let mut old = online(one, "g2", "pw2", "phone").await;
    let phone_jid = jid(&old);
    expect_presence(&mut watcher, &phone_jid, None).await;
    // Directed presence to someone without a subscription (RFC 6121 4.6).
    send(&mut old, &format!("<presence to='{}'/>", jid(&stranger))).await;
    expect_presence(&mut stranger, &phone_jid, None).await;

    let new = online(one, "g2", "pw2", "phone").await;
    assert_eq!(jid(&new), phone_jid, "the same full JID");
    old.expect_stream_error("conflict", WAIT)
        .await
        .unwrap_or_else(|error| panic!("the old session was not replaced: {error}"));
    expect_presence(&mut stranger, &phone_jid, Some("unavailable")).await;
    let seen = presence_types_from(&mut watcher, &phone_jid).await;
    // (An available presence may come twice: presence allows repeats.)
    assert!(
        seen.first().is_some_and(|ty| ty == "unavailable")
            && seen.len() > 1
            && seen[1..].iter().all(|ty| ty == "available"),
        "the watcher hears the old session go, then the new one come: {seen:?}"
    );
}

/// A session that moved between members was bound nowhere for a moment,
/// and a presence sent to it then is dropped (nobody has that full JID);
/// the fault campaign found sessions that kept a contact's goodbye that
/// way, its next session's presence lost in the move. Once resumed on
/// another member, the session's contacts are probed again: each
/// available one answers with its current presence.
#[tokio::test]
async fn t70_a_session_resumed_on_another_member_hears_its_contacts_presence_again() {
    let cluster = TestCluster::builder(2).start();
    provision(cluster.node(0), "h", 2, 1);
    let (one, two) = (cluster.node(0), cluster.node(1));
    let mut contact = online(two, "h1", "pw1", "c").await;
    let mut phone = online(one, "h2", "pw2", "phone").await;
    let contact_jid = jid(&contact);
    expect_presence(&mut phone, &contact_jid, None).await;
    expect_presence(&mut contact, &jid(&phone), None).await;
    let previd = enable_resumable(&mut phone).await;
    let handled = phone.sm_handled().unwrap();
    phone.drop_connection();

    let (mut resumed, _) = Client::resume(
        two.c2s,
        &options(two, "h2", "pw2", "phone"),
        &previd,
        handled,
    )
    .await
    .unwrap_or_else(|error| panic!("no resumption on node 2: {error}"));
    expect_presence(&mut resumed, &contact_jid, None).await;
}
