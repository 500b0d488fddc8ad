//! XEP-0060 publish-subscribe on `pubsub.<domain>`.
//!
//! ```text
//!   iq (XMPP client) ──▶ iq.rs ──┐
//!   CometD bridge ──publish / may_subscribe / watch──▶ PubSub ──▶ Store
//!                                                       │
//!                                   notify.rs ◀─────────┘
//!          ├─▶ sessions here (subscribers' resources)
//!          ├─▶ watchers here (watch.rs)
//!          ├─▶ once per other member with subscribers' sessions or
//!          │   watchers: Cluster::pubsub_send ──▶ LocalDelivery::pubsub_event
//!          └─▶ subscribers found nowhere: looked up again (late.rs) under
//!              the cluster's miss-retry policy, later events queued behind
//! ```
//!
//! Nodes, configuration, affiliations, subscriptions and items live in the
//! store, so any member serves any request. Events of one node are made
//! one at a time (a lock stripe per node name) and travel over ordered
//! links, so every receiver sees them in publish order.

pub mod access;
pub mod config;
pub mod disco;
pub mod error;
pub mod form;
pub mod iq;
mod items;
mod late;
mod manage;
mod notify;
mod subscribe;
#[cfg(test)]
mod tests;
mod waiting;
mod watch;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use starling_core::cluster::Cluster;
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use self::access::{Affiliation, Standing};
use self::config::NodeConfig;
pub use self::error::PubSubError;
pub use self::watch::Watch;
use self::watch::Watchers;
use crate::server::Server;
use crate::storage::Store;

/// Who acts on the pub/sub service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(BareJid),
    Anonymous,
}

impl Actor {
    fn user(&self) -> Option<&BareJid> {
        match self {
            Actor::User(jid) => Some(jid),
            Actor::Anonymous => None,
        }
    }
}

/// What happened on a node, as watchers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Published {
        node: String,
        item_id: String,
        /// The publisher's bare JID (none for anonymous publishers).
        publisher: Option<String>,
        payload: Element,
    },
    Retracted {
        node: String,
        item_id: String,
    },
    Deleted {
        node: String,
    },
    Purged {
        node: String,
    },
}

impl NodeEvent {
    pub fn node(&self) -> &str {
        match self {
            NodeEvent::Published { node, .. }
            | NodeEvent::Retracted { node, .. }
            | NodeEvent::Deleted { node }
            | NodeEvent::Purged { node } => node,
        }
    }
}

/// Counters for `/metrics` and the tests that check fan-out.
#[derive(Debug, Default)]
pub struct PubSubCounters {
    pub published: AtomicU64,
    /// Notifications handed to sessions on this node.
    pub notifications_local: AtomicU64,
    /// Notifications queued for subscribers of other servers (federation).
    pub notifications_remote_servers: AtomicU64,
    /// Events handed to local watchers (once per watch).
    pub watcher_events: AtomicU64,
    /// Events sent to other members (once per member and event).
    pub cluster_events_sent: AtomicU64,
    /// Events other members sent here.
    pub cluster_events_received: AtomicU64,
    /// Events that could not be queued for a member (link down).
    pub cluster_events_failed: AtomicU64,
    /// Directory lookups repeated for subscribers found on no member.
    pub late_retries: AtomicU64,
    /// Notifications sent on after a repeated lookup found the subscriber
    /// (once per session).
    pub late_delivered: AtomicU64,
    /// Notifications given up after the repeated lookups (subscriber offline).
    pub late_misses: AtomicU64,
    /// Notifications dropped because too many waited for one subscriber.
    pub late_overflow: AtomicU64,
}

/// Lock stripes that serialise the events of one node.
const ORDER_STRIPES: usize = 64;

/// The pub/sub service of this node.
pub struct PubSub {
    server: Weak<Server>,
    store: Store,
    cluster: Arc<dyn Cluster>,
    /// `pubsub.<domain>`: the service's JID.
    service: String,
    watchers: Arc<Watchers>,
    order: Vec<tokio::sync::Mutex<()>>,
    /// Notifications waiting for subscribers the directory did not know yet.
    late: late::Late,
    pub counters: PubSubCounters,
}

impl PubSub {
    pub fn new(
        server: Weak<Server>,
        store: Store,
        cluster: Arc<dyn Cluster>,
        domain: &str,
    ) -> PubSub {
        PubSub {
            server,
            store,
            watchers: Arc::new(Watchers::new(cluster.clone())),
            cluster,
            service: format!("pubsub.{domain}"),
            order: (0..ORDER_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            late: late::Late::new(ORDER_STRIPES),
            counters: PubSubCounters::default(),
        }
    }

    /// The service's JID, `pubsub.<domain>`.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Publishes `payload` (one child element of `<item/>`) as item `item_id`
    /// (generated when `None`) on `node`, creating the node with the default
    /// configuration when it does not exist and `actor` may create nodes
    /// (users may; `Anonymous` only when `allow_create`). Stores it, then
    /// notifies XMPP subscribers and watchers on every cluster node that has
    /// any (once per cluster node). Returns the item id.
    pub async fn publish(
        &self,
        actor: &Actor,
        node: &str,
        item_id: Option<String>,
        payload: Element,
        allow_create: bool,
    ) -> Result<String, PubSubError> {
        let may_create = actor.user().is_some() || allow_create;
        self.publish_item(actor, node, item_id, Some(payload), None, may_create)
            .await
    }

    /// Whether `actor` may subscribe to `node`. A node that does not exist
    /// yet is allowed (channels are implicit) when the default access model
    /// would allow it.
    pub async fn may_subscribe(&self, actor: &Actor, node: &str) -> Result<(), PubSubError> {
        let (config, affiliation) = match self.store.pubsub_node(node).await? {
            Some(stored) => {
                let config = parse_config(&stored.config, node)?;
                let affiliation = self.affiliation(node, actor).await?;
                (config, affiliation)
            }
            None => (NodeConfig::default(), Affiliation::None),
        };
        let standing = self.standing(node, &config, actor).await?;
        access::may_subscribe(&config, affiliation, standing)
    }

    /// Registers this cluster node's interest in `node` for a local
    /// non-XMPP subscriber until the returned [`Watch`] is dropped; events
    /// published on any cluster node arrive on it in publish order.
    pub fn watch(&self, node: &str) -> Watch {
        self.watchers.watch(node)
    }

    /// Resolves once every linked cluster member knows of the watches
    /// taken so far (bounded by the cluster's timeout): after that, a
    /// publish on any member reaches them.
    pub async fn watches_known(&self) {
        self.cluster.pubsub_interest_applied().await;
    }

    /// How many nodes have watchers here.
    pub fn watched_nodes(&self) -> usize {
        self.watchers.watched()
    }

    /// The lock that orders the events of `node`.
    fn order_lock(&self, node: &str) -> &tokio::sync::Mutex<()> {
        &self.order[self.stripe(node)]
    }

    /// The order-lock stripe of `node`.
    fn stripe(&self, node: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        node.hash(&mut hasher);
        (hasher.finish() as usize) % ORDER_STRIPES
    }

    /// A node's configuration; `<item-not-found/>` when there is no node.
    async fn load(&self, node: &str) -> Result<NodeConfig, PubSubError> {
        match self.store.pubsub_node(node).await? {
            Some(stored) => parse_config(&stored.config, node),
            None => Err(PubSubError::item_not_found()),
        }
    }

    async fn affiliation(&self, node: &str, actor: &Actor) -> Result<Affiliation, PubSubError> {
        let Some(user) = actor.user() else {
            return Ok(Affiliation::None);
        };
        Ok(self
            .store
            .pubsub_affiliation(node, user.as_str())
            .await?
            .as_deref()
            .and_then(Affiliation::parse)
            .unwrap_or(Affiliation::None))
    }

    /// Whether the actor is subscribed, and whether it may see an owner's
    /// presence (only asked when the access model needs it).
    async fn standing(
        &self,
        node: &str,
        config: &NodeConfig,
        actor: &Actor,
    ) -> Result<Standing, PubSubError> {
        let Some(user) = actor.user() else {
            return Ok(Standing::default());
        };
        let subscribed = self
            .store
            .pubsub_user_subscriptions(user.as_str())
            .await?
            .iter()
            .any(|sub| sub.node == node && sub.state == "subscribed");
        let presence = match config.access_model {
            config::AccessModel::Presence => self.sees_an_owner(node, user).await?,
            _ => false,
        };
        Ok(Standing {
            subscribed,
            presence,
        })
    }

    /// True when `user` has a presence subscription to one of the node's owners.
    async fn sees_an_owner(&self, node: &str, user: &BareJid) -> Result<bool, PubSubError> {
        let Some(server) = self.server.upgrade() else {
            return Ok(false);
        };
        for (jid, affiliation) in self.store.pubsub_node_affiliations(node).await? {
            if affiliation != "owner" {
                continue;
            }
            let Ok(owner) = BareJid::new(&jid) else {
                continue;
            };
            if owner == *user {
                return Ok(true);
            }
            if !server.is_local_user(&owner.clone().into()) {
                continue;
            }
            let roster = server.rosters.get(&owner).await?;
            if roster.subscribers().any(|contact| contact == user) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn parse_config(json: &str, node: &str) -> Result<NodeConfig, PubSubError> {
    NodeConfig::from_json(json).ok_or_else(|| {
        tracing::error!(node, "unreadable stored pub/sub node configuration");
        PubSubError::new(crate::stanza::Condition::InternalServerError)
            .with_text("Unreadable node configuration")
    })
}

/// A fresh unguessable id for an item, instant node or subscription.
fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
