//! The counters and the unacknowledged queue of one stream-managed
//! session (XEP-0198 4-5), without I/O, so the rules are tested alone.
//!
//! Counts are stanzas only (message, presence, iq), both ways, modulo 2^32
//! as the XEP says: `h` wraps.

use std::collections::VecDeque;

use starling_core::xml::Element;

use super::confirm::{Confirm, Pending};
use super::token::Key;
use crate::session::LocalSession;

/// What a resumable session was told in `<enabled/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumption {
    /// The registry key (the secret part of the id).
    pub key: Key,
    /// The id the client resumes with (`previd`).
    pub id: String,
    /// Seconds the session waits for its client once the socket is gone.
    pub max_secs: u32,
}

/// Stream management of one session, from `<enable/>` on.
#[derive(Debug, Default)]
pub struct SmState {
    /// Stanzas received from the client: the `h` we report.
    inbound: u32,
    /// The client's last `h`: stanzas it acknowledged.
    acked: u32,
    /// Written and not acknowledged yet, oldest first. Empty costs nothing:
    /// a `VecDeque` allocates on its first push.
    unacked: VecDeque<Box<Element>>,
    /// Unacknowledged stanzas written since our last `<r/>`.
    since_request: u32,
    /// An `<r/>` is out and no `<a/>` came back yet.
    pub request_pending: bool,
    /// When the pending `<r/>` went out (for the ack timeout).
    pub requested_at: Option<tokio::time::Instant>,
    /// When an `<r/>` goes out if no more stanzas make one due sooner.
    pub request_due: Option<tokio::time::Instant>,
    pub resumption: Option<Resumption>,
    /// Stanzas to other servers awaiting their confirmation, and `<r/>`s
    /// waiting for them; boxed and allocated only while any wait.
    pending: Option<Box<Pending>>,
}

/// The client acknowledged more than was sent (XEP-0198 4: a
/// `handled-count-too-high` stream error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client acknowledged {h} stanzas but only {sent} were sent")]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

impl SmState {
    pub fn new(resumption: Option<Resumption>) -> SmState {
        SmState {
            resumption,
            ..SmState::default()
        }
    }

    /// A state handed over from another connection or member.
    pub fn restored(
        inbound: u32,
        acked: u32,
        unacked: Vec<Box<Element>>,
        resumption: Option<Resumption>,
    ) -> SmState {
        SmState {
            inbound,
            acked,
            unacked: unacked.into(),
            resumption,
            ..SmState::default()
        }
    }

    /// A stanza from the client was handled.
    pub fn received(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }

    /// Stanzas received from the client, confirmed or not.
    pub fn inbound(&self) -> u32 {
        self.inbound
    }

    /// The stanza just counted goes to another server: it is handled once
    /// the returned handle resolves (see `sm::confirm`).
    pub fn await_confirmation(&mut self, session: std::sync::Weak<LocalSession>) -> Confirm {
        let inbound = self.inbound;
        self.pending
            .get_or_insert_with(Box::default)
            .push(inbound, session)
    }

    /// The `h` to report: stanzas received up to the oldest one whose
    /// confirmation is still awaited.
    pub fn handled(&mut self) -> u32 {
        let Some(pending) = &mut self.pending else {
            return self.inbound;
        };
        let handled = pending.handled(self.inbound);
        if pending.is_idle() {
            self.pending = None;
        }
        handled
    }

    /// Stanzas whose confirmation is awaited.
    pub fn awaiting(&self) -> usize {
        self.pending.as_ref().map_or(0, |pending| pending.waiting())
    }

    /// The client's `<r/>`: the `h` to answer with now, or `None` when
    /// stanzas it sent before wait for their confirmation (answered by
    /// [`SmState::answerable`] once they are).
    pub fn ack_request(&mut self) -> Option<u32> {
        let handled = self.handled();
        if handled == self.inbound {
            return Some(handled);
        }
        let inbound = self.inbound;
        self.pending
            .get_or_insert_with(Box::default)
            .defer_request(inbound);
        None
    }

    /// How many waiting `<r/>`s can be answered now, and with which `h`.
    pub fn answerable(&mut self) -> (usize, u32) {
        if self.pending.is_none() {
            return (0, self.inbound);
        }
        let handled = self.handled();
        let due = self
            .pending
            .as_mut()
            .map_or(0, |pending| pending.answerable(handled));
        if self
            .pending
            .as_ref()
            .is_some_and(|pending| pending.is_idle())
        {
            self.pending = None;
        }
        (due, handled)
    }

    /// The session is resumed or ends: what is confirmed is the count from
    /// now on; the client sends the rest again (XEP-0198 4), and stanzas
    /// still travelling may then reach their server twice.
    pub fn settle(&mut self) -> u32 {
        self.inbound = self.handled();
        self.pending = None;
        self.inbound
    }

    pub fn acked(&self) -> u32 {
        self.acked
    }

    /// Stanzas sent since `<enable/>` (modulo 2^32).
    pub fn sent(&self) -> u32 {
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// A stanza was written to the client.
    pub fn wrote(&mut self, stanza: Box<Element>) {
        self.unacked.push_back(stanza);
        self.since_request = self.since_request.saturating_add(1);
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// The unacknowledged stanzas, oldest first (resent after a resumption).
    pub fn unacked(&self) -> impl Iterator<Item = &Element> {
        self.unacked.iter().map(|stanza| &**stanza)
    }

    /// Takes the unacknowledged stanzas (the session ends or moves).
    pub fn take_unacked(&mut self) -> Vec<Box<Element>> {
        std::mem::take(&mut self.unacked).into()
    }

    /// Unacknowledged stanzas written since the last `<r/>`.
    pub fn since_request(&self) -> u32 {
        self.since_request
    }

    /// An `<r/>` goes out now.
    pub fn requested(&mut self) {
        self.request_pending = true;
        self.requested_at = Some(tokio::time::Instant::now());
        self.since_request = 0;
    }

    /// The client's `<a h/>` (or the `h` of its `<resume/>`): drops what it
    /// acknowledged; returns how many stanzas that was.
    pub fn acknowledge(&mut self, h: u32) -> Result<usize, TooHigh> {
        let count = h.wrapping_sub(self.acked) as usize;
        if count > self.unacked.len() {
            return Err(TooHigh {
                h,
                sent: self.sent(),
            });
        }
        self.unacked.drain(..count);
        if self.unacked.is_empty() && self.unacked.capacity() > 64 {
            // A burst must not pin its buffer for the session's lifetime.
            self.unacked = VecDeque::new();
        }
        self.acked = h;
        self.request_pending = false;
        self.requested_at = None;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::xml::ns;

    fn message(n: u32) -> Box<Element> {
        Box::new(Element::new("message", ns::CLIENT).with_attr("id", n.to_string()))
    }

    #[test]
    fn acks_drop_what_they_cover_and_no_more() {
        let mut sm = SmState::default();
        for n in 0..5 {
            sm.wrote(message(n));
        }
        assert_eq!(sm.sent(), 5);
        assert_eq!(sm.acknowledge(2), Ok(2));
        assert_eq!(sm.unacked().next().and_then(|m| m.attr("id")), Some("2"));
        assert_eq!(sm.acknowledge(2), Ok(0), "a repeated ack is harmless");
        assert_eq!(sm.acknowledge(7), Err(TooHigh { h: 7, sent: 5 }));
        assert_eq!(sm.acknowledge(5), Ok(3));
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut sm = SmState::restored(u32::MAX, u32::MAX - 1, Vec::new(), None);
        sm.received();
        assert_eq!(sm.inbound(), 0);
        sm.wrote(message(1));
        sm.wrote(message(2));
        sm.wrote(message(3));
        assert_eq!(sm.sent(), 1);
        assert_eq!(sm.acknowledge(0), Ok(2), "h wrapped past zero");
        assert_eq!(sm.acknowledge(1), Ok(1));
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn a_resumable_session_with_nothing_unacknowledged_stays_small() {
        // What a session pays for stream management: this box, its id
        // string (32 bytes) and a registry entry; the queue allocates only
        // when stanzas wait.
        let size = std::mem::size_of::<SmState>();
        assert!(size <= 160, "SmState is {size} bytes");
        let sm = SmState::new(None);
        assert_eq!(sm.unacked.capacity(), 0);
    }

    #[test]
    fn an_ack_request_waits_for_confirmations_and_resumption_settles() {
        let mut sm = SmState::default();
        sm.received();
        sm.received();
        let confirm = sm.await_confirmation(std::sync::Weak::new());
        sm.received();
        assert_eq!(sm.handled(), 1, "stanza 2 waits, and 3 after it");
        assert_eq!(sm.ack_request(), None);
        assert_eq!(sm.answerable(), (0, 1));
        drop(confirm);
        assert_eq!(sm.answerable(), (1, 3));
        assert_eq!(sm.awaiting(), 0);
        assert_eq!(sm.ack_request(), Some(3));
        assert!(sm.pending.is_none(), "nothing kept once nothing waits");

        sm.received();
        let _travelling = sm.await_confirmation(std::sync::Weak::new());
        assert_eq!(sm.settle(), 3, "the client sends stanza 4 again");
        assert_eq!(sm.inbound(), 3);
        sm.received();
        assert_eq!(sm.handled(), 4);
    }

    #[test]
    fn a_request_resets_the_count_until_the_next_ack() {
        let mut sm = SmState::default();
        sm.wrote(message(1));
        sm.wrote(message(2));
        assert_eq!(sm.since_request(), 2);
        sm.requested();
        assert!(sm.request_pending);
        assert_eq!(sm.since_request(), 0);
        sm.acknowledge(1).unwrap();
        assert!(!sm.request_pending);
    }
}
