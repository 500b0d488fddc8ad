//! Outgoing streams: one per (our domain, remote domain) on this node.
//!
//! A stanza for a remote domain goes into its link's bounded queue; the
//! link's task connects (`connect.rs`), then writes the queue to the
//! stream. When the stream cannot be set up within `connect_timeout_secs`
//! every waiting stanza bounces (`remote-server-not-found` or
//! `remote-server-timeout`); a full queue bounces the newcomer at once.
//! An idle stream is closed; the next stanza opens a new one.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::S2s;
use super::connect::{self, ConnectError, Established, Purpose};
use super::wire::Wire;
use crate::metrics::Outcome;
use crate::router;
use crate::server::Server;
use crate::stanza::{Condition, Stanza, StanzaError};
use crate::stream::StreamEvent;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Pair {
    pub local: String,
    pub remote: String,
}

pub(super) struct Link {
    queue: mpsc::Sender<Stanza>,
}

/// Sends a stanza to a remote domain: the router's way out of the server.
pub async fn send(server: &Server, stanza: Stanza) {
    match queue(server, stanza) {
        Ok(outcome) => router::count(server, outcome),
        Err((stanza, error)) => router::bounce(server, &stanza, error).await,
    }
}

/// Queues a stanza for its remote domain's link without waiting: what a
/// caller that must not await (a fan-out under a lock, keeping its order)
/// uses. `Ok` with the outcome to count (queued, or discarded as not
/// ours to send); `Err` with the error to bounce the stanza with.
pub fn queue(server: &Server, stanza: Stanza) -> Result<Outcome, (Stanza, StanzaError)> {
    let s2s = &server.s2s;
    let (Some(to), Some(from)) = (&stanza.to, &stanza.from) else {
        return Ok(Outcome::Discarded);
    };
    let remote = to.domain().as_str().to_owned();
    let local = from.domain().as_str().to_owned();
    if s2s.blocked(&remote) {
        let error = StanzaError::new(Condition::RemoteServerNotFound)
            .with_text(format!("This server does not federate with {remote}"));
        return Err((stanza, error));
    }
    if !server.serves_domain(&local) {
        // Only what our own entities send leaves; nothing is relayed.
        tracing::warn!(from = %from, to = %to, "not relaying a stanza between two other domains");
        return Ok(Outcome::Discarded);
    }
    let Some(this) = server.this() else {
        return Ok(Outcome::Discarded);
    };
    let pair = Pair { local, remote };
    let mut stanza = stanza;
    // A link whose task just ended refuses the stanza: take a new one, once.
    for _ in 0..2 {
        let link = s2s.link(&this, &pair);
        match link.queue.try_send(stanza) {
            Ok(()) => return Ok(Outcome::Delivered),
            Err(mpsc::error::TrySendError::Full(refused)) => {
                let error = StanzaError::new(Condition::RemoteServerTimeout).with_text(format!(
                    "Too many stanzas are waiting for the stream to {}",
                    pair.remote
                ));
                s2s.metrics.bounced.fetch_add(1, Ordering::Relaxed);
                return Err((refused, error));
            }
            Err(mpsc::error::TrySendError::Closed(refused)) => {
                s2s.forget(&pair, &link);
                stanza = refused;
            }
        }
    }
    let error = StanzaError::new(Condition::RemoteServerNotFound)
        .with_text(format!("No stream to {} could be opened", pair.remote));
    Err((stanza, error))
}

impl S2s {
    /// The link for `pair`, started if there is none.
    fn link(&self, server: &Arc<Server>, pair: &Pair) -> Arc<Link> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(link) = links.get(pair) {
            return link.clone();
        }
        let (queue, waiting) = mpsc::channel(self.config.max_queued);
        let link = Arc::new(Link { queue });
        links.insert(pair.clone(), link.clone());
        tokio::spawn(run(server.clone(), pair.clone(), link.clone(), waiting));
        link
    }

    /// Removes `link` from the table if it is still the one for `pair`.
    fn forget(&self, pair: &Pair, link: &Arc<Link>) {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if links
            .get(pair)
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            links.remove(pair);
        }
    }
}

/// A link's task: connect, carry the queue, end when idle or broken.
async fn run(
    server: Arc<Server>,
    pair: Pair,
    link: Arc<Link>,
    mut waiting: mpsc::Receiver<Stanza>,
) {
    let s2s = &server.s2s;
    let attempt = tokio::time::timeout(
        s2s.connect_timeout(),
        connect::connect(
            s2s,
            super::limits(&server),
            &pair.local,
            &pair.remote,
            Purpose::Authenticate,
        ),
    )
    .await;
    let established = match attempt {
        Ok(Ok(Established::Authenticated(wire, method))) => Ok((wire, method)),
        Ok(Ok(Established::Verified(_))) => Err(ConnectError {
            condition: Condition::RemoteServerNotFound,
            reason: "no stream".into(),
        }),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ConnectError {
            condition: Condition::RemoteServerTimeout,
            reason: format!(
                "no stream to {} within {} s",
                pair.remote, s2s.config.connect_timeout_secs
            ),
        }),
    };
    let (mut wire, method) = match established {
        Ok(established) => established,
        Err(error) => {
            tracing::warn!(remote = %pair.remote, %error, "no outgoing stream");
            s2s.metrics.connect_failures.fetch_add(1, Ordering::Relaxed);
            s2s.forget(&pair, &link);
            drop(link);
            waiting.close();
            while let Some(stanza) = waiting.recv().await {
                s2s.metrics.bounced.fetch_add(1, Ordering::Relaxed);
                let error = StanzaError::new(error.condition).with_text(error.reason.clone());
                router::bounce(&server, &stanza, error).await;
            }
            return;
        }
    };
    tracing::info!(local = %pair.local, remote = %pair.remote, ?method, "outgoing stream up");
    s2s.metrics
        .authenticated(super::metrics::Direction::Out, method);
    s2s.metrics.streams_out.fetch_add(1, Ordering::Relaxed);
    let unsent = carry(&server, &mut wire, &mut waiting).await;
    s2s.metrics.streams_out.fetch_sub(1, Ordering::Relaxed);
    s2s.forget(&pair, &link);
    drop(link);
    waiting.close();
    // What was not written goes out again, on a new stream.
    let mut again: Vec<Stanza> = unsent.into_iter().collect();
    while let Some(stanza) = waiting.recv().await {
        again.push(stanza);
    }
    for stanza in again {
        router::route(&server, stanza).await;
    }
    tracing::info!(local = %pair.local, remote = %pair.remote, "outgoing stream closed");
}

/// Writes queued stanzas until the stream idles, breaks or the node stops;
/// returns a stanza that could not be written.
async fn carry(
    server: &Server,
    wire: &mut Wire,
    waiting: &mut mpsc::Receiver<Stanza>,
) -> Option<Stanza> {
    let s2s = &server.s2s;
    loop {
        tokio::select! {
            stanza = waiting.recv() => {
                let stanza = stanza?;
                if let Err(error) = wire.send_stanza(stanza.element.clone()).await {
                    tracing::info!(%error, "outgoing stream broke");
                    return Some(stanza);
                }
                s2s.metrics.stanzas_out.fetch_add(1, Ordering::Relaxed);
            }
            event = wire.next(s2s.idle_timeout()) => match event {
                // XEP-0288 bidirectional streams are not negotiated: what
                // comes back on an outgoing stream is only the peer's
                // keepalive whitespace or its end.
                Ok(StreamEvent::Stanza(element)) => {
                    tracing::debug!(element = %element.name(), "ignored on an outgoing stream");
                }
                Ok(StreamEvent::Header(_) | StreamEvent::End) | Err(_) => {
                    wire.close().await;
                    return None;
                }
            },
            () = server.shutdown.cancelled() => {
                wire.close().await;
                return None;
            }
        }
    }
}
