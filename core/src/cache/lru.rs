//! A thread-safe LRU cache with hit/miss/eviction counters.

use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CacheKind, CacheStats, StatsSource};

/// A bounded map that evicts the least recently used entry when full.
///
/// The lock is held only for the map operation itself, never across an
/// `.await`, and values are cloned out (keep them cheap: `Arc` inside).
///
/// The table grows with its entries up to the limit instead of being sized
/// for the limit at start: a table sized for 65,536 entries is 2 MiB whose
/// pages the first few thousand entries, hashed all over it, nearly all
/// touch, so a node with a thousand users paid for the whole table.
pub struct Lru<K, V> {
    name: &'static str,
    kind: CacheKind,
    map: Mutex<lru::LruCache<K, V>>,
    limit: NonZeroUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl<K: Hash + Eq, V: Clone> Lru<K, V> {
    /// A cache holding at most `limit` entries (at least one).
    pub fn new(name: &'static str, kind: CacheKind, limit: usize) -> Self {
        let limit = NonZeroUsize::new(limit).unwrap_or(NonZeroUsize::MIN);
        Lru {
            name,
            kind,
            map: Mutex::new(lru::LruCache::unbounded()),
            limit,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The value under `key` (which may be a borrowed form of `K`, such as
    /// `&str` for `String`: no key is built for a lookup).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.lock().get(key).cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: K, value: V) {
        let mut map = self.lock();
        // `put` gives the old value back when the key was there: a replacement.
        if map.put(key, value).is_none() && map.len() > self.limit.get() {
            map.pop_lru();
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, key: &K) -> Option<V> {
        self.lock().pop(key)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<K, V>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Hash + Eq + Send, V: Clone + Send> StatsSource for Lru<K, V> {
    fn stats(&self) -> CacheStats {
        CacheStats {
            name: self.name.to_owned(),
            kind: self.kind,
            size: self.len() as u64,
            limit: self.limit.get() as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_misses_and_evictions() {
        let cache = Lru::new("test", CacheKind::Local, 2);
        cache.insert(1, "one");
        cache.insert(2, "two");
        assert_eq!(cache.get(&1), Some("one"));
        cache.insert(3, "three"); // evicts 2, the least recently used
        assert_eq!(cache.get(&2), None);
        cache.insert(3, "THREE"); // a replacement is not an eviction
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.evictions), (1, 1, 1));
        assert_eq!((stats.size, stats.limit), (2, 2));
        assert_eq!(cache.get(&3), Some("THREE"));
    }

    #[test]
    fn the_limit_holds_while_the_table_grows_with_its_entries() {
        let cache = Lru::new("test", CacheKind::Local, 1000);
        assert_eq!(
            cache.lock().cap().get(),
            usize::MAX,
            "no table sized for the limit"
        );
        for i in 0..1500 {
            cache.insert(i, i);
        }
        let stats = cache.stats();
        assert_eq!((stats.size, stats.evictions), (1000, 500));
        assert_eq!(cache.get(&499), None, "the oldest went first");
        assert_eq!(cache.get(&500), Some(500));
        assert_eq!(cache.get(&1499), Some(1499));
    }

    #[test]
    fn clear_empties_but_keeps_counters() {
        let cache = Lru::new("test", CacheKind::Invalidated, 4);
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.stats().hits, 1);
    }
}
