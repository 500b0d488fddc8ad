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

#[cfg(test)]
mod tests {
    use starling_core::cluster::{ClusterStatus, LocalOnly};
    use starling_core::xml::Element;

    use super::*;

    /// A cluster that records the interest announcements it is asked to make.
    #[derive(Default)]
    struct Recorder {
        announced: Mutex<Vec<(String, bool)>>,
        inner: LocalOnly,
    }

    impl Cluster for Recorder {
        fn node_id(&self) -> starling_core::cluster::NodeId {
            self.inner.node_id()
        }
        fn ready(&self) -> bool {
            true
        }
        fn announce(&self, _change: starling_core::cluster::SessionChange) {}
        fn locate(
            &self,
            _jid: &starling_core::jid::FullJid,
        ) -> Option<starling_core::cluster::NodeId> {
            None
        }
        fn remote_resources(
            &self,
            _jid: &starling_core::jid::BareJid,
        ) -> Vec<starling_core::cluster::ResourceEntry> {
            Vec::new()
        }
        fn has_remote_sessions(&self) -> bool {
            false
        }
        fn forward(
            &self,
            node: starling_core::cluster::NodeId,
            envelope: starling_core::cluster::Envelope,
        ) -> Result<(), starling_core::cluster::ForwardError> {
            self.inner.forward(node, envelope)
        }
        fn miss_retry(&self) -> starling_core::cluster::RetryPolicy {
            starling_core::cluster::RetryPolicy::NONE
        }
        fn kick(
            &self,
            _node: starling_core::cluster::NodeId,
            _jid: &starling_core::jid::FullJid,
            _reason: starling_core::cluster::KickReason,
        ) {
        }
        fn invalidate(
            &self,
            cache: &'static str,
            key: String,
        ) -> starling_core::cluster::BoxFuture<'_, ()> {
            self.inner.invalidate(cache, key)
        }
        fn offline_stored(
            &self,
            _node: starling_core::cluster::NodeId,
            _user: &starling_core::jid::BareJid,
        ) {
        }
        fn status(&self) -> ClusterStatus {
            self.inner.status()
        }
        fn pubsub_interest(&self, node: &str, interested: bool) {
            lock(&self.announced).push((node.to_owned(), interested));
        }
    }

    fn published(node: &str, id: &str) -> Arc<NodeEvent> {
        Arc::new(NodeEvent::Published {
            node: node.to_owned(),
            item_id: id.to_owned(),
            publisher: None,
            payload: Element::new("p", "urn:t"),
        })
    }

    #[tokio::test]
    async fn first_watch_and_last_drop_announce_interest_and_events_keep_order() {
        let recorder = Arc::new(Recorder::default());
        let watchers = Arc::new(Watchers::new(recorder.clone()));
        let mut first = watchers.watch("n");
        let mut second = watchers.watch("n");
        let other = watchers.watch("m");
        assert_eq!(watchers.watched(), 2);
        for id in ["1", "2", "3"] {
            assert_eq!(watchers.dispatch("n", &published("n", id)), 2);
        }
        for watch in [&mut first, &mut second] {
            for id in ["1", "2", "3"] {
                match watch.recv().await.as_deref() {
                    Some(NodeEvent::Published { item_id, .. }) => assert_eq!(item_id, id),
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(watch.try_recv().is_none());
        }
        drop(first);
        drop(second);
        drop(other);
        assert_eq!(watchers.dispatch("n", &published("n", "4")), 0);
        assert_eq!(
            *lock(&recorder.announced),
            [
                ("n".to_owned(), true),
                ("m".to_owned(), true),
                ("n".to_owned(), false),
                ("m".to_owned(), false)
            ]
        );
        assert_eq!(watchers.watched(), 0);
    }
}
