//! The session directory (full JID -> node), replicated asynchronously.
//!
//! ```text
//!   owner node                         every other node
//!   local sessions ──announce──▶ pending ──flush──▶ Delta{inc, seq} ──▶ replica of owner
//!                   link up ─────────────────────▶ Snapshot{inc, seq} ─▶ (replaces it)
//! ```
//!
//! Only the owner writes its entries. Every message carries the owner's
//! incarnation (changed at each start), so entries from before a fast
//! restart are replaced by the new snapshot, and a late change from an old
//! incarnation is ignored instead of removing a newer binding. Deltas carry
//! sequence numbers; a gap asks the owner for a new snapshot.
//!
//! This module is plain state with no I/O; `node` feeds it and sends what it
//! returns. Lookups read one index by bare JID, so they are local and O(1).

pub mod interest;
pub mod interest_acks;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use starling_core::cluster::{NodeId, ResourceEntry, SessionChange};
use starling_core::jid::{BareJid, FullJid};

use crate::transport::frame::{DirectoryMessage, WireChange, WireSession};

/// Sessions per snapshot chunk (keeps frames far below the size limit).
pub const SNAPSHOT_CHUNK: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Presence {
    priority: i8,
    available: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    jid: FullJid,
    node: NodeId,
    presence: Presence,
}

/// Where an owner's replica stands.
#[derive(Debug, Default)]
struct Replica {
    incarnation: u64,
    seq: u64,
    /// A full snapshot has been applied; deltas can follow.
    complete: bool,
    /// Sessions of a snapshot still arriving in chunks.
    incoming: Option<Vec<WireSession>>,
    sessions: usize,
}

/// What applying a message from a peer led to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Ask the owner for a snapshot (a gap or a delta without a base).
    pub resync: bool,
    /// Sessions this replica held that a snapshot no longer has: the owner
    /// restarted, or they ended while the deltas saying so were missed (a
    /// sequence gap, or a link cut while the owner was paused). Their
    /// contacts must hear that they are gone; some may have already.
    pub lost: Vec<FullJid>,
    /// Sessions dropped when the owner was declared down that its first
    /// snapshot since shows alive (same incarnation: the owner was cut off,
    /// not restarted). Their contacts were told they were gone and must
    /// learn their presence again.
    pub regained: Vec<FullJid>,
    /// Sessions this node has not seen before in the owner's directory:
    /// all of them when it holds that directory for the first time (the
    /// clusters formed apart, then merged), or, back after a purge, those
    /// that began while the owner was given up (logins, sessions that
    /// moved there, every session of a restarted owner). Contacts on
    /// either side must learn each other's presence, and messages this
    /// node stored for their users meanwhile must be delivered, as for
    /// regained ones.
    pub met: Vec<FullJid>,
}

pub struct Directory {
    incarnation: u64,
    /// This node's own sessions (the source of snapshots).
    local: HashMap<FullJid, Presence>,
    /// Changes to `local` not yet sent as a delta.
    pending: Vec<WireChange>,
    seq: u64,
    replicas: HashMap<NodeId, Replica>,
    /// Other nodes' sessions by user.
    index: HashMap<BareJid, Vec<Entry>>,
    remote_sessions: usize,
    /// Per owner declared down: its incarnation then and the sessions
    /// dropped, until its next complete snapshot (replaced by a later purge,
    /// so at most one set per member that ever went down).
    dropped: HashMap<NodeId, (u64, HashSet<FullJid>)>,
}

impl Directory {
    pub fn new(incarnation: u64) -> Directory {
        Directory {
            incarnation,
            local: HashMap::new(),
            pending: Vec::new(),
            seq: 0,
            replicas: HashMap::new(),
            index: HashMap::new(),
            remote_sessions: 0,
            dropped: HashMap::new(),
        }
    }

    // ----- this node's sessions -----

    /// Records a change to one of this node's sessions, to be sent.
    pub fn record(&mut self, change: &SessionChange) {
        let wire = match change {
            SessionChange::Bound { jid } => {
                self.local.insert(
                    jid.clone(),
                    Presence {
                        priority: 0,
                        available: false,
                    },
                );
                WireChange::Bound(WireSession {
                    jid: jid.to_string(),
                    priority: 0,
                    available: false,
                })
            }
            SessionChange::Presence {
                jid,
                priority,
                available,
            } => {
                let presence = Presence {
                    priority: *priority,
                    available: *available,
                };
                self.local.insert(jid.clone(), presence);
                WireChange::Presence(WireSession {
                    jid: jid.to_string(),
                    priority: *priority,
                    available: *available,
                })
            }
            SessionChange::Unbound { jid } => {
                self.local.remove(jid);
                WireChange::Unbound(jid.to_string())
            }
        };
        self.pending.push(wire);
    }

    /// The delta of everything recorded since the last one, if anything was.
    pub fn take_delta(&mut self) -> Option<DirectoryMessage> {
        if self.pending.is_empty() {
            return None;
        }
        self.seq += 1;
        Some(DirectoryMessage::Delta {
            incarnation: self.incarnation,
            seq: self.seq,
            changes: std::mem::take(&mut self.pending),
        })
    }

    /// A snapshot of this node's sessions, in chunks. Changes still pending
    /// are in it already and will be sent again in the next delta, which is
    /// harmless: every change is idempotent.
    pub fn snapshot(&self) -> Vec<DirectoryMessage> {
        let sessions: Vec<WireSession> = self
            .local
            .iter()
            .map(|(jid, presence)| WireSession {
                jid: jid.to_string(),
                priority: presence.priority,
                available: presence.available,
            })
            .collect();
        let chunks: Vec<&[WireSession]> = if sessions.is_empty() {
            vec![&[]]
        } else {
            sessions.chunks(SNAPSHOT_CHUNK).collect()
        };
        let count = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(index, chunk)| DirectoryMessage::Snapshot {
                incarnation: self.incarnation,
                seq: self.seq,
                sessions: chunk.to_vec(),
                first: index == 0,
                last: index + 1 == count,
            })
            .collect()
    }

    pub fn local_sessions(&self) -> usize {
        self.local.len()
    }

    // ----- other nodes' sessions -----

    /// Applies a directory message from `owner`.
    pub fn apply(&mut self, owner: NodeId, message: DirectoryMessage) -> Applied {
        match message {
            DirectoryMessage::Snapshot {
                incarnation,
                seq,
                sessions,
                first,
                last,
            } => self.apply_snapshot(owner, incarnation, seq, sessions, first, last),
            DirectoryMessage::Delta {
                incarnation,
                seq,
                changes,
            } => self.apply_delta(owner, incarnation, seq, changes),
            DirectoryMessage::ResyncRequest => Applied::default(),
        }
    }

    fn apply_snapshot(
        &mut self,
        owner: NodeId,
        incarnation: u64,
        seq: u64,
        sessions: Vec<WireSession>,
        first: bool,
        last: bool,
    ) -> Applied {
        let replica = self.replicas.entry(owner).or_default();
        if incarnation < replica.incarnation {
            return Applied::default();
        }
        if first {
            replica.incoming = Some(Vec::new());
        }
        let Some(incoming) = replica.incoming.as_mut() else {
            return Applied {
                resync: true,
                ..Applied::default()
            };
        };
        incoming.extend(sessions);
        if !last {
            return Applied::default();
        }
        let incoming = replica.incoming.take().unwrap_or_default();
        let first_replica = !replica.complete;
        replica.incarnation = incarnation;
        replica.seq = seq;
        replica.complete = true;
        let before = self.purge_entries(owner);
        let mut now_present = HashSet::new();
        for session in incoming {
            if let Ok(jid) = FullJid::new(&session.jid) {
                now_present.insert(jid.clone());
                self.insert(
                    owner,
                    jid,
                    Presence {
                        priority: session.priority,
                        available: session.available,
                    },
                );
            }
        }
        let lost = before
            .into_iter()
            .filter(|jid| !now_present.contains(jid))
            .collect();
        let (regained, met) = match self.dropped.remove(&owner) {
            // Back after a purge: what lived on is regained; what began
            // there meanwhile (a login, a session that moved there, or all
            // of them after a restart) is met, for this node stored
            // messages for those users as for users offline too.
            Some((dropped_incarnation, dropped)) => {
                let same = dropped_incarnation == incarnation;
                now_present
                    .into_iter()
                    .partition(|jid| same && dropped.contains(jid))
            }
            None if first_replica => (Vec::new(), now_present.into_iter().collect()),
            None => (Vec::new(), Vec::new()),
        };
        Applied {
            resync: false,
            lost,
            regained,
            met,
        }
    }

    fn apply_delta(
        &mut self,
        owner: NodeId,
        incarnation: u64,
        seq: u64,
        changes: Vec<WireChange>,
    ) -> Applied {
        let replica = self.replicas.entry(owner).or_default();
        if incarnation < replica.incarnation {
            // A late message from before the owner restarted.
            return Applied::default();
        }
        if !replica.complete || incarnation > replica.incarnation || seq > replica.seq + 1 {
            return Applied {
                resync: true,
                ..Applied::default()
            };
        }
        if seq <= replica.seq {
            return Applied::default();
        }
        replica.seq = seq;
        for change in changes {
            match change {
                WireChange::Bound(session) | WireChange::Presence(session) => {
                    if let Ok(jid) = FullJid::new(&session.jid) {
                        let presence = Presence {
                            priority: session.priority,
                            available: session.available,
                        };
                        self.insert(owner, jid, presence);
                    }
                }
                WireChange::Unbound(jid) => {
                    if let Ok(jid) = FullJid::new(&jid) {
                        self.remove(owner, &jid);
                    }
                }
            }
        }
        Applied::default()
    }

    fn insert(&mut self, owner: NodeId, jid: FullJid, presence: Presence) {
        let entries = self.index.entry(jid.to_bare()).or_default();
        match entries
            .iter_mut()
            .find(|entry| entry.node == owner && entry.jid == jid)
        {
            Some(entry) => entry.presence = presence,
            None => {
                // Most users have one session: no spare slots per user.
                entries.reserve_exact(1);
                entries.push(Entry {
                    jid,
                    node: owner,
                    presence,
                });
                self.remote_sessions += 1;
                if let Some(replica) = self.replicas.get_mut(&owner) {
                    replica.sessions += 1;
                }
            }
        }
    }

    fn remove(&mut self, owner: NodeId, jid: &FullJid) {
        let bare = jid.to_bare();
        let Some(entries) = self.index.get_mut(&bare) else {
            return;
        };
        let before = entries.len();
        entries.retain(|entry| !(entry.node == owner && entry.jid == *jid));
        if entries.len() < before {
            self.remote_sessions -= 1;
            if let Some(replica) = self.replicas.get_mut(&owner) {
                replica.sessions = replica.sessions.saturating_sub(1);
            }
        }
        if entries.is_empty() {
            self.index.remove(&bare);
        }
    }

    /// Removes every entry of `owner` from the index; returns their JIDs.
    fn purge_entries(&mut self, owner: NodeId) -> Vec<FullJid> {
        let mut removed = Vec::new();
        self.index.retain(|_, entries| {
            entries.retain(|entry| {
                if entry.node == owner {
                    removed.push(entry.jid.clone());
                    false
                } else {
                    true
                }
            });
            !entries.is_empty()
        });
        self.remote_sessions -= removed.len();
        if let Some(replica) = self.replicas.get_mut(&owner) {
            replica.sessions = 0;
        }
        removed
    }

    /// A member was declared down: forget its sessions; returns them.
    pub fn purge(&mut self, owner: NodeId) -> Vec<FullJid> {
        let removed = self.purge_entries(owner);
        if let Some(replica) = self.replicas.remove(&owner) {
            if replica.complete {
                let dropped = removed.iter().cloned().collect();
                self.dropped.insert(owner, (replica.incarnation, dropped));
            }
        }
        removed
    }

    /// True once a full snapshot from `owner` has been applied.
    pub fn has_replica(&self, owner: NodeId) -> bool {
        self.replicas
            .get(&owner)
            .is_some_and(|replica| replica.complete)
    }

    /// The node serving a full JID; the newest binding wins when a resource
    /// is briefly bound on two nodes (the older one is being kicked).
    pub fn locate(&self, jid: &FullJid) -> Option<NodeId> {
        self.index
            .get(&jid.to_bare())?
            .iter()
            .rev()
            .find(|entry| entry.jid == *jid)
            .map(|entry| entry.node)
    }

    pub fn resources(&self, bare: &BareJid) -> Vec<ResourceEntry> {
        self.index
            .get(bare)
            .map(|entries| {
                entries
                    .iter()
                    .map(|entry| ResourceEntry {
                        jid: entry.jid.clone(),
                        node: entry.node,
                        priority: entry.presence.priority,
                        available: entry.presence.available,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sessions known on other nodes.
    pub fn remote_sessions(&self) -> usize {
        self.remote_sessions
    }

    /// Sessions known for one owner.
    pub fn sessions_of(&self, owner: NodeId) -> usize {
        self.replicas
            .get(&owner)
            .map_or(0, |replica| replica.sessions)
    }
}
