//! The JSON APIs under `/api`, all for admins only (the [`AdminUser`]
//! extractor: session cookie with CSRF token, or HTTP Basic).
//!
//! - `session`: who is logged in, and the CSRF token for the page.
//! - `cluster`: the member table, history, quorum and disagreement.
//! - `caches`: every cache's counters; clearing one.
//! - `sessions`: this node's sessions; kicking one anywhere in the cluster.
//! - `users`: accounts: list, search, add, delete, new password.
//! - `messages`: a message from an application, routed like any stanza.
//! - `s2s`: this node's server-to-server streams.
//!
//! [`AdminUser`]: super::auth::AdminUser

mod caches;
pub(crate) mod cluster;
mod messages;
mod s2s;
mod session;
mod sessions;
mod users;

use axum::Router;
use axum::routing::{delete, get, post};

use super::HttpState;

pub(crate) use self::caches::snapshot as cache_snapshot;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/session", get(session::show))
        .route("/cluster", get(cluster::show))
        .route("/caches", get(caches::list))
        .route("/caches/{name}/clear", post(caches::clear))
        .route("/sessions", get(sessions::list))
        .route("/sessions/kick", post(sessions::kick))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{username}", delete(users::remove))
        .route("/users/{username}/password", post(users::set_password))
        .route("/messages", post(messages::send))
        .route("/s2s", get(s2s::list))
}

/// A `limit` query parameter: `default` when absent, never above `max`.
fn limit(asked: Option<u32>, default: u32, max: u32) -> u32 {
    asked.unwrap_or(default).min(max)
}
