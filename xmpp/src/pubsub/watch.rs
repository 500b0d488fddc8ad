//! Local non-XMPP subscribers of pub/sub nodes (the CometD bridge's Bayeux
//! clients): each [`Watch`] receives every event of its node in publish
//! order. The first watch of a node on this cluster node announces interest
//! to the cluster, the last one dropped withdraws it, so other members send
//! this node a node's events only while someone here listens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use starling_core::cluster::Cluster;
use tokio::sync::mpsc;

use super::NodeEvent;

type Sender = mpsc::UnboundedSender<Arc<NodeEvent>>;

/// The watches of this cluster node, by pub/sub node.
pub(crate) struct Watchers {
    by_node: Mutex<HashMap<String, Vec<(u64, Sender)>>>,
    next_id: AtomicU64,
    cluster: Arc<dyn Cluster>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Watchers {
    pub(crate) fn new(cluster: Arc<dyn Cluster>) -> Watchers {
        Watchers {
            by_node: Mutex::default(),
            next_id: AtomicU64::new(1),
            cluster,
        }
    }

    pub(crate) fn watch(self: &Arc<Self>, node: &str) -> Watch {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut by_node = lock(&self.by_node);
        let slots = by_node.entry(node.to_owned()).or_default();
        slots.push((id, tx));
        // Announced under the lock: announcements of one node stay in order.
        if slots.len() == 1 {
            self.cluster.pubsub_interest(node, true);
        }
        Watch {
            id,
            node: node.to_owned(),
            rx,
            watchers: self.clone(),
        }
    }

    fn unwatch(&self, node: &str, id: u64) {
        let mut by_node = lock(&self.by_node);
        let Some(slots) = by_node.get_mut(node) else {
            return;
        };
        slots.retain(|(slot, _)| *slot != id);
        if slots.is_empty() {
            by_node.remove(node);
            self.cluster.pubsub_interest(node, false);
        }
    }

    /// Hands an event to every watch of its node; returns how many got it.
    pub(crate) fn dispatch(&self, node: &str, event: &Arc<NodeEvent>) -> usize {
        let by_node = lock(&self.by_node);
        let Some(slots) = by_node.get(node) else {
            return 0;
        };
        // A send fails only for a watch being dropped right now; its
        // unwatch follows under this same lock.
        slots
            .iter()
            .filter(|(_, tx)| tx.send(event.clone()).is_ok())
            .count()
    }

    /// Nodes watched here, for the admin side and tests.
    pub(crate) fn watched(&self) -> usize {
        lock(&self.by_node).len()
    }
}

/// Interest in one pub/sub node for a local non-XMPP subscriber; dropping
/// it ends the interest.
pub struct Watch {
    id: u64,
    node: String,
    rx: mpsc::UnboundedReceiver<Arc<NodeEvent>>,
    watchers: Arc<Watchers>,
}

impl Watch {
    /// The next event of the node, in publish order.
    pub async fn recv(&mut self) -> Option<Arc<NodeEvent>> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<NodeEvent>> {
        self.rx.try_recv().ok()
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.unwatch(&self.node, self.id);
    }
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("node", &self.node).finish()
    }
}
