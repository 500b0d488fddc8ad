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
//! (on any stream from the peer, to any member: [`answered`]) drops the
//! stanzas it covers, which resolves their clients' counts
//! (`sm::confirm`). A barrier is coalesced: it goes out [`BARRIER_DELAY`]
//! after the oldest stanza it covers was written, or at once when
//! [`BARRIER_EVERY`] stanzas wait for one, so at moderate rates one
//! barrier covers many stanzas instead of about one each. That delays
//! confirmation (a client's `h`), never delivery: stanzas are written at
//! once. A broken stream sends what was not confirmed again on a new one;
//! a peer that confirms nothing for `connect_timeout_secs` gets it
//! bounced. See ARCHITECTURE.md, "Federation".
//!
//! XEP-0288: an incoming stream the peer asked to be bidirectional may take
//! a link's queue instead (`bidi.rs`), even while the link is dialing; the
//! dial then stops. That stream writes the link's stanzas through the same
//! [`Confirming`], barriers included. And an outgoing stream the peer
//! accepted as bidirectional also reads the peer's stanzas, with the same
//! checks as an incoming stream (`check.rs`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::cluster::{Envelope, NodeId, StanzaKind};
use starling_core::xml::{Element, ns};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::S2s;
use super::check::{self, RateWindow};
use super::connect::{self, ConnectError, Established, Purpose};
use super::streams::{DomainCounters, StreamStats};
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
    /// Our answers to the peer's barriers, apart from the queue of
    /// messages: a queue full of messages must not drop them, or the peer
    /// would wait for its retry with its own queue filling. A peer like us
    /// has one barrier out at a time per stream, so few ever wait here;
    /// beyond [`MAX_REPLIES`] (a peer that pings without reading) they are
    /// dropped, and a real barrier is sent again.
    replies: mpsc::Sender<Stanza>,
    /// The barriers the peer answered (their numbers), from [`answered`].
    answers: mpsc::UnboundedSender<u64>,
    /// The queue's other ends until a stream takes them: the dialing task
    /// once its stream is up, or an incoming bidirectional stream
    /// authenticated for the pair first.
    receivers: Mutex<Option<Receivers>>,
    /// Cancelled when an incoming stream took the queue: the dial stops.
    adopted: CancellationToken,
    /// Whether an incoming bidirectional stream carries the link.
    via_inbound: AtomicBool,
}

impl Link {
    fn new(id: u64, max_queued: usize) -> Arc<Link> {
        let (queue, waiting) = mpsc::channel(max_queued);
        let (replies, replying) = mpsc::channel(MAX_REPLIES);
        let (answers, answered) = mpsc::unbounded_channel();
        Arc::new(Link {
            id,
            queue,
            replies,
            answers,
            receivers: Mutex::new(Some(Receivers {
                waiting,
                replying,
                answered,
            })),
            adopted: CancellationToken::new(),
            via_inbound: AtomicBool::new(false),
        })
    }

    /// The queue's receiving ends, for the first stream that asks.
    fn take_receivers(&self) -> Option<Receivers> {
        self.receivers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn via_inbound(&self) -> bool {
        self.via_inbound.load(Ordering::Relaxed)
    }
}

/// Our answers to the peer's barriers waiting on one link at most.
const MAX_REPLIES: usize = 64;

/// Stanzas written in one go at most.
const WRITE_BATCH: usize = 64;

/// Longest a written stanza waits before a barrier covering it goes out
/// (when no barrier is out): what is written meanwhile shares that
/// barrier. It delays confirmation, not delivery.
pub(crate) const BARRIER_DELAY: Duration = Duration::from_millis(20);

/// Stanzas written and not yet covered by a barrier that get one at once,
/// without waiting for [`BARRIER_DELAY`] (when no barrier is out).
pub(crate) const BARRIER_EVERY: u64 = 64;

/// Sends a stanza to a remote domain: the router's way out of the server.
pub async fn send(server: &Server, stanza: Stanza) -> router::Routed {
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
        if is_barrier_answer(&stanza) {
            match link.replies.try_send(stanza) {
                Ok(()) => return Ok(Outcome::Delivered),
                Err(mpsc::error::TrySendError::Full(_)) => return Ok(Outcome::Discarded),
                Err(mpsc::error::TrySendError::Closed(refused)) => {
                    s2s.forget(&pair, &link);
                    stanza = refused;
                    continue;
                }
            }
        }
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
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        let link = Link::new(id, self.config.max_queued);
        links.insert(pair.clone(), link.clone());
        tokio::spawn(run(server.clone(), pair.clone(), link.clone()));
        link
    }

    /// XEP-0288: an incoming bidirectional stream authenticated `pair` and
    /// offers to carry it. It gets the queue of the pair's link, started
    /// if there is none or taken from its dial, unless a stream already
    /// carries the link.
    pub(super) fn adopt(&self, pair: &Pair) -> Option<(Arc<Link>, Receivers)> {
        let mut links = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let link = links
            .entry(pair.clone())
            .or_insert_with(|| {
                let id = self.next_link.fetch_add(1, Ordering::Relaxed);
                Link::new(id, self.config.max_queued)
            })
            .clone();
        let receivers = link.take_receivers()?;
        link.via_inbound.store(true, Ordering::Relaxed);
        link.adopted.cancel();
        Some((link, receivers))
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

/// What a link's task reads: stanzas to send, our answers to the peer's
/// barriers, the peer's answers to ours.
pub(super) struct Receivers {
    pub(super) waiting: mpsc::Receiver<Stanza>,
    pub(super) replying: mpsc::Receiver<Stanza>,
    pub(super) answered: mpsc::UnboundedReceiver<u64>,
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
    let Some(mut receivers) = link.take_receivers() else {
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
            let waiting = &mut receivers.waiting;
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
    let registered = s2s.streams.register(
        super::metrics::Direction::Out,
        wire.is_tls(),
        bidi,
        &pair.local,
        &pair.remote,
        method,
    );
    let mut stream = Confirming::new(
        server.clone(),
        pair.clone(),
        link.id,
        registered.stats().clone(),
    );
    let ended = stream.carry(&mut wire, &mut receivers, bidi).await;
    drop(registered);
    if bidi {
        s2s.metrics.bidi_out.fetch_sub(1, Ordering::Relaxed);
    }
    s2s.metrics.streams_out.fetch_sub(1, Ordering::Relaxed);
    release(&server, link, receivers, stream, ended).await;
    tracing::info!(local = %pair.local, remote = %pair.remote, "outgoing stream closed");
}

/// A stream that carried `link` ended (`ended` says how): the link is
/// forgotten; what was written but not confirmed goes out again first (or
/// bounces, when the peer confirmed nothing for too long), then what was
/// never written, on a new stream.
pub(super) async fn release(
    server: &Server,
    link: Arc<Link>,
    receivers: Receivers,
    mut stream: Confirming,
    ended: Ended,
) {
    let s2s = &server.s2s;
    let pair = stream.pair.clone();
    s2s.forget(&pair, &link);
    drop(link);
    let Receivers { mut waiting, .. } = receivers;
    waiting.close();
    let unconfirmed = stream.take_unconfirmed();
    drop(stream);
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
                router::bounce(server, &stanza, error).await;
            }
        }
    }
    while let Some(stanza) = waiting.recv().await {
        again.push(stanza);
    }
    for stanza in again {
        router::route(server, stanza).await;
    }
}

/// How a stream's carrying ended.
pub(super) enum Ended {
    /// Idle, closed by us, or the node stops: nothing waits.
    Closed,
    /// The stream broke: what was not confirmed goes out again.
    Broken,
    /// Nothing was confirmed for too long: what waits bounces.
    Unconfirmed,
}

/// One stream's written stanzas awaiting the peer's confirmation.
pub(super) struct Confirming {
    server: Arc<Server>,
    pair: Pair,
    link: u64,
    /// The stream's figures for the admin API, and the remote domain's.
    stats: Arc<StreamStats>,
    domain: Arc<DomainCounters>,
    /// Written and not yet confirmed, oldest first.
    unconfirmed: VecDeque<Stanza>,
    /// Stanzas written on this stream before the oldest unconfirmed one.
    confirmed: u64,
    /// Barriers out: (number, stanzas written before it), oldest first.
    barriers: VecDeque<(u64, u64)>,
    next_barrier: u64,
    /// When the last barrier went out.
    barrier_at: Instant,
    /// Stanzas written before the last barrier: those after it wait for
    /// the next one.
    covered: u64,
    /// When the oldest stanza no barrier covers yet was written.
    uncovered_since: Instant,
    /// When something was last confirmed, or began to wait.
    progress_at: Instant,
}

impl Confirming {
    pub(super) fn new(
        server: Arc<Server>,
        pair: Pair,
        link: u64,
        stats: Arc<StreamStats>,
    ) -> Confirming {
        let now = Instant::now();
        let domain = server.s2s.streams.domain(&pair.remote);
        Confirming {
            server,
            pair,
            link,
            stats,
            domain,
            unconfirmed: VecDeque::new(),
            confirmed: 0,
            barriers: VecDeque::new(),
            next_barrier: 0,
            barrier_at: now,
            covered: 0,
            uncovered_since: now,
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

    /// How many more stanzas may be written before some are confirmed:
    /// bounded like the queue, so a peer slow to confirm slows the link.
    pub(super) fn room(&self) -> usize {
        let window = self.server.s2s.config.max_queued.max(1);
        window.saturating_sub(self.unconfirmed.len())
    }

    /// When [`Confirming::due`] has work: a barrier to send (the first
    /// for what waits, or again), or the peer to give up on. None while
    /// nothing waits.
    pub(super) fn deadline(&self) -> Option<Instant> {
        (!self.unconfirmed.is_empty()).then(|| {
            let barrier = if self.barriers.is_empty() {
                self.uncovered_since + BARRIER_DELAY
            } else {
                self.barrier_at + self.retry_after()
            };
            barrier.min(self.progress_at + self.give_up_after())
        })
    }

    /// Whether a barrier should go out now: one is out at a time (another
    /// follows one unanswered too long); the next waits until it covers
    /// [`BARRIER_EVERY`] stanzas or the oldest of them waited
    /// [`BARRIER_DELAY`].
    fn barrier_wanted(&self, now: Instant) -> bool {
        if self.unconfirmed.is_empty() {
            return false;
        }
        if !self.barriers.is_empty() {
            return now >= self.barrier_at + self.retry_after();
        }
        let uncovered = self.written().saturating_sub(self.covered);
        uncovered >= BARRIER_EVERY || now >= self.uncovered_since + BARRIER_DELAY
    }

    /// Writes `first` and what else waits in `waiting`, as room allows.
    pub(super) async fn send(
        &mut self,
        wire: &mut Wire,
        first: Stanza,
        waiting: &mut mpsc::Receiver<Stanza>,
    ) -> Result<(), Ended> {
        let room = self.room();
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH.min(room) {
            match waiting.try_recv() {
                Ok(stanza) => batch.push(stanza),
                Err(_) => break,
            }
        }
        self.write(wire, batch).await.map_err(broke)
    }

    /// Writes our answer to one of the peer's barriers.
    pub(super) async fn reply(&mut self, wire: &mut Wire, answer: Stanza) -> Result<(), Ended> {
        self.write(wire, vec![answer]).await.map_err(broke)
    }

    /// The peer answered barrier `number`; the next goes out now when
    /// what it would cover waited long enough (else at the deadline).
    pub(super) async fn answer(&mut self, wire: &mut Wire, number: u64) -> Result<(), Ended> {
        self.answered(number);
        if self.barrier_wanted(Instant::now()) {
            self.write(wire, Vec::new()).await.map_err(broke)?;
        }
        Ok(())
    }

    /// The deadline passed: give up on a peer that confirmed nothing for
    /// too long, or send a barrier (the one what waits is due, or another
    /// for one unanswered too long).
    pub(super) async fn due(&mut self, wire: &mut Wire) -> Result<(), Ended> {
        let now = Instant::now();
        if now >= self.progress_at + self.give_up_after() {
            return Err(Ended::Unconfirmed);
        }
        if self.barrier_wanted(now) {
            if !self.barriers.is_empty() {
                tracing::debug!(remote = %self.pair.remote, "barrier unanswered; another");
            }
            self.write(wire, Vec::new()).await.map_err(broke)?;
        }
        Ok(())
    }

    /// Writes queued stanzas and barriers until the stream idles, breaks,
    /// confirms nothing for too long, or the node stops. On a
    /// bidirectional stream the peer's stanzas are read too, from its
    /// domain only.
    async fn carry(&mut self, wire: &mut Wire, receivers: &mut Receivers, bidi: bool) -> Ended {
        let server = self.server.clone();
        let s2s = &server.s2s;
        let mut rate = RateWindow::new(s2s.config.stanzas_per_sec);
        let Receivers {
            waiting,
            replying,
            answered,
        } = receivers;
        loop {
            let room = self.room();
            let deadline = self.deadline();
            let step = tokio::select! {
                first = waiting.recv(), if room > 0 => match first {
                    Some(first) => self.send(wire, first, waiting).await,
                    None => Err(Ended::Broken),
                },
                Some(number) = answered.recv() => self.answer(wire, number).await,
                Some(answer) = replying.recv() => self.reply(wire, answer).await,
                event = wire.next(s2s.idle_timeout()) => match event {
                    Ok(StreamEvent::Stanza(element)) if bidi && is_stanza(&element) => {
                        let remote = &self.pair.remote;
                        let from_peer = |domain: &str| domain.eq_ignore_ascii_case(remote);
                        let stats = self.stats.clone();
                        match check::receive(&server, from_peer, &mut rate, &stats, element).await {
                            Ok(()) => Ok(()),
                            Err(refusal) => {
                                tracing::info!(
                                    remote = %self.pair.remote,
                                    condition = refusal.condition,
                                    text = %refusal.text,
                                    "outgoing stream ended: the peer sent a stanza it may not"
                                );
                                wire.fail(refusal.condition, &refusal.text).await;
                                return Ended::Broken;
                            }
                        }
                    }
                    // Without XEP-0288 what comes back is only the peer's
                    // keepalive whitespace or its end (or an error).
                    Ok(StreamEvent::Stanza(element)) => {
                        if element.is("error", ns::STREAM) {
                            let condition = connect::stream_error_condition(&element);
                            tracing::info!(remote = %self.pair.remote, condition, "the peer ended our stream with an error");
                            Err(Ended::Broken)
                        } else {
                            tracing::debug!(element = %element.name(), "ignored on an outgoing stream");
                            Ok(())
                        }
                    }
                    Err(WireError::Timeout(_)) if self.unconfirmed.is_empty() => Err(Ended::Closed),
                    Ok(StreamEvent::Header(_) | StreamEvent::End) | Err(_) => Err(Ended::Broken),
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.due(wire).await
                }
                // Closed in order: the peer reads what was written.
                () = server.shutdown.cancelled() => Err(Ended::Closed),
            };
            if let Err(ended) = step {
                wire.close().await;
                return ended;
            }
        }
    }

    /// Writes `batch` (possibly empty) and, when one is wanted
    /// ([`Confirming::barrier_wanted`]), a barrier after it, in one write.
    async fn write(&mut self, wire: &mut Wire, batch: Vec<Stanza>) -> std::io::Result<()> {
        let metrics = &self.server.s2s.metrics;
        let mut out = Vec::with_capacity(256 * (batch.len() + 1));
        let sent = batch.len() as u64;
        let was_empty = self.unconfirmed.is_empty();
        let was_covered = self.written() == self.covered;
        let mut kept = 0;
        for stanza in batch {
            Wire::serialize_stanza(&stanza.element, &mut out);
            // An answer to the peer's barrier needs no barrier of its own
            // (a lost one makes the peer send another): confirming it
            // would answer barriers with barriers for ever.
            if !is_barrier_answer(&stanza) {
                self.unconfirmed.push_back(stanza);
                kept += 1;
            }
        }
        let now = Instant::now();
        if was_empty && kept > 0 {
            self.progress_at = now;
        }
        if was_covered && kept > 0 {
            self.uncovered_since = now;
        }
        metrics.unconfirmed.fetch_add(kept, Ordering::Relaxed);
        self.stats.unconfirmed_add(kept);
        if self.barrier_wanted(now) {
            let number = self.next_barrier;
            self.next_barrier += 1;
            let barrier = barrier(self.server.cluster.node_id(), self.link, number, &self.pair);
            Wire::serialize_stanza(&barrier, &mut out);
            self.covered = self.written();
            self.barriers.push_back((number, self.covered));
            self.barrier_at = now;
            metrics.barriers.fetch_add(1, Ordering::Relaxed);
        }
        if out.is_empty() {
            return Ok(());
        }
        wire.write(&out).await?;
        metrics.stanzas_out.fetch_add(sent, Ordering::Relaxed);
        self.stats.sent(&self.domain, sent);
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
        self.stats.unconfirmed_sub(count as u64);
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
        self.stats.unconfirmed_sub(unconfirmed.len() as u64);
        unconfirmed
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        // The node stops with stanzas still out: no longer waiting here.
        let left = self.unconfirmed.len() as u64;
        self.server
            .s2s
            .metrics
            .unconfirmed
            .fetch_sub(left, Ordering::Relaxed);
        self.stats.unconfirmed_sub(left);
    }
}

fn broke(error: std::io::Error) -> Ended {
    tracing::info!(%error, "stream to the peer broke");
    Ended::Broken
}

fn is_stanza(element: &Element) -> bool {
    element.ns() == ns::SERVER && matches!(element.name(), "message" | "presence" | "iq")
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

/// Whether `stanza` answers a barrier: a `result` or `error` between two
/// domains whose id is a barrier's.
fn is_barrier_answer(stanza: &Stanza) -> bool {
    matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error))
        && stanza
            .from
            .as_ref()
            .is_some_and(|from| from.node().is_none())
        && stanza.to.as_ref().is_some_and(|to| to.node().is_none())
        && stanza.element.attr("id").and_then(barrier_id).is_some()
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
