//! Helpers for the HTTP tests: the c2s suite's client helpers, a
//! three-node cluster with an admin account, and polling a JSON API until
//! it says what a test waits for.

#[path = "../c2s/support.rs"]
#[allow(dead_code)]
mod single;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use starling_tests::http::{self, Response};
use starling_tests::{ClusterBuilder, TestCluster};

#[allow(unused_imports)]
pub(crate) use single::*;

pub(crate) const NODES: usize = 3;
pub(crate) const ADMIN: &str = "admin";
pub(crate) const ADMIN_PW: &str = "admin-secret";
/// The password of every other account.
pub(crate) const PW: &str = "pw";

/// Failure detection here is 2 s (heartbeats every 250 ms); the bound
/// leaves room for a loaded machine.
pub(crate) const DETECTION_BOUND: Duration = Duration::from_secs(15);
/// A restarted member rejoins through Raft and resyncs the directory.
pub(crate) const REJOIN_BOUND: Duration = Duration::from_secs(60);

/// Three nodes with quick failure detection, an admin and these accounts.
pub(crate) fn builder(users: &[&str]) -> ClusterBuilder {
    let mut builder = TestCluster::builder(NODES)
        .admin(ADMIN, ADMIN_PW)
        .set("cluster", "heartbeat_ms = 250")
        .set("cluster", "suspect_after_ms = 1000")
        .set("cluster", "down_after_ms = 2000");
    for user in users {
        builder = builder.user(user, PW);
    }
    builder
}

/// `GET path` as the admin.
pub(crate) async fn get(addr: SocketAddr, path: &str) -> Response {
    http::get(addr, path, ADMIN, ADMIN_PW).await
}

/// `GET path` as the admin, expecting 200 and JSON.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let response = get(addr, path).await;
    assert_eq!(
        response.status,
        200,
        "GET {path} on {addr}: {}",
        response.text()
    );
    response.json()
}

/// `METHOD path` with a JSON body, as the admin.
pub(crate) async fn send(addr: SocketAddr, method: &str, path: &str, body: Value) -> Response {
    http::send_json(addr, method, path, &body, ADMIN, ADMIN_PW).await
}

/// Polls `GET path` until `holds` is true of its JSON; panics after
/// `bound` with the last answer.
pub(crate) async fn wait_json(
    addr: SocketAddr,
    path: &str,
    what: &str,
    bound: Duration,
    holds: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let json = get_json(addr, path).await;
        if holds(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}{path}: {what} not seen within {bound:?}; last answer:\n{json:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The member named `name` in an `/api/cluster` answer.
pub(crate) fn member<'a>(cluster: &'a Value, name: &str) -> Option<&'a Value> {
    cluster["members"]
        .as_array()?
        .iter()
        .find(|member| member["name"] == name)
}

/// The state of member `name` (`up`, `suspect`, `down`, `leaving`).
pub(crate) fn state_of(cluster: &Value, name: &str) -> String {
    member(cluster, name)
        .and_then(|member| member["state"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

/// Every member of the cluster up, as node `addr` sees it.
pub(crate) fn all_up(cluster: &Value) -> bool {
    (1..=NODES).all(|n| state_of(cluster, &format!("node{n}")) == "up")
}

/// Waits for a message with this body.
pub(crate) async fn expect_body(
    client: &mut starling_tests::Client,
    text: &str,
) -> starling_core::xml::Element {
    client
        .expect(|e| is_message_with_body(e, text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?}: {error}", jid(client)))
}

/// Waits until something listens on `addr` (a node's HTTP listeners start
/// just after its client port, which is what the harness waits for).
pub(crate) async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
