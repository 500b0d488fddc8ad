//! The PEP nodes each session on this member wants (XEP-0163 4.3,
//! "filtered notifications"), read on every PEP delivery.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use starling_core::jid::FullJid;

use super::caps::Interest;

const SHARDS: usize = 32;

/// Session -> wanted nodes, sharded so deliveries to different sessions
/// rarely meet on a lock. Sessions with the same capabilities share one
/// set.
pub(super) struct Interests {
    shards: Box<[Mutex<HashMap<FullJid, Interest>>]>,
    hasher: RandomState,
}

impl Default for Interests {
    fn default() -> Self {
        Interests {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Interests {
    fn shard(&self, jid: &FullJid) -> std::sync::MutexGuard<'_, HashMap<FullJid, Interest>> {
        let index = self.hasher.hash_one(jid) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets what a session wants; returns what it wanted before.
    pub(super) fn set(&self, jid: &FullJid, interest: Interest) -> Option<Interest> {
        self.shard(jid).insert(jid.clone(), interest)
    }

    pub(super) fn get(&self, jid: &FullJid) -> Option<Interest> {
        self.shard(jid).get(jid).cloned()
    }

    pub(super) fn wants(&self, jid: &FullJid, node: &str) -> bool {
        self.shard(jid)
            .get(jid)
            .is_some_and(|interest| interest.contains(node))
    }

    pub(super) fn remove(&self, jid: &FullJid) {
        self.shard(jid).remove(jid);
    }

    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}
