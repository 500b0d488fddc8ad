//! RFC 7395 XMPP over WebSocket at `/xmpp-websocket`.
//!
//! This module takes the HTTP upgrade (origin, subprotocol, admission,
//! see-other-uri); the WebSocket is then the c2s connection's transport
//! (`c2s::websocket`): each client text message is checked (one complete
//! element, within `limits.max_stanza_size`) and read as bytes of an
//! ordinary stream, and what the session writes is split back into one
//! message per element. Negotiation, the session, its limits and metrics
//! are the c2s code's, unchanged.
//!
//! Security: the WebSocket counts as encrypted when the HTTP listener runs
//! TLS (`[http] tls`). Over plain HTTP the upgrade is refused unless
//! `[c2s] allow_plain_without_tls` allows authenticating without TLS, as it
//! does for TCP clients. STARTTLS is never offered on a WebSocket.
//!
//! Channel binding: a WebSocket lives on one TLS connection, so SCRAM -PLUS
//! binds to that connection (`tls-exporter`, on TLS 1.3) or to the node's
//! certificate (`tls-server-end-point`), exactly as on a TCP client's TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use tokio::sync::OwnedSemaphorePermit;

use super::HttpState;
use super::listener::ClientAddr;
use super::origin;
use crate::auth::ChannelBindings;
use crate::balance::WebEndpoint;
use crate::server::Server;
use crate::stream::Limits;
use crate::stream::framing;

/// The WebSocket subprotocol of RFC 7395.
const SUBPROTOCOL: &str = "xmpp";

pub(super) async fn endpoint(State(state): State<HttpState>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let client = parts.extensions.get::<ConnectInfo<ClientAddr>>().map_or(
        ClientAddr::plain(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
        |ConnectInfo(client)| *client,
    );
    let peer = client.addr;
    let server = state.server.clone();
    if let Some(refusal) = origin::refusal(&server.config.http, &parts.headers) {
        return refusal;
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if !offers_subprotocol(&parts.headers) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "XMPP over WebSocket needs the WebSocket subprotocol \"xmpp\" (RFC 7395)",
        );
    }
    let secure = server.config.http.tls;
    if !secure && !server.config.c2s.allow_plain_without_tls {
        return refuse(
            StatusCode::FORBIDDEN,
            "XMPP over WebSocket needs HTTPS on this node ([http] tls = true)",
        );
    }
    let bindings = if secure {
        ChannelBindings::new(client.tls_exporter, server.tls_certificate.end_point())
    } else {
        ChannelBindings::default()
    };
    // A full node sends the client to a member with room, as
    // see-other-host does for TCP.
    let permit = match super::admit(&server, peer, WebEndpoint::WebSocket) {
        Ok(permit) => permit,
        Err(super::Refusal {
            see_other: Some(other),
            ..
        }) => {
            return upgrade
                .protocols([SUBPROTOCOL])
                .max_message_size(REDIRECT_FRAME_LIMIT)
                .max_frame_size(REDIRECT_FRAME_LIMIT)
                .on_upgrade(move |socket| redirect(socket, other));
        }
        Err(refusal) => return refuse(refusal.status, refusal.reason),
    };
    let limits = Limits {
        max_stanza_size: server.limits().max_stanza_size,
        max_depth: server.limits().max_depth,
    };
    // A frame over the stanza limit gets a stream error from `pump`; only
    // one far over it is cut off by the WebSocket layer itself.
    let hard_limit = limits
        .max_stanza_size
        .saturating_mul(2)
        .saturating_add(4096);
    upgrade
        .protocols([SUBPROTOCOL])
        // tungstenite reads in 128 KiB chunks by default, held per
        // connection: most of an idle session's memory. Messages larger
        // than a chunk are still read whole (up to `hard_limit`).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| run(server, socket, peer, (secure, bindings), limits, permit))
}

/// Bytes read from the socket at once. tungstenite allocates its read
/// buffer at this size when the WebSocket opens and keeps it for the
/// connection's life, idle or not; client frames are single stanzas,
/// mostly well under 1 KiB, and a larger one is still read whole.
const READ_BUFFER: usize = 1024;
/// Bytes of frames gathered before a write.
const WRITE_BUFFER: usize = 4 * 1024;

/// The largest message a client being redirected may send (its `<open/>`).
const REDIRECT_FRAME_LIMIT: usize = 4096;

/// How long a redirect may take in all: the client's `<open/>`, our
/// `<close/>`, the closing handshake. It holds no connection permit, so it
/// must end by itself.
const REDIRECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// RFC 7395 3.6.1: answers the client's `<open/>` with `<close
/// see-other-uri='…'/>` instead of an `<open/>`, then closes the WebSocket.
async fn redirect(mut socket: WebSocket, other: String) {
    let goodbye = async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return,
            }
        }
        let frame = framing::see_other_uri_frame(&other);
        if socket.send(Message::Text(frame.into())).await.is_err() {
            return;
        }
        if socket.send(Message::Close(None)).await.is_err() {
            return;
        }
        // Until the client answers the close (or drops the connection).
        while let Some(Ok(_)) = socket.recv().await {}
    };
    let _bounded = tokio::time::timeout(REDIRECT_WITHIN, goodbye).await;
}

fn offers_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|protocol| protocol.trim() == SUBPROTOCOL)
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The session, in the task axum spawned for the upgrade: it reads and
/// writes the WebSocket itself (`c2s::serve_websocket`). A combinator, not
/// an `async fn`, so that the task does not keep a second copy of the
/// WebSocket (see `serve_websocket`).
fn run(
    server: Arc<Server>,
    socket: WebSocket,
    peer: SocketAddr,
    security: (bool, ChannelBindings),
    limits: Limits,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send {
    crate::c2s::serve_websocket(socket, security, limits, peer, server).map(move |()| drop(permit))
}
