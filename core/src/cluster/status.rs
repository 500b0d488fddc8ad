//! What the admin page and `/api/cluster` show about the cluster, as this
//! node sees it (reported by [`super::Cluster::status`]).

use serde::{Deserialize, Serialize};

/// A member's health as this node's failure detector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    Up,
    Suspect,
    Down,
    /// Left cleanly (announced it on shutdown).
    Leaving,
}

/// Traffic counters of the cluster module. Counters a node of another
/// version does not report read as zero (`starling cluster status` may ask
/// any node).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterCounters {
    /// Stanzas handed to a peer link.
    pub forwarded: u64,
    /// Stanzas a peer link could not take (down, or its queue full).
    pub forward_failures: u64,
    /// Stanzas received from peers.
    pub received: u64,
    pub deltas_sent: u64,
    pub snapshots_sent: u64,
    pub resyncs: u64,
    pub invalidations: u64,
    pub invalidation_timeouts: u64,
    /// Pub/sub events sent to peers (once per peer with interest and event).
    pub pubsub_sent: u64,
    /// Pub/sub events received from peers.
    pub pubsub_received: u64,
    /// Changes to this node's pub/sub interest set announced to peers.
    pub interest_changes: u64,
    /// Waits for peers to apply an interest change that ended in the timeout.
    pub interest_ack_timeouts: u64,
    /// Stanzas a dead link left unacknowledged, sent again on the next link
    /// to the same peer.
    pub resent: u64,
    /// Stanzas from a peer dropped as copies of ones delivered already
    /// (sent again after a link flap).
    pub duplicates_dropped: u64,
    /// Stanzas a given-up peer did not acknowledge and no link had begun
    /// to write: routed again as if never forwarded.
    pub handed_back_unsent: u64,
    /// Stanzas a given-up peer did not acknowledge after a link had written
    /// them: the peer may have handled them.
    pub handed_back_unconfirmed: u64,
}

/// How peer links are protected (`[cluster] insecure_plaintext`, `tls_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkSecurity {
    /// TLS 1.3 with a certificate each node makes at start; the shared
    /// secret, bound to each TLS session, authenticates the peer.
    Tls,
    /// TLS 1.3 with certificates of the operators' CA, checked against the
    /// peer's node name, and the shared secret as well.
    TlsCa,
    /// Clear text: anyone on the network path reads and can alter the links.
    Plaintext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub this_node: u64,
    pub this_name: String,
    /// The senior member (Raft leader), if there is one (no quorum: none).
    pub leader: Option<u64>,
    pub term: u64,
    /// This node holds the directory and accepts logins.
    pub ready: bool,
    pub protocol_version: u32,
    /// How this node's peer links are protected (none: a single node).
    /// Missing from nodes of older versions.
    #[serde(default)]
    pub link_security: Option<LinkSecurity>,
    pub members: Vec<MemberRow>,
    /// Members going down and coming back, oldest first.
    pub history: Vec<MemberEvent>,
    /// Sessions known on other nodes (directory entries).
    pub remote_sessions: usize,
    pub counters: ClusterCounters,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberRow {
    pub id: u64,
    pub name: String,
    pub cluster_addr: String,
    pub c2s_addr: String,
    pub http_addr: String,
    /// The base URL web clients reach the member at (`[http] public_url`,
    /// else `http(s)://` and its HTTP bind address).
    #[serde(default)]
    pub web_url: String,
    pub max_connections: u32,
    pub incarnation: u64,
    pub joined_at_ms: i64,
    /// In the committed membership (a peer may be linked before it is).
    pub member: bool,
    pub senior: bool,
    pub state: PeerState,
    pub sessions: usize,
    /// Stanzas its clients sent and received so far (the admin page's
    /// traffic graph); 0 from a member that does not say.
    #[serde(default)]
    pub client_stanzas: u64,
    pub link: Option<LinkStatus>,
    /// The peer's last status agrees with this node's view of leader and members.
    pub view_agrees: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkStatus {
    pub established_ms_ago: u64,
    pub queue_depth: usize,
    pub heard_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberEvent {
    pub at_ms: u64,
    pub node: u64,
    pub name: String,
    pub state: PeerState,
    /// What happened beyond the state change, when there is more to say
    /// (this node merged into another cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
