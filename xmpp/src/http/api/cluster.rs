//! `GET /api/cluster`: this node's view of the cluster (the cluster
//! module's [`ClusterStatus`]) with what the admin page adds: session
//! counts, whether a quorum stands, which peers see the cluster otherwise,
//! and the router's counters.

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
    /// A senior member is known (always true for a single node).
    quorum: bool,
    /// Names of up peers whose last report differs from this node's view.
    disagreement: Vec<String>,
    routing: Routing,
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
    let status = server.cluster.status();
    let local_sessions = server.sessions.count();
    let quorum = status.leader.is_some() || !server.config.cluster.enabled;
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
    ClusterView {
        cluster_sessions: local_sessions + status.remote_sessions,
        local_sessions,
        quorum,
        disagreement,
        routing,
        status,
    }
}
