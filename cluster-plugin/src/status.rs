//! What the admin page and `/api/cluster` show about the cluster, as this
//! node sees it.

use serde::Serialize;

use crate::failure::PeerState;

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub this_node: u64,
    pub this_name: String,
    /// The senior member (Raft leader), if there is one (no quorum: none).
    pub leader: Option<u64>,
    pub term: u64,
    /// This node holds the directory and accepts logins.
    pub ready: bool,
    pub protocol_version: u32,
    pub members: Vec<MemberRow>,
    /// Members going down and coming back, oldest first.
    pub history: Vec<MemberEvent>,
    /// Sessions known on other nodes (directory entries).
    pub remote_sessions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberRow {
    pub id: u64,
    pub name: String,
    pub cluster_addr: String,
    pub c2s_addr: String,
    pub http_addr: String,
    pub max_connections: u32,
    pub incarnation: u64,
    pub joined_at_ms: i64,
    /// In the committed membership (a peer may be linked before it is).
    pub member: bool,
    pub senior: bool,
    pub state: PeerState,
    pub sessions: usize,
    pub link: Option<LinkStatus>,
    /// The peer's last status agrees with this node's view of leader and members.
    pub view_agrees: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub established_ms_ago: u64,
    pub queue_depth: usize,
    pub heard_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberEvent {
    pub at_ms: u64,
    pub node: u64,
    pub name: String,
    pub state: PeerState,
}
