//! The client socket, plain or TLS, read without a per-connection buffer;
//! a WebSocket carrying the stream frame by frame; or a [`PipeEnd`] when
//! an adapter task carries it (BOSH).
//!
//! An idle connection must cost a few KiB at most, so the connection task
//! never parks a read buffer while it waits: it waits for the TCP socket to
//! become readable, then drains everything available into a per-thread
//! scratch buffer and hands the bytes to the stream parser, which keeps only
//! an incomplete stanza.

use std::cell::RefCell;
use std::io;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::pipe::PipeEnd;
use super::websocket::WebSocketStream;
use crate::auth::ChannelBindings;
use crate::server::Server;

const SCRATCH_SIZE: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// XMPP over WebSocket (RFC 7395), one element per message.
    WebSocket(Box<WebSocketStream>),
    /// A stream carried by another transport (BOSH) through an adapter task.
    Pipe(Box<PipeEnd>),
    /// The socket is being handed to the TLS handshake (or it failed).
    Detached,
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was lost in a TLS handshake",
    )
}

/// The client broke its transport's framing rules (XMPP over WebSocket,
/// BOSH): the connection ends with this stream error. Carried through
/// `io::Error` up to the connection, which sends it as a stream error.
#[derive(Debug, thiserror::Error)]
#[error("<{condition}/>: {text}")]
pub(crate) struct FrameFault {
    pub(crate) condition: &'static str,
    pub(crate) text: String,
}

/// What a drain of the socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadState {
    /// The socket is still open; `n` bytes were read (possibly 0).
    Open(usize),
    /// The peer closed its side after sending `n` more bytes.
    Closed(usize),
}

impl Transport {
    /// Whether the stream is encrypted: TLS here, or under the adapter.
    pub(super) fn is_tls(&self) -> bool {
        match self {
            Transport::Tls(_) => true,
            Transport::WebSocket(socket) => socket.is_secure(),
            Transport::Pipe(pipe) => pipe.is_secure(),
            Transport::Plain(_) | Transport::Detached => false,
        }
    }

    /// What SCRAM -PLUS can bind to on this stream: both types on our own TLS
    /// connection, whatever the adapter found for a pipe, nothing in the clear.
    pub(super) fn channel_bindings(&self, server: &Server) -> ChannelBindings {
        match self {
            Transport::Tls(tls) => ChannelBindings::new(
                crate::tls::exporter(tls.get_ref().1),
                server.tls_certificate.end_point(),
            ),
            Transport::WebSocket(socket) => socket.channel_bindings().clone(),
            Transport::Pipe(pipe) => pipe.channel_bindings().clone(),
            Transport::Plain(_) | Transport::Detached => ChannelBindings::default(),
        }
    }

    /// STARTTLS is only for a plain TCP socket (never over WebSocket or BOSH).
    pub(super) fn can_start_tls(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Waits until the socket has something to read (or is closed). Cancel-safe.
    pub(super) async fn readable(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.readable().await,
            Transport::Tls(tls) => tls.get_ref().0.readable().await,
            Transport::WebSocket(socket) => socket.readable().await,
            Transport::Pipe(pipe) => pipe.readable().await,
            Transport::Detached => Err(detached()),
        }
    }

    /// Reads everything available now, without waiting, into `sink`.
    pub(super) fn read_available(&mut self, mut sink: impl FnMut(&[u8])) -> io::Result<ReadState> {
        let framed = match self {
            Transport::WebSocket(socket) => Some(socket.read_available(&mut sink)?),
            Transport::Pipe(pipe) => Some(pipe.read_available(&mut sink)?),
            _ => None,
        };
        match framed {
            Some((n, false)) => return Ok(ReadState::Open(n)),
            Some((n, true)) => return Ok(ReadState::Closed(n)),
            None => {}
        }
        SCRATCH.with_borrow_mut(|scratch| {
            let mut total = 0;
            loop {
                let read = match self {
                    // Through `AsyncRead` rather than `try_read`: a read
                    // that fills less than the buffer shows the socket is
                    // drained, and tokio then skips the read that would only
                    // say "would block" (one system call per wake-up saved).
                    Transport::Plain(tcp) => tcp.read(scratch).now_or_never(),
                    // A TLS record may arrive in pieces: a read that would
                    // wait means "nothing complete yet", not an error.
                    Transport::Tls(tls) => tls.read(scratch).now_or_never(),
                    Transport::WebSocket(_) | Transport::Pipe(_) | Transport::Detached => {
                        return Err(detached());
                    }
                };
                match read {
                    None => return Ok(ReadState::Open(total)),
                    Some(Ok(0)) => return Ok(ReadState::Closed(total)),
                    Some(Ok(n)) => {
                        total += n;
                        sink(&scratch[..n]);
                    }
                    Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                    Some(Err(error)) => return Err(error),
                }
            }
        })
    }

    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.write_all(data).await,
            Transport::Tls(tls) => {
                tls.write_all(data).await?;
                tls.flush().await
            }
            Transport::WebSocket(socket) => socket.write_all(data).await,
            Transport::Pipe(pipe) => pipe.write_all(data).await,
            Transport::Detached => Err(detached()),
        }
    }

    /// See [`Conn::write_stanzas`](super::conn::Conn::write_stanzas).
    pub(super) async fn write_stanzas(&mut self, out: Vec<u8>, ends: &[usize]) -> io::Result<()> {
        match self {
            Transport::WebSocket(socket) => socket.write_stanzas(out, ends).await,
            _ => self.write_all(&out).await,
        }
    }

    pub(super) fn frames_stanzas(&self) -> bool {
        matches!(self, Transport::WebSocket(_))
    }

    /// Flushes and closes the write side.
    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.shutdown().await,
            Transport::Tls(tls) => tls.shutdown().await,
            Transport::WebSocket(socket) => socket.shutdown().await,
            Transport::Pipe(pipe) => {
                pipe.shutdown();
                Ok(())
            }
            Transport::Detached => Ok(()),
        }
    }

    /// Runs the TLS handshake on the plain socket (STARTTLS), in place.
    pub(super) async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        match std::mem::replace(self, Transport::Detached) {
            Transport::Plain(tcp) => {
                *self = Transport::Tls(Box::new(acceptor.accept(tcp).await?));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("TLS is already active"))
            }
        }
    }
}
