//! The c2s accept loop: connection limits, per-IP rate limits, and one task
//! per client.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use starling_core::xml::{Element, ns};

use super::connection;
use crate::metrics::incr;
use crate::server::Server;
use crate::stream;

/// Accepts clients until shutdown. `permits` is the connection cap (the
/// resolved `max_connections`), shared by every c2s listener of the node.
/// With `direct_tls`, each connection starts with a TLS handshake (XEP-0368)
/// instead of a plain stream with STARTTLS.
pub async fn run(
    listener: TcpListener,
    server: Arc<Server>,
    permits: Arc<Semaphore>,
    direct_tls: Option<TlsAcceptor>,
) {
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
            if direct_tls.is_some() {
                // A TLS client cannot read a clear-text refusal.
                continue;
            }
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
                let direct_tls = direct_tls.clone();
                tracker.spawn(async move {
                    match direct_tls {
                        None => connection::run(socket, peer, server).await,
                        Some(tls) => connection::run_direct_tls(socket, peer, server, tls).await,
                    }
                    drop(permit);
                });
            }
            Err(_) if direct_tls.is_some() => {
                incr(&server.metrics.connections_refused);
            }
            Err(_) => {
                incr(&server.metrics.connections_refused);
                let refusal = full_refusal(&server.domain, crate::balance::see_other_host(&server));
                tracker.spawn(refuse_full(socket, refusal));
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// What a full node says to a new client: go to `other` (RFC 6120
/// 4.9.3.19, a member with room chosen by the balancing policy), or, when
/// no member has room, that it is out of resources (4.9.3.17).
fn full_refusal(domain: &str, other: Option<String>) -> Vec<u8> {
    let Some(other) = other else {
        return refusal(
            domain,
            "resource-constraint",
            "This server has reached its connection limit",
        );
    };
    let error = Element::new("error", ns::STREAM)
        .with_child(Element::new("see-other-host", ns::STREAM_ERRORS).with_text(other))
        .with_child(
            Element::new("text", ns::STREAM_ERRORS)
                .with_attr("xml:lang", "en")
                .with_text("This node is full; connect to the one named here"),
        );
    let mut out = stream::stream_header(domain, &super::conn::new_stream_id(), None, Some("1.0"));
    stream::write_element(&error, &mut out);
    out.extend_from_slice(stream::STREAM_CLOSE);
    out
}

/// Sends a refusal within a short bound, then closes our side and reads
/// what the client still sends (its stream header) until it closes too:
/// closing with unread input would reset the connection, and a reset can
/// make the client lose the refusal before it reads it.
async fn refuse_full(mut socket: TcpStream, refusal: Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let goodbye = async {
        socket.write_all(&refusal).await?;
        socket.shutdown().await?;
        let mut sink = [0u8; 1024];
        while socket.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _bounded = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_full_node_names_a_member_with_room() {
        let out = text(full_refusal("example.com", Some("10.0.0.2:5222".into())));
        assert!(out.starts_with("<?xml"), "{out}");
        assert!(
            out.contains(
                "<see-other-host xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">10.0.0.2:5222</see-other-host>"
            ),
            "{out}"
        );
        assert!(out.ends_with("</stream:error></stream:stream>"), "{out}");
    }

    #[test]
    fn a_full_cluster_is_out_of_resources() {
        let out = text(full_refusal("example.com", None));
        assert!(out.contains("<resource-constraint "), "{out}");
        assert!(!out.contains("see-other-host"), "{out}");
    }
}
