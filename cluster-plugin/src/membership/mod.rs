//! Cluster membership held by openraft (the Raft consensus algorithm): which
//! nodes are members, with what addresses, and which member is the senior
//! member (the Raft leader). Membership owns the Raft node, its in-memory
//! log and state machine, and the view other modules read; it does not own
//! the peer links (the transport carries its payloads) nor the decision that
//! a member is dead (the failure detector asks the senior member to remove
//! it).
//!
//! ```text
//!   join request ─┐        failure detector ─┐
//!                 ▼                          ▼
//!   Membership::add_member          Membership::remove_member
//!          (senior member only; NotLeader elsewhere)
//!                 │
//!                 ▼
//!        openraft Raft ◀── Membership::handle ◀── payloads from peers
//!         │        │
//!         │        └──▶ network::PeerClient ──▶ dyn RaftTransport (peer links)
//!         ▼
//!    RaftMetrics ──▶ MembershipView (watch channel: admin page, replication,
//!                                    transport, join routing)
//! ```
//!
//! Joins go learner first: the new member receives the log as a non-voter,
//! and becomes a voter once caught up, so an unreachable joiner never stalls
//! the quorum. Member infos live in the Raft membership config itself.
//! Changes that cannot commit (no quorum) fail after a bounded wait; the rest
//! of the cluster does not wait for membership.
//!
//! Nothing is persisted. A member that restarts comes back empty under the
//! same id, is still a voter in the others' config, and the leader replays
//! the log (or sends a snapshot) to it. This needs openraft's
//! `loosen-follower-log-revert` feature: without it, openraft takes a
//! follower whose log went backwards for a bug (a panic in the leader's Raft
//! task in debug builds; broken replication to that member in release
//! builds). The price of forgetting: an emptied voter may grant its vote to
//! a candidate that lacks the latest committed change, which can then be
//! lost. Membership is the only data here, and the failure detector and
//! joining nodes retry their requests, so such a loss is redone rather than
//! fatal.

mod changes;
mod error;
mod network;
mod plan;
mod store;
mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{InitializeError, RaftError};
use openraft::{RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

pub use error::MembershipError;
pub use network::{RaftTransport, TransportError};
pub use types::{MemberId, MemberInfo, MembershipView};

use network::NetworkFactory;
use store::{LogStore, StateMachineStore};
use types::Raft;

/// Take a snapshot after this many log entries. Entries are membership
/// changes and one blank entry per elected leader, so this is rare.
const SNAPSHOT_EVERY: u64 = 500;
/// Entries kept behind a snapshot, so that a briefly absent member catches
/// up from the log rather than by snapshot.
const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 100;

/// Raft timings.
///
/// A follower that stops hearing from the leader waits out the leader's
/// lease (`election_max_ms`, during which it also refuses other candidates)
/// plus its own election timeout (drawn once in `[election_min_ms,
/// election_max_ms)`), checked every `heartbeat_ms * 3 / 2`. So a new leader
/// is elected between `election_min_ms + election_max_ms` and
/// `2 * election_max_ms + heartbeat_ms * 3 / 2` after the last heartbeat
/// from the old one: 2.0 to 2.9 s with the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Interval of the leader's heartbeats, and the timeout of each log
    /// replication request.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout; must exceed `heartbeat_ms`.
    pub election_min_ms: u64,
    /// Upper bound of the election timeout, and the leader's lease.
    pub election_max_ms: u64,
    /// How long `add_member` / `remove_member` / `bootstrap` wait for their
    /// change to commit before giving up with an error.
    pub change_timeout_ms: u64,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            heartbeat_ms: 250,
            election_min_ms: 750,
            election_max_ms: 1250,
            change_timeout_ms: 10_000,
        }
    }
}

impl Timings {
    fn raft_config(&self) -> Result<openraft::Config, MembershipError> {
        let config = openraft::Config {
            cluster_name: "starling".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            // A snapshot is a few hundred bytes; this only bounds a stuck send.
            install_snapshot_timeout: self.election_min_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| MembershipError::InvalidTimings(Box::new(e)))
    }

    fn change_timeout(&self) -> Duration {
        Duration::from_millis(self.change_timeout_ms)
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

/// This node's membership: a handle on its Raft node. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    id: MemberId,
    /// This node's own info, used when it bootstraps a cluster.
    info: MemberInfo,
    timings: Timings,
    raft: Raft,
    views: watch::Receiver<MembershipView>,
    /// Serialises this node's membership changes: openraft refuses a change
    /// while the previous one is uncommitted, and a queue is kinder to
    /// callers than that error.
    change_lock: Mutex<()>,
    view_task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.view_task.abort();
    }
}

impl Membership {
    /// Starts this node's Raft node with an empty log. The node is in no
    /// cluster until it bootstraps one or a leader adds it.
    pub async fn start(
        id: MemberId,
        info: MemberInfo,
        transport: Arc<dyn RaftTransport>,
        timings: Timings,
    ) -> Result<Membership, MembershipError> {
        let config = Arc::new(timings.raft_config()?);
        let network = NetworkFactory::new(id, transport);
        let raft = Raft::new(
            id,
            config,
            network,
            LogStore::default(),
            StateMachineStore::default(),
        )
        .await
        .map_err(|fatal| MembershipError::Fatal(Box::new(fatal)))?;

        let mut metrics = raft.metrics();
        let first = MembershipView::from_metrics(&metrics.borrow_and_update());
        let (view_tx, views) = watch::channel(first);
        let view_task = tokio::spawn(publish_views(metrics, view_tx));
        Ok(Membership {
            inner: Arc::new(Inner {
                id,
                info,
                timings,
                raft,
                views,
                change_lock: Mutex::new(()),
                view_task,
            }),
        })
    }

    /// This node's member id.
    pub fn id(&self) -> MemberId {
        self.inner.id
    }

    /// Answers a payload a peer sent through [`RaftTransport::call`]; the
    /// returned bytes are the reply to send back.
    pub async fn handle(&self, payload: &[u8]) -> Vec<u8> {
        network::serve(&self.inner.raft, self.inner.id, payload).await
    }

    /// Forms a new one-member cluster with this node and waits until it leads
    /// it.
    ///
    /// Only for a node that found no cluster to join: a node that bootstraps
    /// while others still count it as a member starts a second, separate
    /// cluster.
    pub async fn bootstrap(&self) -> Result<(), MembershipError> {
        let _change = self.inner.change_lock.lock().await;
        let started = Instant::now();
        let deadline = started + self.inner.timings.change_timeout();
        if self.view().initialized {
            return Err(MembershipError::AlreadyInitialized);
        }
        let mut info = self.inner.info.clone();
        info.joined_at_ms = now_ms();
        let members = BTreeMap::from([(self.inner.id, info)]);
        match self.inner.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Err(MembershipError::AlreadyInitialized);
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                return Err(MembershipError::Bug(e.to_string()));
            }
            Err(RaftError::Fatal(fatal)) => return Err(MembershipError::Fatal(Box::new(fatal))),
        }
        let me = self.inner.id;
        let leading = self
            .wait_metrics(deadline, |m| {
                (m.state == ServerState::Leader && m.current_leader == Some(me)).then_some(())
            })
            .await;
        leading.ok_or(MembershipError::NoQuorum {
            waited: started.elapsed(),
        })
    }

    /// The current view. Cheap: a clone of the last published view.
    pub fn view(&self) -> MembershipView {
        self.inner.views.borrow().clone()
    }

    /// A receiver that sees every change of the view (leader, term, members,
    /// initialized).
    pub fn subscribe(&self) -> watch::Receiver<MembershipView> {
        self.inner.views.clone()
    }

    /// Stops the Raft node. Requests answered afterwards fail with
    /// [`MembershipError::Fatal`]; peers see this node as unreachable.
    pub async fn shutdown(&self) {
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, member = self.inner.id, "raft task ended badly");
        }
    }

    /// Waits until `check` returns something for the current metrics, or
    /// until `deadline`.
    async fn wait_metrics<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&RaftMetrics<MemberId, MemberInfo>) -> Option<T>,
    ) -> Option<T> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let found = check(&metrics.borrow_and_update());
            if found.is_some() {
                return found;
            }
            match timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                // Deadline passed, or the raft stopped (no more metrics).
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

/// Publishes a new view whenever openraft's metrics change what it shows.
/// Ends when the Raft node stops.
async fn publish_views(
    mut metrics: watch::Receiver<RaftMetrics<MemberId, MemberInfo>>,
    views: watch::Sender<MembershipView>,
) {
    while metrics.changed().await.is_ok() {
        let view = MembershipView::from_metrics(&metrics.borrow_and_update());
        views.send_if_modified(|current| {
            if *current == view {
                false
            } else {
                *current = view;
                true
            }
        });
    }
}

/// Milliseconds since the Unix epoch, for `joined_at_ms`.
fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
