//! Per-user delivery locks: the order between "store because nobody is
//! online" and "come online and take what is stored".
//!
//! A message is only stored while holding the user's lock (after checking
//! again that nobody is available), and a session only becomes available
//! for bare-JID messages while holding it, after the `ResourceAvailable`
//! hooks queued what was stored. So a message is either stored before the
//! flush takes it, or delivered live after the flushed ones.

use std::hash::{BuildHasher, RandomState};

use starling_core::jid::BareJid;
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 256;

/// Striped async locks, one stripe per user hash.
pub struct DeliveryLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Default for DeliveryLocks {
    fn default() -> Self {
        DeliveryLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl DeliveryLocks {
    pub async fn lock(&self, user: &BareJid) -> MutexGuard<'_, ()> {
        let index = self.hasher.hash_one(user) as usize % STRIPES;
        self.stripes[index].lock().await
    }
}
