//! One server-to-server stream on a socket: the c2s stream codec for
//! reading, `jabber:server` for writing, and STARTTLS or direct TLS in
//! either role. Negotiation and routing are the callers' business.

use std::io;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use starling_core::xml::{Element, ns};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::stream::{self, Limits, StreamEvent, StreamParser};

/// An encrypted socket, whichever side started the handshake.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Socket {
    Plain(TcpStream),
    Tls(Box<dyn Io>),
    /// Handed to a TLS handshake that failed.
    Gone,
}

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("nothing received for {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Stream(#[from] stream::StreamError),
    #[error("the peer closed the stream")]
    Closed,
}

pub(crate) struct Wire {
    socket: Socket,
    parser: StreamParser,
    read_buf: Box<[u8]>,
    /// The certificate chain the peer presented in the TLS handshake.
    peer_certificates: Vec<CertificateDer<'static>>,
}

impl Wire {
    pub(crate) fn new(socket: TcpStream, limits: Limits) -> Wire {
        Wire {
            socket: Socket::Plain(socket),
            parser: StreamParser::new(limits),
            read_buf: vec![0; 16 * 1024].into_boxed_slice(),
            peer_certificates: Vec::new(),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.socket, Socket::Tls(_))
    }

    pub(crate) fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certificates
    }

    /// The next event, waiting at most `idle` for input. Cancel-safe: bytes
    /// read stay in the parser.
    pub(crate) async fn next(&mut self, idle: Duration) -> Result<StreamEvent, WireError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(event);
            }
            let buf = &mut self.read_buf;
            let read = async {
                match &mut self.socket {
                    Socket::Plain(tcp) => tcp.read(buf).await,
                    Socket::Tls(tls) => tls.read(buf).await,
                    Socket::Gone => Ok(0),
                }
            };
            match tokio::time::timeout(idle, read).await {
                Err(_) => return Err(WireError::Timeout(idle)),
                Ok(Ok(0)) => return Err(WireError::Closed),
                Ok(Ok(n)) => self.parser.feed(&self.read_buf[..n]),
                Ok(Err(error)) => return Err(error.into()),
            }
        }
    }

    /// The next first-level element, skipping nothing: a header or the end
    /// of the stream here is the peer closing or restarting out of turn.
    pub(crate) async fn next_element(&mut self, idle: Duration) -> Result<Element, WireError> {
        match self.next(idle).await? {
            StreamEvent::Stanza(element) => Ok(element),
            StreamEvent::Header(_) | StreamEvent::End => Err(WireError::Closed),
        }
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.socket {
            Socket::Plain(tcp) => tcp.write_all(bytes).await,
            Socket::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
            Socket::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes a negotiation element (features, dialback, SASL, stream error).
    pub(crate) async fn send(&mut self, element: &Element) -> io::Result<()> {
        let mut out = Vec::with_capacity(128);
        if element.ns() == ns::STREAM {
            stream::write_element(element, &mut out);
        } else if element.ns() == super::dialback::NS {
            super::dialback::write(element, &mut out);
        } else {
            element.write_to(&mut out, ns::SERVER);
        }
        self.write(&out).await
    }

    /// Appends a stanza to `out`, moved into the server namespace.
    pub(crate) fn serialize_stanza(stanza: &Element, out: &mut Vec<u8>) {
        let mut stanza = stanza.clone();
        stanza.rename_ns(ns::CLIENT, ns::SERVER);
        stanza.write_to(out, ns::SERVER);
    }

    /// Ends the stream with a stream error, as far as the socket lets us.
    pub(crate) async fn fail(&mut self, condition: &str, text: &str) {
        let bytes = stream::stream_error_bytes(condition, Some(text));
        let _ = tokio::time::timeout(Duration::from_secs(5), self.write(&bytes)).await;
        self.shutdown().await;
    }

    /// Ends our half of the stream and the connection.
    pub(crate) async fn close(&mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.write(stream::STREAM_CLOSE)).await;
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let _ = match &mut self.socket {
            Socket::Plain(tcp) => tcp.shutdown().await,
            Socket::Tls(tls) => tls.shutdown().await,
            Socket::Gone => Ok(()),
        };
    }

    /// Expects a new stream header after a restart (STARTTLS, SASL).
    pub(crate) fn restart(&mut self) {
        self.parser.reset();
    }

    /// STARTTLS as the receiving server. Data sent before the handshake is
    /// refused, as for clients (RFC 6120 5.4.3.3).
    pub(crate) async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        self.refuse_early_data()?;
        let Socket::Plain(tcp) = std::mem::replace(&mut self.socket, Socket::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = acceptor.accept(tcp).await?;
        self.peer_certificates = owned(tls.get_ref().1.peer_certificates());
        self.socket = Socket::Tls(Box::new(tls));
        self.parser.reset();
        Ok(())
    }

    /// STARTTLS or direct TLS as the initiating server.
    pub(crate) async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        domain: &str,
    ) -> io::Result<()> {
        self.refuse_early_data()?;
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| io::Error::other(format!("{domain:?} is not a DNS name")))?;
        let Socket::Plain(tcp) = std::mem::replace(&mut self.socket, Socket::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = connector.connect(name, tcp).await?;
        self.peer_certificates = owned(tls.get_ref().1.peer_certificates());
        self.socket = Socket::Tls(Box::new(tls));
        self.parser.reset();
        Ok(())
    }

    fn refuse_early_data(&self) -> io::Result<()> {
        if self.parser.has_buffered_input() && !self.parser.buffered_is_whitespace() {
            return Err(io::Error::other("data sent before the TLS handshake"));
        }
        Ok(())
    }
}

fn owned(certificates: Option<&[CertificateDer<'_>]>) -> Vec<CertificateDer<'static>> {
    certificates
        .unwrap_or_default()
        .iter()
        .map(|certificate| certificate.clone().into_owned())
        .collect()
}
