//! Bounded caches with counters the admin side can show.
//!
//! Every non-session cache is an [`Lru`] with a fixed entry limit; its
//! counters are read through [`CacheStats`] snapshots, which the
//! [`CacheRegistry`] collects for `/api/caches` and `/metrics`.

mod lru;

pub use self::lru::Lru;

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// How a cache stays consistent across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Every member holds a full copy (the session directory); never evicted.
    Replicated,
    /// Each member caches what it reads; a change anywhere evicts the entry
    /// everywhere before it is acknowledged.
    Invalidated,
    /// This member only.
    Local,
}

/// A point-in-time copy of one cache's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub name: String,
    pub kind: CacheKind,
    pub size: u64,
    /// 0 for caches that are never evicted.
    pub limit: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

impl CacheStats {
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// Anything that can report its counters and be emptied by an operator.
pub trait StatsSource: Send + Sync {
    fn stats(&self) -> CacheStats;
    fn clear(&self);
}

/// The caches of this node, by name.
#[derive(Default, Clone)]
pub struct CacheRegistry {
    sources: Arc<Mutex<Vec<Arc<dyn StatsSource>>>>,
}

impl CacheRegistry {
    pub fn register(&self, source: Arc<dyn StatsSource>) {
        self.sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(source);
    }

    pub fn snapshot(&self) -> Vec<CacheStats> {
        self.all().iter().map(|source| source.stats()).collect()
    }

    /// Empties the named cache; false when there is no such cache.
    pub fn clear(&self, name: &str) -> bool {
        match self
            .all()
            .into_iter()
            .find(|source| source.stats().name == name)
        {
            Some(source) => {
                source.clear();
                true
            }
            None => false,
        }
    }

    fn all(&self) -> Vec<Arc<dyn StatsSource>> {
        self.sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
