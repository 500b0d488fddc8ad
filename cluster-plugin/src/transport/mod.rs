//! Peer links: one authenticated TCP connection per pair of members, TLS
//! 1.3 unless clear text was asked for, carrying [`Frame`]s in order
//! through a bounded send queue.
//!
//! ```text
//!   accept / dial ─▶ TLS ─▶ handshake ─▶ register ─┬─▶ writer task ◀── bounded queue ◀── send()
//!                                                  └─▶ reader task ──▶ FrameHandler (in order)
//! ```
//!
//! When both members dial each other at once, the link dialed by the lower
//! node id survives (or the one from the newer incarnation of a restarted
//! peer). The transport never decides that a member is down; it reports
//! links going up and down, and when it last heard from each peer.
//!
//! Stanzas are numbered per pair of incarnations and acknowledged: each
//! side says how far it delivered ([`Frame::Received`]) with its heartbeats
//! and every few hundred envelopes. What a link did not get acknowledged
//! stays with the [`Pair`] when the link dies and is sent first on the next
//! link to the same incarnation, where the receiver skips what it delivered
//! already: a flap loses nothing and delivers nothing twice. Only when the
//! peer is given up ([`Transport::abandon`]) or comes back as a new
//! incarnation is the rest handed back for routing again
//! ([`FrameHandler::on_undelivered`]), in two parts: what no link ever
//! began to write, which the peer cannot have seen, and what was written
//! but not acknowledged, which the peer may have delivered before it went
//! (there delivery is at least once).

pub mod frame;
pub mod handshake;
mod pair;
mod secured;
pub mod tls;

pub use pair::{HandedBack, Pair};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use starling_core::cluster::LinkSecurity;
use starling_core::cluster::{BoxFuture, ForwardError, NodeId};
use starling_core::shutdown::Shutdown;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use self::frame::{Frame, FrameError, PeerInfo, WireEnvelope, encode_into, read_frame};
use self::handshake::{HandshakeError, Role, handshake};
use self::secured::{LinkReader, LinkWriter, Secured};
use self::tls::LinkProtection;

/// Bytes of queued frames written in one go.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes read from a peer link at a time.
const READ_BUFFER: usize = 64 * 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Envelopes received before an acknowledgement goes out without waiting
/// for the next heartbeat.
const ACK_EVERY: u64 = 256;
/// How long a closed link goes on writing what was queued before.
const LINGER: Duration = Duration::from_millis(200);

/// What the cluster core does with frames and link changes.
pub trait FrameHandler: Send + Sync + 'static {
    /// A frame from `link`; frames of one link are handled one at a time, in order.
    fn on_frame<'a>(&'a self, link: &'a Arc<Link>, frame: Frame) -> BoxFuture<'a, ()>;
    /// A link was established (the peer's queue accepts frames now).
    fn on_link_up(&self, link: &Arc<Link>);
    /// A link closed.
    fn on_link_down(&self, link: &Arc<Link>, reason: &str);
    /// Envelopes a given-up (or restarted) peer did not acknowledge: those
    /// it may have handled, and those no link ever wrote. Returns their
    /// routing, to be started by the transport's caller.
    fn on_undelivered(&self, peer: NodeId, envelopes: HandedBack) -> BoxFuture<'static, ()>;
}

/// One established link to a peer.
pub struct Link {
    pub peer: PeerInfo,
    /// The node that dialed this link (for the duplicate-link rule).
    pub dialed_by: u64,
    queue: mpsc::Sender<Frame>,
    /// Milliseconds since the transport started, at the last frame received.
    last_heard: AtomicU64,
    closed: Shutdown,
    pub established: Instant,
    epoch: Instant,
    /// What this node and the peer's incarnation owe each other.
    pub pair: Arc<Pair>,
}

impl Link {
    pub fn node(&self) -> NodeId {
        NodeId(self.peer.node_id)
    }

    /// Queues a frame; fails at once when the queue is full or the link
    /// closed. An envelope goes through the [`Pair`], which numbers and
    /// keeps it until the peer acknowledges it.
    pub fn send(&self, frame: Frame) -> Result<(), ForwardError> {
        match frame {
            Frame::Envelope(envelope) => self.pair.send(envelope),
            frame => self.enqueue(frame),
        }
    }

    /// Queues a frame that must not be lost to a full queue (a session
    /// handover's reply, which carries the session), waiting up to
    /// `patience` for room.
    pub async fn send_waiting(&self, frame: Frame, patience: Duration) -> Result<(), ForwardError> {
        match tokio::time::timeout(patience, self.queue.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ForwardError::LinkDown(self.node())),
            Err(_) => Err(ForwardError::QueueFull(self.node())),
        }
    }

    pub(crate) fn enqueue(&self, frame: Frame) -> Result<(), ForwardError> {
        self.queue.try_send(frame).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => ForwardError::QueueFull(self.node()),
            mpsc::error::TrySendError::Closed(_) => ForwardError::LinkDown(self.node()),
        })
    }

    /// Frames waiting in the send queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// When the last frame arrived (millisecond precision, the same
    /// instant every time it is asked until another frame arrives).
    pub fn last_heard(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_heard.load(Ordering::Relaxed))
    }

    pub fn heard_ago(&self) -> Duration {
        let last = Duration::from_millis(self.last_heard.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    fn heard(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_heard.store(now, Ordering::Relaxed);
    }

    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Tells the peer how far its envelopes were delivered, if that changed.
    pub fn acknowledge(&self) {
        if let Some(up_to) = self.pair.take_acknowledgement() {
            // A full queue: forget that it was said, so that the next
            // heartbeat says it again.
            if self.enqueue(Frame::Received { up_to }).is_err() {
                self.pair.acknowledgement_lost();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }
}

pub struct Transport {
    me: PeerInfo,
    secret: Vec<u8>,
    /// TLS or clear text; links are made only once it is set.
    protection: std::sync::OnceLock<LinkProtection>,
    queue_size: usize,
    heartbeat: Duration,
    links: Mutex<HashMap<u64, Arc<Link>>>,
    /// Per peer: the pair with its current incarnation (outlives links).
    pairs: Mutex<HashMap<u64, Arc<Pair>>>,
    /// Envelopes queued again on a new link, and copies dropped on arrival.
    pub resent: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub handed_back_unsent: AtomicU64,
    pub handed_back_unconfirmed: AtomicU64,
    handler: std::sync::OnceLock<Arc<dyn FrameHandler>>,
    calls: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next_call: AtomicU64,
    epoch: Instant,
    shutdown: Shutdown,
    /// Set by [`Transport::close_all`]: a node that said goodbye makes no
    /// new links, or its peers would link again and count it as up.
    closing: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("handshake timed out")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error("the node is shutting down")]
    Closing,
}

impl Transport {
    pub fn new(
        me: PeerInfo,
        secret: &[u8],
        queue_size: usize,
        heartbeat: Duration,
        shutdown: Shutdown,
    ) -> Arc<Transport> {
        Arc::new(Transport {
            me,
            secret: secret.to_vec(),
            protection: std::sync::OnceLock::new(),
            queue_size,
            heartbeat,
            links: Mutex::new(HashMap::new()),
            pairs: Mutex::new(HashMap::new()),
            resent: AtomicU64::new(0),
            duplicates_dropped: AtomicU64::new(0),
            handed_back_unsent: AtomicU64::new(0),
            handed_back_unconfirmed: AtomicU64::new(0),
            handler: std::sync::OnceLock::new(),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            epoch: Instant::now(),
            shutdown,
            closing: AtomicBool::new(false),
        })
    }

    /// Installs the frame handler; links are only registered after this.
    pub fn set_handler(&self, handler: Arc<dyn FrameHandler>) {
        let _first = self.handler.set(handler);
    }

    /// Sets how links are protected; no link is made before this.
    pub fn set_protection(&self, protection: LinkProtection) {
        let _first = self.protection.set(protection);
    }

    /// How links are protected (none before [`Transport::set_protection`]).
    pub fn link_security(&self) -> Option<LinkSecurity> {
        self.protection.get().map(LinkProtection::kind)
    }

    pub fn me(&self) -> &PeerInfo {
        &self.me
    }

    pub fn link(&self, node: u64) -> Option<Arc<Link>> {
        self.lock().get(&node).cloned()
    }

    pub fn links(&self) -> Vec<Arc<Link>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Link>>> {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame for a peer. An envelope is taken while the peer has
    /// not been given up, even between two links (see [`Pair`]).
    pub fn send(&self, node: NodeId, frame: Frame) -> Result<(), ForwardError> {
        match frame {
            Frame::Envelope(envelope) => match self.pair(node.0) {
                Some(pair) => pair.send(envelope),
                None => Err(ForwardError::LinkDown(node)),
            },
            frame => match self.link(node.0) {
                Some(link) => link.send(frame),
                None => Err(ForwardError::LinkDown(node)),
            },
        }
    }

    /// Like [`Transport::send`] for a stanza, waiting up to `patience` for
    /// room while the peer's queue is full: a busy peer slows its senders
    /// down instead of failing them.
    pub async fn send_waiting(
        &self,
        node: NodeId,
        envelope: WireEnvelope,
        patience: Duration,
    ) -> Result<(), ForwardError> {
        let Some(pair) = self.pair(node.0) else {
            return Err(ForwardError::LinkDown(node));
        };
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match pair.send(envelope.clone()) {
                Err(ForwardError::QueueFull(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                result => return result,
            }
        }
    }

    fn pair(&self, node: u64) -> Option<Arc<Pair>> {
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned()
    }

    /// The pair for `peer`'s incarnation: the current one, or a new one in
    /// place of an older incarnation's, whose kept envelopes are handed back
    /// (the restarted peer never had them). `None` for a link from an
    /// incarnation older than the pair's.
    fn pair_for(&self, peer: &PeerInfo) -> Option<Arc<Pair>> {
        let (pair, replaced) = {
            let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            match pairs.get(&peer.node_id) {
                Some(pair) if pair.incarnation == peer.incarnation => (pair.clone(), None),
                Some(pair) if pair.incarnation > peer.incarnation => return None,
                _ => {
                    let pair = Arc::new(Pair::new(
                        NodeId(peer.node_id),
                        peer.incarnation,
                        self.queue_size,
                    ));
                    let replaced = pairs.insert(peer.node_id, pair.clone());
                    (pair, replaced)
                }
            }
        };
        if let Some(routing) = replaced.and_then(|old| self.hand_back(peer.node_id, &old)) {
            tokio::spawn(routing);
        }
        Some(pair)
    }

    /// The peer was given up (down, or gone): what it did not acknowledge
    /// is handed back, and new envelopes are refused until a link to it
    /// comes back. Returns the routing of what was handed back, for the
    /// caller to start once what must reach other members first is on its
    /// way (a room's new host must hear its rejoins before the stanzas
    /// that need them).
    pub fn abandon(&self, node: u64) -> Option<BoxFuture<'static, ()>> {
        let pair = self.pair(node)?;
        self.hand_back(node, &pair)
    }

    fn hand_back(&self, node: u64, pair: &Pair) -> Option<BoxFuture<'static, ()>> {
        let envelopes = pair.abandon();
        self.handed_back_unsent
            .fetch_add(envelopes.unsent.len() as u64, Ordering::Relaxed);
        self.handed_back_unconfirmed
            .fetch_add(envelopes.unconfirmed.len() as u64, Ordering::Relaxed);
        match (envelopes.is_empty(), self.handler.get()) {
            (false, Some(handler)) => Some(handler.on_undelivered(NodeId(node), envelopes)),
            _ => None,
        }
    }

    /// Sends a request payload and waits for the reply (openraft RPCs).
    pub fn call(
        self: &Arc<Self>,
        node: u64,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, ForwardError>> {
        self.call_with(node, timeout, move |id| Frame::RaftRequest { id, payload })
    }

    /// Sends the request `frame` makes for a call id and waits for the reply
    /// frame carrying that id (see [`Transport::complete_call`]).
    pub fn call_with(
        self: &Arc<Self>,
        node: u64,
        timeout: Duration,
        frame: impl FnOnce(u64) -> Frame + Send + 'static,
    ) -> BoxFuture<'static, Result<Vec<u8>, ForwardError>> {
        let transport = self.clone();
        Box::pin(async move {
            let id = transport.next_call.fetch_add(1, Ordering::Relaxed);
            let (reply, answer) = oneshot::channel();
            transport
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, reply);
            let sent = transport.send(NodeId(node), frame(id));
            let result = match sent {
                Ok(()) => match tokio::time::timeout(timeout, answer).await {
                    Ok(Ok(payload)) => Ok(payload),
                    Ok(Err(_)) | Err(_) => Err(ForwardError::LinkDown(NodeId(node))),
                },
                Err(error) => Err(error),
            };
            transport
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            result
        })
    }

    /// Delivers the reply to a pending call; gives it back when nobody
    /// waits for it any more (the call timed out or was dropped).
    pub fn complete_call(&self, id: u64, payload: Vec<u8>) -> Result<(), Vec<u8>> {
        let waiting = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match waiting {
            Some(reply) => reply.send(payload),
            None => Err(payload),
        }
    }

    /// Accepts peer links until shutdown.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = self.shutdown.cancelled() => return,
            };
            match accepted {
                Ok((stream, addr)) => {
                    let transport = self.clone();
                    tokio::spawn(async move {
                        if let Err(error) = transport.establish(stream, Role::Acceptor).await {
                            tracing::warn!(peer = %addr, %error, "cluster link refused");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "cluster accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Dials a peer; returns its info once the link is established.
    pub async fn dial(self: &Arc<Self>, addr: SocketAddr) -> Result<PeerInfo, DialError> {
        if self.is_closing() {
            return Err(DialError::Closing);
        }
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout)??;
        self.establish(stream, Role::Dialer).await
    }

    async fn establish(
        self: &Arc<Self>,
        stream: TcpStream,
        role: Role,
    ) -> Result<PeerInfo, DialError> {
        let _nodelay = stream.set_nodelay(true);
        let Some(protection) = self.protection.get() else {
            return Err(DialError::Closing);
        };
        let (mut secured, peer) = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let (mut secured, binding) = Secured::open(stream, role, protection).await?;
            if self.is_closing() {
                // Instead of a hello: the dialer gives up without linking.
                secured.say_goodbye(&goodbye_for_shutdown()).await;
                return Err(DialError::Closing);
            }
            let peer = handshake(&mut secured.io(), role, &self.me, &self.secret, &binding).await?;
            Ok((secured, peer))
        })
        .await
        .map_err(|_| DialError::Timeout)??;
        let dialed_by = match role {
            Role::Dialer => self.me.node_id,
            Role::Acceptor => peer.node_id,
        };
        if self.is_closing() {
            secured.say_goodbye(&goodbye_for_shutdown()).await;
            return Err(DialError::Closing);
        }
        self.register(secured, peer.clone(), dialed_by);
        Ok(peer)
    }

    /// Keeps one link per peer and starts its tasks.
    fn register(self: &Arc<Self>, mut secured: Secured, peer: PeerInfo, dialed_by: u64) {
        let Some(handler) = self.handler.get().cloned() else {
            return;
        };
        let Some(pair) = self.pair_for(&peer) else {
            tokio::spawn(async move {
                let goodbye = Frame::Goodbye {
                    reason: "a link from an earlier incarnation".into(),
                };
                secured.say_goodbye(&goodbye).await;
            });
            return;
        };
        let (queue, outbox) = mpsc::channel(self.queue_size);
        let link = Arc::new(Link {
            peer,
            dialed_by,
            queue,
            last_heard: AtomicU64::new(0),
            closed: self.shutdown.child_token(),
            established: Instant::now(),
            epoch: self.epoch,
            pair,
        });
        link.heard();
        let replaced = {
            let mut links = self.lock();
            if let Some(existing) = links.get(&link.peer.node_id).filter(|l| !l.is_closed()) {
                let keep_existing = existing.peer.incarnation > link.peer.incarnation
                    || (existing.peer.incarnation == link.peer.incarnation
                        && existing.dialed_by <= link.dialed_by);
                if keep_existing {
                    drop(links);
                    tokio::spawn(async move {
                        let goodbye = Frame::Goodbye {
                            reason: "duplicate link".into(),
                        };
                        secured.say_goodbye(&goodbye).await;
                    });
                    return;
                }
            }
            links.insert(link.peer.node_id, link.clone())
        };
        if let Some(old) = replaced {
            old.close();
        }
        // Before anything new: what the last link left unacknowledged.
        let resent = link.pair.attach(&link);
        if resent > 0 {
            self.resent.fetch_add(resent as u64, Ordering::Relaxed);
            tracing::info!(peer = %link.peer.name, stanzas = resent, "sending again what the last link left unacknowledged");
        }
        let (reader, writer) = secured.split();
        tokio::spawn(write_loop(link.clone(), writer, outbox));
        tokio::spawn(heartbeat_loop(link.clone(), self.heartbeat));
        tracing::info!(peer = %link.peer.name, node = link.peer.node_id, "cluster link up");
        handler.on_link_up(&link);
        tokio::spawn(self.clone().read_loop(link, reader, handler));
    }

    async fn read_loop(
        self: Arc<Self>,
        link: Arc<Link>,
        reader: LinkReader,
        handler: Arc<dyn FrameHandler>,
    ) {
        // Frames are small and many: one read per frame header would cost
        // two system calls per stanza.
        let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, reader);
        let mut buffer = Vec::new();
        let reason = loop {
            let frame = tokio::select! {
                frame = read_frame(&mut reader, &mut buffer) => frame,
                () = link.closed.cancelled() => break "closed".to_owned(),
            };
            match frame {
                Ok(Some(Frame::Goodbye { reason })) => {
                    break format!("peer said goodbye: {reason}");
                }
                Ok(Some(Frame::RaftReply { id, payload })) => {
                    link.heard();
                    // A late answer to a vote or an append: Raft asks again.
                    let _late = self.complete_call(id, payload);
                }
                Ok(Some(Frame::HandoverReply { id, reply })) => {
                    link.heard();
                    // A session that came too late: the peer let it go, so
                    // the handler must not lose what it carries.
                    if let Err(unclaimed) = self.complete_call(id, reply.to_vec()) {
                        let reply = unclaimed.into();
                        handler
                            .on_frame(&link, Frame::HandoverReply { id, reply })
                            .await;
                    }
                }
                Ok(Some(Frame::Received { up_to })) => {
                    link.heard();
                    link.pair.acknowledged_up_to(up_to);
                }
                Ok(Some(Frame::Envelope(envelope))) => {
                    link.heard();
                    if link.pair.first_delivery(envelope.seq) {
                        handler.on_frame(&link, Frame::Envelope(envelope)).await;
                    } else {
                        self.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    if link.pair.unacknowledged_deliveries() >= ACK_EVERY {
                        link.acknowledge();
                    }
                }
                Ok(Some(frame)) => {
                    link.heard();
                    handler.on_frame(&link, frame).await;
                }
                Ok(None) => break "closed by the peer".to_owned(),
                Err(FrameError::Io(error)) => break format!("connection error: {error}"),
                Err(error) => break error.to_string(),
            }
        };
        link.close();
        let removed = {
            let mut links = self.lock();
            match links.get(&link.peer.node_id) {
                Some(current) if Arc::ptr_eq(current, &link) => {
                    links.remove(&link.peer.node_id).is_some()
                }
                _ => false,
            }
        };
        // What it carried unacknowledged waits for the next link.
        link.pair.detach(&link);
        if removed {
            tracing::info!(peer = %link.peer.name, node = link.peer.node_id, %reason, "cluster link down");
            handler.on_link_down(&link, &reason);
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Says goodbye on every link and closes them (clean leave); no new
    /// links are made after this.
    /// Waits, at most `bound`, until every peer has acknowledged what was
    /// sent to it, so a leaving node hands nothing back for routing again.
    pub async fn wait_acknowledged(&self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        while self
            .links()
            .iter()
            .any(|link| link.pair.unacknowledged() > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn close_all(&self, reason: &str) {
        self.closing.store(true, Ordering::Release);
        for link in self.links() {
            // What arrived was handled: the peer need not hand it back.
            link.acknowledge();
            let _ = link.send(Frame::Goodbye {
                reason: reason.to_owned(),
            });
        }
        // Give the writers a moment to flush the goodbyes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for link in self.links() {
            link.close();
        }
    }
}

fn goodbye_for_shutdown() -> Frame {
    Frame::Goodbye {
        reason: "the node is shutting down".to_owned(),
    }
}

async fn write_loop(link: Arc<Link>, mut writer: LinkWriter, mut outbox: mpsc::Receiver<Frame>) {
    let mut out = Vec::with_capacity(4096);
    // A closed link still writes what was queued before (an acknowledgement,
    // a goodbye), for as long as the peer reads it.
    let linger = async {
        link.closed.cancelled().await;
        tokio::time::sleep(LINGER).await;
    };
    tokio::pin!(linger);
    loop {
        let first = tokio::select! {
            biased;
            frame = outbox.recv() => frame,
            () = link.closed.cancelled() => None,
        };
        let Some(first) = first else { break };
        out.clear();
        let goodbye = matches!(first, Frame::Goodbye { .. });
        let mut highest = 0;
        encode_frame(&link, &first, &mut out, &mut highest);
        while out.len() < WRITE_BATCH {
            match outbox.try_recv() {
                Ok(frame) => encode_frame(&link, &frame, &mut out, &mut highest),
                Err(_) => break,
            }
        }
        if highest > 0 {
            link.pair.writing_up_to(highest);
        }
        let written = tokio::select! {
            // TLS keeps what it encrypted until flushed.
            written = write_and_flush(&mut writer, &out) => written,
            // A peer that stopped reading (the link was cut) cannot hold
            // the writer.
            () = &mut linger => break,
        };
        if let Err(error) = written {
            tracing::debug!(peer = %link.peer.name, %error, "cluster link write failed");
            break;
        }
        if goodbye {
            break;
        }
        if out.capacity() > 4 * WRITE_BATCH {
            out = Vec::with_capacity(4096);
        }
    }
    link.close();
    let _ = writer.shutdown().await;
}

/// Appends `frame` to the batch; `highest` follows the envelope numbers in it.
fn encode_frame(link: &Link, frame: &Frame, out: &mut Vec<u8>, highest: &mut u64) {
    if let Frame::Envelope(envelope) = frame {
        *highest = (*highest).max(envelope.seq);
    }
    if let Err(error) = encode_into(frame, out) {
        tracing::error!(peer = %link.peer.name, %error, "frame dropped: cannot encode");
    }
}

async fn write_and_flush<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

async fn heartbeat_loop(link: Arc<Link>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = link.closed.cancelled() => return,
        }
        // A full queue means traffic is flowing anyway; the peer hears us.
        let _ = link.send(Frame::Heartbeat);
        link.acknowledge();
    }
}
