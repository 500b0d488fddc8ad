//! A fresh peer connection made ready for the link handshake: TLS opened
//! (or clear text kept, when configured), and a peer that speaks the other
//! way told why it is refused.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use super::DialError;
use super::frame::{Frame, MAGIC, PROTOCOL_VERSION, read_frame, write_frame};
use super::handshake::{HandshakeError, Role};
use super::tls::{LinkProtection, SessionBinding};

/// The first byte of a TLS handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Either half of a link, whatever protects it.
pub(super) type LinkReader = Box<dyn AsyncRead + Send + Unpin>;
pub(super) type LinkWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A byte stream the handshake runs on.
pub(super) trait LinkStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LinkStream for T {}

pub(super) enum Secured {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Secured {
    /// Opens TLS as dialer or acceptor, or checks that a clear-text peer
    /// is not trying to.
    pub(super) async fn open(
        stream: TcpStream,
        role: Role,
        protection: &LinkProtection,
    ) -> Result<(Secured, SessionBinding), DialError> {
        let LinkProtection::Tls(tls) = protection else {
            if role == Role::Acceptor && first_byte(&stream).await == Some(TLS_HANDSHAKE_RECORD) {
                return Err(DialError::Tls(
                    "the peer opened TLS, but this node has [cluster] insecure_plaintext = true; \
                     every member needs the same setting"
                        .into(),
                ));
            }
            return Ok((Secured::Plain(stream), SessionBinding::default()));
        };
        let opened = match role {
            Role::Dialer => tls.connect(stream).await,
            Role::Acceptor => {
                if first_byte(&stream).await != Some(TLS_HANDSHAKE_RECORD) {
                    return Err(refuse_clear_text(stream).await);
                }
                tls.accept(stream).await
            }
        };
        let stream = opened.map_err(|error| {
            // A protocol error, not a lost connection: likely a setting
            // that differs between the members.
            let hint = if error.kind() == std::io::ErrorKind::InvalidData {
                " (does the peer have [cluster] insecure_plaintext = true, or another tls_ca?)"
            } else {
                ""
            };
            DialError::Tls(format!("handshake failed: {error}{hint}"))
        })?;
        let binding = tls.binding(&stream).map_err(DialError::Tls)?;
        Ok((Secured::Tls(Box::new(stream)), binding))
    }

    /// The stream to run the handshake on.
    pub(super) fn io(&mut self) -> &mut dyn LinkStream {
        match self {
            Secured::Plain(stream) => stream,
            Secured::Tls(stream) => stream.as_mut(),
        }
    }

    /// Sends a goodbye and closes (TLS: with close_notify).
    pub(super) async fn say_goodbye(&mut self, goodbye: &Frame) {
        let mut io = self.io();
        let _ = write_frame(&mut io, goodbye).await;
        let _ = io.shutdown().await;
    }

    pub(super) fn split(self) -> (LinkReader, LinkWriter) {
        match self {
            // A TCP stream splits without a lock between the halves.
            Secured::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Secured::Tls(stream) => {
                let (reader, writer) = tokio::io::split(*stream);
                (Box::new(reader), Box::new(writer))
            }
        }
    }
}

async fn first_byte(stream: &TcpStream) -> Option<u8> {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte).await {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

/// A TLS node was sent clear text: a member of an older version or one
/// with `insecure_plaintext = true`. Its hello says which, and the answer
/// (in clear text, so it can read it) tells it why it is refused.
async fn refuse_clear_text(mut stream: TcpStream) -> DialError {
    let error = match read_frame(&mut stream, &mut Vec::new()).await {
        Ok(Some(Frame::Hello {
            magic,
            protocol_version,
            ..
        })) if magic == MAGIC => {
            if protocol_version == PROTOCOL_VERSION {
                DialError::Tls(
                    "the peer sent a clear-text hello: it has [cluster] insecure_plaintext = true, \
                     this node requires TLS; every member needs the same setting"
                        .into(),
                )
            } else {
                DialError::Handshake(HandshakeError::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: protocol_version,
                })
            }
        }
        Ok(Some(Frame::Hello { .. })) => DialError::Handshake(HandshakeError::NotStarling),
        Ok(Some(_)) => DialError::Handshake(HandshakeError::Unexpected),
        Ok(None) => DialError::Handshake(HandshakeError::Closed),
        Err(error) => DialError::Handshake(HandshakeError::Frame(error)),
    };
    if matches!(
        error,
        DialError::Tls(_) | DialError::Handshake(HandshakeError::Version { .. })
    ) {
        let goodbye = Frame::Goodbye {
            reason: error.to_string(),
        };
        let _ = write_frame(&mut stream, &goodbye).await;
    }
    error
}
