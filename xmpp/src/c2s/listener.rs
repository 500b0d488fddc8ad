//! The c2s accept loop: connection limits, per-IP rate limits, and one task
//! per client.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::connection;
use crate::metrics::incr;
use crate::server::Server;
use crate::stream;

/// Accepts clients until shutdown. `max_connections` is the resolved cap
/// (already derived from the open-file limit when the config says 0).
pub async fn run(listener: TcpListener, server: Arc<Server>, max_connections: usize) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = server.shutdown.cancelled() => break,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or a transient network error: pause
                // rather than spin; established clients are unaffected.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        incr(&server.metrics.connections_accepted);
        if !server
            .ip_limits
            .allow_connection(peer.ip(), Instant::now().into_std())
        {
            incr(&server.metrics.connections_refused);
            tracing::debug!(%peer, "connection rate limit reached");
            // Say why (RFC 6120 4.9.3.12), but only what fits the empty send
            // buffer right now: a flood must not cost a task or a wait each.
            let _ = socket.try_write(&refusal(
                &server.domain,
                "policy-violation",
                "Too many new connections from your address; try again later",
            ));
            continue;
        }
        let _ = socket.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let server = server.clone();
                tracker.spawn(async move {
                    connection::run(socket, peer, server).await;
                    drop(permit);
                });
            }
            Err(_) => {
                incr(&server.metrics.connections_refused);
                let domain = server.domain.clone();
                tracker.spawn(refuse_full(socket, domain));
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Tells a client the node is full (RFC 6120 4.9.3.17), within a short bound.
async fn refuse_full(mut socket: TcpStream, domain: String) {
    use tokio::io::AsyncWriteExt;
    let out = refusal(
        &domain,
        "resource-constraint",
        "This server has reached its connection limit",
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.write_all(&out)).await;
}

/// A whole stream that only refuses: our header, the error, the close.
fn refusal(domain: &str, condition: &str, text: &str) -> Vec<u8> {
    let mut out = stream::stream_header(domain, &super::conn::new_stream_id(), None, Some("1.0"));
    out.extend_from_slice(&stream::stream_error_bytes(condition, Some(text)));
    out
}

/// The connection cap: the configured one, or what the open-file limit
/// allows after a reserve for the store, listeners and cluster links.
pub fn connection_cap(configured: u32) -> usize {
    const RESERVE: u64 = 200;
    let files = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _hard)| soft)
        .unwrap_or(1024);
    let by_files = files.saturating_sub(RESERVE).max(1) as usize;
    match configured {
        0 => by_files,
        n => (n as usize).min(by_files),
    }
}
