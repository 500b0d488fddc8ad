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
//! Stanzas are acknowledged: each side counts the envelopes it received on
//! a link and says so ([`Frame::Received`]) with its heartbeats, and every
//! few hundred envelopes. A link keeps what it sent until acknowledged, and
//! when it dies hands the rest back ([`FrameHandler::on_undelivered`]): a
//! link that was cut silently (a partition, a half-open connection) takes
//! nothing with it. The price is that envelopes received but not yet
//! acknowledged when a link dies are handed back too, so they may arrive
//! twice.

pub mod frame;
pub mod handshake;
mod secured;
pub mod tls;

use std::collections::{HashMap, VecDeque};
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
    /// A closed link's envelopes that the peer did not acknowledge, oldest
    /// first: they may never have arrived.
    fn on_undelivered(&self, link: &Arc<Link>, envelopes: Vec<WireEnvelope>);
}

/// Envelopes sent on a link and not acknowledged yet.
#[derive(Default)]
struct Unacked {
    /// Envelopes sent before the first one in `envelopes`.
    base: u64,
    envelopes: VecDeque<WireEnvelope>,
    /// Handed back: the link takes no more.
    taken: bool,
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
    unacked: Mutex<Unacked>,
    /// At most this many envelopes are kept for a peer that does not
    /// acknowledge (the send queue's size); older ones are forgotten.
    keep: usize,
    /// Envelopes received from the peer, and the count last told to it.
    received: AtomicU64,
    acknowledged: AtomicU64,
}

impl Link {
    pub fn node(&self) -> NodeId {
        NodeId(self.peer.node_id)
    }

    /// Queues a frame; fails at once when the queue is full or the link
    /// closed. An envelope is also kept until the peer acknowledges it.
    pub fn send(&self, frame: Frame) -> Result<(), ForwardError> {
        let Frame::Envelope(envelope) = &frame else {
            return self.enqueue(frame);
        };
        let kept = envelope.clone();
        // Under the lock, so that the kept order is the sent order.
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        if unacked.taken {
            return Err(ForwardError::LinkDown(self.node()));
        }
        self.enqueue(frame)?;
        self.keep_unacked(&mut unacked, kept);
        Ok(())
    }

    /// Queues a stanza, waiting up to `patience` for room in a full queue:
    /// a busy peer slows its senders down instead of failing them.
    pub async fn send_waiting(
        &self,
        envelope: WireEnvelope,
        patience: Duration,
    ) -> Result<(), ForwardError> {
        let permit = match tokio::time::timeout(patience, self.queue.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(ForwardError::LinkDown(self.node())),
            Err(_) => return Err(ForwardError::QueueFull(self.node())),
        };
        let kept = envelope.clone();
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        if unacked.taken {
            return Err(ForwardError::LinkDown(self.node()));
        }
        permit.send(Frame::Envelope(envelope));
        self.keep_unacked(&mut unacked, kept);
        Ok(())
    }

    fn keep_unacked(&self, unacked: &mut Unacked, kept: WireEnvelope) {
        unacked.envelopes.push_back(kept);
        if unacked.envelopes.len() > self.keep {
            unacked.envelopes.pop_front();
            unacked.base += 1;
        }
    }

    fn enqueue(&self, frame: Frame) -> Result<(), ForwardError> {
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

    /// The peer received `count` envelopes in all: forget those.
    fn acknowledged_by_peer(&self, count: u64) {
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        while unacked.base < count && unacked.envelopes.pop_front().is_some() {
            unacked.base += 1;
        }
    }

    /// The envelopes never acknowledged; the link keeps no more after this.
    /// Stanzas sent on this link that the peer has not acknowledged yet.
    fn unacknowledged(&self) -> usize {
        self.unacked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .envelopes
            .len()
    }

    fn take_unacked(&self) -> Vec<WireEnvelope> {
        let mut unacked = self.unacked.lock().unwrap_or_else(|p| p.into_inner());
        unacked.taken = true;
        unacked.envelopes.drain(..).collect()
    }

    /// Tells the peer how many envelopes arrived, if that changed.
    pub fn acknowledge(&self) {
        let received = self.received.load(Ordering::Acquire);
        if self.acknowledged.swap(received, Ordering::AcqRel) != received {
            // A full queue: forget that it was said, so that the next
            // heartbeat says it again.
            if self
                .enqueue(Frame::Received {
                    envelopes: received,
                })
                .is_err()
            {
                self.acknowledged.store(0, Ordering::Release);
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

    /// Queues a frame for a peer.
    pub fn send(&self, node: NodeId, frame: Frame) -> Result<(), ForwardError> {
        match self.link(node.0) {
            Some(link) => link.send(frame),
            None => Err(ForwardError::LinkDown(node)),
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

    /// Delivers the reply to a pending call.
    pub fn complete_call(&self, id: u64, payload: Vec<u8>) {
        if let Some(reply) = self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        {
            let _late = reply.send(payload);
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
        let (queue, outbox) = mpsc::channel(self.queue_size);
        let link = Arc::new(Link {
            peer,
            dialed_by,
            queue,
            last_heard: AtomicU64::new(0),
            closed: self.shutdown.child_token(),
            established: Instant::now(),
            epoch: self.epoch,
            unacked: Mutex::new(Unacked::default()),
            keep: self.queue_size,
            received: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
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
                    self.complete_call(id, payload);
                }
                Ok(Some(Frame::HandoverReply { id, reply })) => {
                    link.heard();
                    self.complete_call(id, reply.to_vec());
                }
                Ok(Some(Frame::Received { envelopes })) => {
                    link.heard();
                    link.acknowledged_by_peer(envelopes);
                }
                Ok(Some(frame @ Frame::Envelope(_))) => {
                    link.heard();
                    handler.on_frame(&link, frame).await;
                    let received = link.received.fetch_add(1, Ordering::AcqRel) + 1;
                    if received.saturating_sub(link.acknowledged.load(Ordering::Acquire))
                        >= ACK_EVERY
                    {
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
        if removed {
            tracing::info!(peer = %link.peer.name, node = link.peer.node_id, %reason, "cluster link down");
            handler.on_link_down(&link, &reason);
        }
        let undelivered = link.take_unacked();
        if !undelivered.is_empty() {
            handler.on_undelivered(&link, undelivered);
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
        while self.links().iter().any(|link| link.unacknowledged() > 0)
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
        if let Err(error) = encode_into(&first, &mut out) {
            tracing::error!(peer = %link.peer.name, %error, "frame dropped: cannot encode");
        }
        while out.len() < WRITE_BATCH {
            match outbox.try_recv() {
                Ok(frame) => {
                    if let Err(error) = encode_into(&frame, &mut out) {
                        tracing::error!(peer = %link.peer.name, %error, "frame dropped: cannot encode");
                    }
                }
                Err(_) => break,
            }
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
