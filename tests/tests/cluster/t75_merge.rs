//! Two clusters formed apart, merged when they meet.
//!
//! Node 3 starts cut off from nodes 1 and 2: its way to them, and theirs to
//! it, passes relays that close every connection until the test heals the
//! cut. So each side waits out the join timeout and forms a cluster of its
//! own: nodes 1 and 2 one, node 3 another. Users chat on both sides. Healed,
//! the links come up and each side sees the other's senior member in the
//! statuses: the smaller cluster (node 3's) gives way, as the rule in
//! `node/decide.rs` orders them (more members, then the lowest member id):
//! node 3 restarts its membership and asks to be added, and nodes 1 and 2
//! stay as they were.
//!
//! What must hold: all three end with the same members, no client of
//! either side loses its session (each still chats, with users on the other
//! side too), contacts across the old cut see each other online, and nobody
//! gets an unavailable presence for a session that never went away.

use std::collections::BTreeSet;
use std::time::Instant;

use starling_tests::{TestCluster, http};

use crate::t50_faults::{
    DOWN_WAIT, WAIT, assert_none, chat_once, friend_online, friends, jid, plain_log,
    presence_within, quick, wait_view,
};

fn names(numbers: &[usize]) -> BTreeSet<String> {
    numbers.iter().map(|n| format!("node{n}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_formed_apart_merge_when_they_meet() {
    let cluster = quick(TestCluster::builder(3))
        .set("cluster", "join_timeout_ms = 1500")
        .cut_off(2)
        .admin("root", "rootpw")
        .start();
    wait_view(
        cluster.node(0),
        "node1 and node2",
        |v| v.members == names(&[1, 2]),
        WAIT,
    )
    .await;
    wait_view(
        cluster.node(1),
        "node1 and node2",
        |v| v.members == names(&[1, 2]),
        WAIT,
    )
    .await;
    wait_view(
        cluster.node(2),
        "node3 alone",
        |v| v.members == names(&[3]),
        WAIT,
    )
    .await;

    // Four friends: two on the larger side, two on node 3.
    friends(&cluster, "m", 4);
    let mut m1 = friend_online(cluster.node(0), "m", 1, "r").await;
    let mut m2 = friend_online(cluster.node(1), "m", 2, "r").await;
    let mut m3 = friend_online(cluster.node(2), "m", 3, "r").await;
    let mut m4 = friend_online(cluster.node(2), "m", 4, "r").await;
    chat_once(&mut m1, &mut m2, "apart").await;
    chat_once(&mut m3, &mut m4, "apart").await;

    let healed = Instant::now();
    cluster.heal();
    let all = names(&[1, 2, 3]);
    for index in 0..3 {
        let view = wait_view(
            cluster.node(index),
            "all three",
            |v| v.members == all,
            DOWN_WAIT,
        )
        .await;
        eprintln!(
            "node{} lists all three after {:?} (senior {})",
            index + 1,
            healed.elapsed(),
            view.senior
        );
        assert!(
            view.senior == "node1" || view.senior == "node2",
            "the larger cluster's senior member should lead: {view:?}"
        );
    }
    assert!(
        plain_log(cluster.node(2)).contains("leaving it to merge"),
        "node3 should have left its own cluster:\n{}",
        plain_log(cluster.node(2))
    );
    for index in [0, 1] {
        assert!(
            !plain_log(cluster.node(index)).contains("leaving it to merge"),
            "node{} of the larger cluster should have stayed",
            index + 1
        );
    }
    // The admin API (and page) shows the merge in node 3's history.
    let status = http::get(cluster.node(2).http, "/api/cluster", "root", "rootpw")
        .await
        .json();
    let merged = status["history"].as_array().is_some_and(|events| {
        events.iter().any(|event| {
            event["note"]
                .as_str()
                .is_some_and(|note| note.starts_with("merged"))
        })
    });
    assert!(merged, "no merge in node3's history: {status}");

    // Contacts across the old cut see each other online...
    let (j1, j2, j3, j4) = (jid(&m1), jid(&m2), jid(&m3), jid(&m4));
    for (client, others) in [
        (&mut m1, [&j3, &j4]),
        (&mut m2, [&j3, &j4]),
        (&mut m3, [&j1, &j2]),
        (&mut m4, [&j1, &j2]),
    ] {
        for other in others {
            presence_within(client, other, None, DOWN_WAIT).await;
        }
    }
    // ...every session lived on and reaches every other...
    chat_once(&mut m1, &mut m3, "merged").await;
    chat_once(&mut m2, &mut m4, "merged").await;
    chat_once(&mut m4, &mut m1, "merged-again").await;
    chat_once(&mut m1, &mut m2, "merged").await;
    chat_once(&mut m3, &mut m4, "merged").await;
    // ...and nobody was told a live session went away.
    for (client, others) in [
        (&m1, [&j2, &j3, &j4]),
        (&m2, [&j1, &j3, &j4]),
        (&m3, [&j1, &j2, &j4]),
        (&m4, [&j1, &j2, &j3]),
    ] {
        for other in others {
            assert_none(client, "a spurious unavailable", |e| {
                e.name() == "presence"
                    && e.attr("from") == Some(other.as_str())
                    && e.attr("type") == Some("unavailable")
            });
        }
    }
}
