//! Accepting HTTP connections: the client address every handler may ask
//! for, and a TLS listener for `[http] tls = true`.
//!
//! TLS handshakes run in their own tasks, bounded in time, and only
//! finished ones reach the server, so a client that stalls its handshake
//! never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use starling_core::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// The client of a request's connection: its address (for per-IP limits and
/// logs) and, on HTTPS with TLS 1.3, the connection's `tls-exporter` channel
/// binding, which a WebSocket on it may use for SCRAM -PLUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub addr: SocketAddr,
    pub tls_exporter: Option<[u8; crate::auth::EXPORTER_LEN]>,
}

impl ClientAddr {
    /// A client on a connection without TLS.
    pub fn plain(addr: SocketAddr) -> ClientAddr {
        ClientAddr {
            addr,
            tls_exporter: None,
        }
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr::plain(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr {
            addr: *stream.remote_addr(),
            tls_exporter: crate::tls::exporter(stream.io().get_ref().1),
        }
    }
}

/// HTTPS connections, handed over once their handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: io::Result<SocketAddr>,
}

impl TlsListener {
    /// Accepts on `tcp` until `shutdown` fires.
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor, shutdown: Shutdown) -> TlsListener {
        let local = tcp.local_addr();
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(tcp, acceptor, sender, shutdown));
        TlsListener { ready, local }
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    shutdown: Shutdown,
) {
    loop {
        let accepted = tokio::select! {
            accepted = tcp.accept() => accepted,
            () = shutdown.cancelled() => return,
            () = ready.closed() => return,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors or a transient error: pause, do not spin.
                tracing::warn!(%error, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    // The server stopped taking connections: drop this one.
                    let _stopped = ready.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended with the node; graceful shutdown ends
            // the server, which stops asking.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
        }
    }
}
