//! `GET /api/s2s`: this node's server-to-server streams (remote domain,
//! direction, authentication, TLS, XEP-0288, since when, stanzas each way,
//! stanzas awaiting the peer's confirmation). Each member lists its own
//! streams: ask every member for the whole cluster's.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::http::HttpState;
use crate::http::auth::AdminUser;
use crate::s2s::streams::StreamRow;

#[derive(Debug, Serialize)]
pub(crate) struct StreamList {
    /// The member answering.
    node: String,
    /// Its open streams, oldest first.
    streams: Vec<StreamRow>,
}

pub(crate) async fn list(State(state): State<HttpState>, _admin: AdminUser) -> Json<StreamList> {
    let node = state.server.config.cluster.node_name.clone();
    Json(StreamList {
        streams: state.server.s2s.streams.rows(&node),
        node,
    })
}
