//! The vocabulary membership shares with openraft: the member id and member
//! info types, the openraft type configuration built from them, and the
//! read-only [`MembershipView`] derived from openraft's metrics.
//!
//! Membership has no application commands. Every change (join, info update,
//! removal) goes through openraft's membership-change API, and the member
//! infos travel inside the membership config as openraft's `Node` type, so the
//! log only ever holds membership and blank entries.

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::RaftMetrics;
use serde::{Deserialize, Serialize};

/// A cluster member's id, stable across restarts of that member.
pub type MemberId = u64;

/// What the cluster knows of a member. Stored in the Raft membership config
/// (openraft's `Node` type), so every member agrees on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemberInfo {
    /// The operator-chosen node name (`[cluster] node_name`).
    pub name: String,
    /// `host:port` of the peer transport.
    pub cluster_addr: String,
    /// `host:port` clients connect to.
    pub c2s_addr: String,
    /// `host:port` of the HTTP surface (admin page, WebSocket, CometD).
    pub http_addr: String,
    /// The base URL web clients reach the member at (`[http] public_url`,
    /// else from the HTTP bind address): where see-other-uri points.
    pub web_url: String,
    /// The member's configured client connection limit.
    pub max_connections: u32,
    /// Milliseconds since the Unix epoch at which the leader added the member;
    /// written by the leader, whatever the joining node sent. Kept when only
    /// the other fields change.
    pub joined_at_ms: i64,
}

impl MemberInfo {
    /// Equal in everything the member itself decides, i.e. all but
    /// `joined_at_ms`.
    pub(crate) fn same_as(&self, other: &MemberInfo) -> bool {
        self.name == other.name
            && self.cluster_addr == other.cluster_addr
            && self.c2s_addr == other.c2s_addr
            && self.http_addr == other.http_addr
            && self.web_url == other.web_url
            && self.max_connections == other.max_connections
    }
}

/// The current view of the cluster from this node: read often (admin page,
/// routing of joins), cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipView {
    /// The senior member (Raft leader) as this node knows it. A leader cut
    /// off from the others keeps naming itself until it hears of a newer term.
    pub leader: Option<MemberId>,
    /// The Raft term of that knowledge.
    pub term: u64,
    /// The voters. While a change is in flight (joint consensus) this is the
    /// union of the old and the new voter sets: every member that still
    /// counts for the quorum.
    pub members: BTreeMap<MemberId, MemberInfo>,
    /// This node is part of a cluster (has a membership config). A node that
    /// restarted is not, until the leader has caught it up.
    pub initialized: bool,
}

impl MembershipView {
    pub(crate) fn from_metrics(metrics: &RaftMetrics<MemberId, MemberInfo>) -> MembershipView {
        let membership = metrics.membership_config.membership();
        let members = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|info| (id, info.clone())))
            .collect();
        MembershipView {
            // A stopped node knows no leader any more.
            leader: metrics
                .current_leader
                .filter(|_| metrics.running_state.is_ok()),
            term: metrics.current_term,
            members,
            initialized: metrics.membership_config.log_id().is_some(),
        }
    }
}

/// The application command type: there is none. Being uninhabited, no normal
/// log entry can ever be built, sent or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum NoCommand {}

openraft::declare_raft_types!(
    /// openraft's type configuration for Starling's membership.
    pub(crate) TypeConfig:
        D = NoCommand,
        R = (),
        NodeId = MemberId,
        Node = MemberInfo,
        SnapshotData = Cursor<Vec<u8>>,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<MemberId>;
pub(crate) type Vote = openraft::Vote<MemberId>;
pub(crate) type StorageError = openraft::StorageError<MemberId>;
pub(crate) type StoredMembership = openraft::StoredMembership<MemberId, MemberInfo>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<MemberId, MemberInfo>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type RaftMembership = openraft::Membership<MemberId, MemberInfo>;
