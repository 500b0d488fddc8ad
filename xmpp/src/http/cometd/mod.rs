//! Bayeux 1.0 (CometD) at `/cometd`, bridged to XMPP pub/sub.
//!
//! ```text
//!  POST /cometd, /cometd/{*path}  longpoll.rs   batches of messages; connect held
//!  GET  /cometd (Upgrade)         websocket.rs  same messages, events pushed
//!          \                     /
//!           engine.rs  handshake/connect/subscribe/unsubscribe/publish/disconnect
//!           |-- message.rs   parsing, checks, reply shapes
//!           |-- clients.rs   client registry, expiry after maxInterval
//!           |-- outbox.rs    per-client queue, ack extension batches
//!           |-- channels.rs  channel -> local subscribers, one feed per channel
//!           |-- bridge.rs    /pubsub/<node> <-> pub/sub node, identities, errors
//!           `-- payload.rs   data <-> item payload; what subscribers receive
//! ```
//!
//! The official JavaScript client posts to per-message paths
//! (`/cometd/handshake`, `/cometd/connect`, ...); the path says nothing the
//! body does not, so every path under `/cometd` is the same endpoint.

mod bridge;
mod channels;
mod clients;
mod engine;
mod longpoll;
mod message;
mod outbox;
mod payload;
mod websocket;

use std::net::{IpAddr, Ipv4Addr};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::any;

pub use self::engine::{Bayeux, BayeuxCounters};
use super::HttpState;
use super::listener::ClientAddr;

/// The largest request body accepted (a batch of messages).
const MAX_BODY: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/cometd", any(endpoint))
        .route("/cometd/", any(endpoint))
        .route("/cometd/{*path}", any(endpoint))
}

async fn endpoint(State(state): State<HttpState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let ip = parts.extensions.get::<ConnectInfo<ClientAddr>>().map_or(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        |ConnectInfo(ClientAddr { addr, .. })| addr.ip(),
    );
    let bayeux = state.cometd.clone();
    if parts.method == Method::GET {
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
            Ok(upgrade) => upgrade
                .read_buffer_size(websocket::READ_BUFFER)
                .write_buffer_size(websocket::WRITE_BUFFER)
                .max_message_size(websocket::MAX_MESSAGE)
                .max_frame_size(websocket::MAX_MESSAGE)
                .on_upgrade(move |socket| websocket::run(bayeux, socket, ip)),
            Err(_) => longpoll::json_response(
                StatusCode::BAD_REQUEST,
                r#"[{"successful":false,"error":"400::POST Bayeux messages, or upgrade to a WebSocket"}]"#.into(),
            ),
        };
    }
    if parts.method != Method::POST {
        return longpoll::json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"[{"successful":false,"error":"405::POST Bayeux messages"}]"#.into(),
        );
    }
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => longpoll::handle(bayeux, body, ip).await,
        Err(error) => longpoll::json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!([{"successful": false, "error": format!("413::{error}")}])
                .to_string(),
        ),
    }
}
