//! The WebSocket transport: every text frame is a message or a batch, and
//! the answer is a batch. Unlike long-polling, events are pushed the moment
//! they are queued; a connect is held only to tell the client it is still
//! connected (and, with acks, to close a batch).
//!
//! One task per socket owns it: it reads frames, pushes events when the
//! client's queue wakes it, and answers the held connect at its deadline.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::{Message as Frame, WebSocket};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::clients::Client;
use super::engine::{Bayeux, HeldConnect, Step};
use super::message::{Kind, parse_body};

/// Read buffer per socket: Bayeux frames are small, and tungstenite's
/// default (128 KiB) would be most of an idle client's memory.
pub(crate) const READ_BUFFER: usize = 4 * 1024;
/// Bytes written before a flush is forced.
pub(crate) const WRITE_BUFFER: usize = 4 * 1024;
/// The largest frame or message a client may send.
pub(crate) const MAX_MESSAGE: usize = 1024 * 1024;

/// WebSocket connections are numbered from 1 (0 is long-polling), so a
/// client that comes back on another connection gets its unacknowledged
/// messages again.
static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn run(bayeux: Arc<Bayeux>, mut socket: WebSocket, ip: IpAddr) {
    let connection = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let mut session = Session {
        bayeux,
        connection,
        ip,
        held: None,
        client: None,
        closing: false,
    };
    let shutdown = session.bayeux.shutdown().clone();
    loop {
        let deadline = session.held.as_ref().map(|(_, deadline)| *deadline);
        let client = session.client.clone();
        let outgoing = tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Frame::Text(text))) => session.on_text(text.as_bytes()).await,
                Some(Ok(Frame::Binary(bytes))) => session.on_text(&bytes).await,
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => Vec::new(),
                Some(Ok(Frame::Close(_))) | None => break,
                Some(Err(error)) => {
                    tracing::debug!(%error, "Bayeux WebSocket read failed");
                    break;
                }
            },
            () = wake(client.as_deref()) => Vec::new(),
            () = sleep_until(deadline) => session.answer_held(),
            () = shutdown.cancelled() => {
                let last = session.answer_held();
                if !last.is_empty() {
                    let _closing = send(&mut socket, last).await;
                }
                break;
            }
        };
        let mut outgoing = outgoing;
        outgoing.extend(session.pending());
        if !outgoing.is_empty() {
            // A write the client is slow to read holds up reading its next
            // connect: that wait is the server's, not the client's silence.
            let _writing = session.client.as_ref().map(Client::writing);
            let write_timeout = session.bayeux.write_timeout;
            match tokio::time::timeout(write_timeout, send(&mut socket, outgoing)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    // But not forever: a client that takes nothing in that
                    // long is hung or holding the socket on purpose.
                    session
                        .bayeux
                        .counters
                        .write_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(ip = %session.ip, "Bayeux WebSocket write timed out; closed");
                    break;
                }
            }
        }
        if session.closing {
            // After a disconnect the socket has nothing left to carry;
            // clients wait for the server to close it.
            let _closed = socket.send(Frame::Close(None)).await;
            break;
        }
    }
    // Dropping a held connect starts the client's max_interval.
}

struct Session {
    bayeux: Arc<Bayeux>,
    connection: u64,
    ip: IpAddr,
    /// The connect being held and when to answer it.
    held: Option<(HeldConnect, Instant)>,
    /// The client whose events this socket pushes (from its last connect).
    client: Option<Arc<Client>>,
    /// A disconnect was answered: close once the replies are out.
    closing: bool,
}

impl Session {
    async fn on_text(&mut self, text: &[u8]) -> Vec<String> {
        let messages = match parse_body(text) {
            Ok(messages) => messages,
            Err(error) => {
                let reply = json!({"successful": false, "error": format!("400::{error}")});
                return vec![reply.to_string()];
            }
        };
        let mut out = Vec::new();
        for message in messages {
            let disconnect = message.as_ref().is_ok_and(|m| m.kind == Kind::Disconnect);
            match self.bayeux.handle(message, self.connection, self.ip).await {
                Step::Reply(reply) => {
                    self.closing |=
                        disconnect && reply.get("successful") == Some(&Value::Bool(true));
                    out.push(Value::Object(reply).to_string());
                }
                Step::Connect(connect) => {
                    out.extend(self.answer_held());
                    self.client = Some(connect.client.clone());
                    let deadline = Instant::now() + connect.hold;
                    self.held = Some((connect, deadline));
                }
            }
        }
        out
    }

    fn answer_held(&mut self) -> Vec<String> {
        match self.held.take() {
            Some((connect, _)) => {
                let (_, reply) = self.bayeux.answer(&connect, true);
                vec![reply.to_string()]
            }
            None => Vec::new(),
        }
    }

    /// Events to push now, and the held connect's answer when it is due.
    fn pending(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(client) = &self.client {
            let events = client.state().outbox.take_unsent();
            out.extend(events.iter().map(|event| event.to_string()));
        }
        if self
            .held
            .as_ref()
            .is_some_and(|(connect, _)| connect.ready(true))
        {
            out.extend(self.answer_held());
        }
        if self.client.as_ref().is_some_and(|c| c.removed().is_some()) {
            self.client = None;
        }
        out
    }
}

async fn wake(client: Option<&Client>) {
    match client {
        Some(client) => client.wake.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut WebSocket, messages: Vec<String>) -> Result<(), axum::Error> {
    let batch = format!("[{}]", messages.join(","));
    socket.send(Frame::Text(batch.into())).await
}
