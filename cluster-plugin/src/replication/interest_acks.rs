//! Which peers have applied which of this member's interest changes, and
//! who waits for them.
//!
//! ```text
//!   Bayeux subscribe ─▶ wait(seq, linked peers) ─▶ pending {p1, p2}
//!   InterestAck{seq} from p1 ─▶ acknowledged ──▶ pending {p2}
//!   link to p2 drops ─▶ link_down ───────────▶ pending {} ─▶ waiter released
//! ```
//!
//! Acknowledgements are cumulative: a link is ordered, and the owner never
//! leaves a gap on it (a change that cannot be queued marks the link behind
//! until a snapshot, which holds every change, goes through). A peer whose
//! link drops is no longer waited for; a new link starts from nothing and
//! its snapshot is acknowledged like a change. Plain state, no I/O.

use std::collections::{HashMap, HashSet};

use starling_core::cluster::NodeId;
use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct InterestAcks {
    /// The highest number each peer acknowledged on its current link.
    acked: HashMap<NodeId, u64>,
    waiters: HashMap<u64, Waiter>,
    next_waiter: u64,
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    pending: HashSet<NodeId>,
    /// Taken when the wait is released.
    done: Option<oneshot::Sender<()>>,
}

impl Waiter {
    /// Its caller gave up without saying so.
    fn abandoned(&self) -> bool {
        self.done.as_ref().is_none_or(oneshot::Sender::is_closed)
    }
}

/// A registered wait: its id (for [`InterestAcks::abandon`]) and what
/// resolves once every peer it waits for applied the change.
#[derive(Debug)]
pub struct Wait {
    pub id: u64,
    pub applied: oneshot::Receiver<()>,
}

impl InterestAcks {
    /// Waits until every one of `peers` applied change `seq`; `None` when
    /// all of them already have (or there are none).
    pub fn wait(&mut self, seq: u64, peers: impl IntoIterator<Item = NodeId>) -> Option<Wait> {
        self.forget_abandoned();
        let pending: HashSet<NodeId> = peers
            .into_iter()
            .filter(|peer| self.acked.get(peer).is_none_or(|acked| *acked < seq))
            .collect();
        if pending.is_empty() {
            return None;
        }
        let (done, applied) = oneshot::channel();
        self.next_waiter += 1;
        let id = self.next_waiter;
        self.waiters.insert(
            id,
            Waiter {
                seq,
                pending,
                done: Some(done),
            },
        );
        Some(Wait { id, applied })
    }

    /// `peer` applied every change up to `seq`.
    pub fn acknowledged(&mut self, peer: NodeId, seq: u64) {
        let acked = self.acked.entry(peer).or_default();
        *acked = (*acked).max(seq);
        let acked = *acked;
        self.release(|waiter| {
            if waiter.seq <= acked {
                waiter.pending.remove(&peer);
            }
        });
    }

    /// A new link to `peer`: what it acknowledged on an earlier link says
    /// nothing about the replica this link will build from its snapshot.
    pub fn link_up(&mut self, peer: NodeId) {
        self.acked.remove(&peer);
    }

    /// The link to `peer` dropped: nobody waits for it any more.
    pub fn link_down(&mut self, peer: NodeId) {
        self.acked.remove(&peer);
        self.release(|waiter| {
            waiter.pending.remove(&peer);
        });
    }

    /// Gives up a wait (it timed out); returns the peers it still waited for.
    pub fn abandon(&mut self, id: u64) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .waiters
            .remove(&id)
            .map(|waiter| waiter.pending.into_iter().collect())
            .unwrap_or_default();
        peers.sort_unstable();
        peers
    }

    /// Waits not yet released.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Applies `update` to every waiter and releases those with nobody left.
    fn release(&mut self, mut update: impl FnMut(&mut Waiter)) {
        self.waiters.retain(|_, waiter| {
            update(waiter);
            if waiter.pending.is_empty() {
                if let Some(done) = waiter.done.take() {
                    // The waiting side may be gone: nothing to tell then.
                    let _ = done.send(());
                }
                return false;
            }
            !waiter.abandoned()
        });
    }

    /// Drops waits whose caller went away without calling `abandon`.
    fn forget_abandoned(&mut self) {
        self.waiters.retain(|_, waiter| !waiter.abandoned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    fn released(wait: &mut Wait) -> bool {
        wait.applied.try_recv().is_ok()
    }

    #[test]
    fn a_wait_ends_when_every_peer_acknowledged_its_change_or_a_later_one() {
        let mut acks = InterestAcks::default();
        let mut wait = acks.wait(3, [A, B]).expect("nobody acknowledged yet");
        acks.acknowledged(A, 2);
        assert!(!released(&mut wait), "2 is older than the change");
        acks.acknowledged(A, 3);
        assert!(!released(&mut wait), "B has not");
        acks.acknowledged(B, 5);
        assert!(released(&mut wait), "acknowledgements are cumulative");
        assert_eq!(acks.waiting(), 0);
        // Both already applied 3: nothing to wait for.
        assert!(acks.wait(3, [A, B]).is_none());
        assert!(acks.wait(4, [B]).is_none());
        assert!(acks.wait(4, [A, B]).is_some(), "A is at 3");
        assert!(acks.wait(1, []).is_none(), "no peer linked");
    }

    #[test]
    fn a_peer_whose_link_drops_is_no_longer_waited_for() {
        let mut acks = InterestAcks::default();
        let mut wait = acks.wait(1, [A, B]).unwrap();
        acks.acknowledged(A, 1);
        acks.link_down(B);
        assert!(released(&mut wait));
        // A was up to date; its new link starts from nothing.
        acks.link_up(A);
        let mut again = acks
            .wait(1, [A])
            .expect("the new link's snapshot is not applied yet");
        acks.acknowledged(A, 1);
        assert!(released(&mut again));
    }

    #[test]
    fn abandoned_waits_are_forgotten_and_name_the_silent_peers() {
        let mut acks = InterestAcks::default();
        let wait = acks.wait(1, [A, B]).unwrap();
        acks.acknowledged(A, 1);
        assert_eq!(acks.abandon(wait.id), [B]);
        assert_eq!(acks.waiting(), 0);
        assert!(acks.abandon(wait.id).is_empty(), "once only");
        // A caller that simply went away is dropped on the next change.
        let gone = acks.wait(2, [A]).unwrap();
        drop(gone);
        let _kept = acks.wait(2, [B]).unwrap();
        assert_eq!(acks.waiting(), 1);
    }
}
