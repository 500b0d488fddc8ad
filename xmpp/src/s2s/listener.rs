//! The federation accept loop (`[s2s] bind`): one task per incoming stream,
//! under the same per-IP connection rate as clients.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::server::Server;

/// Accepts other servers until shutdown, then waits for their streams.
pub async fn run(listener: TcpListener, server: Arc<Server>) {
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = server.shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "s2s accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !server
            .ip_limits
            .allow_connection(peer.ip(), Instant::now().into_std())
        {
            tracing::debug!(%peer, "s2s connection rate limit reached");
            continue;
        }
        let _ = socket.set_nodelay(true);
        tracker.spawn(super::inbound::run(server.clone(), socket, peer));
    }
    tracker.close();
    tracker.wait().await;
}
