//! `GET /api/caches` and `POST /api/caches/{name}/clear`: every cache of
//! this node with its counters, the session directory included (as a
//! replicated cache whose size is the sessions known on other members).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use starling_core::cache::{CacheKind, CacheStats};

use crate::http::auth::AdminUser;
use crate::http::{HttpError, HttpState};
use crate::server::Server;

/// The name the session directory goes by on the admin side.
pub(crate) const DIRECTORY: &str = "session_directory";

#[derive(Debug, Serialize)]
pub(crate) struct CacheRow {
    #[serde(flatten)]
    stats: CacheStats,
    hit_ratio: f64,
}

pub(crate) async fn list(State(state): State<HttpState>, _admin: AdminUser) -> Json<Vec<CacheRow>> {
    Json(
        snapshot(&state.server)
            .into_iter()
            .map(|stats| CacheRow {
                hit_ratio: stats.hit_ratio(),
                stats,
            })
            .collect(),
    )
}

/// Every cache's counters, the directory first.
pub(crate) fn snapshot(server: &Server) -> Vec<CacheStats> {
    let directory = CacheStats {
        name: DIRECTORY.into(),
        kind: CacheKind::Replicated,
        size: server.cluster.status().remote_sessions as u64,
        limit: 0,
        hits: 0,
        misses: 0,
        evictions: 0,
    };
    let mut all = vec![directory];
    all.extend(server.caches.snapshot());
    all
}

/// Empties one cache on this node. The directory is not a cache that can
/// be emptied: it is the cluster's record of where sessions are.
pub(crate) async fn clear(
    State(state): State<HttpState>,
    admin: AdminUser,
    Path(name): Path<String>,
) -> Result<StatusCode, HttpError> {
    if name == DIRECTORY {
        return Err(HttpError::Conflict(
            "the session directory is replicated state, not a cache to clear".into(),
        ));
    }
    if !state.server.caches.clear(&name) {
        return Err(HttpError::NotFound(format!("no cache named {name:?}")));
    }
    tracing::info!(cache = %name, admin = %admin.name, "cache cleared");
    Ok(StatusCode::NO_CONTENT)
}
