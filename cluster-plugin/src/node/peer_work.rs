//! The server's work about one peer's sessions (lost with it, or found
//! alive after all), done in order per peer, beside the link readers and
//! the tick loop.
//!
//! Telling contacts about a member's sessions can take seconds when it
//! held thousands. Awaited where the peer's frames are read, it stopped
//! the reader: heartbeats went unread, and the member was declared down
//! again. Awaited in the tick loop, it held failure detection. So each
//! peer gets a queue and a task that works through it: "lost", "regained"
//! and "up" in the order they happened, and what a dead member handed back is
//! routed only after its loss was handled (a room's rejoins reach the new
//! host before the room's stanzas).

use std::sync::Arc;

use starling_core::cluster::{BoxFuture, LocalDelivery, NodeId};
use starling_core::jid::FullJid;
use tokio::sync::mpsc;

use super::{ClusterNode, lock};

pub(super) enum PeerWork {
    /// The peer's sessions are gone; then route what it handed back.
    Lost {
        sessions: Vec<FullJid>,
        then: Option<BoxFuture<'static, ()>>,
    },
    /// Sessions of the peer that contacts here may not know.
    Regained(Vec<FullJid>),
    /// The peer is up (joined, back, or heard again).
    Up,
}

impl ClusterNode {
    /// Queues `work` about `node`'s sessions behind what is queued already.
    pub(super) fn peer_work(&self, node: NodeId, work: PeerWork) {
        let Some(delivery) = self.delivery().cloned() else {
            tracing::error!(%node, "member sessions changed before the server was ready");
            return;
        };
        let mut queues = lock(&self.peer_work);
        let queue = queues
            .entry(node.0)
            .or_insert_with(|| start(node, delivery));
        if let Err(mpsc::error::SendError(work)) = queue.send(work) {
            // The task ended (shutdown); whatever it was, run it alone.
            drop(queues);
            tokio::spawn(run(node, self.delivery().cloned(), work));
        }
    }
}

fn start(node: NodeId, delivery: Arc<dyn LocalDelivery>) -> mpsc::UnboundedSender<PeerWork> {
    let (queue, mut works) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(work) = works.recv().await {
            run(node, Some(delivery.clone()), work).await;
        }
    });
    queue
}

async fn run(node: NodeId, delivery: Option<Arc<dyn LocalDelivery>>, work: PeerWork) {
    let Some(delivery) = delivery else { return };
    match work {
        PeerWork::Lost { sessions, then } => {
            delivery.node_down(node, sessions).await;
            if let Some(routing) = then {
                tokio::spawn(routing);
            }
        }
        PeerWork::Regained(sessions) => delivery.sessions_regained(node, sessions).await,
        PeerWork::Up => delivery.member_up(node).await,
    }
}
