//! The cluster module of one node: ties the transport, the membership, the
//! failure detector and the session directory together, and implements
//! the server's [`Cluster`] seam.
//!
//! ```text
//!            ┌──────────── tick (every heartbeat/2) ─────────────┐
//!            │ failure detector ─▶ down: purge directory,        │
//!            │                      tell the server, leader      │
//!            │                      removes the member            │
//!            │ join / bootstrap until ready; Status to peers      │
//!            └────────────────────────────────────────────────────┘
//!   server ─announce─▶ directory ─flush─▶ Delta on every link
//!   server ─forward──▶ transport ─────────▶ peer ─▶ LocalDelivery
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use starling_core::cluster::{
    BoxFuture, Cluster, Envelope, ForwardError, LocalDelivery, NodeId, PubSubEvent, ResourceEntry,
    RetryPolicy, SessionChange,
};
use starling_core::config::Config;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::shutdown::Shutdown;
use tokio::sync::oneshot;

use crate::failure::{FailureDetector, PeerState, Transition};
use crate::membership::{
    MemberInfo, Membership, MembershipView, RaftTransport, Timings, TransportError,
};
use crate::replication::Directory;
use crate::replication::interest::InterestSets;
use crate::replication::interest_acks::InterestAcks;
use crate::transport::frame::{
    DirectoryMessage, Frame, InterestMessage, MemberStatus, PROTOCOL_VERSION, PeerInfo,
    WireEnvelope,
};
use crate::transport::tls::LinkProtection;
use crate::transport::{FrameHandler, Link, Transport};
use starling_core::cluster::{
    ClusterCounters, ClusterStatus, KickReason, LinkSecurity, LinkStatus, MemberEvent, MemberRow,
};

/// How long `invalidate` waits for acknowledgements.
const INVALIDATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `pubsub_interest_applied` waits for peers to apply a change.
const INTEREST_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Member events kept for the admin page.
const HISTORY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen for cluster peers on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("membership: {0}")]
    Membership(String),
    #[error("cluster link TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsSetupError),
}

/// A stable node id from the node's name (FNV-1a), so a restarted node is
/// the same member.
pub fn node_id_of(name: &str) -> NodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    NodeId(hash.max(1))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Counters shown on the admin page and in metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub forward_failures: AtomicU64,
    pub received: AtomicU64,
    pub deltas_sent: AtomicU64,
    pub snapshots_sent: AtomicU64,
    pub resyncs: AtomicU64,
    pub invalidations: AtomicU64,
    pub invalidation_timeouts: AtomicU64,
    pub pubsub_sent: AtomicU64,
    pub pubsub_received: AtomicU64,
    pub interest_changes: AtomicU64,
    pub interest_ack_timeouts: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClusterCounters {
        ClusterCounters {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            forward_failures: self.forward_failures.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            deltas_sent: self.deltas_sent.load(Ordering::Relaxed),
            snapshots_sent: self.snapshots_sent.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            invalidation_timeouts: self.invalidation_timeouts.load(Ordering::Relaxed),
            pubsub_sent: self.pubsub_sent.load(Ordering::Relaxed),
            pubsub_received: self.pubsub_received.load(Ordering::Relaxed),
            interest_changes: self.interest_changes.load(Ordering::Relaxed),
            interest_ack_timeouts: self.interest_ack_timeouts.load(Ordering::Relaxed),
        }
    }
}

pub struct ClusterNode {
    me: PeerInfo,
    id: NodeId,
    bind: SocketAddr,
    seeds: Vec<SocketAddr>,
    config: starling_core::config::ClusterConfig,
    transport: Arc<Transport>,
    directory: Mutex<Directory>,
    /// Pub/sub nodes with watchers, here and (replicas) on each peer.
    interest: Mutex<Interest>,
    /// Who applied which of this member's interest changes; taken after
    /// `interest` when both are needed.
    interest_acks: Mutex<InterestAcks>,
    membership: OnceLock<Membership>,
    delivery: OnceLock<Arc<dyn LocalDelivery>>,
    detector: Mutex<FailureDetector>,
    ready: AtomicBool,
    started: Instant,
    shutdown: Shutdown,
    peer_status: Mutex<HashMap<u64, MemberStatus>>,
    /// Peer infos from hellos, kept after links close (admin page, dialing).
    peers: Mutex<HashMap<u64, PeerInfo>>,
    history: Mutex<VecDeque<MemberEvent>>,
    invalidations: Mutex<HashMap<u64, (usize, Option<oneshot::Sender<()>>)>>,
    next_invalidation: AtomicU64,
    last_join: Mutex<HashMap<u64, Instant>>,
    /// A membership change in flight (they can wait seconds without quorum;
    /// they run beside the tick and the links, never inside them).
    changing: AtomicBool,
    this: OnceLock<std::sync::Weak<ClusterNode>>,
    pub counters: Counters,
}

/// This member's interest set and its replicas of the peers' sets.
#[derive(Default)]
struct Interest {
    sets: InterestSets,
    /// Peers whose link could not take a change (a full send queue): they
    /// get nothing more until a snapshot, which holds every change, goes
    /// through, so their acknowledgements never skip a change.
    behind: HashSet<NodeId>,
}

impl Interest {
    /// Queues `message` on `link` unless the link is behind; a link that
    /// cannot take it falls behind.
    fn send(&mut self, link: &Link, message: InterestMessage) {
        if self.behind.contains(&link.node()) {
            return;
        }
        if link.send(Frame::Interest(message)).is_err() {
            tracing::warn!(peer = %link.peer.name, "pub/sub interest change not queued; a snapshot follows when the link has room");
            self.behind.insert(link.node());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClusterNode {
    /// Prepares the module from the config; nothing runs until [`ClusterNode::start`].
    pub fn new(config: &Config, shutdown: Shutdown) -> Arc<ClusterNode> {
        let cluster = &config.cluster;
        let id = node_id_of(&cluster.node_name);
        let advertise = if cluster.advertise.is_empty() {
            cluster.bind.to_string()
        } else {
            cluster.advertise.clone()
        };
        let incarnation = now_ms();
        let me = PeerInfo {
            node_id: id.0,
            name: cluster.node_name.clone(),
            incarnation,
            cluster_addr: advertise,
            c2s_addr: config.c2s.bind.to_string(),
            http_addr: config.http.bind.to_string(),
            max_connections: config.c2s.max_connections,
        };
        let transport = Transport::new(
            me.clone(),
            cluster.secret.as_bytes(),
            cluster.send_queue,
            Duration::from_millis(cluster.heartbeat_ms),
            shutdown.clone(),
        );
        let detector = FailureDetector::new(
            Duration::from_millis(cluster.suspect_after_ms),
            Duration::from_millis(cluster.down_after_ms),
        );
        Arc::new(ClusterNode {
            me,
            id,
            bind: cluster.bind,
            seeds: cluster.seeds.clone(),
            config: cluster.clone(),
            transport,
            directory: Mutex::new(Directory::new(incarnation)),
            interest: Mutex::new(Interest::default()),
            interest_acks: Mutex::new(InterestAcks::default()),
            membership: OnceLock::new(),
            delivery: OnceLock::new(),
            detector: Mutex::new(detector),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            shutdown,
            peer_status: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            history: Mutex::new(VecDeque::new()),
            invalidations: Mutex::new(HashMap::new()),
            next_invalidation: AtomicU64::new(1),
            last_join: Mutex::new(HashMap::new()),
            changing: AtomicBool::new(false),
            this: OnceLock::new(),
            counters: Counters::default(),
        })
    }

    fn this(&self) -> Option<Arc<ClusterNode>> {
        self.this.get().and_then(std::sync::Weak::upgrade)
    }

    /// Runs one membership change in the background unless one is running.
    fn change_membership<F>(&self, what: &'static str, change: F)
    where
        F: FnOnce(Membership) -> BoxFuture<'static, Result<(), String>> + Send + 'static,
    {
        let Some(membership) = self.membership().cloned() else {
            return;
        };
        let Some(node) = self.this() else {
            return;
        };
        if self.changing.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(async move {
            if let Err(error) = change(membership).await {
                tracing::debug!(what, %error, "membership change did not complete");
            }
            node.changing.store(false, Ordering::Release);
        });
    }

    /// Listens for peers, starts the membership and the background tasks.
    pub async fn start(
        self: &Arc<Self>,
        delivery: Arc<dyn LocalDelivery>,
    ) -> Result<(), ClusterError> {
        let _first = self.delivery.set(delivery);
        let _first = self.this.set(Arc::downgrade(self));
        let protection = LinkProtection::from_config(&self.config)?;
        match protection.kind() {
            LinkSecurity::Plaintext => tracing::warn!(
                "cluster links are clear text ([cluster] insecure_plaintext = true): anyone on \
                 the network path between members can read and alter them"
            ),
            LinkSecurity::TlsCa => tracing::info!(
                ca = %self.config.tls_ca.display(),
                "cluster links: TLS 1.3, peer certificates checked against the CA and node names"
            ),
            LinkSecurity::Tls => tracing::info!(
                "cluster links: TLS 1.3 with a certificate made at start; peers prove the secret over each session"
            ),
        }
        self.transport.set_protection(protection);
        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: self.bind,
                source,
            })?;
        let raft_transport: Arc<dyn RaftTransport> =
            Arc::new(RaftOverLinks(self.transport.clone()));
        let membership = Membership::start(
            self.id.0,
            self.member_info(&self.me),
            raft_transport,
            Timings::default(),
        )
        .await
        .map_err(|error| ClusterError::Membership(error.to_string()))?;
        let views = membership.subscribe();
        let _first = self.membership.set(membership);
        self.transport.set_handler(self.clone());
        tokio::spawn(self.transport.clone().accept_loop(listener));
        tokio::spawn(self.clone().dial_loop());
        tokio::spawn(self.clone().tick_loop());
        tokio::spawn(log_views(views, self.shutdown.clone()));
        tracing::info!(node = %self.me.name, id = self.id.0, bind = %self.bind, seeds = ?self.seeds, "cluster module started");
        Ok(())
    }

    fn membership(&self) -> Option<&Membership> {
        self.membership.get()
    }

    fn delivery(&self) -> Option<&Arc<dyn LocalDelivery>> {
        self.delivery.get()
    }

    fn member_info(&self, peer: &PeerInfo) -> MemberInfo {
        MemberInfo {
            name: peer.name.clone(),
            cluster_addr: peer.cluster_addr.clone(),
            c2s_addr: peer.c2s_addr.clone(),
            http_addr: peer.http_addr.clone(),
            max_connections: peer.max_connections,
            joined_at_ms: 0,
        }
    }

    fn view(&self) -> MembershipView {
        self.membership().map(Membership::view).unwrap_or_default()
    }

    fn is_leader(&self) -> bool {
        self.view().leader == Some(self.id.0)
    }

    // ----- background tasks -----

    /// Keeps a link to every seed and every member.
    async fn dial_loop(self: Arc<Self>) {
        let mut backoff: HashMap<SocketAddr, (Instant, Duration)> = HashMap::new();
        let mut known: HashMap<SocketAddr, u64> = HashMap::new();
        let mut dialing: HashSet<SocketAddr> = HashSet::new();
        let (done_tx, mut done_rx) =
            tokio::sync::mpsc::unbounded_channel::<(SocketAddr, Option<u64>)>();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Some((addr, result)) = done_rx.recv() => {
                    dialing.remove(&addr);
                    let (_, delay) = backoff.entry(addr).or_insert((Instant::now(), Duration::from_millis(100)));
                    match result {
                        Some(node) => {
                            known.insert(addr, node);
                            *delay = Duration::from_millis(100);
                        }
                        None => *delay = (*delay * 2).min(Duration::from_secs(2)),
                    }
                    let delay = *delay;
                    backoff.insert(addr, (Instant::now() + delay, delay));
                    continue;
                }
                () = self.shutdown.cancelled() => return,
            }
            let mut targets: HashSet<SocketAddr> = self.seeds.iter().copied().collect();
            for member in self.view().members.values() {
                if let Ok(addr) = member.cluster_addr.parse() {
                    targets.insert(addr);
                }
            }
            let own: Option<SocketAddr> = self.me.cluster_addr.parse().ok();
            // A peer that dialed us first is linked already: dialing it too
            // would only replace a link in use (and whatever it carries).
            let linked: HashSet<String> = self
                .transport
                .links()
                .iter()
                .map(|link| link.peer.cluster_addr.clone())
                .collect();
            for addr in targets {
                if linked.contains(&addr.to_string()) {
                    continue;
                }
                if Some(addr) == own || addr == self.bind || dialing.contains(&addr) {
                    continue;
                }
                if known
                    .get(&addr)
                    .is_some_and(|node| *node == self.id.0 || self.transport.link(*node).is_some())
                {
                    continue;
                }
                if backoff
                    .get(&addr)
                    .is_some_and(|(next, _)| Instant::now() < *next)
                {
                    continue;
                }
                dialing.insert(addr);
                let node = self.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let result = match node.transport.dial(addr).await {
                        Ok(peer) => Some(peer.node_id),
                        Err(crate::transport::DialError::Handshake(
                            crate::transport::handshake::HandshakeError::SelfLink(id),
                        )) => Some(id),
                        Err(error) => {
                            tracing::debug!(%addr, %error, "cannot reach cluster peer");
                            if matches!(
                                error,
                                crate::transport::DialError::Handshake(_)
                                    | crate::transport::DialError::Tls(_)
                            ) {
                                tracing::warn!(%addr, %error, "cluster peer refused");
                            }
                            None
                        }
                    };
                    let _ = done.send((addr, result));
                });
            }
        }
    }

    /// Failure detection, membership upkeep and status, on a fixed beat.
    async fn tick_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(
            (self.config.heartbeat_ms / 2).max(50),
        ));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.shutdown.cancelled() => return,
            }
            let now = Instant::now();
            let transitions = {
                let mut detector = lock(&self.detector);
                let mut transitions = Vec::new();
                for link in self.transport.links() {
                    // A member that announced its leave stays gone, though
                    // its link lives on until it says goodbye; a new link
                    // (it restarted) brings it back through `on_link_up`.
                    if detector.state(link.node()) == Some(PeerState::Leaving) {
                        continue;
                    }
                    transitions.extend(detector.heard(link.node(), link.last_heard()));
                }
                // Members never heard from since this node started age from
                // the start, so a member that died meanwhile is found down.
                for id in self.view().members.keys() {
                    if *id != self.id.0 {
                        detector.track(NodeId(*id), self.started);
                    }
                }
                transitions.extend(detector.tick(now));
                transitions
            };
            for transition in transitions {
                self.on_transition(transition).await;
            }
            self.send_status();
            self.catch_up_interest();
            self.upkeep_membership().await;
        }
    }

    /// Sends batched directory changes to every peer.
    fn flush_now(&self) {
        let mut directory = lock(&self.directory);
        let Some(delta) = directory.take_delta() else {
            return;
        };
        // Enqueued under the directory lock, so a snapshot sent to a new
        // link is never overtaken by a delta it already contains.
        for link in self.transport.links() {
            if link.send(Frame::Directory(delta.clone())).is_err() {
                // The peer will see a sequence gap and ask for a snapshot.
                tracing::warn!(peer = %link.peer.name, "directory delta not queued");
            }
        }
        self.counters.deltas_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends the interest set whole to the links that missed a change.
    fn catch_up_interest(&self) {
        let mut interest = lock(&self.interest);
        if interest.behind.is_empty() {
            return;
        }
        let behind: Vec<NodeId> = interest.behind.drain().collect();
        for node in behind {
            // A link that went away sends a snapshot when it comes back.
            if let Some(link) = self.transport.link(node.0) {
                let snapshot = interest.sets.snapshot();
                interest.send(&link, snapshot);
            }
        }
    }

    /// Peers an interest change is waited for: every linked member that is
    /// not down or leaving.
    fn interest_peers(&self) -> Vec<NodeId> {
        let detector = lock(&self.detector);
        self.transport
            .links()
            .into_iter()
            .filter(|link| !link.is_closed())
            .map(|link| link.node())
            .filter(|node| {
                !matches!(
                    detector.state(*node),
                    Some(PeerState::Down | PeerState::Leaving)
                )
            })
            .collect()
    }

    fn send_snapshot(&self, link: &Link) {
        let directory = lock(&self.directory);
        for message in directory.snapshot() {
            if link.send(Frame::Directory(message)).is_err() {
                tracing::warn!(peer = %link.peer.name, "directory snapshot not queued");
                return;
            }
        }
        self.counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
    }

    async fn on_transition(&self, transition: Transition) {
        let node = transition.node;
        if !lock(&self.detector).is_current(&transition) {
            // Heard again while earlier transitions of the same tick were
            // handled (typically: this node was paused, and on waking every
            // peer looked silent until their new links came up).
            tracing::debug!(node = node.0, state = ?transition.to, "transition overtaken; ignored");
            return;
        }
        // A frame read on a new link can make the peer up before the link
        // is registered in `peers`; the link itself knows the name then.
        let name = lock(&self.peers)
            .get(&node.0)
            .map(|peer| peer.name.clone())
            .or_else(|| {
                self.transport
                    .link(node.0)
                    .map(|link| link.peer.name.clone())
            })
            .unwrap_or_default();
        self.record_event(node, &name, transition.to);
        match transition.to {
            PeerState::Down | PeerState::Leaving => {
                tracing::warn!(peer = %name, node = node.0, state = ?transition.to, "cluster member is down");
                // A half-open link: nothing arrives any more. A leaver's
                // link stays until its goodbye: a senior member that leaves
                // still needs it to commit its own removal.
                if transition.to == PeerState::Down {
                    if let Some(link) = self.transport.link(node.0) {
                        link.close();
                    }
                }
                let lost = lock(&self.directory).purge(node);
                lock(&self.interest).sets.purge(node);
                if let Some(delivery) = self.delivery() {
                    delivery.node_down(node, lost).await;
                }
            }
            PeerState::Up => {
                tracing::info!(peer = %name, node = node.0, "cluster member is up");
                if let Some(delivery) = self.delivery() {
                    delivery.member_up(node).await;
                }
            }
            PeerState::Suspect => {
                tracing::warn!(peer = %name, node = node.0, "cluster member is suspect");
            }
        }
    }

    fn record_event(&self, node: NodeId, name: &str, state: PeerState) {
        let mut history = lock(&self.history);
        history.push_back(MemberEvent {
            at_ms: now_ms(),
            node: node.0,
            name: name.to_owned(),
            state,
        });
        while history.len() > HISTORY {
            history.pop_front();
        }
    }

    fn own_status(&self) -> MemberStatus {
        let view = self.view();
        MemberStatus {
            initialized: view.initialized,
            leader: view.leader,
            term: view.term,
            members: view.members.keys().copied().collect(),
            down: lock(&self.detector)
                .down()
                .into_iter()
                .map(|node| node.0)
                .collect(),
            client_stanzas: self
                .delivery()
                .map(|delivery| delivery.client_stanzas())
                .unwrap_or(0),
        }
    }

    fn send_status(&self) {
        let status = self.own_status();
        for link in self.transport.links() {
            let _ = link.send(Frame::Status(status.clone()));
        }
    }

    /// Joining, bootstrapping, readiness, and the leader's removals.
    async fn upkeep_membership(&self) {
        let Some(membership) = self.membership() else {
            return;
        };
        let view = membership.view();
        let links = self.transport.links();
        if !view.initialized {
            let elapsed = self.started.elapsed();
            let statuses = lock(&self.peer_status).clone();
            let peers_uninitialized = links.iter().all(|link| {
                statuses
                    .get(&link.peer.node_id)
                    .is_some_and(|status| !status.initialized)
            });
            let lowest = links.iter().all(|link| link.peer.node_id > self.id.0);
            let all_seeds_linked = self.seeds.iter().all(|seed| {
                seed.to_string() == self.me.cluster_addr
                    || links
                        .iter()
                        .any(|link| link.peer.cluster_addr == seed.to_string())
            });
            let timed_out = elapsed >= Duration::from_millis(self.config.join_timeout_ms);
            let form = if links.is_empty() {
                timed_out
            } else {
                peers_uninitialized && lowest && (all_seeds_linked || timed_out)
            };
            if form {
                tracing::info!(node = %self.me.name, "forming a new cluster");
                self.change_membership("form a cluster", |membership| {
                    Box::pin(async move {
                        membership
                            .bootstrap()
                            .await
                            .map_err(|error| error.to_string())
                    })
                });
                return;
            }
            for link in &links {
                self.request_join(link);
            }
            return;
        }
        // Ask a leader that does not list us to add us (after a removal).
        let statuses = lock(&self.peer_status).clone();
        for link in &links {
            if let Some(status) = statuses.get(&link.peer.node_id) {
                if status.leader == Some(link.peer.node_id) && !status.members.contains(&self.id.0)
                {
                    self.request_join(link);
                }
            }
        }
        if !self.ready.load(Ordering::Relaxed) {
            let detector = lock(&self.detector);
            let directory = lock(&self.directory);
            let complete = view
                .members
                .keys()
                .filter(|id| **id != self.id.0)
                .all(|id| {
                    let node = NodeId(*id);
                    match detector.state(node) {
                        Some(PeerState::Up) => directory.has_replica(node),
                        _ => self.transport.link(*id).is_none(),
                    }
                });
            if complete && view.members.contains_key(&self.id.0) {
                self.ready.store(true, Ordering::Relaxed);
                tracing::info!(node = %self.me.name, members = view.members.len(), "cluster ready: accepting logins");
            }
        }
        if view.leader == Some(self.id.0) {
            let down: Vec<u64> = lock(&self.detector)
                .down()
                .into_iter()
                .map(|node| node.0)
                .filter(|id| view.members.contains_key(id) && *id != self.id.0)
                .collect();
            if let Some(&id) = down.first() {
                self.change_membership("remove a down member", move |membership| {
                    Box::pin(async move {
                        membership
                            .remove_member(id)
                            .await
                            .map_err(|error| error.to_string())?;
                        tracing::info!(node = id, "removed a down member");
                        Ok(())
                    })
                });
            }
        }
    }

    fn request_join(&self, link: &Link) {
        let mut last = lock(&self.last_join);
        let due = last
            .get(&link.peer.node_id)
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due {
            last.insert(link.peer.node_id, Instant::now());
            let _ = link.send(Frame::Join {
                info: self.me.clone(),
            });
        }
    }

    fn handle_join(&self, info: PeerInfo) {
        let view = self.view();
        if !view.initialized {
            return;
        }
        match view.leader {
            Some(leader) if leader == self.id.0 => {
                let mut member = self.member_info(&info);
                if let Some(existing) = view.members.get(&info.node_id) {
                    member.joined_at_ms = existing.joined_at_ms;
                    if *existing == member {
                        return;
                    }
                }
                self.change_membership("add a member", move |membership| {
                    Box::pin(async move {
                        membership
                            .add_member(info.node_id, member)
                            .await
                            .map_err(|error| error.to_string())?;
                        tracing::info!(peer = %info.name, node = info.node_id, "member added");
                        Ok(())
                    })
                });
            }
            Some(leader) => {
                let _ = self.transport.send(NodeId(leader), Frame::Join { info });
            }
            None => {}
        }
    }

    /// Announces a clean departure: pending directory changes first, then
    /// `Leave` to every peer, then the links close.
    pub async fn leave(&self) {
        self.flush_now();
        for link in self.transport.links() {
            let _ = link.send(Frame::Leave);
        }
        if self.is_leader() {
            if let Some(membership) = self.membership() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    membership.remove_member(self.id.0),
                )
                .await;
            }
        }
        // The peers acknowledge what they received when told of the leave;
        // over a TLS link that can take longer than the goodbye's flush.
        self.transport
            .wait_acknowledged(Duration::from_secs(1))
            .await;
        self.transport.close_all("the node is shutting down").await;
        if let Some(membership) = self.membership() {
            membership.shutdown().await;
        }
    }

    /// Everything the admin page shows about the cluster.
    pub fn status(&self) -> ClusterStatus {
        let view = self.view();
        // Before the detector lock: own_status takes it too (std mutexes
        // are not reentrant; taking it twice blocked the node for good).
        let own = self.own_status();
        let detector = lock(&self.detector);
        let directory = lock(&self.directory);
        let peers = lock(&self.peers).clone();
        let statuses = lock(&self.peer_status).clone();
        let mut ids: Vec<u64> = view.members.keys().copied().collect();
        for id in peers.keys() {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        if !ids.contains(&self.id.0) {
            ids.push(self.id.0);
        }
        ids.sort_unstable();
        let members = ids
            .into_iter()
            .map(|id| {
                let node = NodeId(id);
                let member = view.members.get(&id);
                let peer = if id == self.id.0 {
                    Some(&self.me)
                } else {
                    peers.get(&id)
                };
                let link = self.transport.link(id).map(|link| LinkStatus {
                    established_ms_ago: link.established.elapsed().as_millis() as u64,
                    queue_depth: link.queue_depth(),
                    heard_ms_ago: link.heard_ago().as_millis() as u64,
                });
                let state = if id == self.id.0 {
                    PeerState::Up
                } else {
                    detector.state(node).unwrap_or(PeerState::Down)
                };
                MemberRow {
                    id,
                    name: member
                        .map(|m| m.name.clone())
                        .or_else(|| peer.map(|p| p.name.clone()))
                        .unwrap_or_default(),
                    cluster_addr: member
                        .map(|m| m.cluster_addr.clone())
                        .or_else(|| peer.map(|p| p.cluster_addr.clone()))
                        .unwrap_or_default(),
                    c2s_addr: member
                        .map(|m| m.c2s_addr.clone())
                        .or_else(|| peer.map(|p| p.c2s_addr.clone()))
                        .unwrap_or_default(),
                    http_addr: member
                        .map(|m| m.http_addr.clone())
                        .or_else(|| peer.map(|p| p.http_addr.clone()))
                        .unwrap_or_default(),
                    max_connections: member
                        .map(|m| m.max_connections)
                        .or_else(|| peer.map(|p| p.max_connections))
                        .unwrap_or(0),
                    incarnation: peer.map(|p| p.incarnation).unwrap_or(0),
                    joined_at_ms: member.map(|m| m.joined_at_ms).unwrap_or(0),
                    member: member.is_some(),
                    senior: view.leader == Some(id),
                    state,
                    sessions: if id == self.id.0 {
                        directory.local_sessions()
                    } else {
                        directory.sessions_of(node)
                    },
                    client_stanzas: if id == self.id.0 {
                        own.client_stanzas
                    } else {
                        statuses.get(&id).map_or(0, |status| status.client_stanzas)
                    },
                    link,
                    view_agrees: id == self.id.0
                        || statuses.get(&id).is_none_or(|status| {
                            status.leader == own.leader && status.members == own.members
                        }),
                }
            })
            .collect();
        ClusterStatus {
            this_node: self.id.0,
            this_name: self.me.name.clone(),
            leader: view.leader,
            term: view.term,
            ready: self.ready.load(Ordering::Relaxed),
            protocol_version: PROTOCOL_VERSION,
            link_security: self.transport.link_security(),
            members,
            history: lock(&self.history).iter().cloned().collect(),
            remote_sessions: directory.remote_sessions(),
            counters: self.counters.snapshot(),
        }
    }

    fn to_envelope(&self, wire: WireEnvelope) -> Option<Envelope> {
        Some(Envelope {
            from: Jid::new(&wire.from).ok()?,
            to: Jid::new(&wire.to).ok()?,
            kind: wire.kind.into(),
            xml: wire.xml,
            hops: wire.hops,
        })
    }
}

impl FrameHandler for ClusterNode {
    fn on_frame<'a>(&'a self, link: &'a Arc<Link>, frame: Frame) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let node = link.node();
            match frame {
                Frame::Heartbeat => {}
                Frame::Status(status) => {
                    lock(&self.peer_status).insert(node.0, status);
                }
                Frame::Envelope(wire) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    match (self.to_envelope(wire), self.delivery()) {
                        (Some(envelope), Some(delivery)) => delivery.deliver(envelope, node).await,
                        (None, _) => {
                            tracing::warn!(peer = %link.peer.name, "stanza with unreadable addresses from peer")
                        }
                        (_, None) => {
                            tracing::error!("stanza from a peer before the server was ready")
                        }
                    }
                }
                Frame::Directory(DirectoryMessage::ResyncRequest) => {
                    self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                    self.send_snapshot(link);
                }
                Frame::Directory(message) => {
                    let applied = lock(&self.directory).apply(node, message);
                    if applied.resync {
                        let _ = link.send(Frame::Directory(DirectoryMessage::ResyncRequest));
                    }
                    if !applied.lost.is_empty() {
                        if let Some(delivery) = self.delivery() {
                            delivery.node_down(node, applied.lost).await;
                        }
                    }
                    if !applied.regained.is_empty() {
                        if let Some(delivery) = self.delivery() {
                            delivery.sessions_regained(node, applied.regained).await;
                        }
                    }
                }
                Frame::RaftRequest { id, payload } => {
                    if let Some(membership) = self.membership().cloned() {
                        let link = link.clone();
                        tokio::spawn(async move {
                            let payload = membership.handle(&payload).await;
                            let _ = link.send(Frame::RaftReply { id, payload });
                        });
                    }
                }
                Frame::HandoverRequest { id, request } => match self.delivery().cloned() {
                    // Beside the link's reader: the holder of the session
                    // may take a moment to let it go.
                    Some(delivery) => {
                        let link = link.clone();
                        tokio::spawn(async move {
                            let reply = delivery.handover(request, node).await;
                            if link.send(Frame::HandoverReply { id, reply }).is_err() {
                                tracing::warn!(peer = %link.peer.name, "session handover reply not queued; the peer's resumption fails");
                            }
                        });
                    }
                    None => tracing::error!("session handover request before the server was ready"),
                },
                Frame::Join { info } => self.handle_join(info),
                Frame::Leave => {
                    // Before it goes: what it sent arrived, it need not
                    // route it again.
                    link.acknowledge();
                    let transition = lock(&self.detector).leaving(node, Instant::now());
                    if let Some(transition) = transition {
                        self.on_transition(transition).await;
                    }
                    if self.is_leader() {
                        let id = node.0;
                        self.change_membership("remove a leaving member", move |membership| {
                            Box::pin(async move {
                                membership
                                    .remove_member(id)
                                    .await
                                    .map_err(|error| error.to_string())
                            })
                        });
                    }
                }
                Frame::Kick { jid, admin } => match (FullJid::new(&jid), self.delivery()) {
                    (Ok(jid), Some(delivery)) => delivery.kick(
                        jid,
                        if admin {
                            KickReason::Admin
                        } else {
                            KickReason::Conflict
                        },
                    ),
                    _ => tracing::warn!(%jid, "kick for an unreadable JID"),
                },
                Frame::Invalidate { id, cache, key } => {
                    if let Some(delivery) = self.delivery() {
                        delivery.invalidate(&cache, &key).await;
                    }
                    let _ = link.send(Frame::InvalidateAck { id });
                }
                Frame::InvalidateAck { id } => {
                    let mut waiting = lock(&self.invalidations);
                    if let Some((remaining, sender)) = waiting.get_mut(&id) {
                        *remaining = remaining.saturating_sub(1);
                        if *remaining == 0 {
                            if let Some(sender) = sender.take() {
                                let _ = sender.send(());
                            }
                            waiting.remove(&id);
                        }
                    }
                }
                Frame::OfflineStored { user } => {
                    if let (Ok(user), Some(delivery)) = (BareJid::new(&user), self.delivery()) {
                        delivery.offline_stored(user).await;
                    }
                }
                Frame::Interest(message) => {
                    let seq = lock(&self.interest).sets.apply(node, message);
                    if link.send(Frame::InterestAck { seq }).is_err() {
                        // A later acknowledgement covers this one.
                        tracing::debug!(peer = %link.peer.name, seq, "interest acknowledgement not queued");
                    }
                }
                Frame::InterestAck { seq } => {
                    // Only the current link speaks for the peer's replica.
                    let current = self
                        .transport
                        .link(node.0)
                        .is_some_and(|current| Arc::ptr_eq(&current, link));
                    if current {
                        lock(&self.interest_acks).acknowledged(node, seq);
                    }
                }
                Frame::PubSub(event) => {
                    self.counters
                        .pubsub_received
                        .fetch_add(1, Ordering::Relaxed);
                    match self.delivery() {
                        Some(delivery) => delivery.pubsub_event(event, node),
                        None => {
                            tracing::error!("pub/sub event from a peer before the server was ready")
                        }
                    }
                }
                Frame::Hello { .. }
                | Frame::Auth { .. }
                | Frame::Goodbye { .. }
                | Frame::RaftReply { .. }
                | Frame::HandoverReply { .. }
                | Frame::Received { .. } => {}
            }
        })
    }

    fn on_link_up(&self, link: &Arc<Link>) {
        lock(&self.peers).insert(link.peer.node_id, link.peer.clone());
        let transition = lock(&self.detector).heard(link.node(), Instant::now());
        self.send_snapshot(link);
        {
            // Under the lock: no change is sent between reading and queueing.
            let mut interest = lock(&self.interest);
            interest.behind.remove(&link.node());
            lock(&self.interest_acks).link_up(link.node());
            let snapshot = interest.sets.snapshot();
            interest.send(link, snapshot);
        }
        let _ = link.send(Frame::Status(self.own_status()));
        if let Some(transition) = transition {
            let name = link.peer.name.clone();
            self.record_event(transition.node, &name, transition.to);
            tracing::info!(peer = %name, node = transition.node.0, "cluster member is up");
            if let Some(delivery) = self.delivery().cloned() {
                let node = transition.node;
                tokio::spawn(async move { delivery.member_up(node).await });
            }
        }
    }

    fn on_undelivered(&self, link: &Arc<Link>, envelopes: Vec<WireEnvelope>) {
        tracing::info!(peer = %link.peer.name, stanzas = envelopes.len(), "routing again what the peer did not acknowledge");
        let (Some(node), Some(delivery)) = (self.this(), self.delivery().cloned()) else {
            return;
        };
        // As if just received for a session that is gone: routed again by
        // the usual rules, so a message to a user now unreachable is stored
        // and an iq is answered with an error.
        tokio::spawn(async move {
            for wire in envelopes {
                if let Some(envelope) = node.to_envelope(wire) {
                    delivery.deliver(envelope, node.id).await;
                }
            }
        });
    }

    fn on_link_down(&self, link: &Arc<Link>, reason: &str) {
        tracing::debug!(peer = %link.peer.name, %reason, "link closed; the failure detector decides");
        lock(&self.peer_status).remove(&link.peer.node_id);
        lock(&self.interest).behind.remove(&link.node());
        lock(&self.interest_acks).link_down(link.node());
    }
}

impl Cluster for ClusterNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn announce(&self, change: SessionChange) {
        lock(&self.directory).record(&change);
        // Sent at once: a client told "bound" may be messaged from another
        // node within a millisecond, and that node should already know.
        self.flush_now();
    }

    fn locate(&self, jid: &FullJid) -> Option<NodeId> {
        lock(&self.directory).locate(jid)
    }

    fn remote_resources(&self, jid: &BareJid) -> Vec<ResourceEntry> {
        lock(&self.directory).resources(jid)
    }

    fn forward(&self, node: NodeId, envelope: Envelope) -> Result<(), ForwardError> {
        // Session changes recorded before this stanza reach the peer first:
        // whoever receives a presence or a message from a session that just
        // bound or changed priority can route back to it by the new state.
        self.flush_now();
        let wire = WireEnvelope {
            from: envelope.from.to_string(),
            to: envelope.to.to_string(),
            kind: envelope.kind.into(),
            xml: envelope.xml,
            hops: envelope.hops,
        };
        let result = self.transport.send(node, Frame::Envelope(wire));
        let counter = if result.is_ok() {
            &self.counters.forwarded
        } else {
            &self.counters.forward_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn forward_waiting(
        &self,
        node: NodeId,
        envelope: Envelope,
        patience: Duration,
    ) -> BoxFuture<'_, Result<(), ForwardError>> {
        Box::pin(async move {
            self.flush_now();
            let wire = WireEnvelope {
                from: envelope.from.to_string(),
                to: envelope.to.to_string(),
                kind: envelope.kind.into(),
                xml: envelope.xml,
                hops: envelope.hops,
            };
            let result = match self.transport.link(node.0) {
                Some(link) => link.send_waiting(wire, patience).await,
                None => Err(ForwardError::LinkDown(node)),
            };
            let counter = if result.is_ok() {
                &self.counters.forwarded
            } else {
                &self.counters.forward_failures
            };
            counter.fetch_add(1, Ordering::Relaxed);
            result
        })
    }

    fn miss_retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.config.lookup_attempts,
            window: Duration::from_millis(self.config.lookup_window_ms),
        }
    }

    fn kick(&self, node: NodeId, jid: &FullJid, reason: KickReason) {
        let _ = self.transport.send(
            node,
            Frame::Kick {
                jid: jid.to_string(),
                admin: reason == KickReason::Admin,
            },
        );
    }

    fn invalidate(&self, cache: &'static str, key: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let up: Vec<Arc<Link>> = {
                let detector = lock(&self.detector);
                self.transport
                    .links()
                    .into_iter()
                    .filter(|link| detector.state(link.node()) == Some(PeerState::Up))
                    .collect()
            };
            if up.is_empty() {
                return;
            }
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
            let id = self.next_invalidation.fetch_add(1, Ordering::Relaxed);
            let (done, wait) = oneshot::channel();
            lock(&self.invalidations).insert(id, (up.len(), Some(done)));
            let mut sent = 0;
            for link in &up {
                let frame = Frame::Invalidate {
                    id,
                    cache: cache.to_owned(),
                    key: key.clone(),
                };
                if link.send(frame).is_ok() {
                    sent += 1;
                }
            }
            if sent < up.len() {
                let mut waiting = lock(&self.invalidations);
                if let Some((remaining, _)) = waiting.get_mut(&id) {
                    *remaining = remaining.saturating_sub(up.len() - sent);
                }
                if sent == 0 {
                    waiting.remove(&id);
                    return;
                }
            }
            if tokio::time::timeout(INVALIDATE_TIMEOUT, wait)
                .await
                .is_err()
            {
                self.counters
                    .invalidation_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(cache, %key, "a peer did not acknowledge a cache invalidation in time");
                lock(&self.invalidations).remove(&id);
            }
        })
    }

    fn status(&self) -> ClusterStatus {
        ClusterNode::status(self)
    }

    fn pubsub_interest(&self, node: &str, interested: bool) {
        let mut interest = lock(&self.interest);
        let Some(change) = interest.sets.set_local(node, interested) else {
            return;
        };
        self.counters
            .interest_changes
            .fetch_add(1, Ordering::Relaxed);
        // Queued under the lock, so a snapshot for a link coming up now
        // is never overtaken by a change it already contains.
        for link in self.transport.links() {
            interest.send(&link, change.clone());
        }
    }

    fn pubsub_interest_applied(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let seq = lock(&self.interest).sets.seq();
            let peers = self.interest_peers();
            let Some(wait) = lock(&self.interest_acks).wait(seq, peers) else {
                return;
            };
            if tokio::time::timeout(INTEREST_ACK_TIMEOUT, wait.applied)
                .await
                .is_err()
            {
                let silent = lock(&self.interest_acks).abandon(wait.id);
                self.counters
                    .interest_ack_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                let names: Vec<String> = {
                    let peers = lock(&self.peers);
                    silent
                        .iter()
                        .map(|node| {
                            peers
                                .get(&node.0)
                                .map_or_else(|| node.to_string(), |peer| peer.name.clone())
                        })
                        .collect()
                };
                tracing::warn!(seq, peers = %names.join(","), timeout = ?INTEREST_ACK_TIMEOUT, "peers did not confirm a pub/sub interest change in time; answering anyway");
            }
        })
    }

    fn pubsub_interested(&self, node: &str) -> Vec<NodeId> {
        lock(&self.interest).sets.interested(node)
    }

    fn pubsub_send(&self, node: NodeId, event: PubSubEvent) -> Result<(), ForwardError> {
        let result = self.transport.send(node, Frame::PubSub(event));
        if result.is_ok() {
            self.counters.pubsub_sent.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn handover(
        &self,
        node: NodeId,
        request: bytes::Bytes,
        patience: Duration,
    ) -> BoxFuture<'_, Result<bytes::Bytes, ForwardError>> {
        let call = self
            .transport
            .call_with(node.0, patience, move |id| Frame::HandoverRequest {
                id,
                request,
            });
        Box::pin(async move { call.await.map(bytes::Bytes::from) })
    }

    fn offline_stored(&self, node: NodeId, user: &BareJid) {
        let _ = self.transport.send(
            node,
            Frame::OfflineStored {
                user: user.to_string(),
            },
        );
    }
}

/// Logs every change of the senior member or of the member list as this
/// node sees it, so that an operator can follow membership (who replaced a
/// lost leader, when a member was removed) from any node's log alone.
async fn log_views(mut views: tokio::sync::watch::Receiver<MembershipView>, shutdown: Shutdown) {
    let mut logged: Option<(Option<u64>, Vec<u64>)> = None;
    loop {
        let view = views.borrow_and_update().clone();
        let key = (view.leader, view.members.keys().copied().collect());
        if view.initialized && logged.as_ref() != Some(&key) {
            let senior = view
                .leader
                .and_then(|id| view.members.get(&id))
                .map_or("none", |member| member.name.as_str());
            let members: Vec<&str> = view.members.values().map(|m| m.name.as_str()).collect();
            tracing::info!(senior = %senior, members = %members.join(","), term = view.term, "membership view");
            logged = Some(key);
        }
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

/// openraft's RPCs over the peer links.
struct RaftOverLinks(Arc<Transport>);

impl RaftTransport for RaftOverLinks {
    fn call(
        &self,
        target: u64,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>,
    > {
        let call = self.0.call(target, payload, timeout);
        Box::pin(async move {
            call.await.map_err(|error| match error {
                ForwardError::QueueFull(_)
                | ForwardError::LinkDown(_)
                | ForwardError::UnknownNode(_) => TransportError::Unreachable(target),
            })
        })
    }
}
