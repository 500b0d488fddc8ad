//! Outgoing streams: one per (our domain, remote domain) on this node.
//!
//! A stanza for a remote domain goes into its link's bounded queue; the
//! link's task connects (`connect.rs`), then writes the queue to the
//! stream. When the stream cannot be set up within `connect_timeout_secs`
//! every waiting stanza bounces (`remote-server-not-found` or
//! `remote-server-timeout`); a full queue bounces the newcomer at once.
//! An idle stream is closed; the next stanza opens a new one.
//!
//! XEP-0288: an incoming stream the peer asked to be bidirectional may take
//! a link's queue instead (`bidi.rs`), even while the link is dialing; the
//! dial then stops. And an outgoing stream the peer accepted as
//! bidirectional also reads the peer's stanzas, with the same checks as an
//! incoming stream (`check.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::S2s;
use super::check::{self, RateWindow};
use super::connect::{self, ConnectError, Established, Purpose};
use super::wire::Wire;
use crate::metrics::Outcome;
use crate::router;
use crate::server::Server;
use crate::stanza::{Condition, Stanza, StanzaError};
use crate::stream::StreamEvent;
use starling_core::xml::ns;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Pair {
    pub local: String,
    pub remote: String,
}

pub(super) struct Link {
    queue: mpsc::Sender<Stanza>,
    /// The queue's other end until a stream takes it: the dialing task
    /// once its stream is up, or an incoming bidirectional stream
    /// authenticated for the pair first.
    waiting: Mutex<Option<mpsc::Receiver<Stanza>>>,
    /// Cancelled when an incoming stream took the queue: the dial stops.
    adopted: CancellationToken,
    /// Whether an incoming bidirectional stream carries the link.
    via_inbound: AtomicBool,
}

impl Link {
    fn new(max_queued: usize) -> Arc<Link> {
        let (queue, waiting) = mpsc::channel(max_queued);
        Arc::new(Link {
            queue,
            waiting: Mutex::new(Some(waiting)),
            adopted: CancellationToken::new(),
            via_inbound: AtomicBool::new(false),
        })
    }

    /// The queue's receiving end, for the first stream that asks.
    fn take_waiting(&self) -> Option<mpsc::Receiver<Stanza>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(super) fn via_inbound(&self) -> bool {
        self.via_inbound.load(Ordering::Relaxed)
    }
}

/// Sends a stanza to a remote domain: the router's way out of the server.
pub async fn send(server: &Server, stanza: Stanza) {
    let s2s = &server.s2s;
    let (Some(to), Some(from)) = (&stanza.to, &stanza.from) else {
        return router::count(server, Outcome::Discarded);
    };
    let remote = to.domain().as_str().to_owned();
    let local = from.domain().as_str().to_owned();
    if s2s.blocked(&remote) {
        let error = StanzaError::new(Condition::RemoteServerNotFound)
            .with_text(format!("This server does not federate with {remote}"));
        return router::bounce(server, &stanza, error).await;
    }
    if !server.serves_domain(&local) {
        // Only what our own entities send leaves; nothing is relayed.
        tracing::warn!(from = %from, to = %to, "not relaying a stanza between two other domains");
        return router::count(server, Outcome::Discarded);
    }
    let Some(this) = server.this() else {
        return router::count(server, Outcome::Discarded);
    };
    let pair = Pair { local, remote };
    let mut stanza = stanza;
    // A link whose task just ended refuses the stanza: take a new one, once.
    for _ in 0..2 {
        let link = s2s.link(&this, &pair);
        match link.queue.try_send(stanza) {
            Ok(()) => return router::count(server, Outcome::Delivered),
            Err(mpsc::error::TrySendError::Full(refused)) => {
                let error = StanzaError::new(Condition::RemoteServerTimeout).with_text(format!(
                    "Too many stanzas are waiting for the stream to {}",
                    pair.remote
                ));
                s2s.metrics.bounced.fetch_add(1, Ordering::Relaxed);
                return router::bounce(server, &refused, error).await;
            }
            Err(mpsc::error::TrySendError::Closed(refused)) => {
                s2s.forget(&pair, &link);
                stanza = refused;
            }
        }
    }
    let error = StanzaError::new(Condition::RemoteServerNotFound)
        .with_text(format!("No stream to {} could be opened", pair.remote));
    router::bounce(server, &stanza, error).await
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
        let link = Link::new(self.config.max_queued);
        links.insert(pair.clone(), link.clone());
        tokio::spawn(run(server.clone(), pair.clone(), link.clone()));
        link
    }

    /// XEP-0288: an incoming bidirectional stream authenticated `pair` and
    /// offers to carry it. It gets the queue of the pair's link, started
    /// if there is none or taken from its dial, unless a stream already
    /// carries the link.
    pub(super) fn adopt(&self, pair: &Pair) -> Option<(Arc<Link>, mpsc::Receiver<Stanza>)> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let link = links
            .entry(pair.clone())
            .or_insert_with(|| Link::new(self.config.max_queued))
            .clone();
        let waiting = link.take_waiting()?;
        link.via_inbound.store(true, Ordering::Relaxed);
        link.adopted.cancel();
        Some((link, waiting))
    }

    /// The pairs this node sends over incoming bidirectional streams.
    pub fn sending_over_inbound(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, link)| link.via_inbound())
            .map(|(pair, _)| (pair.local.clone(), pair.remote.clone()))
            .collect();
        pairs.sort();
        pairs
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
async fn run(server: Arc<Server>, pair: Pair, link: Arc<Link>) {
    let s2s = &server.s2s;
    let dial = tokio::time::timeout(
        s2s.connect_timeout(),
        connect::connect(
            s2s,
            super::limits(&server),
            &pair.local,
            &pair.remote,
            Purpose::Authenticate,
        ),
    );
    let attempt = tokio::select! {
        attempt = dial => attempt,
        // An incoming bidirectional stream carries the pair now.
        () = link.adopted.cancelled() => return,
    };
    let established = match attempt {
        Ok(Ok(Established::Authenticated { wire, method, bidi })) => Ok((wire, method, bidi)),
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
    let Some(mut waiting) = link.take_waiting() else {
        // An incoming bidirectional stream took the queue meanwhile.
        if let Ok((mut wire, ..)) = established {
            wire.close().await;
        }
        return;
    };
    let (mut wire, method, bidi) = match established {
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
    tracing::info!(local = %pair.local, remote = %pair.remote, ?method, bidi, "outgoing stream up");
    s2s.metrics
        .authenticated(super::metrics::Direction::Out, method);
    s2s.metrics.streams_out.fetch_add(1, Ordering::Relaxed);
    if bidi {
        s2s.metrics.bidi_out.fetch_add(1, Ordering::Relaxed);
    }
    let unsent = carry(&server, &pair, bidi, &mut wire, &mut waiting).await;
    if bidi {
        s2s.metrics.bidi_out.fetch_sub(1, Ordering::Relaxed);
    }
    s2s.metrics.streams_out.fetch_sub(1, Ordering::Relaxed);
    release(&server, &pair, link, waiting, unsent).await;
    tracing::info!(local = %pair.local, remote = %pair.remote, "outgoing stream closed");
}

/// A stream that carried `link` ended: the link is forgotten and what it
/// did not write goes out again, on a new stream.
pub(super) async fn release(
    server: &Server,
    pair: &Pair,
    link: Arc<Link>,
    mut waiting: mpsc::Receiver<Stanza>,
    unsent: Option<Stanza>,
) {
    server.s2s.forget(pair, &link);
    drop(link);
    waiting.close();
    let mut again: Vec<Stanza> = unsent.into_iter().collect();
    while let Some(stanza) = waiting.recv().await {
        again.push(stanza);
    }
    for stanza in again {
        router::route(server, stanza).await;
    }
}

/// Writes queued stanzas until the stream idles, breaks or the node stops;
/// returns a stanza that could not be written. On a bidirectional stream
/// the peer's stanzas are read too, from its domain only.
async fn carry(
    server: &Server,
    pair: &Pair,
    bidi: bool,
    wire: &mut Wire,
    waiting: &mut mpsc::Receiver<Stanza>,
) -> Option<Stanza> {
    let s2s = &server.s2s;
    let mut rate = RateWindow::new(s2s.config.stanzas_per_sec);
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
                Ok(StreamEvent::Stanza(element)) if bidi && is_stanza(&element) => {
                    let from_peer = |domain: &str| domain.eq_ignore_ascii_case(&pair.remote);
                    if let Err(refusal) = check::receive(server, from_peer, &mut rate, element).await {
                        tracing::info!(
                            remote = %pair.remote,
                            condition = refusal.condition,
                            text = %refusal.text,
                            "outgoing stream ended: the peer sent a stanza it may not"
                        );
                        wire.fail(refusal.condition, &refusal.text).await;
                        return None;
                    }
                }
                // Without XEP-0288 what comes back is only the peer's
                // keepalive whitespace or its end (or an error).
                Ok(StreamEvent::Stanza(element)) => {
                    if element.is("error", ns::STREAM) {
                        let condition = connect::stream_error_condition(&element);
                        tracing::info!(remote = %pair.remote, condition, "the peer ended our stream with an error");
                        wire.close().await;
                        return None;
                    }
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

fn is_stanza(element: &starling_core::xml::Element) -> bool {
    element.ns() == ns::SERVER && matches!(element.name(), "message" | "presence" | "iq")
}
