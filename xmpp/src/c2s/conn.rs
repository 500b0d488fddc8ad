//! The socket side of one client connection: stream events in, bytes out,
//! and the stream-level errors that end a connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use starling_core::xml::Element;
use tokio::time::{Instant, sleep_until};

use super::transport::{FrameFault, ReadState, Transport};
use crate::server::Server;
use crate::stream::{self, StreamError, StreamEvent, StreamParser};

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// The client broke the stream rules; the error is sent to it.
    #[error("stream error <{condition}/>: {text}")]
    Stream {
        condition: &'static str,
        text: String,
    },
    /// The client closed the TCP connection (or the stream, during negotiation).
    #[error("closed by the client")]
    ClosedByPeer,
    /// The client closed its stream (`</stream:stream>`) of a bound session:
    /// the session ends, resumable or not.
    #[error("stream closed by the client")]
    StreamClosed,
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl ConnError {
    pub(crate) fn stream(condition: &'static str, text: impl Into<String>) -> Self {
        ConnError::Stream {
            condition,
            text: text.into(),
        }
    }
}

impl From<StreamError> for ConnError {
    fn from(error: StreamError) -> Self {
        ConnError::Stream {
            condition: error.condition(),
            text: error.to_string(),
        }
    }
}

pub(crate) struct Conn {
    pub(crate) transport: Transport,
    pub(crate) parser: StreamParser,
    pub(crate) peer: SocketAddr,
    pub(crate) server: Arc<Server>,
    /// The id of the current stream (a new one at every restart).
    pub(crate) stream_id: String,
    /// Our stream header has been sent (errors need one first, RFC 6120 4.9.1.1).
    header_sent: bool,
    /// The client closed its side; events still buffered may be processed.
    peer_closed: bool,
    /// Input arrived since the last check (keepalives count).
    pub(crate) active: bool,
}

impl Conn {
    pub(crate) fn new(transport: Transport, peer: SocketAddr, server: Arc<Server>) -> Conn {
        let limits = stream::Limits {
            max_stanza_size: server.limits().max_stanza_size,
            max_depth: server.limits().max_depth,
        };
        Conn {
            transport,
            parser: StreamParser::new(limits),
            peer,
            server,
            stream_id: String::new(),
            header_sent: false,
            peer_closed: false,
            active: false,
        }
    }

    /// The next stream event, reading from the socket as needed until `deadline`.
    pub(crate) async fn next_event(
        &mut self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<StreamEvent, ConnError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(event);
            }
            // Try first: TLS may hold decrypted bytes the socket no longer signals.
            if self.read_available()? == 0 {
                if self.peer_closed {
                    return Err(ConnError::ClosedByPeer);
                }
                tokio::select! {
                    ready = self.transport.readable() => ready?,
                    () = sleep_until(deadline) => return Err(ConnError::Timeout(what)),
                    () = self.server.shutdown.cancelled() => {
                        return Err(ConnError::stream("system-shutdown", "The server is shutting down"));
                    }
                }
            }
        }
    }

    /// Moves everything the socket holds into the parser; returns the byte count.
    pub(crate) fn read_available(&mut self) -> Result<usize, ConnError> {
        let parser = &mut self.parser;
        let state = self
            .transport
            .read_available(|bytes| parser.feed(bytes))
            .map_err(from_read_error)?;
        let read = match state {
            ReadState::Open(n) => n,
            ReadState::Closed(n) => {
                self.peer_closed = true;
                n
            }
        };
        if read > 0 {
            self.active = true;
        }
        Ok(read)
    }

    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Sends our stream header for a new stream (a fresh id each time).
    /// `versioned`: the client's header had a version (streams without one
    /// predate RFC 6120 and get no version and no features back).
    pub(crate) async fn send_header(
        &mut self,
        lang: Option<&str>,
        versioned: bool,
    ) -> Result<(), ConnError> {
        self.stream_id = new_stream_id();
        let version = versioned.then_some("1.0");
        let header = stream::stream_header(&self.server.domain, &self.stream_id, lang, version);
        self.header_sent = true;
        self.write(&header).await
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        Ok(self.transport.write_all(bytes).await?)
    }

    /// Writes stanzas serialized one after another in `out`, each ending at
    /// an offset in `ends`: as bytes of the stream, or, where
    /// [`Conn::frames_stanzas`] (each then written declaring its namespace),
    /// one WebSocket message per stanza without reading them back.
    pub(crate) async fn write_stanzas(
        &mut self,
        out: Vec<u8>,
        ends: &[usize],
    ) -> Result<(), ConnError> {
        Ok(self.transport.write_stanzas(out, ends).await?)
    }

    /// Whether each stanza written goes as a message of its own (XMPP over
    /// WebSocket): then each must declare its namespace.
    pub(crate) fn frames_stanzas(&self) -> bool {
        self.transport.frames_stanzas()
    }

    pub(crate) async fn send(&mut self, element: &Element) -> Result<(), ConnError> {
        self.write(&element.to_bytes()).await
    }

    /// Sends a stream-namespace element such as `<stream:features/>`.
    pub(crate) async fn send_stream_element(&mut self, element: &Element) -> Result<(), ConnError> {
        self.write(&stream::element_to_bytes(element)).await
    }

    /// Ends the connection after `error`: the stream error if there is one to
    /// send, then the closing tag, then the TCP close. Never fails.
    pub(crate) async fn finish(&mut self, error: Option<&ConnError>) {
        let mut out = Vec::new();
        let reported = match error {
            Some(ConnError::Stream { condition, text }) => {
                crate::metrics::incr(&self.server.metrics.stream_errors);
                Some((*condition, text.clone()))
            }
            Some(ConnError::Timeout(what)) => {
                Some(("connection-timeout", format!("{what} timed out")))
            }
            _ => None,
        };
        if let Some((condition, text)) = reported {
            // Even a client whose header never (fully) arrived gets ours
            // first, so the error is inside a stream (RFC 6120 4.9.1.1).
            if !self.header_sent {
                self.stream_id = new_stream_id();
                let header =
                    stream::stream_header(&self.server.domain, &self.stream_id, None, Some("1.0"));
                out.extend_from_slice(&header);
                self.header_sent = true;
            }
            stream::write_element(&stream::stream_error(condition, Some(&text)), &mut out);
        }
        if self.header_sent {
            out.extend_from_slice(stream::STREAM_CLOSE);
        }
        let transport = &mut self.transport;
        // A client that stopped reading must not hold the task: bound the goodbye.
        let goodbye = async {
            if !out.is_empty() {
                transport.write_all(&out).await?;
            }
            transport.shutdown().await
        };
        let _ignored = tokio::time::timeout(std::time::Duration::from_secs(5), goodbye).await;
    }
}

/// A read error; a framing fault is the stream error it names.
fn from_read_error(error: io::Error) -> ConnError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<FrameFault>())
    {
        Some(fault) => ConnError::stream(fault.condition, fault.text.clone()),
        None => ConnError::Io(error),
    }
}

/// A random stream id (also used as the salt of nothing: ids are not secrets).
pub(crate) fn new_stream_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 12] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
