//! Per-session state a module keeps on the member holding the session
//! (PEP interests, carbons), read on delivery paths: a map sharded so
//! deliveries to different sessions rarely meet on a lock. The module
//! removes a session's entry in its `session_closed` hook.
//!
//! Most of these maps are empty or nearly so (no session inactive, none
//! that enabled carbons): a count kept beside the shards answers a lookup
//! in an empty map without hashing the JID or taking a lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use starling_core::jid::FullJid;

const SHARDS: usize = 32;

pub struct SessionMap<T> {
    shards: Box<[Mutex<HashMap<FullJid, T>>]>,
    hasher: RandomState,
    /// Entries in all shards, changed under the shard's lock; a lookup that
    /// reads 0 is one that came before any insert.
    count: AtomicUsize,
}

impl<T> Default for SessionMap<T> {
    fn default() -> Self {
        SessionMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            count: AtomicUsize::new(0),
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
        let mut shard = self.shard(jid);
        let previous = shard.insert(jid.clone(), value);
        if previous.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        previous
    }

    pub fn get(&self, jid: &FullJid) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        self.shard(jid).get(jid).cloned()
    }

    /// Whether the session has a value that satisfies `test`.
    pub fn check(&self, jid: &FullJid, test: impl FnOnce(&T) -> bool) -> bool {
        if self.is_empty() {
            return false;
        }
        self.shard(jid).get(jid).is_some_and(test)
    }

    pub fn remove(&self, jid: &FullJid) -> Option<T> {
        let mut shard = self.shard(jid);
        let removed = shard.remove(jid);
        if removed.is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_sets_and_removes() {
        let map = SessionMap::default();
        let phone = FullJid::new("a@example.com/phone").unwrap();
        let laptop = FullJid::new("a@example.com/laptop").unwrap();
        assert!(map.is_empty());
        assert_eq!(map.get(&phone), None);
        assert_eq!(map.set(&phone, 1), None);
        assert_eq!(map.set(&phone, 2), Some(1), "a second set replaces");
        assert_eq!(map.set(&laptop, 3), None);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&phone), Some(2));
        assert!(map.check(&laptop, |&value| value == 3));
        assert_eq!(map.remove(&phone), Some(2));
        assert_eq!(map.remove(&phone), None, "gone already");
        assert_eq!(map.len(), 1);
        assert_eq!(map.remove(&laptop), Some(3));
        assert!(map.is_empty());
        assert!(!map.check(&laptop, |_| true));
    }
}
