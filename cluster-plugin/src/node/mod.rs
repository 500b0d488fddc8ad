//! The cluster module of one node: ties the transport, the membership, the
//! failure detector and the replicated directories together, and implements
//! the server's [`Cluster`] seam. One job per file:
//!
//! - `mod.rs` (here): the node's state and its wiring at start.
//! - `dial`: keeps a link to every seed and member.
//! - `tick`: failure detection and status on a fixed beat.
//! - `decide`: the membership decisions (join, form, ready, adds and
//!   removals) as pure functions from the node's view to actions.
//! - `upkeep`: gathers that view and carries the actions out; leaving.
//! - `directory`, `interest`: replicating sessions and pub/sub interest.
//! - `invalidation`: cache invalidations and their acknowledgements.
//! - `dispatch`: what each peer frame and link event does.
//! - `admin`: counters, member history, the status the admin page shows.
//! - `seam`: the [`Cluster`] trait the server calls.
//!
//! ```text
//!            ┌──────────── tick (every heartbeat/2) ─────────────┐
//!            │ failure detector ─▶ down: purge directory,        │
//!            │                      tell the server              │
//!            │ view ─▶ decide::upkeep ─▶ actions (join, form,     │
//!            │         ready, leader removes the down member)     │
//!            │ Status to peers                                    │
//!            └────────────────────────────────────────────────────┘
//!   server ─announce─▶ directory ─flush─▶ Delta on every link
//!   server ─forward──▶ transport ─────────▶ peer ─▶ LocalDelivery
//! ```

mod admin;
mod decide;
mod dial;
mod directory;
mod dispatch;
mod interest;
mod invalidation;
mod peer_work;
mod seam;
mod tick;
mod upkeep;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use starling_core::cluster::{
    Envelope, ForwardError, LinkSecurity, LocalDelivery, MemberEvent, NodeId,
};
use starling_core::config::Config;
use starling_core::jid::Jid;
use starling_core::shutdown::Shutdown;

pub use admin::Counters;
use interest::Interest;
use invalidation::Invalidations;

use crate::failure::FailureDetector;
use crate::membership::{Membership, MembershipView, RaftTransport, Timings, TransportError};
use crate::replication::Directory;
use crate::replication::interest_acks::InterestAcks;
use crate::transport::Transport;
use crate::transport::frame::{MemberStatus, PeerInfo, WireEnvelope};
use crate::transport::tls::LinkProtection;

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

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
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
    /// Replaced when this node leaves a separately formed cluster to merge
    /// into a larger one.
    membership: Mutex<Option<Membership>>,
    /// When the current membership started (the join timeout counts from it).
    membership_started: Mutex<Instant>,
    delivery: OnceLock<Arc<dyn LocalDelivery>>,
    detector: Mutex<FailureDetector>,
    ready: AtomicBool,
    started: Instant,
    shutdown: Shutdown,
    peer_status: Mutex<HashMap<u64, MemberStatus>>,
    /// Peer infos from hellos, kept after links close (admin page, dialing).
    peers: Mutex<HashMap<u64, PeerInfo>>,
    history: Mutex<VecDeque<MemberEvent>>,
    invalidations: Invalidations,
    last_join: Mutex<HashMap<u64, Instant>>,
    /// A membership change in flight.
    changing: AtomicBool,
    this: OnceLock<std::sync::Weak<ClusterNode>>,
    /// Per peer, the server's work about its sessions, in order (`peer_work.rs`).
    peer_work: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<peer_work::PeerWork>>>,
    pub counters: Counters,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
            web_url: config.http.advertised_url(),
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
            membership: Mutex::new(None),
            membership_started: Mutex::new(Instant::now()),
            delivery: OnceLock::new(),
            detector: Mutex::new(detector),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            shutdown,
            peer_status: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            history: Mutex::new(VecDeque::new()),
            invalidations: Invalidations::default(),
            last_join: Mutex::new(HashMap::new()),
            changing: AtomicBool::new(false),
            peer_work: Mutex::new(HashMap::new()),
            this: OnceLock::new(),
            counters: Counters::default(),
        })
    }

    pub(super) fn this(&self) -> Option<Arc<ClusterNode>> {
        self.this.get().and_then(std::sync::Weak::upgrade)
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
        let membership = self.new_membership().await?;
        let views = membership.subscribe();
        *lock(&self.membership) = Some(membership);
        self.transport.set_handler(self.clone());
        tokio::spawn(self.transport.clone().accept_loop(listener));
        tokio::spawn(self.clone().dial_loop());
        tokio::spawn(self.clone().tick_loop());
        tokio::spawn(log_views(views, self.shutdown.clone()));
        tracing::info!(node = %self.me.name, id = self.id.0, bind = %self.bind, seeds = ?self.seeds, "cluster module started");
        Ok(())
    }

    /// A Raft node for this node over its peer links, in no cluster yet.
    async fn new_membership(&self) -> Result<Membership, ClusterError> {
        let raft_transport: Arc<dyn RaftTransport> =
            Arc::new(RaftOverLinks(self.transport.clone()));
        Membership::start(
            self.id.0,
            decide::member_info(&self.me),
            raft_transport,
            Timings::default(),
        )
        .await
        .map_err(|error| ClusterError::Membership(error.to_string()))
    }

    pub(super) fn membership(&self) -> Option<Membership> {
        lock(&self.membership).clone()
    }

    /// Starts a fresh, empty membership in place of the current one, for a
    /// node that leaves its cluster to join another: the old Raft node stops
    /// (its old peers stop hearing it), and the new one is in no cluster
    /// until a leader adds it. Links, sessions and readiness are untouched.
    pub(super) async fn restart_membership(&self) -> Result<(), ClusterError> {
        let fresh = self.new_membership().await?;
        let views = fresh.subscribe();
        let old = lock(&self.membership).replace(fresh);
        *lock(&self.membership_started) = Instant::now();
        if let Some(old) = old {
            old.shutdown().await;
        }
        tokio::spawn(log_views(views, self.shutdown.clone()));
        Ok(())
    }

    pub(super) fn delivery(&self) -> Option<&Arc<dyn LocalDelivery>> {
        self.delivery.get()
    }

    pub(super) fn view(&self) -> MembershipView {
        self.membership()
            .map(|membership| membership.view())
            .unwrap_or_default()
    }

    pub(super) fn is_leader(&self) -> bool {
        self.view().leader == Some(self.id.0)
    }
}

/// A peer's envelope, or `None` when its addresses are unreadable.
fn to_envelope(wire: WireEnvelope) -> Option<Envelope> {
    Some(Envelope {
        from: Jid::new(&wire.from).ok()?,
        to: Jid::new(&wire.to).ok()?,
        kind: wire.kind.into(),
        xml: wire.xml,
        hops: wire.hops,
    })
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
