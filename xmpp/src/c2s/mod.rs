//! Client-to-server connections (RFC 6120 over TCP).
//!
//! - `listener`: accept loop, connection cap, per-IP connection rate.
//! - `connection`: one task per client, from accept to close.
//! - `conn`: the socket side (events in, bytes out, stream errors).
//! - `transport`: plain or TLS socket without a parked read buffer.
//! - `websocket`: the stream of an XMPP-over-WebSocket client, frame by frame.
//! - `pipe`: the stream of another transport (BOSH), fed by its adapter task.
//! - `negotiate`, `sasl`, `legacy`: everything before the session exists.
//! - `session_loop`: the bound session; `stream_management`: XEP-0198 on it.
//! - `detached`: a resumable session waiting for its client (XEP-0198).
//! - `limits`: per-IP rate and authentication-failure limits.

mod conn;
mod connection;
mod detached;
mod legacy;
pub mod limits;
pub mod listener;
mod negotiate;
pub(crate) mod pipe;
mod sasl;
mod session_loop;
mod stream_management;
mod transport;
mod websocket;

pub(crate) use conn::new_stream_id;
pub(crate) use session_loop::{end_session, reroute_undelivered};

/// Serves one client whose stream arrives through `pipe` (from the BOSH
/// adapter): the same negotiation and session as TCP.
pub(crate) async fn serve_pipe(
    pipe: pipe::PipeEnd,
    peer: std::net::SocketAddr,
    server: std::sync::Arc<crate::server::Server>,
) {
    let transport = transport::Transport::Pipe(Box::new(pipe));
    let tracker = server.web_connections.clone();
    tracker
        .track_future(connection::run_transport(transport, peer, server))
        .await
}

/// Serves one XMPP-over-WebSocket client, in the task of the upgrade: the
/// same negotiation and session as TCP.
///
/// A plain function that returns the connection's future: an `async fn`
/// would keep its (moved-from) WebSocket argument in every idle session's
/// task for the session's life.
pub(crate) fn serve_websocket(
    socket: axum::extract::ws::WebSocket,
    (secure, bindings): (bool, crate::auth::ChannelBindings),
    limits: crate::stream::Limits,
    peer: std::net::SocketAddr,
    server: std::sync::Arc<crate::server::Server>,
) -> impl Future<Output = ()> + Send {
    let stream = websocket::WebSocketStream::new(socket, limits, secure, bindings);
    let transport = transport::Transport::WebSocket(Box::new(stream));
    let tracker = server.web_connections.clone();
    tracker.track_future(connection::run_transport(transport, peer, server))
}
