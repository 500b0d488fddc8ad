//! Outgoing streams: one per (our domain, remote domain) on this node.
//!
//! A stanza for a remote domain goes into its link's bounded queue; the
//! link's task connects (`connect.rs`), then writes the queue to the
//! stream. When the stream cannot be set up within `connect_timeout_secs`
//! every waiting stanza bounces (`remote-server-not-found` or
//! `remote-server-timeout`); a full queue bounces the newcomer at once.
//! An idle stream is closed; the next stanza opens a new one.
//!
//! What a stream writes it keeps until the peer confirms it: a barrier,
//! an XEP-0199 ping from our domain to the remote one, is answered only
//! once the peer handled everything before it on the stream. One barrier
//! is out at a time, covering all that was written before it; its answer
//! (on the peer's own stream to us, on any member: [`answered`]) drops the
//! stanzas it covers, which resolves their clients' counts
//! (`sm::confirm`). A broken stream sends what was not confirmed again on
//! a new one; a peer that confirms nothing for `connect_timeout_secs` gets
//! it bounced. See ARCHITECTURE.md, "Federation".

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use starling_core::cluster::{Envelope, NodeId, StanzaKind};
use starling_core::xml::{Element, ns};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::S2s;
use super::connect::{self, ConnectError, Established, Purpose};
use super::wire::{Wire, WireError};
use crate::metrics::Outcome;
use crate::router;
use crate::server::Server;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};
use crate::stream::StreamEvent;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Pair {
    pub local: String,
    pub remote: String,
}

pub(super) struct Link {
    /// Unique on this node: barrier ids name it.
    id: u64,
    queue: mpsc::Sender<Stanza>,
    /// The barriers the peer answered (their numbers), from [`answered`].
    answers: mpsc::UnboundedSender<u64>,
}

/// Stanzas written in one go at most.
const WRITE_BATCH: usize = 64;

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
        let (answers, answered) = mpsc::unbounded_channel();
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let link = Arc::new(Link { id, queue, answers });
        links.insert(pair.clone(), link.clone());
        let receivers = Receivers { waiting, answered };
        tokio::spawn(run(server.clone(), pair.clone(), link.clone(), receivers));
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

/// What a link's task reads: stanzas to send, answers to its barriers.
struct Receivers {
    waiting: mpsc::Receiver<Stanza>,
    answered: mpsc::UnboundedReceiver<u64>,
}

/// A link's task: connect, carry the queue, end when idle or broken.
async fn run(server: Arc<Server>, pair: Pair, link: Arc<Link>, receivers: Receivers) {
    let Receivers {
        mut waiting,
        mut answered,
    } = receivers;
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
    let mut stream = Confirming::new(&server, &pair, link.id);
    let ended = stream.carry(&mut wire, &mut waiting, &mut answered).await;
    s2s.metrics.streams_out.fetch_sub(1, Ordering::Relaxed);
    s2s.forget(&pair, &link);
    drop(link);
    waiting.close();
    let unconfirmed = stream.take_unconfirmed();
    let mut again: Vec<Stanza> = Vec::new();
    match ended {
        Ended::Closed => {}
        // Written but not confirmed: the peer may never have read it. It
        // goes out again first, then what was never written.
        Ended::Broken => again.extend(unconfirmed),
        Ended::Unconfirmed => {
            tracing::warn!(remote = %pair.remote, stanzas = unconfirmed.len(), "the peer confirmed nothing; bouncing what waited");
            for stanza in unconfirmed {
                s2s.metrics.bounced.fetch_add(1, Ordering::Relaxed);
                let error = StanzaError::new(Condition::RemoteServerTimeout).with_text(format!(
                    "{} did not confirm this stanza within {} s; it may have arrived",
                    pair.remote, s2s.config.connect_timeout_secs
                ));
                router::bounce(&server, &stanza, error).await;
            }
        }
    }
    while let Some(stanza) = waiting.recv().await {
        again.push(stanza);
    }
    for stanza in again {
        router::route(&server, stanza).await;
    }
    tracing::info!(local = %pair.local, remote = %pair.remote, "outgoing stream closed");
}

/// How a stream's carrying ended.
enum Ended {
    /// Idle, closed by us, or the node stops: nothing waits.
    Closed,
    /// The stream broke: what was not confirmed goes out again.
    Broken,
    /// Nothing was confirmed for too long: what waits bounces.
    Unconfirmed,
}

/// One stream's written stanzas awaiting the peer's confirmation.
struct Confirming<'a> {
    server: &'a Server,
    pair: &'a Pair,
    link: u64,
    /// Written and not yet confirmed, oldest first.
    unconfirmed: VecDeque<Stanza>,
    /// Stanzas written on this stream before the oldest unconfirmed one.
    confirmed: u64,
    /// Barriers out: (number, stanzas written before it), oldest first.
    barriers: VecDeque<(u64, u64)>,
    next_barrier: u64,
    /// When the last barrier went out.
    barrier_at: Instant,
    /// When something was last confirmed, or began to wait.
    progress_at: Instant,
}

impl<'a> Confirming<'a> {
    fn new(server: &'a Server, pair: &'a Pair, link: u64) -> Confirming<'a> {
        let now = Instant::now();
        Confirming {
            server,
            pair,
            link,
            unconfirmed: VecDeque::new(),
            confirmed: 0,
            barriers: VecDeque::new(),
            next_barrier: 0,
            barrier_at: now,
            progress_at: now,
        }
    }

    fn written(&self) -> u64 {
        self.confirmed + self.unconfirmed.len() as u64
    }

    /// Longest the peer may leave everything unconfirmed.
    fn give_up_after(&self) -> Duration {
        self.server.s2s.connect_timeout()
    }

    /// A barrier unanswered this long (its answer lost on the way, say)
    /// is followed by another.
    fn retry_after(&self) -> Duration {
        (self.give_up_after() / 3).max(Duration::from_secs(1))
    }

    /// Writes queued stanzas and barriers until the stream idles, breaks,
    /// confirms nothing for too long, or the node stops.
    async fn carry(
        &mut self,
        wire: &mut Wire,
        waiting: &mut mpsc::Receiver<Stanza>,
        answered: &mut mpsc::UnboundedReceiver<u64>,
    ) -> Ended {
        let server = self.server;
        let s2s = &server.s2s;
        // Bounded like the queue: a peer slow to confirm slows the link.
        let window = s2s.config.max_queued.max(1);
        loop {
            let room = window.saturating_sub(self.unconfirmed.len());
            let deadline = (!self.unconfirmed.is_empty()).then(|| {
                (self.barrier_at + self.retry_after()).min(self.progress_at + self.give_up_after())
            });
            tokio::select! {
                first = waiting.recv(), if room > 0 => {
                    let Some(first) = first else {
                        return Ended::Broken;
                    };
                    let mut batch = vec![first];
                    while batch.len() < WRITE_BATCH.min(room) {
                        match waiting.try_recv() {
                            Ok(stanza) => batch.push(stanza),
                            Err(_) => break,
                        }
                    }
                    if let Err(error) = self.write(wire, batch).await {
                        tracing::info!(%error, "outgoing stream broke");
                        return Ended::Broken;
                    }
                }
                Some(number) = answered.recv() => {
                    self.answered(number);
                    if !self.unconfirmed.is_empty() && self.barriers.is_empty() {
                        if let Err(error) = self.write(wire, Vec::new()).await {
                            tracing::info!(%error, "outgoing stream broke");
                            return Ended::Broken;
                        }
                    }
                }
                event = wire.next(s2s.idle_timeout()) => match event {
                    // XEP-0288 bidirectional streams are not negotiated: what
                    // comes back on an outgoing stream is only the peer's
                    // keepalive whitespace or its end.
                    Ok(StreamEvent::Stanza(element)) => {
                        tracing::debug!(element = %element.name(), "ignored on an outgoing stream");
                    }
                    Err(WireError::Timeout(_)) if self.unconfirmed.is_empty() => {
                        wire.close().await;
                        return Ended::Closed;
                    }
                    Ok(StreamEvent::Header(_) | StreamEvent::End) | Err(_) => {
                        wire.close().await;
                        return Ended::Broken;
                    }
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = Instant::now();
                    if now >= self.progress_at + self.give_up_after() {
                        wire.close().await;
                        return Ended::Unconfirmed;
                    }
                    if now >= self.barrier_at + self.retry_after() {
                        tracing::debug!(remote = %self.pair.remote, "barrier unanswered; another");
                        if let Err(error) = self.write(wire, Vec::new()).await {
                            tracing::info!(%error, "outgoing stream broke");
                            return Ended::Broken;
                        }
                    }
                }
                () = server.shutdown.cancelled() => {
                    // Closed in order: the peer reads what was written.
                    wire.close().await;
                    return Ended::Closed;
                }
            }
        }
    }

    /// Writes `batch` (possibly empty) and a barrier after it when none is
    /// out or the last one went unanswered too long, in one write.
    async fn write(&mut self, wire: &mut Wire, batch: Vec<Stanza>) -> std::io::Result<()> {
        let metrics = &self.server.s2s.metrics;
        let mut out = Vec::with_capacity(256 * (batch.len() + 1));
        let sent = batch.len() as u64;
        if self.unconfirmed.is_empty() && !batch.is_empty() {
            self.progress_at = Instant::now();
        }
        for stanza in batch {
            Wire::serialize_stanza(&stanza.element, &mut out);
            self.unconfirmed.push_back(stanza);
        }
        metrics.unconfirmed.fetch_add(sent, Ordering::Relaxed);
        let retry =
            !self.barriers.is_empty() && Instant::now() >= self.barrier_at + self.retry_after();
        if !self.unconfirmed.is_empty() && (self.barriers.is_empty() || retry) {
            let number = self.next_barrier;
            self.next_barrier += 1;
            let barrier = barrier(self.server.cluster.node_id(), self.link, number, self.pair);
            Wire::serialize_stanza(&barrier, &mut out);
            self.barriers.push_back((number, self.written()));
            self.barrier_at = Instant::now();
            metrics.barriers.fetch_add(1, Ordering::Relaxed);
        }
        if out.is_empty() {
            return Ok(());
        }
        wire.write(&out).await?;
        metrics.stanzas_out.fetch_add(sent, Ordering::Relaxed);
        Ok(())
    }

    /// The peer answered barrier `number`: what was written before it is
    /// confirmed (dropping a stanza resolves its client's count).
    fn answered(&mut self, number: u64) {
        let Some(&(_, covers)) = self.barriers.iter().find(|(n, _)| *n == number) else {
            return;
        };
        self.barriers.retain(|(_, later)| *later > covers);
        let count = covers.saturating_sub(self.confirmed) as usize;
        if count == 0 {
            return;
        }
        let count = count.min(self.unconfirmed.len());
        self.unconfirmed.drain(..count);
        self.confirmed += count as u64;
        self.progress_at = Instant::now();
        let metrics = &self.server.s2s.metrics;
        metrics
            .unconfirmed
            .fetch_sub(count as u64, Ordering::Relaxed);
        metrics.confirmed.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// What still waits for a confirmation, oldest first; no longer counted
    /// as waiting on this stream.
    fn take_unconfirmed(&mut self) -> Vec<Stanza> {
        let unconfirmed: Vec<Stanza> = self.unconfirmed.drain(..).collect();
        self.server
            .s2s
            .metrics
            .unconfirmed
            .fetch_sub(unconfirmed.len() as u64, Ordering::Relaxed);
        unconfirmed
    }
}

impl Drop for Confirming<'_> {
    fn drop(&mut self) {
        // The node stops with stanzas still out: no longer waiting here.
        let left = self.unconfirmed.len() as u64;
        self.server
            .s2s
            .metrics
            .unconfirmed
            .fetch_sub(left, Ordering::Relaxed);
    }
}

const BARRIER_PREFIX: &str = "s2s-";

/// The barrier `number` of link `link` on member `node`: a ping from our
/// domain to the remote one, answered in order with everything before it.
fn barrier(node: NodeId, link: u64, number: u64, pair: &Pair) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", format!("{BARRIER_PREFIX}{}-{link}-{number}", node.0))
        .with_attr("from", pair.local.as_str())
        .with_attr("to", pair.remote.as_str())
        .with_child(Element::new("ping", ns::PING))
}

/// (member, link, number) of a barrier id.
fn barrier_id(id: &str) -> Option<(u64, u64, u64)> {
    let mut parts = id.strip_prefix(BARRIER_PREFIX)?.splitn(3, '-');
    let node = parts.next()?.parse().ok()?;
    let link = parts.next()?.parse().ok()?;
    let number = parts.next()?.parse().ok()?;
    Some((node, link, number))
}

/// Takes a remote server's answer to one of our barriers, for a link here
/// or (forwarded over the cluster) on the member that sent it; false when
/// `stanza` is not such an answer. An answer must come from the remote
/// domain to our domain, as domains.
pub fn answered(server: &Server, stanza: &Stanza) -> bool {
    if !matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        return false;
    }
    let (Some(from), Some(to)) = (&stanza.from, &stanza.to) else {
        return false;
    };
    if from.node().is_some() || to.node().is_some() || to.resource().is_some() {
        return false;
    }
    let Some((node, link, number)) = stanza.element.attr("id").and_then(barrier_id) else {
        return false;
    };
    if node != server.cluster.node_id().0 {
        if stanza.hops >= router::cluster::MAX_HOPS {
            return true;
        }
        let envelope = Envelope {
            from: from.clone(),
            to: to.clone(),
            kind: StanzaKind::Iq,
            xml: stanza.element.to_bytes().into(),
            hops: stanza.hops + 1,
        };
        if let Err(error) = server.cluster.forward(NodeId(node), envelope) {
            // Its link sends another barrier when this answer does not come.
            tracing::debug!(%error, "a barrier answer for another member could not go there");
        }
        return true;
    }
    let links = server
        .s2s
        .links
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = links.iter().find(|(pair, candidate)| {
        candidate.id == link
            && pair.remote.eq_ignore_ascii_case(from.domain().as_str())
            && pair.local.eq_ignore_ascii_case(to.domain().as_str())
    });
    if let Some((_, link)) = found {
        let _ = link.answers.send(number);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_ids_name_member_link_and_number() {
        let pair = Pair {
            local: "a.test".into(),
            remote: "b.test".into(),
        };
        let element = barrier(NodeId(7), 12, 345, &pair);
        assert_eq!(element.attr("id"), Some("s2s-7-12-345"));
        assert_eq!(barrier_id("s2s-7-12-345"), Some((7, 12, 345)));
        assert_eq!(barrier_id("s2s-7-12"), None);
        assert_eq!(barrier_id("keepalive"), None);
        assert_eq!(barrier_id("s2s-x-1-2"), None);
    }
}
