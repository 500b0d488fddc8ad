//! The byte pipe under a client: plain TCP, later upgraded to TLS by STARTTLS; or a
//! WebSocket carrying the stream (RFC 7395).
//!
//! Connections can be bound to a chosen local address first, so a load driver can spread
//! its sockets over several loopback source addresses and stay within the ephemeral port
//! range of each.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

/// Opens a TCP connection to `addr`, from `local` (any port) when given.
pub async fn connect_tcp(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(local) = local {
        // Lets a fresh run reuse ports still in TIME_WAIT from the previous one.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let stream = socket.connect(addr).await?;
    // Stanzas are small and latency is what tests and benchmarks look at.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A TCP connection to `addr` with TLS started at once (XEP-0368 direct TLS, ALPN
/// `xmpp-client`; any certificate accepted).
pub async fn connect_direct_tls(addr: SocketAddr) -> io::Result<Transport> {
    let tcp = connect_tcp(addr, None).await?;
    let connector = crate::tls::insecure_direct_tls_connector().map_err(io::Error::other)?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let tls = connector.connect(name, tcp).await?;
    Ok(Transport::Tls(Box::new(tls)))
}

/// A client's connection, before or after STARTTLS.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
    /// Boxed: a TLS stream is large, and most of a load run's idle memory is connections.
    Tls(Box<TlsStream<TcpStream>>),
    /// XMPP over WebSocket (RFC 7395), framed by the pipe.
    WebSocket(Box<crate::websocket::WsPipe>),
    /// BOSH (XEP-0124/0206), the requests made by the pipe.
    Bosh(Box<crate::bosh::BoshPipe>),
    /// Left behind while the TCP stream is handed to the TLS handshake.
    Detached,
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// What SCRAM -PLUS can bind to on this connection (the WebSocket's own TLS for a
    /// `wss:` pipe; nothing for BOSH or plain TCP).
    pub fn channel_bindings(&self) -> crate::sasl::ClientBindings {
        match self {
            Transport::Tls(tls) => crate::sasl::ClientBindings::from_tls(tls.get_ref().1),
            Transport::WebSocket(pipe) => pipe.channel_bindings().clone(),
            Transport::Tcp(_) | Transport::Bosh(_) | Transport::Detached => {
                crate::sasl::ClientBindings::default()
            }
        }
    }

    /// The server's certificate (DER) once TLS is up.
    pub fn peer_certificate(&self) -> Option<Vec<u8>> {
        match self {
            Transport::Tls(tls) => tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|cert| cert.to_vec()),
            _ => None,
        }
    }

    /// Takes the TCP stream out for a TLS handshake.
    pub fn take_tcp(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Transport::Detached) {
            Transport::Tcp(stream) => Some(stream),
            other => {
                *self = other;
                None
            }
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Tcp(stream) => stream.local_addr().ok(),
            Transport::Tls(stream) => stream.get_ref().0.local_addr().ok(),
            Transport::WebSocket(_) | Transport::Bosh(_) | Transport::Detached => None,
        }
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection is in a TLS handshake",
    )
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Transport::WebSocket(pipe) => Pin::new(pipe.as_mut()).poll_read(cx, buf),
            Transport::Bosh(pipe) => Pin::new(pipe.as_mut()).poll_read(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Transport::WebSocket(pipe) => Pin::new(pipe.as_mut()).poll_write(cx, buf),
            Transport::Bosh(pipe) => Pin::new(pipe.as_mut()).poll_write(cx, buf),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Transport::WebSocket(pipe) => Pin::new(pipe.as_mut()).poll_flush(cx),
            Transport::Bosh(pipe) => Pin::new(pipe.as_mut()).poll_flush(cx),
            Transport::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            Transport::WebSocket(pipe) => Pin::new(pipe.as_mut()).poll_shutdown(cx),
            Transport::Bosh(pipe) => Pin::new(pipe.as_mut()).poll_shutdown(cx),
            Transport::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// The reading side of a message-based transport (WebSocket, BOSH) as a
/// byte stream: messages from its task, read out in pieces.
#[derive(Debug)]
pub struct Inbox {
    /// Translated server messages; closed: the transport ended.
    incoming: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The rest of the message being read.
    leftover: Vec<u8>,
}

impl Inbox {
    pub fn new(incoming: mpsc::UnboundedReceiver<Vec<u8>>) -> Inbox {
        Inbox {
            incoming,
            leftover: Vec::new(),
        }
    }

    /// [`AsyncRead::poll_read`] for the transport holding it.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // An empty read means the end of the stream: skip empty messages.
        while self.leftover.is_empty() {
            match self.incoming.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(bytes)) => self.leftover = bytes,
            }
        }
        let n = self.leftover.len().min(buf.remaining());
        buf.put_slice(&self.leftover[..n]);
        self.leftover.drain(..n);
        Poll::Ready(Ok(()))
    }
}
