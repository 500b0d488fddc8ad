//! `GET /api/cluster`: this node's view of the cluster (the cluster
//! module's [`ClusterStatus`]) with what the admin page adds: session
//! counts, whether a quorum stands, which peers see the cluster otherwise,
//! the router's counters and this node's federation streams.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use starling_core::cluster::{ClusterStatus, PeerState};

use crate::http::HttpState;
use crate::http::auth::AdminUser;
use crate::server::Server;

#[derive(Debug, Serialize)]
pub(crate) struct ClusterView {
    #[serde(flatten)]
    status: ClusterStatus,
    local_sessions: usize,
    cluster_sessions: usize,
    /// A senior member is known and a majority of the voting members is
    /// up as this node sees them (always true for a single node).
    quorum: bool,
    /// Names of up peers whose last report differs from this node's view.
    disagreement: Vec<String>,
    routing: Routing,
    /// This node's federation: its own outgoing streams, and the streams
    /// open now in each direction.
    s2s: Federation,
}

#[derive(Debug, Serialize)]
struct Federation {
    /// (our domain, remote domain) of each outgoing stream this node holds
    /// or is setting up.
    outgoing: Vec<(String, String)>,
    /// Those of `outgoing` whose stanzas go over an incoming stream the
    /// peer made bidirectional (XEP-0288) instead of one of ours.
    outgoing_over_inbound: Vec<(String, String)>,
    streams_in: u64,
    streams_out: u64,
}

#[derive(Debug, Serialize)]
struct Routing {
    routed_local: u64,
    routed_remote: u64,
    lookup_retries: u64,
    lookup_misses: u64,
}

pub(crate) async fn show(State(state): State<HttpState>, _admin: AdminUser) -> Json<ClusterView> {
    Json(view(&state.server))
}

pub(crate) fn view(server: &Server) -> ClusterView {
    let mut status = server.cluster.status();
    // This node's own count is read here, fresher than its last status.
    let this_node = status.this_node;
    if let Some(me) = status.members.iter_mut().find(|m| m.id == this_node) {
        me.client_stanzas = server.metrics.client_stanzas();
    }
    let local_sessions = server.sessions.count();
    let quorum = !server.config.cluster.enabled || has_quorum(&status);
    let disagreement = status
        .members
        .iter()
        .filter(|member| member.state == PeerState::Up && !member.view_agrees)
        .map(|member| member.name.clone())
        .collect();
    let metrics = &server.metrics;
    let routing = Routing {
        routed_local: metrics.routed_local.load(Ordering::Relaxed),
        routed_remote: metrics.routed_remote.load(Ordering::Relaxed),
        lookup_retries: metrics.lookup_retries.load(Ordering::Relaxed),
        lookup_misses: metrics.lookup_misses.load(Ordering::Relaxed),
    };
    let s2s = Federation {
        outgoing: server.s2s.outgoing(),
        outgoing_over_inbound: server.s2s.sending_over_inbound(),
        streams_in: server.s2s.metrics.streams_in.load(Ordering::Relaxed),
        streams_out: server.s2s.metrics.streams_out.load(Ordering::Relaxed),
    };
    ClusterView {
        s2s,
        cluster_sessions: local_sessions + status.remote_sessions,
        local_sessions,
        quorum,
        disagreement,
        routing,
        status,
    }
}

/// Whether membership changes can be committed: a senior member is known and
/// more than half of the voting members are up. A senior member that lost
/// its majority still names itself leader for a while; the member states
/// from the failure detector tell the truth sooner.
pub(crate) fn has_quorum(status: &ClusterStatus) -> bool {
    let voters = status.members.iter().filter(|member| member.member);
    let (total, up) = voters.fold((0, 0), |(total, up), member| {
        (total + 1, up + usize::from(member.state == PeerState::Up))
    });
    status.leader.is_some() && up * 2 > total
}

#[cfg(test)]
mod tests {
    use starling_core::cluster::{ClusterCounters, ClusterStatus, MemberRow, PeerState};

    use super::has_quorum;

    fn member(id: u64, state: PeerState) -> MemberRow {
        MemberRow {
            id,
            name: format!("node{id}"),
            cluster_addr: String::new(),
            c2s_addr: String::new(),
            http_addr: String::new(),
            web_url: String::new(),
            max_connections: 0,
            incarnation: 1,
            joined_at_ms: 0,
            member: true,
            senior: id == 1,
            state,
            sessions: 0,
            client_stanzas: 0,
            link: None,
            view_agrees: true,
        }
    }

    fn status(states: &[PeerState], leader: Option<u64>) -> ClusterStatus {
        ClusterStatus {
            this_node: 1,
            this_name: "node1".into(),
            leader,
            term: 1,
            ready: true,
            protocol_version: 4,
            link_security: None,
            members: states
                .iter()
                .enumerate()
                .map(|(index, state)| member(index as u64 + 1, *state))
                .collect(),
            history: Vec::new(),
            remote_sessions: 0,
            counters: ClusterCounters::default(),
        }
    }

    #[test]
    fn a_majority_of_up_voters_and_a_leader_make_a_quorum() {
        use PeerState::{Down, Suspect, Up};
        assert!(has_quorum(&status(&[Up, Up, Up], Some(1))));
        assert!(has_quorum(&status(&[Up, Up, Down], Some(1))));
        assert!(!has_quorum(&status(&[Up, Down, Suspect], Some(1))));
        assert!(!has_quorum(&status(&[Up, Down], Some(1))));
        assert!(!has_quorum(&status(&[Up, Up, Up], None)));
    }
}
