//! The seam the CometD bridge uses (`publish`, `may_subscribe`, `watch`) on
//! an in-process single node with a real SQLite store.

use std::sync::Arc;

use starling_core::cluster::LocalOnly;
use starling_core::config::Config;
use starling_core::jid::BareJid;
use starling_core::shutdown::Shutdown;
use starling_core::xml::Element;

use super::form::Submitted;
use super::{Actor, NodeEvent};
use crate::server::Server;
use crate::stanza::Condition;

struct Node {
    server: Arc<Server>,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_path_buf();
    let server = Server::new(config, Arc::new(LocalOnly::default()), Shutdown::new())
        .await
        .unwrap();
    Node { server, _dir: dir }
}

fn json(text: &str) -> Element {
    Element::new("json", "urn:xmpp:json:0").with_text(text)
}

fn alice() -> Actor {
    Actor::User(BareJid::new("alice@localhost").unwrap())
}

#[tokio::test]
async fn anonymous_channels_are_implicit_and_open() {
    let node = node().await;
    let pubsub = &node.server.pubsub;
    pubsub
        .may_subscribe(&Actor::Anonymous, "chan")
        .await
        .unwrap();
    let error = pubsub
        .publish(&Actor::Anonymous, "chan", None, json("1"), false)
        .await
        .unwrap_err();
    assert_eq!(error.condition(), "item-not-found");
    let mut watch = pubsub.watch("chan");
    let first = pubsub
        .publish(&Actor::Anonymous, "chan", None, json("1"), true)
        .await
        .unwrap();
    pubsub
        .publish(
            &Actor::Anonymous,
            "chan",
            Some("two".into()),
            json("2"),
            false,
        )
        .await
        .unwrap();
    for (id, text) in [(first.as_str(), "1"), ("two", "2")] {
        match watch.recv().await.as_deref() {
            Some(NodeEvent::Published {
                node,
                item_id,
                publisher,
                payload,
            }) => {
                assert_eq!((node.as_str(), item_id.as_str()), ("chan", id));
                assert_eq!(*publisher, None);
                assert_eq!(payload.text(), text);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pubsub.watched_nodes(), 1);
    drop(watch);
    assert_eq!(pubsub.watched_nodes(), 0);
}

#[tokio::test]
async fn owners_rules_apply_to_the_seam_and_watchers_see_every_event() {
    let node = node().await;
    let pubsub = &node.server.pubsub;
    let owner = BareJid::new("alice@localhost").unwrap();
    let mut form = Submitted::default();
    form.fields
        .insert("pubsub#access_model".into(), vec!["whitelist".into()]);
    pubsub
        .create(&owner, Some("private"), Some(&form))
        .await
        .unwrap();
    let error = pubsub
        .may_subscribe(&Actor::Anonymous, "private")
        .await
        .unwrap_err();
    assert_eq!(error.condition, Condition::NotAllowed);
    assert_eq!(error.pubsub_condition(), Some("closed-node"));
    pubsub.may_subscribe(&alice(), "private").await.unwrap();
    // Publishers only: another user may not publish.
    let bob = Actor::User(BareJid::new("bob@localhost").unwrap());
    let error = pubsub
        .publish(&bob, "private", None, json("x"), true)
        .await
        .unwrap_err();
    assert_eq!(error.condition(), "forbidden");

    let mut watch = pubsub.watch("private");
    let id = pubsub
        .publish(&alice(), "private", None, json("x"), true)
        .await
        .unwrap();
    pubsub
        .retract(&alice(), "private", &id, false)
        .await
        .unwrap();
    pubsub.purge(&alice(), "private").await.unwrap();
    pubsub.delete(&alice(), "private").await.unwrap();
    let mut kinds = Vec::new();
    for _ in 0..4 {
        let event = watch.recv().await.unwrap();
        assert_eq!(event.node(), "private");
        kinds.push(match &*event {
            NodeEvent::Published { publisher, .. } => {
                assert_eq!(publisher.as_deref(), Some("alice@localhost"));
                "published"
            }
            NodeEvent::Retracted { item_id, .. } => {
                assert_eq!(item_id, &id);
                "retracted"
            }
            NodeEvent::Purged { .. } => "purged",
            NodeEvent::Deleted { .. } => "deleted",
        });
    }
    assert_eq!(kinds, ["published", "retracted", "purged", "deleted"]);
}
