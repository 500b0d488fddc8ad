//! The tick loop: failure detection, status to peers, interest catch-up
//! and membership upkeep, on a fixed beat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_core::cluster::NodeId;

use super::peer_work::PeerWork;
use super::{ClusterNode, lock};
use crate::failure::{PeerState, Transition};
use crate::transport::frame::{Frame, MemberStatus};

impl ClusterNode {
    /// Failure detection, membership upkeep and status, on a fixed beat.
    pub(super) async fn tick_loop(self: Arc<Self>) {
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
            self.upkeep_membership();
        }
    }

    pub(super) async fn on_transition(&self, transition: Transition) {
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
                // What it did not acknowledge goes another way now; its
                // senders wait from here, and it is routed once the
                // modules have moved what the member held (a room's
                // rejoins go to its new host before the room's stanzas),
                // beside the tick, in order with the peer's other work.
                let then = self.transport.abandon(node.0);
                let sessions = lock(&self.directory).purge(node);
                lock(&self.interest).sets.purge(node);
                self.peer_work(node, PeerWork::Lost { sessions, then });
            }
            PeerState::Up => {
                tracing::info!(peer = %name, node = node.0, "cluster member is up");
                self.peer_work(node, PeerWork::Up);
            }
            PeerState::Suspect => {
                tracing::warn!(peer = %name, node = node.0, "cluster member is suspect");
            }
        }
    }

    pub(super) fn own_status(&self) -> MemberStatus {
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
}
