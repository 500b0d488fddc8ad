//! One client connection from accept to close: negotiation, then the bound
//! session, then cleanup. Errors end this connection only and are logged
//! here, at the task boundary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::conn::{Conn, ConnError};
use super::negotiate::Negotiated;
use super::transport::Transport;
use super::{detached, negotiate, session_loop};
use crate::server::Server;

pub(super) async fn run(socket: TcpStream, peer: SocketAddr, server: Arc<Server>) {
    run_transport(Transport::Plain(socket), peer, server).await
}

/// XEP-0368 direct TLS: the handshake first, then the stream inside it.
pub(super) async fn run_direct_tls(
    socket: TcpStream,
    peer: SocketAddr,
    server: Arc<Server>,
    acceptor: TlsAcceptor,
) {
    let timeout = Duration::from_secs(server.limits().negotiation_timeout_secs);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(%peer, %error, "direct TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "direct TLS handshake timed out"),
    };
    crate::metrics::incr(&server.metrics.tls_handshakes);
    run_transport(Transport::Tls(Box::new(tls)), peer, server).await
}

/// The same, over any transport: direct TLS, or a pipe from the WebSocket
/// or BOSH adapter.
pub(super) async fn run_transport(transport: Transport, peer: SocketAddr, server: Arc<Server>) {
    let span = tracing::debug_span!("c2s", %peer, jid = tracing::field::Empty);
    async move {
        let metrics = &server.metrics;
        metrics
            .connections_open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut conn = Conn::new(transport, peer, server.clone());
        // Boxed: the negotiation's state is large and only needed briefly;
        // inline it would stay in every idle session's task.
        let negotiating = Box::pin(negotiate::negotiate(&mut conn));
        let ended = match negotiating.await {
            Ok(Negotiated::Bound(bound)) => {
                tracing::Span::current().record("jid", tracing::field::display(&bound.jid));
                Box::pin(session_loop::run(&mut conn, bound)).await
            }
            Ok(Negotiated::Resumed(resumed)) => {
                let jid = &resumed.taken.session.jid;
                tracing::Span::current().record("jid", tracing::field::display(jid));
                Box::pin(session_loop::resumed(&mut conn, resumed)).await
            }
            Err(error) => session_loop::Ended {
                error: Some(error),
                detached: None,
            },
        };
        log_end(ended.error.as_ref());
        conn.finish(ended.error.as_ref()).await;
        metrics
            .connections_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(waiting) = ended.detached {
            // The socket and the parser go; the session waits without them.
            drop(conn);
            Box::pin(detached::wait(server, waiting)).await;
        }
    }
    .instrument(span)
    .await
}

fn log_end(error: Option<&ConnError>) {
    match error {
        None | Some(ConnError::ClosedByPeer | ConnError::StreamClosed) => {
            tracing::debug!("connection closed")
        }
        Some(ConnError::Io(error)) => tracing::debug!(%error, "connection lost"),
        Some(error @ ConnError::Timeout(_)) => tracing::debug!(%error, "connection timed out"),
        Some(error @ ConnError::Stream { .. }) => tracing::info!(%error, "stream error"),
    }
}
