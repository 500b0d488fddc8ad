//! The c2s listeners (STARTTLS and direct TLS): the shared accept loop
//! (`accept.rs`: backoff, per-IP rate, the connection cap) with the
//! client's way to run and to refuse a connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use starling_core::xml::{Element, ns};

use super::connection;
use crate::accept::{self, Connection};
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
    let clients = Clients {
        server: server.clone(),
        direct_tls,
    };
    accept::run(listener, server, permits, clients).await;
}

struct Clients {
    server: Arc<Server>,
    direct_tls: Option<TlsAcceptor>,
}

impl accept::Service for Clients {
    fn name(&self) -> &'static str {
        "c2s"
    }

    fn serve(&self, socket: TcpStream, peer: SocketAddr) -> Connection {
        let server = self.server.clone();
        match self.direct_tls.clone() {
            None => Box::pin(connection::run(socket, peer, server)),
            Some(tls) => Box::pin(connection::run_direct_tls(socket, peer, server, tls)),
        }
    }

    fn rate_refusal(&self) -> Option<Vec<u8>> {
        // A TLS client cannot read a clear-text refusal.
        self.direct_tls.is_none().then(|| {
            // RFC 6120 4.9.3.12.
            refusal(
                &self.server.domain,
                "policy-violation",
                "Too many new connections from your address; try again later",
            )
        })
    }

    fn full_refusal(&self) -> Option<Vec<u8>> {
        self.direct_tls.is_none().then(|| {
            full_refusal(
                &self.server.domain,
                crate::balance::see_other_host(&self.server),
            )
        })
    }

    fn count(&self, admitted: bool) {
        incr(&self.server.metrics.connections_accepted);
        if !admitted {
            incr(&self.server.metrics.connections_refused);
        }
    }
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
