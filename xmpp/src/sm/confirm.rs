//! Confirmations for XEP-0198 `h`: a stanza a client sent to another
//! server counts as handled only once that server confirmed it (or it
//! bounced). Without I/O, so the ordering rule is tested alone.
//!
//! The session attaches a [`Confirm`] to such a stanza; the handle travels
//! inside the `Stanza` through the router and the outgoing stream's link
//! and resolves when it is dropped: when the peer's answer to a barrier
//! covers the stanza, when it bounces, or when anything else consumes it.
//! The session keeps the handles in order ([`Pending`]): `h` is the count
//! just before the oldest unresolved one, so it never passes a stanza
//! whose predecessor still waits. See ARCHITECTURE.md, "Federation".

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::session::LocalSession;

/// Most `<r/>` waiting for confirmations that are remembered one by one;
/// more are folded into the newest (one `<a/>` still answers each).
const MAX_DEFERRED: usize = 64;

struct Shared {
    done: AtomicBool,
    /// Woken when the handle resolves, to answer a waiting `<r/>`.
    session: Weak<LocalSession>,
}

/// Resolves its stanza's confirmation when dropped. A clone is an empty
/// handle: the stanza's copy is not what the client's count waits for.
#[derive(Default)]
pub struct Confirm {
    shared: Option<Arc<Shared>>,
}

impl Confirm {
    /// Whether this handle stands for a client's count.
    pub fn is_tracked(&self) -> bool {
        self.shared.is_some()
    }
}

impl Drop for Confirm {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.done.store(true, Ordering::Release);
            if let Some(session) = shared.session.upgrade() {
                session.nudge();
            }
        }
    }
}

impl Clone for Confirm {
    fn clone(&self) -> Confirm {
        Confirm::default()
    }
}

/// Handles never make two stanzas differ.
impl PartialEq for Confirm {
    fn eq(&self, _other: &Confirm) -> bool {
        true
    }
}

impl std::fmt::Debug for Confirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shared {
            None => f.write_str("Confirm(none)"),
            Some(shared) => write!(f, "Confirm(done: {})", shared.done.load(Ordering::Relaxed)),
        }
    }
}

/// The confirmations a session waits for, oldest first, and the `<r/>`s
/// waiting for them.
#[derive(Default)]
pub struct Pending {
    /// (the stanza's count, i.e. `h` once it is handled; its handle's state).
    waiting: VecDeque<(u32, Arc<Shared>)>,
    /// `<r/>`s to answer once `h` reaches these counts, oldest first.
    requests: VecDeque<u32>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("waiting", &self.waiting.len())
            .field("requests", &self.requests)
            .finish()
    }
}

/// Whether count `a` is at or past `b`, modulo 2^32.
fn reached(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < 1 << 31
}

impl Pending {
    /// The stanza counted as `count` waits for a confirmation.
    pub fn push(&mut self, count: u32, session: Weak<LocalSession>) -> Confirm {
        let shared = Arc::new(Shared {
            done: AtomicBool::new(false),
            session,
        });
        self.waiting.push_back((count, shared.clone()));
        Confirm {
            shared: Some(shared),
        }
    }

    /// The count of handled stanzas, `received` of them having arrived:
    /// everything before the oldest stanza still waiting.
    pub fn handled(&mut self, received: u32) -> u32 {
        while self
            .waiting
            .front()
            .is_some_and(|(_, shared)| shared.done.load(Ordering::Acquire))
        {
            self.waiting.pop_front();
        }
        match self.waiting.front() {
            Some((count, _)) => count.wrapping_sub(1),
            None => received,
        }
    }

    /// Stanzas waiting for their confirmation (resolved ones behind an
    /// unresolved one included).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// An `<r/>` came when `received` stanzas had arrived and not all were
    /// confirmed: it is answered once they are.
    pub fn defer_request(&mut self, received: u32) {
        if self.requests.len() >= MAX_DEFERRED {
            self.requests.pop_back();
        }
        self.requests.push_back(received);
    }

    /// How many waiting `<r/>`s may be answered now that `handled` stanzas
    /// are; they are forgotten.
    pub fn answerable(&mut self, handled: u32) -> usize {
        let mut due = 0;
        while self
            .requests
            .front()
            .is_some_and(|&target| reached(handled, target))
        {
            self.requests.pop_front();
            due += 1;
        }
        due
    }

    /// Nothing waits: the session may drop this.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.requests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_stops_before_the_oldest_unconfirmed_stanza() {
        let mut pending = Pending::default();
        // Stanzas 1 and 2 local (counted at once), 3 and 5 remote, 4 local.
        let three = pending.push(3, Weak::new());
        let five = pending.push(5, Weak::new());
        assert_eq!(pending.handled(5), 2, "3 waits: 3, 4 and 5 do not count");
        drop(five);
        assert_eq!(pending.handled(5), 2, "5 confirmed, but 3 still waits");
        drop(three);
        assert_eq!(pending.handled(5), 5);
        assert_eq!(pending.waiting(), 0);
        assert_eq!(pending.handled(7), 7, "later local stanzas count at once");
    }

    #[test]
    fn out_of_order_confirmations_never_pass_a_waiting_stanza() {
        let mut pending = Pending::default();
        let mut handles: Vec<Option<Confirm>> = (1..=100)
            .map(|n| Some(pending.push(n, Weak::new())))
            .collect();
        // Confirm in a scrambled order; h is always the longest confirmed prefix.
        let mut confirmed = [false; 101];
        for step in 0..100u32 {
            let index = ((step * 37) % 100) as usize;
            handles[index].take();
            confirmed[index + 1] = true;
            let prefix = (1..=100).take_while(|&n| confirmed[n]).count() as u32;
            assert_eq!(
                pending.handled(100),
                prefix,
                "after confirming {}",
                index + 1
            );
        }
        assert_eq!(pending.handled(100), 100);
    }

    #[test]
    fn a_deferred_request_is_answered_once_its_stanzas_are_confirmed() {
        let mut pending = Pending::default();
        let one = pending.push(1, Weak::new());
        pending.defer_request(1);
        let two = pending.push(2, Weak::new());
        pending.defer_request(2);
        let h = pending.handled(2);
        assert_eq!((h, pending.answerable(h)), (0, 0));
        drop(one);
        let h = pending.handled(2);
        assert_eq!((h, pending.answerable(h)), (1, 1), "the first <r/> only");
        drop(two);
        let h = pending.handled(2);
        assert_eq!((h, pending.answerable(h)), (2, 1));
        assert!(pending.is_idle());
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut pending = Pending::default();
        let last = pending.push(u32::MAX, Weak::new());
        let first_after_wrap = pending.push(0, Weak::new());
        pending.defer_request(0);
        assert_eq!(pending.handled(0), u32::MAX - 1);
        assert_eq!(pending.answerable(u32::MAX - 1), 0);
        drop(last);
        assert_eq!(pending.handled(0), u32::MAX);
        drop(first_after_wrap);
        assert_eq!(pending.handled(0), 0);
        assert_eq!(pending.answerable(0), 1);
    }

    #[test]
    fn a_clone_is_not_the_stanza_the_count_waits_for() {
        let mut pending = Pending::default();
        let handle = pending.push(1, Weak::new());
        let copy = handle.clone();
        assert!(!copy.is_tracked());
        drop(copy);
        assert_eq!(pending.handled(1), 0, "dropping a copy confirms nothing");
        drop(handle);
        assert_eq!(pending.handled(1), 1);
    }
}
