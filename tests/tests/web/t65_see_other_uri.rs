//! A full member of a three-node cluster sends web clients elsewhere, as
//! it sends TCP clients with see-other-host: a WebSocket client gets
//! `<close see-other-uri='wss://…/xmpp-websocket'/>` (RFC 7395 3.6.1), a
//! BOSH client `<body type='terminate' condition='see-other-uri'>` with
//! the `<uri/>` (XEP-0124), naming a member with room at its web URL; with
//! no room anywhere both get 503. Never to plain HTTP from HTTPS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use starling_tests::bosh::{self, BoshOptions, HTTPBIND, XBOSH};
use starling_tests::http::HttpRequest;
use starling_tests::websocket::{self, FRAMING, WsError};
use starling_tests::{Client, TestCluster};

use crate::support::*;

const ADMIN: &str = "root";
const ADMIN_PW: &str = "root-secret";
const NODES: usize = 3;

/// How long members may take to see each other and each other's sessions.
const CONVERGE: Duration = Duration::from_secs(60);

fn cluster(users: &[&str]) -> starling_tests::ClusterBuilder {
    users.iter().fold(
        TestCluster::builder(NODES)
            .admin(ADMIN, ADMIN_PW)
            .set("http", "tls = true")
            .set("cluster", "heartbeat_ms = 250"),
        |builder, user| builder.user(user, PASSWORD),
    )
}

/// Polls node `addr`'s `/api/cluster` (HTTPS) until `holds`.
async fn wait_view(addr: SocketAddr, what: &str, holds: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let answer = HttpRequest::new(addr, "GET", "/api/cluster")
            .tls()
            .basic(ADMIN, ADMIN_PW)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET /api/cluster on {addr}: {error}"));
        let view = answer.json();
        if let Some(members) = view["members"].as_array() {
            if holds(members) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: {what} not seen within {CONVERGE:?}:\n{view:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every member up with these sessions, as `addr` sees it.
async fn wait_sessions(addr: SocketAddr, sessions: [u64; NODES]) {
    wait_view(addr, &format!("members up with {sessions:?}"), |members| {
        (0..NODES).all(|n| {
            members.iter().any(|member| {
                member["name"] == format!("node{}", n + 1)
                    && member["state"] == "up"
                    && member["sessions"] == sessions[n]
            })
        })
    })
    .await;
}

fn open(domain: &str) -> String {
    format!("<open xmlns=\"{FRAMING}\" to=\"{domain}\" version=\"1.0\"/>")
}

/// The answer of `node`'s WebSocket to an `<open/>`, and whether it closed.
async fn websocket_answer(http: SocketAddr, domain: &str) -> Result<(String, bool), WsError> {
    websocket::first_answer(http, &wss(), &open(domain), WAIT).await
}

/// A raw BOSH session creation on `http`: (status, body).
async fn bosh_create(http: SocketAddr) -> (u16, String) {
    let answer = BoshOptions::new(http, true)
        .post(&format!(
            "<body xmlns='{HTTPBIND}' rid='100' to='localhost' wait='5' hold='1' \
             ver='1.6' xmlns:xmpp='{XBOSH}' xmpp:version='1.0'/>"
        ))
        .await
        .unwrap_or_else(|error| panic!("BOSH creation on {http}: {error}"));
    (answer.status, answer.text())
}

/// `host:port` of an URL such as `wss://127.0.0.1:1234/xmpp-websocket`.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).expect("a scheme");
    let host = rest.split('/').next().unwrap();
    host.parse()
        .unwrap_or_else(|error| panic!("{url}: {error}"))
}

#[tokio::test]
async fn t65_a_full_node_sends_web_clients_to_members_with_room() {
    let cluster = cluster(&["first", "web", "poll", "late"])
        .set("c2s", "max_connections = 1")
        .start();
    let (node1, node2) = (cluster.node(0), cluster.node(1));
    wait_sessions(node1.http, [0, 0, 0]).await;
    // node1 takes its one client; node2 and node3 have one place each.
    let first = login_tcp(node1, "first", "desk").await;
    wait_sessions(node1.http, [1, 0, 0]).await;

    // WebSocket: the <close/> answers the <open/>, then the socket closes.
    // node2 and node3 have equal room: either may be named (ties go to the
    // lower member id, which is random).
    let (answer, closed) = websocket_answer(node1.http, &node1.domain)
        .await
        .unwrap_or_else(|error| panic!("WebSocket to the full node1: {error}"));
    let urls = |node: &starling_tests::TestNode| format!("wss://{}/xmpp-websocket", node.http);
    let (ws_home, bosh_home) = if answer.contains(&urls(node2)) {
        (1, 2)
    } else {
        (2, 1)
    };
    let expected = urls(cluster.node(ws_home));
    assert_eq!(
        answer,
        format!("<close xmlns=\"{FRAMING}\" see-other-uri=\"{expected}\"/>")
    );
    assert!(closed, "node1 closes the WebSocket after the redirect");
    // Following it works: a session there.
    let mut web = Client::login_websocket(
        addr_of(&expected),
        &wss(),
        &options(cluster.node(ws_home), "web", "r"),
    )
    .await
    .unwrap_or_else(|error| panic!("following {expected}: {error}"));
    let roster = iq(&mut web, "get", "<query xmlns='jabber:iq:roster'/>").await;
    assert_eq!(roster.attr("type"), Some("result"), "{roster}");
    let mut sessions = [1, 0, 0];
    sessions[ws_home] = 1;
    wait_sessions(node1.http, sessions).await;

    // BOSH: the terminal condition with the <uri/> of the only member with
    // room now.
    let (status, body) = bosh_create(node1.http).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        bosh::attribute(&body, "type").as_deref(),
        Some("terminate"),
        "{body}"
    );
    assert_eq!(
        bosh::attribute(&body, "condition").as_deref(),
        Some("see-other-uri"),
        "{body}"
    );
    let expected = format!("https://{}/http-bind", cluster.node(bosh_home).http);
    assert_eq!(
        bosh::children(&body),
        format!("<uri>{expected}</uri>"),
        "{body}"
    );
    let poll = Client::login_bosh(
        &BoshOptions::new(addr_of(&expected), true),
        &options(cluster.node(bosh_home), "poll", "r"),
    )
    .await
    .unwrap_or_else(|error| panic!("following {expected}: {error}"));
    wait_sessions(node1.http, [1, 1, 1]).await;

    // No room anywhere: 503 on both, as before.
    match websocket_answer(node1.http, &node1.domain).await {
        Err(WsError::Refused { status, .. }) => assert_eq!(status, 503),
        other => panic!("a full cluster did not refuse the WebSocket: {other:?}"),
    }
    let (status, body) = bosh_create(node1.http).await;
    assert_eq!(status, 503, "{body}");
    // A TCP client of the full cluster is refused alike (the same policy).
    let refused = Client::login(node1.c2s, &options(node1, "late", "r")).await;
    assert!(refused.is_err(), "a full cluster let a TCP client in");

    web.close().await.unwrap();
    poll.close().await.unwrap();
    first.close().await.unwrap();
}

/// The redirect names the member's own `[http] public_url` (it travels
/// with the member's hello), and a client on HTTPS is never sent to a
/// member whose URL is plain HTTP, even when that member has most room.
#[tokio::test]
async fn t66_see_other_uri_uses_public_urls_and_keeps_tls() {
    let cluster = cluster(&["first"])
        .set_on(0, "c2s", "max_connections = 1")
        .set_on(1, "c2s", "max_connections = 50")
        .set_on(1, "http", "public_url = \"https://xmpp2.example.test/\"")
        .set_on(2, "http", "public_url = \"http://plain.example.test:5280\"")
        .start();
    let node1 = cluster.node(0);
    wait_sessions(node1.http, [0, 0, 0]).await;
    let first = login_tcp(node1, "first", "desk").await;
    wait_sessions(node1.http, [1, 0, 0]).await;

    let (answer, _) = websocket_answer(node1.http, &node1.domain)
        .await
        .unwrap_or_else(|error| panic!("WebSocket to the full node1: {error}"));
    assert_eq!(
        answer,
        format!(
            "<close xmlns=\"{FRAMING}\" see-other-uri=\"wss://xmpp2.example.test/xmpp-websocket\"/>"
        ),
        "node3 has more room but only plain HTTP"
    );
    let (status, body) = bosh_create(node1.http).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        bosh::children(&body),
        "<uri>https://xmpp2.example.test/http-bind</uri>",
        "{body}"
    );
    first.close().await.unwrap();
}
