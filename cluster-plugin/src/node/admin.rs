//! What the admin page and the metrics show: counters, member history,
//! and the whole cluster status.

use std::sync::atomic::{AtomicU64, Ordering};

use starling_core::cluster::{
    ClusterCounters, ClusterStatus, LinkStatus, MemberEvent, MemberRow, NodeId,
};

use super::{ClusterNode, lock, now_ms};
use crate::failure::PeerState;
use crate::transport::frame::PROTOCOL_VERSION;

/// Member events kept for the admin page.
const HISTORY: usize = 200;

/// Counters shown on the admin page and in metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub forward_failures: AtomicU64,
    pub received: AtomicU64,
    pub deltas_sent: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub resyncs: AtomicU64,
    pub invalidations: AtomicU64,
    pub invalidation_timeouts: AtomicU64,
    pub pubsub_sent: AtomicU64,
    pub pubsub_received: AtomicU64,
    pub interest_changes: AtomicU64,
    pub interest_ack_timeouts: AtomicU64,
}

impl Counters {
    fn snapshot(&self, transport: &crate::transport::Transport) -> ClusterCounters {
        ClusterCounters {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            forward_failures: self.forward_failures.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            deltas_sent: self.deltas_sent.load(Ordering::Relaxed),
            snapshots_sent: self.snapshots_sent.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            invalidation_timeouts: self.invalidation_timeouts.load(Ordering::Relaxed),
            pubsub_sent: self.pubsub_sent.load(Ordering::Relaxed),
            pubsub_received: self.pubsub_received.load(Ordering::Relaxed),
            interest_changes: self.interest_changes.load(Ordering::Relaxed),
            interest_ack_timeouts: self.interest_ack_timeouts.load(Ordering::Relaxed),
            resent: transport.resent.load(Ordering::Relaxed),
            duplicates_dropped: transport.duplicates_dropped.load(Ordering::Relaxed),
            handed_back_unsent: transport.handed_back_unsent.load(Ordering::Relaxed),
            handed_back_unconfirmed: transport.handed_back_unconfirmed.load(Ordering::Relaxed),
        }
    }
}

impl ClusterNode {
    pub(super) fn record_event(&self, node: NodeId, name: &str, state: PeerState) {
        self.push_event(MemberEvent {
            at_ms: now_ms(),
            node: node.0,
            name: name.to_owned(),
            state,
            note: None,
        });
    }

    /// This node left the cluster it had formed apart to join the one led
    /// by `leader`.
    pub(super) fn record_merge(&self, leader: u64, leader_name: &str, members: usize) {
        self.push_event(MemberEvent {
            at_ms: now_ms(),
            node: leader,
            name: leader_name.to_owned(),
            state: PeerState::Up,
            note: Some(format!(
                "merged: {} left the cluster it had formed apart to join {leader_name}'s \
                 ({members} members)",
                self.me.name
            )),
        });
    }

    fn push_event(&self, event: MemberEvent) {
        let mut history = lock(&self.history);
        history.push_back(event);
        while history.len() > HISTORY {
            history.pop_front();
        }
    }

    /// Everything the admin page shows about the cluster.
    pub fn status(&self) -> ClusterStatus {
        let view = self.view();
        // Before the detector lock: own_status takes it too (std mutexes
        // are not reentrant; taking it twice blocked the node for good).
        let own = self.own_status();
        let detector = lock(&self.detector);
        let directory = lock(&self.directory);
        let peers = lock(&self.peers).clone();
        let statuses = lock(&self.peer_status).clone();
        let mut ids: Vec<u64> = view.members.keys().copied().collect();
        for id in peers.keys() {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        if !ids.contains(&self.id.0) {
            ids.push(self.id.0);
        }
        ids.sort_unstable();
        let members = ids
            .into_iter()
            .map(|id| {
                let node = NodeId(id);
                let member = view.members.get(&id);
                let peer = if id == self.id.0 {
                    Some(&self.me)
                } else {
                    peers.get(&id)
                };
                let link = self.transport.link(id).map(|link| LinkStatus {
                    established_ms_ago: link.established.elapsed().as_millis() as u64,
                    queue_depth: link.queue_depth(),
                    heard_ms_ago: link.heard_ago().as_millis() as u64,
                });
                let state = if id == self.id.0 {
                    PeerState::Up
                } else {
                    detector.state(node).unwrap_or(PeerState::Down)
                };
                // From the membership, or else as the peer announced it.
                macro_rules! known {
                    ($field:ident) => {
                        member
                            .map(|m| m.$field.clone())
                            .or_else(|| peer.map(|p| p.$field.clone()))
                            .unwrap_or_default()
                    };
                }
                MemberRow {
                    id,
                    name: known!(name),
                    cluster_addr: known!(cluster_addr),
                    c2s_addr: known!(c2s_addr),
                    http_addr: known!(http_addr),
                    web_url: known!(web_url),
                    max_connections: known!(max_connections),
                    incarnation: peer.map(|p| p.incarnation).unwrap_or(0),
                    joined_at_ms: member.map(|m| m.joined_at_ms).unwrap_or(0),
                    member: member.is_some(),
                    senior: view.leader == Some(id),
                    state,
                    sessions: if id == self.id.0 {
                        directory.local_sessions()
                    } else {
                        directory.sessions_of(node)
                    },
                    client_stanzas: if id == self.id.0 {
                        own.client_stanzas
                    } else {
                        statuses.get(&id).map_or(0, |status| status.client_stanzas)
                    },
                    link,
                    view_agrees: id == self.id.0
                        || statuses.get(&id).is_none_or(|status| {
                            status.leader == own.leader && status.members == own.members
                        }),
                }
            })
            .collect();
        ClusterStatus {
            this_node: self.id.0,
            this_name: self.me.name.clone(),
            leader: view.leader,
            term: view.term,
            ready: self.ready.load(Ordering::Relaxed),
            protocol_version: PROTOCOL_VERSION,
            link_security: self.transport.link_security(),
            members,
            history: lock(&self.history).iter().cloned().collect(),
            remote_sessions: directory.remote_sessions(),
            counters: self.counters.snapshot(&self.transport),
        }
    }
}
