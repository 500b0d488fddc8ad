//! The admin APIs with HTTP Basic on a cluster: caches, sessions and
//! kicks (on the node itself and on another member), accounts, and
//! messages sent by an application.

use std::time::Duration;

use serde_json::json;
use starling_tests::http::HttpRequest;
use starling_tests::{Client, ClientError};

use crate::support::*;

/// Bound for the directory to carry a login to the other members.
const SPREAD: Duration = Duration::from_secs(15);

/// Waits until node `addr` counts `count` sessions in the cluster.
async fn cluster_sessions(addr: std::net::SocketAddr, count: u64) {
    wait_json(
        addr,
        "/api/sessions",
        &format!("{count} sessions in the cluster"),
        SPREAD,
        |list| list["cluster_count"] == count,
    )
    .await;
}

/// The client was disconnected by a kick: a policy-violation stream error.
async fn expect_kicked(client: &mut Client) {
    client
        .expect_stream_error("policy-violation", WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} was not kicked: {error}", jid(client)));
}

#[tokio::test]
async fn sessions_are_listed_and_kicked_here_and_on_other_members() {
    let cluster = builder(&["alice", "bob", "carol"]).start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut alice = online(n1, "alice", PW, "desk").await;
    let mut alice_phone = online(n1, "alice", PW, "phone").await;
    let mut bob = online(n2, "bob", PW, "laptop").await;
    let _carol = online(n2, "carol", PW, "tablet").await;
    cluster_sessions(n1.http, 4).await;

    let list = get_json(n1.http, "/api/sessions").await;
    assert_eq!(list["local_count"], 2);
    let jids: Vec<&str> = list["local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["jid"].as_str().unwrap())
        .collect();
    assert_eq!(jids, [jid(&alice), jid(&alice_phone)]);
    assert_eq!(list["local"][0]["available"], true);
    assert_eq!(list["local"][0]["node"], "node1");
    let found = get_json(n1.http, "/api/sessions?search=PHONE&limit=5").await;
    assert_eq!(found["local"].as_array().unwrap().len(), 1);
    assert_eq!(found["local"][0]["jid"], jid(&alice_phone));
    let limited = get_json(n1.http, "/api/sessions?limit=1").await;
    assert_eq!(limited["local"].as_array().unwrap().len(), 1);
    assert_eq!(limited["local_count"], 2, "the count is not limited");

    // A session on this node.
    let answer = send(
        n1.http,
        "POST",
        "/api/sessions/kick",
        json!({"jid": jid(&alice)}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["kicked"], true);
    expect_kicked(&mut alice).await;
    // Her other resource stays.
    sync(&mut alice_phone).await;

    // A session on another member, kicked through node1.
    let answer = send(
        n1.http,
        "POST",
        "/api/sessions/kick",
        json!({"jid": jid(&bob)}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["node"], "node2");
    expect_kicked(&mut bob).await;
    cluster_sessions(n1.http, 2).await;
    cluster_sessions(n2.http, 2).await;

    // Nothing to kick: 404; not a full JID: 400.
    let answer = send(
        n1.http,
        "POST",
        "/api/sessions/kick",
        json!({"jid": jid(&bob)}),
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    let answer = send(
        n1.http,
        "POST",
        "/api/sessions/kick",
        json!({"jid": "bob@localhost"}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
}

#[tokio::test]
async fn caches_users_and_messages() {
    let cluster = builder(&["dave", "erin"]).start();
    let (n1, n2, n3) = (cluster.node(0), cluster.node(1), cluster.node(2));

    // Over a real socket too: no login, no data.
    for path in [
        "/api/cluster",
        "/api/caches",
        "/api/sessions",
        "/api/users",
        "/api/s2s",
    ] {
        let answer = HttpRequest::new(n2.http, "GET", path).send().await.unwrap();
        assert_eq!(answer.status, 401, "{path}");
        let body = answer.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{path}: {body}");
        let wrong = HttpRequest::new(n2.http, "GET", path)
            .basic(ADMIN, "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status, 401, "{path}");
    }
    // With the login: this node's server-to-server streams (none here).
    let streams = HttpRequest::new(n2.http, "GET", "/api/s2s")
        .basic(ADMIN, ADMIN_PW)
        .send()
        .await
        .unwrap();
    assert_eq!(streams.status, 200, "{}", streams.text());
    let streams = streams.json();
    assert_eq!(streams["node"], "node2", "{streams}");
    assert_eq!(streams["streams"], serde_json::json!([]), "{streams}");
    let page = HttpRequest::new(n2.http, "GET", "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/admin/login"));

    // Caches: every node lists its caches with their kinds; one is cleared.
    for node in [n1, n2, n3] {
        let caches = get_json(node.http, "/api/caches").await;
        let caches = caches.as_array().expect("a list");
        let kind = |name: &str| {
            caches
                .iter()
                .find(|cache| cache["name"] == name)
                .map(|cache| cache["kind"].as_str().unwrap().to_owned())
        };
        assert_eq!(kind("session_directory").as_deref(), Some("replicated"));
        assert_eq!(kind("users").as_deref(), Some("invalidated"));
        for cache in caches {
            for key in ["size", "limit", "hits", "misses", "evictions"] {
                assert!(cache[key].is_u64(), "{key} of {cache}");
            }
            let ratio = cache["hit_ratio"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&ratio), "{cache}");
        }
    }
    let dave_first = login(n1, "dave", PW, "r").await;
    let users_size = |caches: &serde_json::Value| {
        caches
            .as_array()
            .unwrap()
            .iter()
            .find(|cache| cache["name"] == "users")
            .unwrap()["size"]
            .as_u64()
            .unwrap()
    };
    // The admin (read to check the request's login) and dave.
    assert!(users_size(&get_json(n1.http, "/api/caches").await) >= 2);
    let answer = send(n1.http, "POST", "/api/caches/users/clear", json!({})).await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    // Only the admin again, read for this very request.
    assert_eq!(users_size(&get_json(n1.http, "/api/caches").await), 1);
    let answer = send(n1.http, "POST", "/api/caches/nothing/clear", json!({})).await;
    assert_eq!(answer.status, 404, "{}", answer.text());

    // Users: added on node1, usable on node3; password reset; deleted.
    let answer = send(
        n1.http,
        "POST",
        "/api/users",
        json!({"username": "frank", "password": "first", "admin": false}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text());
    let again = send(
        n2.http,
        "POST",
        "/api/users",
        json!({"username": "frank", "password": "x"}),
    )
    .await;
    assert_eq!(again.status, 409, "{}", again.text());
    let bad = send(
        n2.http,
        "POST",
        "/api/users",
        json!({"username": "no@pe", "password": "x"}),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let list = get_json(n2.http, "/api/users?search=ran").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["users"][0]["username"], "frank");
    assert_eq!(list["users"][0]["admin"], false);
    let page = get_json(n2.http, "/api/users?limit=2&offset=1").await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4, "admin, dave, erin, frank");
    login(n3, "frank", "first", "r").await;

    let answer = send(
        n2.http,
        "POST",
        "/api/users/frank/password",
        json!({"password": "second"}),
    )
    .await;
    assert_eq!(answer.status, 204, "{}", answer.text());
    let old = Client::login(n3.c2s, &options(n3, "frank", "first", "r")).await;
    assert!(
        matches!(old, Err(ClientError::SaslFailure { .. })),
        "the old password still works on node3: {:?}",
        old.map(|_| ())
    );
    login(n3, "frank", "second", "r").await;
    let missing = send(
        n2.http,
        "POST",
        "/api/users/nobody/password",
        json!({"password": "x"}),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.text());

    let answer = HttpRequest::new(n3.http, "DELETE", "/api/users/frank")
        .basic(ADMIN, ADMIN_PW)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status, 204, "{}", answer.text());
    let answer = HttpRequest::new(n3.http, "DELETE", "/api/users/frank")
        .basic(ADMIN, ADMIN_PW)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status, 404, "{}", answer.text());
    let gone = Client::login(n1.c2s, &options(n1, "frank", "second", "r")).await;
    assert!(gone.is_err(), "a deleted account still logs in");

    // Messages: delivered to a session on another node, stored for an
    // offline user (and delivered at login), bounced for nobody.
    let mut erin = online(n2, "erin", PW, "desk").await;
    cluster_sessions(n1.http, 2).await;
    let answer = send(
        n1.http,
        "POST",
        "/api/messages",
        json!({"to": "erin@localhost", "body": "over HTTP", "type": "headline"}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["outcome"], "delivered", "{}", answer.text());
    let message = expect_body(&mut erin, "over HTTP").await;
    assert_eq!(message.attr("from"), Some("localhost"));
    assert_eq!(message.attr("type"), Some("headline"));

    let answer = send(
        n3.http,
        "POST",
        "/api/messages",
        json!({"to": jid(&erin), "body": "to the full JID", "from": "dave@localhost"}),
    )
    .await;
    assert_eq!(answer.json()["outcome"], "delivered", "{}", answer.text());
    let message = expect_body(&mut erin, "to the full JID").await;
    assert_eq!(message.attr("from"), Some("dave@localhost"));
    assert_eq!(message.attr("type"), Some("chat"));

    // Dave's connection ends; the next message waits for him.
    drop(dave_first);
    cluster_sessions(n2.http, 1).await;
    let answer = send(
        n2.http,
        "POST",
        "/api/messages",
        json!({"to": "dave@localhost", "body": "while you were away"}),
    )
    .await;
    assert_eq!(answer.json()["outcome"], "stored", "{}", answer.text());
    let mut dave = login(n3, "dave", PW, "back").await;
    dave.send("<presence/>").await.unwrap();
    expect_body(&mut dave, "while you were away").await;

    let answer = send(
        n1.http,
        "POST",
        "/api/messages",
        json!({"to": "nobody@localhost", "body": "hello?"}),
    )
    .await;
    let outcome = answer.json();
    assert_eq!(outcome["outcome"], "bounced", "{outcome}");
    assert_eq!(outcome["condition"], "service-unavailable", "{outcome}");
    let answer = send(
        n1.http,
        "POST",
        "/api/messages",
        json!({"to": "erin@localhost", "body": "x", "from": "mallory@elsewhere"}),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
}

/// The size of cache `name` in an `/api/caches` answer.
fn cache_size(caches: &serde_json::Value, name: &str) -> u64 {
    caches
        .as_array()
        .and_then(|caches| caches.iter().find(|cache| cache["name"] == name))
        .and_then(|cache| cache["size"].as_u64())
        .unwrap_or_else(|| panic!("no cache {name} in {caches}"))
}

/// A node caches the rosters of its own online users, not those of their
/// contacts online on other members (their members answer the probes), and
/// lets a roster go once its user's last session there has ended.
#[tokio::test]
async fn rosters_are_cached_where_their_users_are_online() {
    let cluster = builder(&[]).start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    // member1..member4, everyone the contact of everyone (subscription both).
    provision(n1, "member", 4, 3);
    let mut elsewhere = Vec::new();
    for number in 2..=4 {
        let user = format!("member{number}");
        elsewhere.push(online(n2, &user, &format!("pw{number}"), "r").await);
    }
    cluster_sessions(n1.http, 3).await;
    let mut member1 = online(n1, "member1", "pw1", "r").await;
    // Contacts online on node2 answer member1's probes from there.
    for number in 2..=4 {
        expect_presence(&mut member1, &format!("member{number}@localhost/r"), None).await;
    }
    assert_eq!(
        cache_size(&get_json(n1.http, "/api/caches").await, "rosters"),
        1
    );
    assert_eq!(
        cache_size(&get_json(n2.http, "/api/caches").await, "rosters"),
        3
    );

    member1.close().await.unwrap();
    wait_json(
        n1.http,
        "/api/caches",
        "member1's roster evicted",
        SPREAD,
        |caches| cache_size(caches, "rosters") == 0,
    )
    .await;
    drop(elsewhere);
}
