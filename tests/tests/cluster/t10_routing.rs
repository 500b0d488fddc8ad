//! RFC 6121 section 8.5 routing across nodes: messages and iqs between
//! users on every pair of nodes (and on the same node), by full and bare
//! JID; bare-JID delivery by priority when a user's resources sit on
//! different nodes; and a resource conflict between two nodes.

use starling_tests::Client;

use crate::support::*;

/// The resource every test client binds on node `n`.
fn resource(n: usize) -> String {
    format!("n{n}")
}

/// Senders `s1..s3` and receivers `r1..r3`; `sN` and `rN` are on node N,
/// so every (sender, receiver) pair is one combination of nodes, the same
/// node included. Each kind of stanza is checked exactly as it arrives.
#[tokio::test]
async fn messages_and_iqs_reach_users_on_every_node() {
    let cluster = cluster(&["s1", "s2", "s3", "r1", "r2", "r3"]);
    let mut senders: Vec<Client> = Vec::new();
    let mut receivers: Vec<Client> = Vec::new();
    for n in 1..=NODES {
        let at = node(&cluster, n);
        senders.push(online(at, &format!("s{n}"), PW, &resource(n)).await);
        receivers.push(online(at, &format!("r{n}"), PW, &resource(n)).await);
    }
    // Each sender's node has heard of each receiver's available session.
    for receiver in receivers.iter_mut() {
        for sender in senders.iter_mut() {
            barrier(receiver, sender).await;
        }
    }

    for (i, sender) in senders.iter_mut().enumerate() {
        let i = i + 1;
        for j in 1..=NODES {
            send(
                sender,
                &format!(
                    "<message to='r{j}@localhost/n{j}' type='chat' id='full-{i}{j}'>\
                     <body>full {i} to {j}</body><thread>t-{i}{j}</thread></message>\
                     <message to='r{j}@localhost' id='bare-{i}{j}'>\
                     <body>bare {i} to {j}</body></message>\
                     <message to='r{j}@localhost/gone' type='chat' id='gone-{i}{j}'>\
                     <body>gone {i} to {j}</body></message>\
                     <iq type='get' to='r{j}@localhost/n{j}' id='version-{i}{j}'>\
                     <query xmlns='jabber:iq:version'/></iq>\
                     <iq type='get' to='r{j}@localhost/gone' id='nobody-{i}{j}'>\
                     <query xmlns='jabber:iq:version'/></iq>"
                ),
            )
            .await;
        }
    }

    for (j, receiver) in receivers.iter_mut().enumerate() {
        let j = j + 1;
        for i in 1..=NODES {
            let full = expect_body(receiver, &format!("full {i} to {j}")).await;
            assert_stanza(
                &full,
                &format!(
                    "<message from='s{i}@localhost/n{i}' to='r{j}@localhost/n{j}' type='chat' \
                     id='full-{i}{j}'><body>full {i} to {j}</body><thread>t-{i}{j}</thread>\
                     </message>"
                ),
            );
            let bare = expect_body(receiver, &format!("bare {i} to {j}")).await;
            assert_stanza(
                &bare,
                &format!(
                    "<message from='s{i}@localhost/n{i}' to='r{j}@localhost' id='bare-{i}{j}'>\
                     <body>bare {i} to {j}</body></message>"
                ),
            );
            // RFC 6121 8.5.3.2.1: chat to a resource that is not connected
            // goes to the bare JID, keeping its address.
            let gone = expect_body(receiver, &format!("gone {i} to {j}")).await;
            assert_stanza(
                &gone,
                &format!(
                    "<message from='s{i}@localhost/n{i}' to='r{j}@localhost/gone' type='chat' \
                     id='gone-{i}{j}'><body>gone {i} to {j}</body></message>"
                ),
            );
            let id = format!("version-{i}{j}");
            let request = receiver
                .expect(|e| e.name() == "iq" && e.attr("id") == Some(&id), WAIT)
                .await
                .unwrap_or_else(|error| panic!("r{j} did not get iq {id}: {error}"));
            assert_stanza(
                &request,
                &format!(
                    "<iq type='get' from='s{i}@localhost/n{i}' to='r{j}@localhost/n{j}' \
                     id='{id}'><query xmlns='jabber:iq:version'/></iq>"
                ),
            );
            send(
                receiver,
                &format!(
                    "<iq type='result' to='s{i}@localhost/n{i}' id='{id}'>\
                     <query xmlns='jabber:iq:version'><name>r{j}</name></query></iq>\
                     <message to='s{i}@localhost/n{i}' type='chat' id='reply-{j}{i}'>\
                     <body>reply {j} to {i}</body></message>"
                ),
            )
            .await;
        }
    }

    for (i, sender) in senders.iter_mut().enumerate() {
        let i = i + 1;
        for j in 1..=NODES {
            let result = expect_reply(sender, &format!("version-{i}{j}")).await;
            assert_stanza(
                &result,
                &format!(
                    "<iq type='result' from='r{j}@localhost/n{j}' to='s{i}@localhost/n{i}' \
                     id='version-{i}{j}'><query xmlns='jabber:iq:version'><name>r{j}</name>\
                     </query></iq>"
                ),
            );
            let error = expect_reply(sender, &format!("nobody-{i}{j}")).await;
            assert_error(&error, "cancel", "service-unavailable");
            assert_eq!(
                error.attr("from"),
                Some(format!("r{j}@localhost/gone").as_str()),
                "{error}"
            );
            let reply = expect_body(sender, &format!("reply {j} to {i}")).await;
            assert_stanza(
                &reply,
                &format!(
                    "<message from='r{j}@localhost/n{j}' to='s{i}@localhost/n{i}' type='chat' \
                     id='reply-{j}{i}'><body>reply {j} to {i}</body></message>"
                ),
            );
        }
    }

    // Each stanza arrived once: markers sent after everything find no copy.
    for receiver in receivers.iter_mut() {
        for sender in senders.iter_mut() {
            barrier(sender, receiver).await;
        }
        assert_none(receiver, "a second copy", is_payload_message);
    }
    for sender in senders.iter_mut() {
        for receiver in receivers.iter_mut() {
            barrier(receiver, sender).await;
        }
        assert_none(sender, "a second copy", is_payload_message);
    }
}

/// Bob has resources on all three nodes with different priorities; Alice
/// (node 1) and Carol (node 2) write to his bare JID. Chat and normal
/// messages go to the highest priority wherever it is, all of the equal
/// highest get a copy, headlines go to every non-negative available
/// resource, and negative or never-available resources get nothing.
#[tokio::test]
async fn bare_jid_messages_follow_priority_across_nodes() {
    let cluster = cluster(&["alice", "bob", "carol"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut carol = online(node(&cluster, 2), "carol", PW, "c").await;
    let mut high = login(node(&cluster, 2), "bob", PW, "high").await;
    available(&mut high, "<presence><priority>5</priority></presence>").await;
    let mut low = login(node(&cluster, 3), "bob", PW, "low").await;
    available(&mut low, "<presence><priority>1</priority></presence>").await;
    let mut negative = login(node(&cluster, 1), "bob", PW, "negative").await;
    available(
        &mut negative,
        "<presence><priority>-1</priority></presence>",
    )
    .await;
    // Connected but never available.
    let mut idle = login(node(&cluster, 3), "bob", PW, "idle").await;
    // The senders' nodes know every state of Bob's resources.
    for bob in [&mut high, &mut low, &mut negative, &mut idle] {
        barrier(bob, &mut alice).await;
        barrier(bob, &mut carol).await;
    }

    // 8.5.2.1.1: chat to the highest priority only, from either node.
    send(
        &mut alice,
        "<message to='bob@localhost' type='chat' id='c1'><body>c1</body></message>",
    )
    .await;
    send(
        &mut carol,
        "<message to='bob@localhost' type='chat' id='c1c'><body>c1 from carol</body></message>",
    )
    .await;
    let chat = expect_body(&mut high, "c1").await;
    assert_stanza(
        &chat,
        "<message from='alice@localhost/a' to='bob@localhost' type='chat' id='c1'>\
         <body>c1</body></message>",
    );
    let chat = expect_body(&mut high, "c1 from carol").await;
    assert_stanza(
        &chat,
        "<message from='carol@localhost/c' to='bob@localhost' type='chat' id='c1c'>\
         <body>c1 from carol</body></message>",
    );
    // A headline to every available resource with non-negative priority.
    send(
        &mut alice,
        "<message to='bob@localhost' type='headline' id='h1'><body>h1</body></message>",
    )
    .await;
    for resource in [&mut high, &mut low] {
        let headline = expect_body(resource, "h1").await;
        assert_stanza(
            &headline,
            "<message from='alice@localhost/a' to='bob@localhost' type='headline' id='h1'>\
             <body>h1</body></message>",
        );
    }

    // Equal top priorities on two nodes: each gets chat and normal messages.
    available(&mut low, "<presence><priority>5</priority></presence>").await;
    barrier(&mut low, &mut alice).await;
    barrier(&mut low, &mut carol).await;
    send(
        &mut alice,
        "<message to='bob@localhost' type='chat' id='c2'><body>c2</body></message>\
         <message to='bob@localhost' id='n1'><body>n1</body></message>",
    )
    .await;
    send(
        &mut carol,
        "<message to='bob@localhost' type='chat' id='c2c'><body>c2 from carol</body></message>",
    )
    .await;
    for resource in [&mut high, &mut low] {
        let chat = expect_body(resource, "c2").await;
        assert_stanza(
            &chat,
            "<message from='alice@localhost/a' to='bob@localhost' type='chat' id='c2'>\
             <body>c2</body></message>",
        );
        let normal = expect_body(resource, "n1").await;
        assert_stanza(
            &normal,
            "<message from='alice@localhost/a' to='bob@localhost' id='n1'>\
             <body>n1</body></message>",
        );
        expect_body(resource, "c2 from carol").await;
    }

    // The top resource leaves (unavailable, still connected): the other
    // node's resource is now the only one; back at a lower priority, it
    // stays out.
    high.send("<presence type='unavailable'/>").await.unwrap();
    barrier(&mut high, &mut alice).await;
    barrier(&mut high, &mut carol).await;
    send(
        &mut alice,
        "<message to='bob@localhost' type='chat' id='c3'><body>c3</body></message>",
    )
    .await;
    expect_body(&mut low, "c3").await;
    available(&mut high, "<presence><priority>4</priority></presence>").await;
    barrier(&mut high, &mut alice).await;
    barrier(&mut high, &mut carol).await;
    send(
        &mut carol,
        "<message to='bob@localhost' type='chat' id='c4'><body>c4</body></message>",
    )
    .await;
    let chat = expect_body(&mut low, "c4").await;
    assert_eq!(chat.attr("from"), Some("carol@localhost/c"), "{chat}");

    for resource in [&mut high, &mut low, &mut negative, &mut idle] {
        barrier(&mut alice, resource).await;
        barrier(&mut carol, resource).await;
    }
    // Everything expected was taken above: what is left is misrouted or a
    // second copy.
    for resource in [&high, &low, &negative, &idle] {
        assert_none(resource, "a misrouted message", is_payload_message);
    }
}

/// RFC 6120 7.7.2.2 across nodes: the same full JID binding on node 2 while
/// bound on node 1 closes the node-1 session with `<conflict/>`, and what
/// is sent to that JID afterwards reaches the node-2 session.
#[tokio::test]
async fn a_resource_conflict_across_nodes_replaces_the_older_session() {
    let cluster = cluster(&["alice", "bob"]);
    let mut bob = online(node(&cluster, 3), "bob", PW, "b").await;
    let mut first = online(node(&cluster, 1), "alice", PW, "desk").await;
    barrier(&mut first, &mut bob).await;

    let mut second = online(node(&cluster, 2), "alice", PW, "desk").await;
    let error = first
        .expect_stream_error("conflict", WAIT)
        .await
        .unwrap_or_else(|error| panic!("the node-1 session was not replaced: {error}"));
    assert!(first.is_closed(), "{error}");

    // Bob's node hears of the new binding before this marker.
    barrier(&mut second, &mut bob).await;
    send(
        &mut bob,
        "<message to='alice@localhost/desk' type='chat' id='m1'><body>to desk</body></message>\
         <message to='alice@localhost' type='chat' id='m2'><body>to alice</body></message>\
         <iq type='get' to='alice@localhost/desk' id='q1'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    let full = expect_body(&mut second, "to desk").await;
    assert_stanza(
        &full,
        "<message from='bob@localhost/b' to='alice@localhost/desk' type='chat' id='m1'>\
         <body>to desk</body></message>",
    );
    let bare = expect_body(&mut second, "to alice").await;
    assert_stanza(
        &bare,
        "<message from='bob@localhost/b' to='alice@localhost' type='chat' id='m2'>\
         <body>to alice</body></message>",
    );
    let request = second
        .expect(|e| e.name() == "iq" && e.attr("id") == Some("q1"), WAIT)
        .await
        .unwrap();
    assert_eq!(request.attr("from"), Some("bob@localhost/b"), "{request}");
    send(
        &mut second,
        "<iq type='result' to='bob@localhost/b' id='q1'/>",
    )
    .await;
    let result = expect_reply(&mut bob, "q1").await;
    assert_stanza(
        &result,
        "<iq type='result' from='alice@localhost/desk' to='bob@localhost/b' id='q1'/>",
    );
    barrier(&mut bob, &mut second).await;
    assert_none(&second, "a second copy", is_payload_message);
    // The replaced session's leaving is not the new session's.
    assert_none(&second, "its own JID reported unavailable", |e| {
        is_presence(e, "alice@localhost/desk", Some("unavailable"))
    });
}

/// A resource conflict on one node, seen from another: the replacing
/// session stays known to the other members (the replaced one's leaving
/// does not take its entry along), and it is not told its own JID left.
#[tokio::test]
async fn a_resource_conflict_on_one_node_keeps_the_new_session_known_to_the_others() {
    let cluster = cluster(&["alice", "bob"]);
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    let mut first = online(node(&cluster, 1), "alice", PW, "desk").await;
    barrier(&mut first, &mut bob).await;

    // Bound only: a full-JID message reaches it, a bare-JID one would not.
    let mut second = login(node(&cluster, 1), "alice", PW, "desk").await;
    first
        .expect_stream_error("conflict", WAIT)
        .await
        .unwrap_or_else(|error| panic!("the first session was not replaced: {error}"));
    barrier(&mut second, &mut bob).await;
    send(
        &mut bob,
        "<message to='alice@localhost/desk' type='chat' id='m1'><body>to desk</body></message>",
    )
    .await;
    let full = expect_body(&mut second, "to desk").await;
    assert_stanza(
        &full,
        "<message from='bob@localhost/b' to='alice@localhost/desk' type='chat' id='m1'>\
         <body>to desk</body></message>",
    );
    roster_get(&mut second).await;
    available(&mut second, "<presence/>").await;
    barrier(&mut second, &mut bob).await;
    send(
        &mut bob,
        "<message to='alice@localhost' type='chat' id='m2'><body>to alice</body></message>",
    )
    .await;
    let bare = expect_body(&mut second, "to alice").await;
    assert_stanza(
        &bare,
        "<message from='bob@localhost/b' to='alice@localhost' type='chat' id='m2'>\
         <body>to alice</body></message>",
    );
    barrier(&mut bob, &mut second).await;
    assert_none(&second, "its own JID reported unavailable", |e| {
        is_presence(e, "alice@localhost/desk", Some("unavailable"))
    });
}
