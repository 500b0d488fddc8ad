//! Per-session state a module keeps on the member holding the session
//! (PEP interests, carbons), read on delivery paths: a map sharded so
//! deliveries to different sessions rarely meet on a lock. The module
//! removes a session's entry in its `session_closed` hook.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use starling_core::jid::FullJid;

const SHARDS: usize = 32;

pub struct SessionMap<T> {
    shards: Box<[Mutex<HashMap<FullJid, T>>]>,
    hasher: RandomState,
}

impl<T> Default for SessionMap<T> {
    fn default() -> Self {
        SessionMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<T: Clone> SessionMap<T> {
    fn shard(&self, jid: &FullJid) -> MutexGuard<'_, HashMap<FullJid, T>> {
        let index = self.hasher.hash_one(jid) as usize % SHARDS;
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a session's value; returns the one it had.
    pub fn set(&self, jid: &FullJid, value: T) -> Option<T> {
        self.shard(jid).insert(jid.clone(), value)
    }

    pub fn get(&self, jid: &FullJid) -> Option<T> {
        self.shard(jid).get(jid).cloned()
    }

    /// Whether the session has a value that satisfies `test`.
    pub fn check(&self, jid: &FullJid, test: impl FnOnce(&T) -> bool) -> bool {
        self.shard(jid).get(jid).is_some_and(test)
    }

    pub fn remove(&self, jid: &FullJid) -> Option<T> {
        self.shard(jid).remove(jid)
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
