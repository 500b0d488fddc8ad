//! The runtime of the membership decisions: gathers the node's view for
//! [`decide`](super::decide), carries out the actions it returns, and leaves
//! the cluster cleanly.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use starling_core::cluster::{BoxFuture, NodeId};

use super::decide::{self, Action, LinkedPeer, MemberHealth, NodeView};
use super::{ClusterNode, lock};
use crate::failure::PeerState;
use crate::membership::Membership;
use crate::transport::frame::{Frame, PeerInfo};

/// How often one peer is asked to have this node added.
const JOIN_EVERY: Duration = Duration::from_secs(1);

impl ClusterNode {
    /// Joining, bootstrapping, readiness, and the leader's removals.
    pub(super) fn upkeep_membership(&self) {
        let Some(view) = self.node_view() else {
            return;
        };
        for action in decide::upkeep(&view) {
            self.carry_out(action);
        }
    }

    /// Whether this node's Raft answers a request from `peer` (see
    /// [`decide::answers_raft_from`]).
    pub(super) fn answers_raft_from(&self, peer: u64) -> bool {
        // Most requests come inside a cluster: no need to gather the rest.
        self.view().initialized
            || self
                .node_view()
                .is_some_and(|view| decide::answers_raft_from(&view, peer))
    }

    /// What the decisions read, gathered under the locks once.
    fn node_view(&self) -> Option<NodeView> {
        let membership = self.membership()?.view();
        let statuses = lock(&self.peer_status).clone();
        let links = self
            .transport
            .links()
            .iter()
            .map(|link| LinkedPeer {
                node: link.peer.node_id,
                cluster_addr: link.peer.cluster_addr.clone(),
                status: statuses.get(&link.peer.node_id).cloned(),
            })
            .collect();
        let (members, down) = {
            let detector = lock(&self.detector);
            let directory = lock(&self.directory);
            let members = membership
                .members
                .keys()
                .filter(|id| **id != self.id.0)
                .map(|id| {
                    let node = NodeId(*id);
                    let health = MemberHealth {
                        up: detector.state(node) == Some(PeerState::Up),
                        replica: directory.has_replica(node),
                        linked: self.transport.link(*id).is_some(),
                    };
                    (*id, health)
                })
                .collect();
            let down = detector.down().into_iter().map(|node| node.0).collect();
            (members, down)
        };
        Some(NodeView {
            me: self.id.0,
            my_addr: self.me.cluster_addr.clone(),
            seeds: self.seeds.iter().map(ToString::to_string).collect(),
            membership,
            since_start: lock(&self.membership_started).elapsed(),
            join_timeout: Duration::from_millis(self.config.join_timeout_ms),
            links,
            members,
            down,
            ready: self.ready.load(Ordering::Relaxed),
        })
    }

    fn carry_out(&self, action: Action) {
        match action {
            Action::Bootstrap => {
                tracing::info!(node = %self.me.name, "forming a new cluster");
                self.change_membership("form a cluster", |membership| {
                    Box::pin(async move {
                        membership
                            .bootstrap()
                            .await
                            .map_err(|error| error.to_string())
                    })
                });
            }
            Action::RequestJoin(peer) => self.request_join(peer),
            Action::BecomeReady => {
                self.ready.store(true, Ordering::Relaxed);
                let members = self.view().members.len();
                tracing::info!(node = %self.me.name, members, "cluster ready: accepting logins");
            }
            Action::AddMember { id, info } => {
                self.change_membership("add a member", move |membership| {
                    Box::pin(async move {
                        let name = info.name.clone();
                        membership
                            .add_member(id, info)
                            .await
                            .map_err(|error| error.to_string())?;
                        tracing::info!(peer = %name, node = id, "member added");
                        Ok(())
                    })
                });
            }
            Action::ForwardJoin { leader, joiner } => {
                let _ = self
                    .transport
                    .send(NodeId(leader), Frame::Join { info: joiner });
            }
            Action::MergeInto { leader, members } => self.merge_into(leader, members),
            Action::RemoveMember(id) => {
                self.change_membership("remove a member", move |membership| {
                    Box::pin(async move {
                        membership
                            .remove_member(id)
                            .await
                            .map_err(|error| error.to_string())?;
                        tracing::info!(node = id, "removed a member");
                        Ok(())
                    })
                });
            }
        }
    }

    /// Runs one membership change in the background unless one is running
    /// (they can wait seconds without quorum; they run beside the tick and
    /// the links, never inside them).
    fn change_membership<F>(&self, what: &'static str, change: F)
    where
        F: FnOnce(Membership) -> BoxFuture<'static, Result<(), String>> + Send + 'static,
    {
        let Some(membership) = self.membership() else {
            return;
        };
        let Some(node) = self.this() else {
            return;
        };
        if self.changing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            if let Err(error) = change(membership).await {
                tracing::debug!(what, %error, "membership change did not complete");
            }
            node.changing.store(false, Ordering::Release);
        });
    }

    /// Leaves this node's separately formed cluster for a larger one: the
    /// membership starts afresh, and the next ticks ask the other cluster's
    /// members to add this node. Clients stay connected throughout; the
    /// session directories already flow over the links.
    fn merge_into(&self, leader: u64, members: usize) {
        let Some(node) = self.this() else {
            return;
        };
        if self.changing.swap(true, Ordering::AcqRel) {
            return;
        }
        let leader_name = lock(&self.peers)
            .get(&leader)
            .map_or_else(|| leader.to_string(), |peer| peer.name.clone());
        let ours = self.view().members.len();
        tracing::warn!(
            node = %self.me.name,
            senior = %leader_name,
            their_members = members,
            our_members = ours,
            "this node's cluster formed apart from a larger one: leaving it to merge"
        );
        tokio::spawn(async move {
            match node.restart_membership().await {
                Ok(()) => node.record_merge(leader, &leader_name, members),
                Err(error) => tracing::error!(%error, "could not restart the membership to merge"),
            }
            node.changing.store(false, Ordering::Release);
        });
    }

    /// Asks a linked peer to have this node added, at most once a second.
    fn request_join(&self, peer: u64) {
        let Some(link) = self.transport.link(peer) else {
            return;
        };
        let mut last = lock(&self.last_join);
        let due = last.get(&peer).is_none_or(|at| at.elapsed() >= JOIN_EVERY);
        if due {
            last.insert(peer, Instant::now());
            let _ = link.send(Frame::Join {
                info: self.me.clone(),
            });
        }
    }

    /// A peer asks to join.
    pub(super) fn on_join(&self, info: PeerInfo) {
        if let Some(action) = decide::on_join(&self.view(), self.id.0, info) {
            self.carry_out(action);
        }
    }

    /// A peer announced its leave.
    pub(super) fn on_leave(&self, node: NodeId) {
        if let Some(action) = decide::on_leave(&self.view(), self.id.0, node.0) {
            self.carry_out(action);
        }
    }

    /// Announces a clean departure: pending directory changes first, then
    /// `Leave` to every peer, then the links close.
    pub async fn leave(&self) {
        self.flush_now();
        for link in self.transport.links() {
            let _ = link.send(Frame::Leave);
        }
        if self.is_leader() {
            if let Some(membership) = self.membership() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    membership.remove_member(self.id.0),
                )
                .await;
            }
        }
        // The peers acknowledge what they received when told of the leave;
        // over a TLS link that can take longer than the goodbye's flush.
        self.transport
            .wait_acknowledged(Duration::from_secs(1))
            .await;
        self.transport.close_all("the node is shutting down").await;
        if let Some(membership) = self.membership() {
            membership.shutdown().await;
        }
    }
}
