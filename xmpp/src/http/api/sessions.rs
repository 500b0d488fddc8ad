//! `GET /api/sessions` (this node's sessions, searchable, and the
//! cluster-wide count) and `POST /api/sessions/kick` (ends a session here
//! with a policy-violation stream error, or asks the member serving it).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use starling_core::cluster::KickReason;
use starling_core::jid::FullJid;

use super::limit;
use crate::http::auth::AdminUser;
use crate::http::{HttpError, HttpState};
use crate::session::CloseReason;

#[derive(Debug, Deserialize)]
pub(crate) struct SessionQuery {
    search: Option<String>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SessionRow {
    jid: String,
    available: bool,
    priority: i8,
    node: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct SessionList {
    local: Vec<SessionRow>,
    /// Sessions on this node (all of them, whatever the search).
    local_count: usize,
    /// Sessions in the whole cluster, as this node's directory knows them.
    cluster_count: usize,
}

pub(crate) async fn list(
    State(state): State<HttpState>,
    _admin: AdminUser,
    query: Result<Query<SessionQuery>, QueryRejection>,
) -> Result<Json<SessionList>, HttpError> {
    let Query(query) = query?;
    let server = &state.server;
    let needle = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|search| !search.is_empty())
        .map(str::to_lowercase);
    let node = &server.config.cluster.node_name;
    let mut local: Vec<SessionRow> = server
        .sessions
        .all()
        .into_iter()
        .filter(|session| {
            needle
                .as_ref()
                .is_none_or(|needle| session.jid.as_str().to_lowercase().contains(needle))
        })
        .map(|session| {
            let (available, priority) = session.availability();
            SessionRow {
                jid: session.jid.to_string(),
                available,
                priority,
                node: node.clone(),
            }
        })
        .collect();
    local.sort_by(|a, b| a.jid.cmp(&b.jid));
    local.truncate(limit(query.limit, 100, 10_000) as usize);
    let local_count = server.sessions.count();
    Ok(Json(SessionList {
        local,
        local_count,
        cluster_count: local_count + server.cluster.status().remote_sessions,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct KickRequest {
    jid: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Kicked {
    kicked: bool,
    /// The member that served the session.
    node: String,
}

pub(crate) async fn kick(
    State(state): State<HttpState>,
    admin: AdminUser,
    body: Result<Json<KickRequest>, JsonRejection>,
) -> Result<Json<Kicked>, HttpError> {
    let Json(request) = body?;
    let jid = FullJid::new(request.jid.trim()).map_err(|error| {
        HttpError::BadRequest(format!(
            "{:?} is not a full JID (user@domain/resource): {error}",
            request.jid
        ))
    })?;
    let server = &state.server;
    if let Some(session) = server.sessions.get(&jid) {
        session.close(CloseReason::Kicked);
        tracing::info!(%jid, admin = %admin.name, "session kicked");
        return Ok(Json(Kicked {
            kicked: true,
            node: server.config.cluster.node_name.clone(),
        }));
    }
    let Some(node) = server.cluster.locate(&jid) else {
        return Err(HttpError::NotFound(format!("no session {jid}")));
    };
    server.cluster.kick(node, &jid, KickReason::Admin);
    let name = server
        .cluster
        .status()
        .members
        .into_iter()
        .find(|member| member.id == node.0)
        .map(|member| member.name)
        .unwrap_or_else(|| node.to_string());
    tracing::info!(%jid, node = %name, admin = %admin.name, "session on another member kicked");
    Ok(Json(Kicked {
        kicked: true,
        node: name,
    }))
}
