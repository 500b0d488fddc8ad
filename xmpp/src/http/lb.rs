//! `GET /lb/{username}`: which member a user should connect to (the
//! policy in [`crate::balance`]). Public, as clients ask before they log
//! in; rate-limited per address like new c2s connections.

use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use serde::Serialize;
use starling_core::jid::BareJid;

use super::auth::prepared_username;
use super::listener::ClientAddr;
use super::{HttpError, HttpState};
use crate::balance;

#[derive(Debug, Serialize)]
pub(crate) struct Assignment {
    node: String,
    c2s: String,
    http: String,
}

pub(crate) async fn answer(
    State(state): State<HttpState>,
    ConnectInfo(ClientAddr { addr: peer, .. }): ConnectInfo<ClientAddr>,
    Path(username): Path<String>,
) -> Result<Json<Assignment>, HttpError> {
    let server = &state.server;
    if !server.ip_limits.allow_connection(peer.ip(), Instant::now()) {
        return Err(HttpError::RateLimited);
    }
    let user = prepared_username(&username)
        .and_then(|name| BareJid::new(&format!("{name}@{}", server.domain)).ok())
        .ok_or_else(|| HttpError::BadRequest(format!("{username:?} is not a valid username")))?;
    let member = balance::member_for_user(server, &user)
        .ok_or_else(|| HttpError::Unavailable("no member has room for another client".into()))?;
    Ok(Json(Assignment {
        node: member.name,
        c2s: member.c2s_addr,
        http: member.http_addr,
    }))
}
