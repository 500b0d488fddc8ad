//! Order and completeness under load and under races: bursts between nodes
//! arrive whole and in order, also when the link between the two members
//! is cut in the middle of one, and a user messaged on one node the moment
//! it logs in on another gets every message exactly once, live or from
//! offline storage.

use std::collections::BTreeMap;
use std::time::Duration;

use starling_core::xml::Element;
use starling_tests::{Client, ClientError, TestCluster};
use tokio::task::JoinHandle;

use crate::support::*;

/// Messages in each burst.
const BURST: usize = 1_000;

/// Login races run.
const RACES: usize = 50;

/// (writer's node, target's node), 0-based: every ordered pair.
const PAIRS: [(usize, usize); 6] = [(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1)];

/// Sends `count` chat messages `"{tag} {n}"`, alternately to the
/// receiver's full and bare JID, as fast as the connection takes them.
fn burst(mut sender: Client, to: String, tag: &'static str, count: usize) -> JoinHandle<Client> {
    tokio::spawn(async move {
        let bare = to.split('/').next().unwrap_or_default().to_owned();
        for n in 0..count {
            let address = if n % 2 == 0 { &to } else { &bare };
            let xml = format!(
                "<message to='{address}' type='chat' id='{tag}-{n}'><body>{tag} {n}</body></message>"
            );
            sender.send(&xml).await.unwrap();
        }
        sender
    })
}

/// Reads `count` messages tagged `tag` and checks that they are exactly
/// `"{tag} 0"`, `"{tag} 1"`, ... in that order, each stamped with its
/// sender and without a delay (none went through offline storage).
fn collect(
    mut receiver: Client,
    from: String,
    tag: &'static str,
    count: usize,
) -> JoinHandle<Client> {
    tokio::spawn(async move {
        for n in 0..count {
            let message = receiver
                .expect(is_message, WAIT)
                .await
                .unwrap_or_else(|error| panic!("{tag}: message {n} of {count} missing: {error}"));
            assert_eq!(
                body(&message),
                format!("{tag} {n}"),
                "{tag}: lost or reordered"
            );
            assert_eq!(message.attr("from"), Some(from.as_str()), "{message}");
            assert_eq!(message.attr("id"), Some(format!("{tag}-{n}").as_str()));
            assert!(
                !message.has_child("delay", "urn:xmpp:delay"),
                "{tag}: went offline: {message}"
            );
        }
        receiver
    })
}

/// 1,000 messages from node 1 to node 2 and, at the same time, 1,000 from
/// node 2 to node 3, half to the full JID and half to the bare JID: each
/// burst arrives complete, in order, once.
#[tokio::test]
async fn bursts_between_nodes_arrive_complete_and_in_order() {
    let cluster = cluster(&["s12", "r12", "s23", "r23"]);
    let mut s12 = online(node(&cluster, 1), "s12", PW, "s").await;
    let mut r12 = online(node(&cluster, 2), "r12", PW, "r").await;
    let mut s23 = online(node(&cluster, 2), "s23", PW, "s").await;
    let mut r23 = online(node(&cluster, 3), "r23", PW, "r").await;
    barrier(&mut r12, &mut s12).await;
    barrier(&mut r23, &mut s23).await;

    let receivers = [
        collect(r12, jid(&s12), "one-two", BURST),
        collect(r23, jid(&s23), "two-three", BURST),
    ];
    let senders = [
        burst(s12, "r12@localhost/r".to_owned(), "one-two", BURST),
        burst(s23, "r23@localhost/r".to_owned(), "two-three", BURST),
    ];
    let [s12, s23] = senders;
    let (mut s12, mut s23) = (s12.await.unwrap(), s23.await.unwrap());
    let [r12, r23] = receivers;
    let (mut r12, mut r23) = (r12.await.unwrap(), r23.await.unwrap());

    barrier(&mut s12, &mut r12).await;
    barrier(&mut s23, &mut r23).await;
    assert_none(&r12, "a second copy", is_payload_message);
    assert_none(&r23, "a second copy", is_payload_message);
    for sender in [&mut s12, &mut s23] {
        sync(sender).await;
        assert_none(sender, "an error", |e| e.attr("type") == Some("error"));
    }
}

/// Messages in the burst whose link is cut.
const LONG_BURST: usize = 10_000;

/// 10,000 messages from node 1 to node 2; when 2,000 have arrived, every
/// peer link is closed at once (both members see their connection end).
/// The members link again, what the dead link left unacknowledged is sent
/// again first, and the receiver skips what it already delivered: the
/// burst arrives complete, in order, once, and nothing goes to offline
/// storage.
#[tokio::test]
async fn a_burst_whose_link_is_cut_midway_arrives_complete_and_once() {
    let cluster = TestCluster::builder(2)
        .link_latency(Duration::ZERO)
        .user("flap_s", PW)
        .user("flap_r", PW)
        .start();
    let mut sender = online(node(&cluster, 1), "flap_s", PW, "s").await;
    let mut receiver = online(node(&cluster, 2), "flap_r", PW, "r").await;
    barrier(&mut receiver, &mut sender).await;
    let from = jid(&sender);
    let burst = burst(sender, "flap_r@localhost/r".to_owned(), "flap", LONG_BURST);
    for n in 0..LONG_BURST {
        if n == 2_000 {
            cluster.cut_links();
        }
        let message = receiver
            .expect(is_message, WAIT)
            .await
            .unwrap_or_else(|error| panic!("message {n} of {LONG_BURST} missing: {error}"));
        assert_eq!(body(&message), format!("flap {n}"), "lost or reordered");
        assert_eq!(message.attr("from"), Some(from.as_str()), "{message}");
        assert!(
            !message.has_child("delay", "urn:xmpp:delay"),
            "went offline: {message}"
        );
    }
    let mut sender = burst.await.unwrap();
    barrier(&mut sender, &mut receiver).await;
    assert_none(&receiver, "a second copy", is_payload_message);
    sync(&mut sender).await;
    assert_none(&sender, "an error", |e| e.attr("type") == Some("error"));
    let down = |index: usize| {
        cluster
            .node(index)
            .log()
            .matches("cluster link down")
            .count()
    };
    assert!(
        down(0) + down(1) > 0,
        "the cut closed no link:\n{}",
        cluster.node(0).log()
    );
    eprintln!(
        "links closed {} times; sent again: {:?}",
        down(0) + down(1),
        cluster
            .node(0)
            .log()
            .lines()
            .filter(|line| line.contains("sending again"))
            .collect::<Vec<_>>()
    );
}

/// What one session of the race's target received.
fn tally(counts: &mut BTreeMap<String, usize>, delayed: &mut usize, message: &Element) {
    if !is_payload_message(message) {
        return;
    }
    if message.has_child("delay", "urn:xmpp:delay") {
        *delayed += 1;
    }
    *counts.entry(body(message)).or_default() += 1;
}

/// Closes the stream and takes every stanza the server sends before its
/// own close: what it did not write by then it routes again (here:
/// offline storage, as the user has no other session).
async fn close_and_drain(mut client: Client) -> Vec<Element> {
    let me = jid(&client);
    let mut received = Vec::new();
    client.send("</stream:stream>").await.unwrap();
    // Stanzas read before and kept for later come first.
    loop {
        match client.next_stanza(WAIT).await {
            Ok(element) => received.push(element),
            Err(ClientError::Closed { .. }) => return received,
            Err(error) => panic!("{me} did not close cleanly: {error}"),
        }
    }
}

/// The race of a login: the target binds a fresh resource on node B and
/// is written to from node A at once, to the new full JID and to the bare
/// JID, before its initial presence and before B's announcement can have
/// reached A; then it goes online and leaves again. Repeated over every
/// ordered pair of nodes; at the end the target logs in once more. Every
/// message arrives exactly once: live, flushed from storage to the same
/// session, or stored and delivered at a later login.
#[tokio::test]
async fn a_user_messaged_from_another_node_while_logging_in_gets_everything_once() {
    let cluster = cluster(&["writer", "target"]);
    let mut writers = Vec::new();
    for n in 1..=NODES {
        writers.push(online(node(&cluster, n), "writer", PW, &format!("w{n}")).await);
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut delayed = 0;
    let mut sent = Vec::new();

    for round in 0..RACES {
        let (a, b) = PAIRS[round % PAIRS.len()];
        let resource = format!("t{round}");
        let mut target = login(node(&cluster, b + 1), "target", PW, &resource).await;
        let full = format!("target@localhost/{resource}");
        let to_full = format!(
            "<message to='{full}' type='chat' id='f{round}'><body>full {round}</body></message>"
        );
        let to_bare = format!(
            "<message to='target@localhost' type='chat' id='b{round}'><body>bare {round}</body></message>"
        );
        // A full-JID lookup that misses waits for the directory, which
        // delays what follows it: half the rounds put the bare JID first.
        let both = if round % 2 == 0 {
            to_bare + &to_full
        } else {
            to_full + &to_bare
        };
        send(&mut writers[a], &both).await;
        sent.push(format!("full {round}"));
        sent.push(format!("bare {round}"));
        roster_get(&mut target).await;
        available(&mut target, "<presence/>").await;
        // The writer's node has routed both messages once this arrives:
        // each is here already, or stored.
        barrier(&mut writers[a], &mut target).await;
        if round % 10 == 4 {
            // The bare-JID message went first, before the session was
            // available, so it was stored; the writer's node then tells B,
            // which delivers it to this session.
            for text in [format!("bare {round}"), format!("full {round}")] {
                let message = expect_body(&mut target, &text).await;
                tally(&mut counts, &mut delayed, &message);
            }
        }
        for message in close_and_drain(target).await {
            tally(&mut counts, &mut delayed, &message);
        }
    }

    // Whatever was stored comes at the next login; some may still be on
    // their way (a lookup retrying, a store not yet written): wait for
    // all of them, each only as long as anything is bounded here.
    let mut last = online(node(&cluster, 1), "target", PW, "last").await;
    let total = sent.len();
    while counts.values().sum::<usize>() < total {
        let message = last
            .expect(is_payload_message, WAIT)
            .await
            .unwrap_or_else(|error| {
                let missing: Vec<&String> = sent
                    .iter()
                    .filter(|body| !counts.contains_key(*body))
                    .collect();
                panic!("never delivered: {missing:?} ({error})")
            });
        tally(&mut counts, &mut delayed, &message);
    }
    for writer in writers.iter_mut() {
        barrier(writer, &mut last).await;
    }
    for message in last.pending() {
        tally(&mut counts, &mut delayed, message);
    }
    let wrong: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(wrong.is_empty(), "delivered more than once: {wrong:?}");
    let unknown: Vec<&String> = counts.keys().filter(|body| !sent.contains(body)).collect();
    assert!(unknown.is_empty(), "never sent: {unknown:?}");
    assert_eq!(counts.len(), total);
    println!(
        "{RACES} login races: {total} messages, {} live, {delayed} through offline storage",
        total - delayed
    );
}
