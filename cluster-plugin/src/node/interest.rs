//! Replicating pub/sub interest: which members have watchers of which
//! pub/sub nodes. Changes go to every link, a snapshot to a new link or to
//! one that missed a change, and peers acknowledge what they applied.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use starling_core::cluster::NodeId;

use super::{ClusterNode, lock};
use crate::failure::PeerState;
use crate::replication::interest::InterestSets;
use crate::transport::Link;
use crate::transport::frame::{Frame, InterestMessage};

/// How long `pubsub_interest_applied` waits for peers to apply a change.
const INTEREST_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// This member's interest set and its replicas of the peers' sets.
#[derive(Default)]
pub(super) struct Interest {
    pub(super) sets: InterestSets,
    /// Peers whose link could not take a change (a full send queue): they
    /// get nothing more until a snapshot, which holds every change, goes
    /// through, so their acknowledgements never skip a change.
    behind: HashSet<NodeId>,
}

impl Interest {
    /// Queues `message` on `link` unless the link is behind; a link that
    /// cannot take it falls behind.
    fn send(&mut self, link: &Link, message: InterestMessage) {
        if self.behind.contains(&link.node()) {
            return;
        }
        if link.send(Frame::Interest(message)).is_err() {
            tracing::warn!(peer = %link.peer.name, "pub/sub interest change not queued; a snapshot follows when the link has room");
            self.behind.insert(link.node());
        }
    }
}
impl ClusterNode {
    /// A local watcher set changed: the change goes to every link.
    pub(super) fn set_interest(&self, node: &str, interested: bool) {
        let mut interest = lock(&self.interest);
        let Some(change) = interest.sets.set_local(node, interested) else {
            return;
        };
        self.counters
            .interest_changes
            .fetch_add(1, Ordering::Relaxed);
        // Queued under the lock, so a snapshot for a link coming up now
        // is never overtaken by a change it already contains.
        for link in self.transport.links() {
            interest.send(&link, change.clone());
        }
    }

    /// Waits (boundedly) until every live peer applied this member's
    /// interest changes so far.
    pub(super) async fn interest_applied(&self) {
        let seq = lock(&self.interest).sets.seq();
        let peers = self.interest_peers();
        let Some(wait) = lock(&self.interest_acks).wait(seq, peers) else {
            return;
        };
        if tokio::time::timeout(INTEREST_ACK_TIMEOUT, wait.applied)
            .await
            .is_err()
        {
            let silent = lock(&self.interest_acks).abandon(wait.id);
            self.counters
                .interest_ack_timeouts
                .fetch_add(1, Ordering::Relaxed);
            let names: Vec<String> = {
                let peers = lock(&self.peers);
                silent
                    .iter()
                    .map(|node| {
                        peers
                            .get(&node.0)
                            .map_or_else(|| node.to_string(), |peer| peer.name.clone())
                    })
                    .collect()
            };
            tracing::warn!(seq, peers = %names.join(","), timeout = ?INTEREST_ACK_TIMEOUT, "peers did not confirm a pub/sub interest change in time; answering anyway");
        }
    }

    /// A peer's interest change: applied to its replica and acknowledged.
    pub(super) fn on_interest(&self, link: &Link, message: InterestMessage) {
        let seq = lock(&self.interest).sets.apply(link.node(), message);
        if link.send(Frame::InterestAck { seq }).is_err() {
            // A later acknowledgement covers this one.
            tracing::debug!(peer = %link.peer.name, seq, "interest acknowledgement not queued");
        }
    }

    pub(super) fn on_interest_ack(&self, link: &Arc<Link>, seq: u64) {
        // Only the current link speaks for the peer's replica.
        let node = link.node();
        let current = self
            .transport
            .link(node.0)
            .is_some_and(|current| Arc::ptr_eq(&current, link));
        if current {
            lock(&self.interest_acks).acknowledged(node, seq);
        }
    }

    /// A new link gets the whole set.
    pub(super) fn interest_link_up(&self, link: &Link) {
        // Under the lock: no change is sent between reading and queueing.
        let mut interest = lock(&self.interest);
        interest.behind.remove(&link.node());
        lock(&self.interest_acks).link_up(link.node());
        let snapshot = interest.sets.snapshot();
        interest.send(link, snapshot);
    }

    pub(super) fn interest_link_down(&self, node: NodeId) {
        lock(&self.interest).behind.remove(&node);
        lock(&self.interest_acks).link_down(node);
    }

    /// Sends the interest set whole to the links that missed a change.
    pub(super) fn catch_up_interest(&self) {
        let mut interest = lock(&self.interest);
        if interest.behind.is_empty() {
            return;
        }
        let behind: Vec<NodeId> = interest.behind.drain().collect();
        for node in behind {
            // A link that went away sends a snapshot when it comes back.
            if let Some(link) = self.transport.link(node.0) {
                let snapshot = interest.sets.snapshot();
                interest.send(&link, snapshot);
            }
        }
    }

    /// Peers an interest change is waited for: every linked member that is
    /// not down or leaving.
    fn interest_peers(&self) -> Vec<NodeId> {
        let detector = lock(&self.detector);
        self.transport
            .links()
            .into_iter()
            .filter(|link| !link.is_closed())
            .map(|link| link.node())
            .filter(|node| {
                !matches!(
                    detector.state(*node),
                    Some(PeerState::Down | PeerState::Leaving)
                )
            })
            .collect()
    }
}
