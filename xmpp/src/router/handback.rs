//! Keeping a sender's order when a dying link hands stanzas back.
//!
//! A member that is given up returns what it did not acknowledge, and the
//! router sends each of those stanzas again (to a room's new host, to a
//! user's other node, to offline storage). Meanwhile the same sender goes
//! on sending: without a gate its newer stanzas, routed at once, would
//! overtake the older ones being routed again. The batch is registered
//! here before any of it is routed; a client's next stanza waits until its
//! own handed-back stanzas are through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use starling_core::jid::Jid;
use tokio::sync::Notify;

#[derive(Default)]
pub struct HandbackGate {
    /// Handed-back stanzas not routed yet, per sender.
    pending: Mutex<HashMap<Jid, usize>>,
    /// Their total: lets every other stanza pass with one atomic read.
    total: AtomicUsize,
    released: Notify,
}

impl HandbackGate {
    /// One of `sender`'s stanzas is to be routed again.
    pub fn hold(&self, sender: &Jid) {
        *self.lock().entry(sender.clone()).or_default() += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    /// One of `sender`'s held stanzas has been routed.
    pub fn release(&self, sender: &Jid) {
        let mut pending = self.lock();
        if let Some(count) = pending.get_mut(sender) {
            *count -= 1;
            if *count == 0 {
                pending.remove(sender);
            }
            self.total.fetch_sub(1, Ordering::AcqRel);
        }
        drop(pending);
        self.released.notify_waiters();
    }

    /// Whether any sender's stanzas are held (one atomic read: the check a
    /// client's every stanza makes).
    pub fn holds_any(&self) -> bool {
        self.total.load(Ordering::Acquire) > 0
    }

    /// Waits until none of `sender`'s stanzas is held.
    pub async fn wait(&self, sender: &Jid) {
        loop {
            if self.total.load(Ordering::Acquire) == 0 {
                return;
            }
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release in between wakes it.
            released.as_mut().enable();
            if !self.lock().contains_key(sender) {
                return;
            }
            released.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Jid, usize>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn jid(text: &str) -> Jid {
        Jid::new(text).unwrap()
    }

    #[tokio::test]
    async fn a_sender_waits_only_for_its_own_held_stanzas() {
        let gate = Arc::new(HandbackGate::default());
        gate.hold(&jid("a@x/r"));
        gate.hold(&jid("a@x/r"));
        // Another sender passes at once.
        tokio::time::timeout(Duration::from_secs(5), gate.wait(&jid("b@x/r")))
            .await
            .expect("b is not held");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait(&jid("a@x/r")).await }
        });
        gate.release(&jid("a@x/r"));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one of a's stanzas is still held");
        gate.release(&jid("a@x/r"));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a is released")
            .unwrap();
        assert_eq!(gate.total.load(Ordering::Acquire), 0);
    }

    #[test]
    fn releasing_what_was_not_held_changes_nothing() {
        let gate = HandbackGate::default();
        gate.release(&jid("a@x/r"));
        assert_eq!(gate.total.load(Ordering::Acquire), 0);
    }
}
