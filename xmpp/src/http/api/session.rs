//! `GET /api/session`: the logged-in admin, the CSRF token the page sends
//! with its changes, and the node that serves the page.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::http::HttpState;
use crate::http::auth::{AdminUser, Via};

#[derive(Debug, Serialize)]
pub(crate) struct SessionInfo {
    user: String,
    /// Empty for HTTP Basic, which needs no token.
    csrf: String,
    node: String,
}

pub(crate) async fn show(State(state): State<HttpState>, admin: AdminUser) -> Json<SessionInfo> {
    let csrf = match admin.via {
        Via::Cookie { csrf } => csrf,
        Via::Basic => String::new(),
    };
    Json(SessionInfo {
        user: admin.name,
        csrf,
        node: state.server.config.cluster.node_name.clone(),
    })
}
