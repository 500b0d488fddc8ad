//! The member table of `/api/cluster`, as every node reports it.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// What every node must agree on about a member.
fn identity(member: &Value) -> (String, u64, String, String, String) {
    (
        member["name"].as_str().unwrap_or_default().to_owned(),
        member["id"].as_u64().unwrap_or_default(),
        member["c2s_addr"].as_str().unwrap_or_default().to_owned(),
        member["http_addr"].as_str().unwrap_or_default().to_owned(),
        member["cluster_addr"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn identities(cluster: &Value) -> Vec<(String, u64, String, String, String)> {
    let mut all: Vec<_> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(identity)
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn every_node_agrees_and_sees_a_killed_member_go_down_and_come_back() {
    let mut cluster = builder(&[]).start();
    let mut views = Vec::new();
    for index in 0..NODES {
        let node = cluster.node(index);
        let view = wait_json(
            node.http,
            "/api/cluster",
            "three members up, a senior and a quorum",
            REJOIN_BOUND,
            |view| {
                all_up(view)
                    && view["quorum"] == true
                    && view["members"].as_array().is_some_and(|m| {
                        m.len() == NODES && m.iter().filter(|m| m["senior"] == true).count() == 1
                    })
            },
        )
        .await;
        assert_eq!(view["this_name"], format!("node{}", index + 1));
        let this = member(&view, &format!("node{}", index + 1)).expect("itself");
        assert_eq!(this["c2s_addr"], node.c2s.to_string());
        assert_eq!(this["http_addr"], node.http.to_string());
        assert!(this["joined_at_ms"].as_i64().unwrap_or_default() > 0);
        views.push(view);
    }
    let first = identities(&views[0]);
    for (index, view) in views.iter().enumerate() {
        assert_eq!(identities(view), first, "node{} disagrees", index + 1);
        assert_eq!(
            view["leader"],
            views[0]["leader"],
            "node{} names another senior member",
            index + 1
        );
    }
    // `starling cluster status` prints the same table from any node.
    for index in 0..NODES {
        let output = cluster.node(index).cli(&[
            "cluster",
            "status",
            "--user",
            ADMIN,
            "--password",
            ADMIN_PW,
        ]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cluster status: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.starts_with("NAME"), "{text}");
        for n in 0..NODES {
            let node = cluster.node(n);
            let row = text
                .lines()
                .find(|line| line.starts_with(&format!("node{} ", n + 1)))
                .unwrap_or_else(|| panic!("no row for node{}:\n{text}", n + 1));
            assert!(row.contains(" up "), "{row}");
            assert!(row.contains(&node.c2s.to_string()), "{row}");
            assert!(row.contains(&node.http.to_string()), "{row}");
        }
        assert!(text.contains("3 of 3 members up"), "{text}");
    }
    let refused =
        cluster
            .node(0)
            .cli(&["cluster", "status", "--user", ADMIN, "--password", "wrong"]);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("401"), "{error}");
    let closed = starling_tests::free_port();
    let unreachable = cluster.node(0).cli(&[
        "cluster",
        "status",
        "--url",
        &format!("http://127.0.0.1:{closed}"),
    ]);
    assert!(!unreachable.status.success());
    let error = String::from_utf8_lossy(&unreachable.stderr);
    assert!(error.contains("cannot reach"), "{error}");

    let incarnation = member(&views[0], "node3").expect("node3")["incarnation"]
        .as_u64()
        .expect("incarnation");

    cluster.kill(2);
    for index in 0..2 {
        let view = wait_json(
            cluster.node(index).http,
            "/api/cluster",
            "node3 down, in its state and its history",
            DETECTION_BOUND,
            // The history is appended just after the state changes: wait for both.
            |view| state_of(view, "node3") == "down" && went_down(view, "node3"),
        )
        .await;
        let history = view["history"].as_array().expect("history");
        assert!(
            history
                .iter()
                .any(|event| event["name"] == "node3" && event["state"] == "down"),
            "node{}'s history shows node3 going down: {history:?}",
            index + 1
        );
        let output = cluster.node(index).cli(&[
            "cluster",
            "status",
            "--user",
            ADMIN,
            "--password",
            ADMIN_PW,
        ]);
        let text = String::from_utf8_lossy(&output.stdout);
        let row = text.lines().find(|line| line.starts_with("node3 "));
        assert!(
            row.is_some_and(|row| row.contains(" down ")),
            "node3 down in:\n{text}"
        );
    }

    cluster.restart(2);
    for index in 0..NODES {
        let view = wait_json(
            cluster.node(index).http,
            "/api/cluster",
            "node3 up again",
            REJOIN_BOUND,
            all_up,
        )
        .await;
        let again = member(&view, "node3").unwrap()["incarnation"]
            .as_u64()
            .unwrap();
        assert!(
            again > incarnation,
            "node{}: a restarted member has a new incarnation ({again} after {incarnation})",
            index + 1
        );
    }
}

/// The admin page's banner reads `quorum`: with two of three members
/// killed, the survivor reports that membership changes cannot be committed.
#[tokio::test]
async fn the_survivor_of_a_lost_majority_reports_no_quorum() {
    let mut cluster = builder(&[]).start();
    let survivor = cluster.node(0).http;
    wait_json(
        survivor,
        "/api/cluster",
        "three members up, a quorum",
        REJOIN_BOUND,
        |view| all_up(view) && view["quorum"] == true,
    )
    .await;
    cluster.kill(1);
    cluster.kill(2);
    let view = wait_json(
        survivor,
        "/api/cluster",
        "no quorum once node2 and node3 are down",
        DETECTION_BOUND,
        |view| view["quorum"] == false,
    )
    .await;
    assert_eq!(state_of(&view, "node1"), "up", "{view}");
}

/// Whether a member view's history has `name` going down.
fn went_down(view: &serde_json::Value, name: &str) -> bool {
    view["history"].as_array().is_some_and(|history| {
        history
            .iter()
            .any(|event| event["name"] == name && event["state"] == "down")
    })
}

/// Each member reports how many stanzas its clients exchanged, and every
/// other member's `/api/cluster` shows it (the admin page's load graph).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_shows_each_members_client_stanzas() {
    let cluster = builder(&["alice"]).start();
    let options = starling_tests::LoginOptions::new(&cluster.node(1).domain, "alice", PW);
    let mut alice = starling_tests::Client::login(cluster.node(1).c2s, &options)
        .await
        .unwrap();
    for n in 0..5 {
        alice
            .send(&format!(
                "<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await
            .unwrap();
    }
    alice
        .expect(|e| e.attr("id") == Some("p4"), Duration::from_secs(10))
        .await
        .unwrap();
    // At least the 5 pings and their answers (the bind adds its own).
    for index in 0..NODES {
        let view = wait_json(
            cluster.node(index).http,
            "/api/cluster",
            "node2's client stanzas",
            REJOIN_BOUND,
            |view| {
                member(view, "node2")
                    .and_then(|m| m["client_stanzas"].as_u64())
                    .is_some_and(|count| count >= 10)
            },
        )
        .await;
        let quiet = member(&view, "node3").expect("node3")["client_stanzas"].as_u64();
        assert_eq!(quiet, Some(0), "node3 had no clients: {view}");
    }
}
