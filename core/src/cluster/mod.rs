//! The cluster seam: what the server asks of a cluster module, and what the
//! module hands back to the server.
//!
//! ```text
//!   xmpp::router ──locate / remote_resources / forward──▶ dyn Cluster
//!        ▲                                                  │
//!        └──────────── LocalDelivery::deliver ◀─────────────┘
//!                       (stanzas from peers)
//! ```
//!
//! The server only ever talks to `dyn Cluster`. A single node runs
//! [`LocalOnly`], which knows no other node, so one routing path serves both
//! the single node and the cluster. The local session manager remains the
//! authority for sessions on this node; the cluster module answers for the
//! sessions on the other nodes.

pub mod status;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::jid::{BareJid, FullJid, Jid};

pub use self::status::{
    ClusterCounters, ClusterStatus, LinkSecurity, LinkStatus, MemberEvent, MemberRow, PeerState,
};

/// Identifies a cluster member. `LocalOnly` is always [`NodeId::LOCAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    pub const LOCAL: NodeId = NodeId(0);
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

/// A stanza on its way to another node: a routing header in front of the
/// serialised XML, which travels untouched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub from: Jid,
    pub to: Jid,
    pub kind: StanzaKind,
    pub xml: Bytes,
    /// Times the stanza already crossed between nodes. A node that finds the
    /// session gone re-routes once; stale directories cannot bounce a stanza
    /// around for ever.
    pub hops: u8,
}

/// One of a user's sessions as the session directory knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceEntry {
    pub jid: FullJid,
    pub node: NodeId,
    /// Presence priority; only meaningful when `available`.
    pub priority: i8,
    /// Has sent available presence (is a candidate for bare-JID messages).
    pub available: bool,
}

/// A change to this node's sessions, announced to the other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    Bound {
        jid: FullJid,
    },
    Presence {
        jid: FullJid,
        priority: i8,
        available: bool,
    },
    Unbound {
        jid: FullJid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    #[error("node {0} is not a cluster member")]
    UnknownNode(NodeId),
    #[error("link to node {0} is down")]
    LinkDown(NodeId),
    #[error("send queue to node {0} is full")]
    QueueFull(NodeId),
}

/// A pub/sub event on its way to another member. The publishing member
/// sends it once to each member that has interest in the node: sessions of
/// subscribers there (from the session directory) or local watchers there
/// (from the replicated interest sets), and to no other member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubSubEvent {
    /// The pub/sub node's name.
    pub node: String,
    pub kind: PubSubEventKind,
    /// The XMPP notification without a `to`, or empty when no session on
    /// the receiving member is to be notified.
    pub notification: Bytes,
    /// Full JIDs of the sessions on the receiving member to notify.
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PubSubEventKind {
    Published {
        item_id: String,
        publisher: Option<String>,
        /// The item's payload, serialised.
        payload: String,
    },
    Retracted {
        item_id: String,
    },
    Deleted,
    Purged,
    /// The node's configuration changed (XMPP subscribers only).
    Configured,
    /// An event's notification for XMPP subscribers whose sessions the
    /// publisher found only when it looked again: the listed sessions get
    /// it, watchers do not (they had the event already).
    Notification,
}

/// How often to look again for a JID the directory does not know yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Lookups after the first one; 0 means no retry.
    pub attempts: u32,
    /// Window the retries are spread over.
    pub window: Duration,
}

impl RetryPolicy {
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 0,
        window: Duration::ZERO,
    };

    /// Pause before retry `attempt` (0-based). The pauses double, so a miss
    /// that is only a few milliseconds early is found again within a few
    /// milliseconds, and all of them together fill the window.
    pub fn delay(&self, attempt: u32) -> Duration {
        if self.attempts == 0 || attempt >= self.attempts {
            return Duration::ZERO;
        }
        let units = (1u64 << self.attempts.min(20)) - 1;
        let unit = self.window / units as u32;
        unit * (1u32 << attempt.min(20))
    }
}

/// Why a session is closed on the member that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// The same full JID logged in elsewhere (stream error `conflict`).
    Conflict,
    /// An administrator ended it (stream error `policy-violation`).
    Admin,
}

/// What the server asks of the cluster module.
pub trait Cluster: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> NodeId;

    /// False while a joining node is still receiving the session directory;
    /// client logins wait until it is true.
    fn ready(&self) -> bool;

    /// Announces a change to this node's sessions to the other members.
    fn announce(&self, change: SessionChange);

    /// The node serving a full JID on another member, from the local replica.
    fn locate(&self, jid: &FullJid) -> Option<NodeId>;

    /// A user's sessions on the other members, from the local replica.
    fn remote_resources(&self, jid: &BareJid) -> Vec<ResourceEntry>;

    /// Whether the local replica knows any session on another member: when
    /// not, no user has one, which a hot path can tell before it builds a
    /// user's bare JID to ask [`Cluster::remote_resources`].
    fn has_remote_sessions(&self) -> bool;

    /// Queues a stanza for another member; fails at once when the link to it
    /// is down or its send queue is full.
    fn forward(&self, node: NodeId, envelope: Envelope) -> Result<(), ForwardError>;

    /// Like [`Cluster::forward`], but waits up to `patience` for room when the
    /// member's send queue is full: backpressure for stanzas that must keep
    /// their order (messages), instead of a detour through offline storage.
    fn forward_waiting(
        &self,
        node: NodeId,
        envelope: Envelope,
        patience: Duration,
    ) -> BoxFuture<'_, Result<(), ForwardError>> {
        let _ = patience;
        Box::pin(std::future::ready(self.forward(node, envelope)))
    }

    /// How a miss in the directory is retried before the stanza is handled as
    /// for an offline user.
    fn miss_retry(&self) -> RetryPolicy;

    /// Asks the owner node to close its session of `jid`: the same full JID
    /// just logged in here (RFC 6120 7.7.2.2, across nodes), or an
    /// administrator ended it.
    fn kick(&self, node: NodeId, jid: &FullJid, reason: KickReason);

    /// Evicts `key` from the named cache on every other member and waits for
    /// their acknowledgements (members that are down are not waited for), so
    /// a change is visible cluster-wide before it is acknowledged to a client.
    fn invalidate(&self, cache: &'static str, key: String) -> BoxFuture<'_, ()>;

    /// Tells the node serving `user` that offline messages were stored for
    /// them, in case the user came online there meanwhile.
    fn offline_stored(&self, node: NodeId, user: &BareJid);

    /// This node's view of the cluster, for the admin side.
    fn status(&self) -> ClusterStatus;

    /// This node and the members it sees in one of `states`, in id order.
    /// Modules that place work on one member (group chat rooms) hash over
    /// this list. The state is what counts, committed or not: a member
    /// joining is linked and heard by all before Raft commits it.
    fn members_in(&self, states: &[PeerState]) -> Vec<NodeId> {
        let me = self.node_id();
        let mut members: Vec<NodeId> = self
            .status()
            .members
            .iter()
            .filter(|row| states.contains(&row.state))
            .map(|row| NodeId(row.id))
            .collect();
        if !members.contains(&me) {
            members.push(me);
        }
        members.sort_unstable();
        members
    }

    /// This node gained (`true`) or lost its last local watcher of pub/sub
    /// node `node`; the other members keep a replica of the set.
    fn pubsub_interest(&self, node: &str, interested: bool) {
        let _ = (node, interested);
    }

    /// Resolves once every member linked to this one has applied every
    /// interest change announced so far, or after a bounded wait. A reply
    /// telling a client it is subscribed waits for this, so that a publish
    /// made anywhere after the reply reaches it.
    fn pubsub_interest_applied(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// Other members with local watchers of pub/sub node `node`.
    fn pubsub_interested(&self, node: &str) -> Vec<NodeId> {
        let _ = node;
        Vec::new()
    }

    /// Queues a pub/sub event for another member, in order with the other
    /// events sent to it.
    fn pubsub_send(&self, node: NodeId, event: PubSubEvent) -> Result<(), ForwardError> {
        let _ = event;
        Err(ForwardError::UnknownNode(node))
    }

    /// Asks another member to hand over a session a client resumes here
    /// (XEP-0198): `request` and the reply are the server's own encoding,
    /// which the cluster carries untouched. Fails when the member cannot be
    /// reached or does not answer within `patience`.
    fn handover(
        &self,
        node: NodeId,
        request: Bytes,
        patience: Duration,
    ) -> BoxFuture<'_, Result<Bytes, ForwardError>> {
        let _ = (request, patience);
        Box::pin(std::future::ready(Err(ForwardError::UnknownNode(node))))
    }
}

/// Whether an envelope handed back by a dying link can have reached the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    /// No link ever began to write it: the peer cannot have seen it, and
    /// it is routed again as if it had never been forwarded.
    Never,
    /// Written but not acknowledged: the peer may have handled it before
    /// it went.
    Maybe,
}

/// What the cluster module hands back to the server.
pub trait LocalDelivery: Send + Sync + 'static {
    /// A stanza from another member for a JID served here. The router
    /// delivers it locally only; it never forwards it again.
    fn deliver(&self, envelope: Envelope, from: NodeId) -> BoxFuture<'_, ()>;

    /// This member's own envelopes that a given-up peer did not
    /// acknowledge, oldest first, each saying whether the peer may have
    /// handled it. The server routes them again as for a session that
    /// vanished, in the returned future; before returning it, it takes
    /// note of their senders, whose newer stanzas must not overtake them.
    fn undelivered(&self, envelopes: Vec<(Envelope, Reached)>) -> BoxFuture<'static, ()>;

    /// A member was declared down: these were its sessions.
    fn node_down(&self, node: NodeId, lost: Vec<FullJid>) -> BoxFuture<'_, ()>;

    /// A member declared down was only cut off (a partition healed): these
    /// sessions, reported lost by [`LocalDelivery::node_down`], are still
    /// there.
    fn sessions_regained(&self, node: NodeId, regained: Vec<FullJid>) -> BoxFuture<'_, ()>;

    /// A member is up (joined, back, or heard again after being suspect or
    /// down). Modules that place work by member (group chat rooms) hand
    /// over what now belongs to it.
    fn member_up(&self, node: NodeId) -> BoxFuture<'_, ()> {
        let _ = node;
        Box::pin(std::future::ready(()))
    }

    /// Another member bound the same full JID, or an administrator asked
    /// there: close the session here.
    fn kick(&self, jid: FullJid, reason: KickReason);

    /// Another member changed the entry behind `key` in the named cache.
    /// The acknowledgement is sent once this resolves, so a cache may be
    /// refilled here before the change is confirmed to its client.
    fn invalidate<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFuture<'a, ()>;

    /// Offline messages were stored for `user` elsewhere: deliver them if the
    /// user is available here.
    fn offline_stored(&self, user: BareJid) -> BoxFuture<'_, ()>;

    /// A pub/sub event from another member: notify the listed sessions and
    /// the local watchers of its node.
    fn pubsub_event(&self, event: PubSubEvent, from: NodeId);

    /// Stanzas this node's clients sent and received so far, reported to
    /// the other members for their admin pages.
    fn client_stanzas(&self) -> u64 {
        0
    }

    /// Another member asks for a session a client is resuming there (see
    /// [`Cluster::handover`]); the answer goes back to it as it is.
    fn handover(&self, request: Bytes, from: NodeId) -> BoxFuture<'_, Bytes>;

    /// A handover reply that no member took: this member's answer could
    /// not be sent, or the asking member's came after it stopped waiting.
    /// The session it carries is bound nowhere now; the server ends it as
    /// for a closed window (its stanzas routed again, contacts told), so
    /// nothing it held is lost.
    fn handover_abandoned(&self, reply: Bytes) -> BoxFuture<'_, ()>;
}

/// The cluster module of a single node: there are no other members.
#[derive(Debug, Default)]
pub struct LocalOnly {
    /// How this node describes itself on the admin side.
    identity: Option<MemberRow>,
}

impl LocalOnly {
    /// A single node that reports itself as `identity` (name, addresses,
    /// capacity) in its status.
    pub fn with_identity(identity: MemberRow) -> LocalOnly {
        LocalOnly {
            identity: Some(identity),
        }
    }
}

impl Cluster for LocalOnly {
    fn node_id(&self) -> NodeId {
        NodeId::LOCAL
    }

    fn ready(&self) -> bool {
        true
    }

    fn announce(&self, _change: SessionChange) {}

    fn locate(&self, _jid: &FullJid) -> Option<NodeId> {
        None
    }

    fn remote_resources(&self, _jid: &BareJid) -> Vec<ResourceEntry> {
        Vec::new()
    }

    fn has_remote_sessions(&self) -> bool {
        false
    }

    fn forward(&self, node: NodeId, _envelope: Envelope) -> Result<(), ForwardError> {
        Err(ForwardError::UnknownNode(node))
    }

    fn miss_retry(&self) -> RetryPolicy {
        RetryPolicy::NONE
    }

    fn kick(&self, _node: NodeId, _jid: &FullJid, _reason: KickReason) {}

    fn invalidate(&self, _cache: &'static str, _key: String) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn offline_stored(&self, _node: NodeId, _user: &BareJid) {}

    fn status(&self) -> ClusterStatus {
        let members: Vec<MemberRow> = self.identity.iter().cloned().collect();
        ClusterStatus {
            this_node: NodeId::LOCAL.0,
            this_name: members
                .first()
                .map(|row| row.name.clone())
                .unwrap_or_default(),
            leader: None,
            term: 0,
            ready: true,
            protocol_version: 0,
            link_security: None,
            members,
            history: Vec::new(),
            remote_sessions: 0,
            counters: ClusterCounters::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_soon_double_and_fill_the_window() {
        let policy = RetryPolicy {
            attempts: 5,
            window: Duration::from_millis(500),
        };
        let delays: Vec<Duration> = (0..5).map(|attempt| policy.delay(attempt)).collect();
        assert!(delays[0] < Duration::from_millis(20), "{delays:?}");
        assert!(
            delays.windows(2).all(|pair| pair[1] == pair[0] * 2),
            "{delays:?}"
        );
        let total: Duration = delays.iter().sum();
        assert!(
            total <= Duration::from_millis(500) && total > Duration::from_millis(490),
            "{total:?}"
        );
        assert_eq!(RetryPolicy::NONE.delay(0), Duration::ZERO);
    }

    #[test]
    fn local_only_knows_no_other_node() {
        let cluster = LocalOnly::default();
        let jid = FullJid::new("a@example.com/r").unwrap();
        assert!(cluster.ready());
        assert_eq!(cluster.locate(&jid), None);
        assert!(cluster.remote_resources(&jid.to_bare()).is_empty());
    }
}
