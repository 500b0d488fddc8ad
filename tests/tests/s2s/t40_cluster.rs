//! A three-node cluster (domain localhost) federating with a single node
//! (s.test), users on every member. Each member opens its own outgoing
//! stream; s.test reaches the cluster through one member, so its dialback
//! verifications check keys other members made.

use starling_tests::http::HttpRequest;
use starling_tests::{TestCluster, TestNode, free_port};

use crate::support::*;

#[tokio::test]
async fn a_cluster_federates_from_every_member() {
    let cluster_s2s: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let single_s2s = free_port();
    let mut builder = TestCluster::builder(3)
        .user("c1", PW)
        .user("c2", PW)
        .user("c3", PW)
        .admin("admin", PW)
        .set(
            "s2s.routes",
            &format!("\"s.test\" = \"127.0.0.1:{single_s2s}\""),
        );
    for (index, port) in cluster_s2s.iter().enumerate() {
        builder = builder.set_on(index, "s2s", &format!("bind = \"127.0.0.1:{port}\""));
    }
    let cluster = builder.start();
    let single = server("s.test", single_s2s, &[("localhost", cluster_s2s[0])])
        .user("sam", PW)
        .start();

    let mut sam = online(&single, "sam", PW, "desk").await;
    let mut members = Vec::new();
    for (index, user) in ["c1", "c2", "c3"].iter().enumerate() {
        members.push(online(cluster.node(index), user, PW, "m").await);
    }
    for (index, member) in members.iter_mut().enumerate() {
        chat(member, &mut sam, &format!("from member {}", index + 1)).await;
        chat(&mut sam, member, &format!("to member {}", index + 1)).await;
    }
    // Every member authenticated its own outgoing stream, and s.test
    // verified each key through member 1.
    for index in 0..3 {
        let node: &TestNode = cluster.node(index);
        assert_eq!(
            authentications(node, "out", "dialback").await,
            1.0,
            "{}",
            node.log()
        );
    }
    assert_eq!(
        authentications(&single, "in", "dialback").await,
        3.0,
        "{}",
        single.log()
    );
    // Each member's /api/cluster lists the outgoing stream it holds.
    for index in 0..3 {
        let view = HttpRequest::new(cluster.node(index).http, "GET", "/api/cluster")
            .basic("admin", PW)
            .send()
            .await
            .unwrap()
            .json();
        assert_eq!(
            view["s2s"]["outgoing"],
            serde_json::json!([["localhost", "s.test"]]),
            "{view}"
        );
    }
}
