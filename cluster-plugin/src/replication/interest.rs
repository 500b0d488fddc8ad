//! Pub/sub interest: which members have local watchers (Bayeux clients) of
//! which pub/sub nodes, so a publishing member sends an event only to the
//! members that want it.
//!
//! ```text
//!   owner member                            every other member
//!   first watch / last unwatch ──▶ Changed{seq, node, bool} ──▶ replica of owner
//!   link up ──────────────────────▶ Snapshot{seq, nodes} ─────▶ (replaces it)
//!                     ◀──────────── InterestAck{seq} ◀──────── applied
//!   member down ───────────────────────────────────────────────▶ replica dropped
//! ```
//!
//! Only the owner writes its set. Changes travel on the same ordered link
//! as the snapshot, and `node` sends both under one lock, so a replica
//! never applies a change older than its snapshot. Every change is
//! numbered, and a snapshot carries the number of the last change it
//! holds; the replica acknowledges each number it applied, which lets the
//! owner wait until its peers know of a new watch (`interest_acks`). XMPP
//! subscribers need no entry here: their sessions are found through the
//! session directory. Plain state, no I/O.

use std::collections::{BTreeSet, HashMap, HashSet};

use starling_core::cluster::NodeId;

use crate::transport::frame::InterestMessage;

#[derive(Debug, Default)]
pub struct InterestSets {
    local: BTreeSet<String>,
    /// Number of the last change to `local`.
    seq: u64,
    remote: HashMap<NodeId, HashSet<String>>,
}

impl InterestSets {
    /// Records this member's interest in `node`; returns the change to
    /// announce, or `None` when nothing changed.
    pub fn set_local(&mut self, node: &str, interested: bool) -> Option<InterestMessage> {
        let changed = if interested {
            self.local.insert(node.to_owned())
        } else {
            self.local.remove(node)
        };
        if !changed {
            return None;
        }
        self.seq += 1;
        Some(InterestMessage::Changed {
            seq: self.seq,
            node: node.to_owned(),
            interested,
        })
    }

    /// Number of the last change to this member's set (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// This member's whole set, for a peer whose link just came up.
    pub fn snapshot(&self) -> InterestMessage {
        InterestMessage::Snapshot {
            seq: self.seq,
            nodes: self.local.iter().cloned().collect(),
        }
    }

    /// Applies what `from` announced; returns the number to acknowledge.
    pub fn apply(&mut self, from: NodeId, message: InterestMessage) -> u64 {
        match message {
            InterestMessage::Snapshot { seq, nodes } => {
                self.remote.insert(from, nodes.into_iter().collect());
                seq
            }
            InterestMessage::Changed {
                seq,
                node,
                interested,
            } => {
                let set = self.remote.entry(from).or_default();
                if interested {
                    set.insert(node);
                } else {
                    set.remove(&node);
                }
                seq
            }
        }
    }

    /// Forgets a member's set (its link closed or it is down); a snapshot
    /// arrives again when the link comes back.
    pub fn purge(&mut self, member: NodeId) {
        self.remote.remove(&member);
    }

    /// Other members with watchers of `node`, in id order.
    pub fn interested(&self, node: &str) -> Vec<NodeId> {
        let mut members: Vec<NodeId> = self
            .remote
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(member, _)| *member)
            .collect();
        members.sort_unstable();
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_changes_are_announced_once() {
        let mut sets = InterestSets::default();
        assert!(sets.set_local("a", true).is_some());
        assert!(sets.set_local("a", true).is_none());
        assert_eq!(
            sets.snapshot(),
            InterestMessage::Snapshot {
                seq: 1,
                nodes: vec!["a".to_owned()]
            }
        );
        assert!(sets.set_local("a", false).is_some());
        assert!(sets.set_local("a", false).is_none());
        assert_eq!(sets.seq(), 2, "only real changes are numbered");
    }

    #[test]
    fn replicas_follow_snapshots_and_changes_and_are_purged() {
        let mut owner = InterestSets::default();
        let mut replica = InterestSets::default();
        let (one, two) = (NodeId(1), NodeId(2));
        owner.set_local("x", true);
        assert_eq!(replica.apply(one, owner.snapshot()), 1);
        replica.apply(
            two,
            InterestMessage::Snapshot {
                seq: 9,
                nodes: vec!["x".into()],
            },
        );
        assert_eq!(replica.interested("x"), [one, two]);
        let change = owner.set_local("y", true).unwrap();
        assert_eq!(replica.apply(one, change), 2, "acknowledges the change");
        assert_eq!(replica.interested("y"), [one]);
        let change = owner.set_local("x", false).unwrap();
        replica.apply(one, change);
        assert_eq!(replica.interested("x"), [two]);
        replica.purge(two);
        assert!(replica.interested("x").is_empty());
        // A snapshot replaces what a replica held.
        replica.apply(
            one,
            InterestMessage::Snapshot {
                seq: 3,
                nodes: vec![],
            },
        );
        assert!(replica.interested("y").is_empty());
    }
}
