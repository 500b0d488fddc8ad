//! The federation listener (`[s2s] bind`): the shared accept loop
//! (`accept.rs`: backoff, the per-IP connection rate of clients) with a
//! cap of its own, `[s2s] max_inbound_streams`. A server over the cap gets
//! our stream header and the stream error `resource-constraint` (RFC 6120
//! 4.9.3.17: we lack the resources to serve the stream, the peer did
//! nothing wrong), and the refusal is logged; it may try again later or
//! another member.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::{TcpListener, TcpStream};

use crate::accept::{self, Connection};
use crate::server::Server;
use crate::stream;

/// Accepts other servers until shutdown, then waits for their streams.
pub async fn run(listener: TcpListener, server: Arc<Server>) {
    let permits = server.s2s.inbound_permits.clone();
    let servers = Servers {
        server: server.clone(),
    };
    accept::run(listener, server, permits, servers).await;
}

struct Servers {
    server: Arc<Server>,
}

impl accept::Service for Servers {
    fn name(&self) -> &'static str {
        "s2s"
    }

    fn serve(&self, socket: TcpStream, peer: SocketAddr) -> Connection {
        Box::pin(super::inbound::run(self.server.clone(), socket, peer))
    }

    fn rate_refusal(&self) -> Option<Vec<u8>> {
        None
    }

    fn full_refusal(&self) -> Option<Vec<u8>> {
        let mut out = stream::server_stream_header(
            &self.server.domain,
            "",
            Some(&crate::c2s::new_stream_id()),
        );
        out.extend_from_slice(&stream::stream_error_bytes(
            "resource-constraint",
            Some("This server has reached its limit of incoming server streams"),
        ));
        Some(out)
    }

    fn count(&self, admitted: bool) {
        if !admitted {
            self.server
                .s2s
                .metrics
                .refused_in
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
