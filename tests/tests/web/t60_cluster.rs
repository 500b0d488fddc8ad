//! A WebSocket user and a TCP user on different members of a three-node
//! cluster: subscriptions, presence and messages cross the cluster as for
//! two TCP users.

use starling_tests::{Client, TestCluster};

use crate::support::*;

async fn online(client: &mut Client) {
    let roster = iq(client, "get", "<query xmlns='jabber:iq:roster'/>").await;
    assert_eq!(roster.attr("type"), Some("result"), "{roster}");
    let me = jid(client);
    client.send("<presence/>").await.unwrap();
    expect_presence(client, &me, None).await;
}

async fn expect_presence(client: &mut Client, from: &str, ty: Option<&str>) {
    client
        .expect(
            |e| e.name() == "presence" && e.attr("from") == Some(from) && e.attr("type") == ty,
            WAIT,
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{} got no presence {ty:?} from {from}: {error}",
                jid(client)
            )
        });
}

/// `from` asks to see `to`'s presence and `to` approves.
async fn subscribe(from: &mut Client, to: &mut Client) {
    let from_bare = from.jid().unwrap().to_bare().to_string();
    let to_bare = to.jid().unwrap().to_bare().to_string();
    from.send(&format!("<presence to='{to_bare}' type='subscribe'/>"))
        .await
        .unwrap();
    expect_presence(to, &from_bare, Some("subscribe")).await;
    to.send(&format!("<presence to='{from_bare}' type='subscribed'/>"))
        .await
        .unwrap();
    // Approved: `from` now sees `to`'s available resource.
    expect_presence(from, &jid(to), None).await;
}

#[tokio::test]
async fn t60_websocket_and_tcp_users_on_different_nodes() {
    let cluster = TestCluster::builder(3)
        .set("http", "tls = true")
        .user("alice", PASSWORD)
        .user("bob", PASSWORD)
        .start();
    let mut alice = login_ws(cluster.node(0), "alice", "web").await;
    let mut bob = login_tcp(cluster.node(2), "bob", "desk").await;
    online(&mut alice).await;
    online(&mut bob).await;
    subscribe(&mut alice, &mut bob).await;
    subscribe(&mut bob, &mut alice).await;
    chat(&mut alice, &mut bob, "from node 1 over WebSocket").await;
    chat(&mut bob, &mut alice, "from node 3 over TCP").await;
    // Leaving over WebSocket is seen on the other node.
    let alice_jid = jid(&alice);
    alice.close().await.expect("a clean <close/>");
    expect_presence(&mut bob, &alice_jid, Some("unavailable")).await;
}
