//! The stream of an XMPP-over-WebSocket client (RFC 7395), read and
//! written by the connection's own task: each client message is checked
//! (one complete element, within the limits) and fed to the stream parser
//! as bytes of an ordinary client stream; what the session writes is split
//! back into one message per element. No task or queue sits between the
//! socket and the session, so a stanza costs no more hand-offs than on TCP.

use std::io;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt};

use super::transport::FrameFault;
use crate::auth::ChannelBindings;
use crate::stream::framing::{self, ClientFrame, FrameSplitter};
use crate::stream::{Limits, STREAM_CLOSE};

/// Client messages read in one drain: a client that keeps sending is
/// served in turns with the session's other work.
const MESSAGES_PER_READ: usize = 32;

pub(crate) struct WebSocketStream {
    socket: WebSocket,
    limits: Limits,
    /// The HTTP listener runs TLS.
    secure: bool,
    /// What SCRAM -PLUS may bind to on that TLS (empty: no -PLUS).
    bindings: ChannelBindings,
    /// A message `readable` took that `read_available` has not handed on.
    waiting: Option<Received>,
    /// The client's side is finished (closed, gone, or a framing fault).
    closed: bool,
    splitter: FrameSplitter,
}

/// What a client message means for the stream.
enum Received {
    Frame(ClientFrame, Message),
    /// Nothing for the session (a WebSocket ping or pong).
    Skip,
    /// The client broke the framing rules: its stream ends with this error.
    Fault(FrameFault),
    /// The client closed the WebSocket or it broke.
    Gone,
}

impl WebSocketStream {
    pub(crate) fn new(
        socket: WebSocket,
        limits: Limits,
        secure: bool,
        bindings: ChannelBindings,
    ) -> WebSocketStream {
        WebSocketStream {
            socket,
            limits,
            secure,
            bindings,
            waiting: None,
            closed: false,
            splitter: FrameSplitter::new(),
        }
    }

    pub(super) fn is_secure(&self) -> bool {
        self.secure
    }

    pub(super) fn channel_bindings(&self) -> &ChannelBindings {
        &self.bindings
    }

    /// Waits until a client message is in (or the client is gone). Cancel-safe:
    /// a message read partly stays in the WebSocket's buffer.
    pub(super) async fn readable(&mut self) -> io::Result<()> {
        if self.waiting.is_none() && !self.closed {
            let received = self.socket.recv().await;
            self.waiting = Some(classify(received, self.limits));
        }
        Ok(())
    }

    /// Hands the stream bytes of every message in now to `sink`;
    /// `Ok((n, closed))`.
    pub(super) fn read_available(
        &mut self,
        mut sink: impl FnMut(&[u8]),
    ) -> io::Result<(usize, bool)> {
        let mut total = 0;
        for _ in 0..MESSAGES_PER_READ {
            if self.closed {
                return Ok((total, true));
            }
            let received = match self.waiting.take() {
                Some(received) => received,
                None => match self.socket.recv().now_or_never() {
                    Some(received) => classify(received, self.limits),
                    None => break,
                },
            };
            match received {
                Received::Frame(frame, message) => {
                    let bytes: &[u8] = match &frame {
                        ClientFrame::Open(header) => header,
                        ClientFrame::Close => STREAM_CLOSE,
                        ClientFrame::Element => message_bytes(&message),
                    };
                    total += bytes.len();
                    sink(bytes);
                }
                Received::Skip => {}
                Received::Gone => self.closed = true,
                Received::Fault(fault) => {
                    // What came before the fault is read first; nothing after.
                    if total > 0 {
                        self.waiting = Some(Received::Fault(fault));
                        return Ok((total, false));
                    }
                    self.closed = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, fault));
                }
            }
        }
        Ok((total, self.closed))
    }

    /// Sends what the session wrote, one message per element, in one flush.
    pub(super) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        // Not kept between writes: a burst's list must not stay with an idle session.
        let mut frames = Vec::new();
        self.splitter
            .push(data, &mut frames)
            .map_err(|error| io::Error::other(format!("the session wrote bad XML: {error}")))?;
        for frame in frames {
            self.socket
                .feed(Message::Text(frame.into()))
                .await
                .map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)
    }

    /// Sends stanzas the session wrote as standalone documents, one message
    /// each, cut out of `out` without copying or reading them again.
    pub(super) async fn write_stanzas(&mut self, out: Vec<u8>, ends: &[usize]) -> io::Result<()> {
        let out = Bytes::from(out);
        let mut start = 0;
        for &end in ends {
            let text = Utf8Bytes::try_from(out.slice(start..end))
                .map_err(|_| io::Error::other("the session wrote a stanza that is not UTF-8"))?;
            start = end;
            self.socket
                .feed(Message::Text(text))
                .await
                .map_err(io::Error::other)?;
        }
        self.socket.flush().await.map_err(io::Error::other)
    }

    /// Closes the WebSocket after the stream (RFC 7395 3.6).
    pub(super) async fn shutdown(&mut self) -> io::Result<()> {
        self.socket
            .send(Message::Close(None))
            .await
            .map_err(io::Error::other)
    }
}

fn message_bytes(message: &Message) -> &[u8] {
    match message {
        Message::Text(text) => text.as_str().as_bytes(),
        _ => &[],
    }
}

fn classify(received: Option<Result<Message, axum::Error>>, limits: Limits) -> Received {
    let Some(received) = received else {
        return Received::Gone;
    };
    let message = match received {
        Ok(message) => message,
        // The WebSocket layer's own cap on message size.
        Err(error) if error.to_string().contains("too long") => {
            return Received::Fault(FrameFault {
                condition: "policy-violation",
                text: "The frame is over the size limit".into(),
            });
        }
        Err(error) => {
            tracing::debug!(%error, "WebSocket read failed");
            return Received::Gone;
        }
    };
    let frame = match &message {
        Message::Text(text) => framing::parse_client_frame(text.as_str(), limits),
        Message::Binary(_) => {
            return Received::Fault(FrameFault {
                condition: "policy-violation",
                text: "XMPP over WebSocket uses text messages (RFC 7395 3.2)".into(),
            });
        }
        // Answered by the WebSocket layer: nothing for the session (nor a
        // sign of life, as TCP keepalives are not one either).
        Message::Ping(_) | Message::Pong(_) => return Received::Skip,
        // A client's close ends its stream.
        Message::Close(_) => return Received::Gone,
    };
    match frame {
        Ok(frame) => Received::Frame(frame, message),
        Err(error) => Received::Fault(FrameFault {
            condition: error.condition,
            text: error.text,
        }),
    }
}
