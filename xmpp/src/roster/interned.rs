//! One shared copy of each contact JID the cached rosters name.
//!
//! Every online user's roster is cached, and on a server whose users are
//! each other's contacts the same JIDs appear in hundreds of rosters: each
//! roster item then holds a pointer instead of its own parsed JID and
//! string. Lookups go by the stored string, so a JID already known is not
//! parsed (prepared) again either.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use starling_core::jid::{BareJid, JidError};

/// Below this many JIDs the pool is never swept.
const MIN_SWEEP_AT: usize = 1024;

/// The interned JIDs. JIDs no roster holds any more are dropped by a sweep
/// when the pool has doubled since the last one, so its size stays within
/// twice the JIDs in use and the sweeps cost O(1) per insertion.
#[derive(Debug)]
pub struct JidPool {
    inner: Mutex<Pool>,
}

#[derive(Debug)]
struct Pool {
    jids: HashSet<Interned>,
    sweep_at: usize,
}

impl Default for JidPool {
    fn default() -> Self {
        JidPool {
            inner: Mutex::new(Pool {
                jids: HashSet::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }
}

impl JidPool {
    /// Holds the pool while `intern` runs, so a roster of hundreds of
    /// contacts takes the lock once.
    pub fn interner(&self) -> Interner<'_> {
        Interner {
            pool: self
                .inner
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }

    /// How many JIDs the pool holds (in use or not yet swept).
    pub fn len(&self) -> usize {
        self.interner().pool.jids.len()
    }
}

/// The locked pool; see [`JidPool::interner`].
pub struct Interner<'a> {
    pool: std::sync::MutexGuard<'a, Pool>,
}

impl Interner<'_> {
    /// The shared copy of the bare JID `text`, parsed only if new.
    pub fn intern(&mut self, text: &str) -> Result<Arc<BareJid>, JidError> {
        if let Some(found) = self.pool.jids.get(text) {
            return Ok(found.0.clone());
        }
        let jid = Arc::new(BareJid::new(text)?);
        // A stored string that was not in canonical form: the pool keys the
        // canonical one, which other rosters may already share.
        if let Some(found) = self.pool.jids.get(jid.as_str()) {
            return Ok(found.0.clone());
        }
        let pool = &mut *self.pool;
        if pool.jids.len() >= pool.sweep_at {
            pool.jids
                .retain(|interned| Arc::strong_count(&interned.0) > 1);
            pool.sweep_at = (pool.jids.len() * 2).max(MIN_SWEEP_AT);
        }
        pool.jids.insert(Interned(jid.clone()));
        Ok(jid)
    }
}

/// A pooled JID, hashed and compared as its string so that lookups by
/// `&str` need no parsing.
#[derive(Debug)]
struct Interned(Arc<BareJid>);

impl Borrow<str> for Interned {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Interned {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_jid_is_shared() {
        let pool = JidPool::default();
        let mut interner = pool.interner();
        let first = interner.intern("alice@example.org").unwrap();
        let second = interner.intern("alice@example.org").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.as_str(), "alice@example.org");
    }

    #[test]
    fn a_non_canonical_spelling_shares_the_canonical_jid() {
        let pool = JidPool::default();
        let mut interner = pool.interner();
        let canonical = interner.intern("alice@example.org").unwrap();
        let other = interner.intern("Alice@Example.org").unwrap();
        assert!(Arc::ptr_eq(&canonical, &other));
    }

    #[test]
    fn a_bad_jid_is_an_error() {
        let pool = JidPool::default();
        assert!(pool.interner().intern("@@").is_err());
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn jids_no_one_holds_are_swept_as_the_pool_grows() {
        let pool = JidPool::default();
        let kept: Vec<_> = (0..10)
            .map(|n| {
                pool.interner()
                    .intern(&format!("kept{n}@example.org"))
                    .unwrap()
            })
            .collect();
        for n in 0..MIN_SWEEP_AT * 3 {
            pool.interner()
                .intern(&format!("dropped{n}@example.org"))
                .unwrap();
        }
        // Each sweep keeps only what is held; between sweeps the pool grows
        // to at most twice what the last sweep kept (and MIN_SWEEP_AT).
        assert!(pool.len() <= MIN_SWEEP_AT + 1, "pool holds {}", pool.len());
        for jid in &kept {
            let again = pool.interner().intern(jid.as_str()).unwrap();
            assert!(Arc::ptr_eq(jid, &again), "{jid} was swept while held");
        }
    }
}
