//! What this node and one incarnation of a peer owe each other, kept across
//! that peer's links: the envelopes sent to it and not yet acknowledged,
//! numbered, and the highest number delivered from it.
//!
//! ```text
//!   send ─▶ Pair: number n, keep ─▶ current link's queue ─▶ peer
//!                   ▲                                        │
//!                   └──── Received { up_to } ◀───────────────┘  forget ≤ up_to
//!   link dies:  kept envelopes stay; sends go on being numbered and kept
//!   new link:   kept envelopes are queued on it first, in order
//!   peer down:  kept envelopes are handed back for routing again, split
//!               into those some link began to write (the peer may have
//!               handled them) and those no link ever wrote (it cannot have)
//! ```
//!
//! The peer delivers an envelope only if its number is above the highest it
//! delivered from this pair; one at or below is a copy sent again after a
//! link flap and is dropped. A pair's envelopes are numbered and queued
//! under one lock, and a new link gets the kept ones before any new one,
//! so numbers arrive in order on every link: a flap of the link between two
//! running members loses nothing and delivers nothing twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use starling_core::cluster::{ForwardError, NodeId};

use super::Link;
use super::frame::{Frame, WireEnvelope};

/// What a given-up peer had not acknowledged, oldest first in each part;
/// every unconfirmed envelope is older than every unsent one.
#[derive(Default)]
pub struct HandedBack {
    /// Begun to be written on some link: the peer may have handled them.
    pub unconfirmed: Vec<WireEnvelope>,
    /// Never written on any link: the peer cannot have seen them.
    pub unsent: Vec<WireEnvelope>,
}

impl HandedBack {
    pub fn is_empty(&self) -> bool {
        self.unconfirmed.is_empty() && self.unsent.is_empty()
    }
}

pub struct Pair {
    node: NodeId,
    /// The peer's incarnation this pair belongs to.
    pub incarnation: u64,
    out: Mutex<Outbound>,
    /// Highest number delivered from the peer.
    delivered: AtomicU64,
    /// The `delivered` last told to the peer.
    acknowledged: AtomicU64,
    /// Highest number a link began to write to its socket: above it, no
    /// envelope can have reached the peer.
    written: AtomicU64,
    /// Most envelopes kept unacknowledged; a send beyond is refused.
    keep: usize,
}

struct Outbound {
    /// The number of the next envelope (the first is 1).
    next: u64,
    /// Sent or waiting for a link, not acknowledged yet, oldest first.
    kept: VecDeque<WireEnvelope>,
    /// The link that carries new envelopes (none between links).
    link: Option<Arc<Link>>,
    /// Handed back after the peer was declared down: sends are refused until
    /// a link to the same incarnation comes back.
    abandoned: bool,
}

impl Pair {
    pub fn new(node: NodeId, incarnation: u64, keep: usize) -> Pair {
        Pair {
            node,
            incarnation,
            out: Mutex::new(Outbound {
                next: 1,
                kept: VecDeque::new(),
                link: None,
                abandoned: false,
            }),
            delivered: AtomicU64::new(0),
            acknowledged: AtomicU64::new(0),
            written: AtomicU64::new(0),
            keep,
        }
    }

    fn out(&self) -> MutexGuard<'_, Outbound> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers and keeps an envelope, and queues it on the current link if
    /// there is one; without one it waits for the next link. Refused when
    /// too many are kept or the link's queue is full (`QueueFull`), or when
    /// the peer was given up (`LinkDown`).
    pub fn send(&self, mut envelope: WireEnvelope) -> Result<(), ForwardError> {
        let mut out = self.out();
        if out.abandoned {
            return Err(ForwardError::LinkDown(self.node));
        }
        if out.kept.len() >= self.keep {
            return Err(ForwardError::QueueFull(self.node));
        }
        envelope.seq = out.next;
        if let Some(link) = out.link.as_ref().filter(|link| !link.is_closed()) {
            match link.enqueue(Frame::Envelope(envelope.clone())) {
                Ok(()) | Err(ForwardError::LinkDown(_)) => {}
                Err(full) => return Err(full),
            }
        }
        out.next += 1;
        out.kept.push_back(envelope);
        Ok(())
    }

    /// Makes `link` the one that carries this pair's envelopes and queues
    /// every kept one on it, oldest first. Returns how many were queued
    /// again.
    pub fn attach(&self, link: &Arc<Link>) -> usize {
        let mut out = self.out();
        out.abandoned = false;
        out.link = Some(link.clone());
        for envelope in &out.kept {
            if link.enqueue(Frame::Envelope(envelope.clone())).is_err() {
                // A fresh queue holds `keep` frames: only a closed link
                // refuses, and the next one sends them again.
                break;
            }
        }
        out.kept.len()
    }

    /// `link` closed: new envelopes wait for the next one.
    pub fn detach(&self, link: &Arc<Link>) {
        let mut out = self.out();
        if out
            .link
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, link))
        {
            out.link = None;
        }
    }

    /// The peer delivered everything up to `up_to`: forget those.
    pub fn acknowledged_up_to(&self, up_to: u64) {
        let mut out = self.out();
        while out.kept.front().is_some_and(|kept| kept.seq <= up_to) {
            out.kept.pop_front();
        }
    }

    /// A link is about to write envelopes up to `seq` to its socket. Said
    /// before the write, so that a hand-back racing with it errs towards
    /// "may have been handled".
    pub fn writing_up_to(&self, seq: u64) {
        self.written.fetch_max(seq, Ordering::AcqRel);
    }

    /// The peer was given up: the kept envelopes, for routing again. Sends
    /// are refused until a link to this incarnation is attached again.
    pub fn abandon(&self) -> HandedBack {
        let mut out = self.out();
        out.abandoned = true;
        out.link = None;
        let written = self.written.load(Ordering::Acquire);
        let mut handed = HandedBack::default();
        for envelope in out.kept.drain(..) {
            if envelope.seq <= written {
                handed.unconfirmed.push(envelope);
            } else {
                handed.unsent.push(envelope);
            }
        }
        handed
    }

    /// Envelopes kept (sent or waiting) and not acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.out().kept.len()
    }

    /// Claims envelope `seq` from the peer for delivery: false for one at or
    /// below the highest delivered (a copy sent again after a link flap).
    pub fn first_delivery(&self, seq: u64) -> bool {
        let mut current = self.delivered.load(Ordering::Acquire);
        loop {
            if seq <= current {
                return false;
            }
            match self.delivered.compare_exchange_weak(
                current,
                seq,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Deliveries not told to the peer yet.
    pub fn unacknowledged_deliveries(&self) -> u64 {
        self.delivered
            .load(Ordering::Acquire)
            .saturating_sub(self.acknowledged.load(Ordering::Acquire))
    }

    /// The acknowledgement to send, if deliveries happened since the last.
    pub fn take_acknowledgement(&self) -> Option<u64> {
        let delivered = self.delivered.load(Ordering::Acquire);
        (self.acknowledged.swap(delivered, Ordering::AcqRel) != delivered).then_some(delivered)
    }

    /// An acknowledgement could not be queued: say it again next time.
    pub fn acknowledgement_lost(&self) {
        self.acknowledged.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::WireKind;

    fn envelope(body: &str) -> WireEnvelope {
        WireEnvelope {
            from: "a@x/r".to_owned(),
            to: "b@x/r".to_owned(),
            kind: WireKind::Message,
            xml: bytes::Bytes::from(body.to_owned()),
            hops: 1,
            seq: 0,
        }
    }

    fn bodies(envelopes: &[WireEnvelope]) -> Vec<&[u8]> {
        envelopes.iter().map(|e| &e.xml[..]).collect()
    }

    #[test]
    fn a_given_up_peer_hands_back_written_and_never_written_apart() {
        let pair = Pair::new(NodeId(2), 7, 100);
        for body in ["1", "2", "3", "4", "5"] {
            pair.send(envelope(body)).unwrap();
        }
        pair.acknowledged_up_to(1);
        // A link began writing up to 3, then died.
        pair.writing_up_to(3);
        let handed = pair.abandon();
        assert_eq!(bodies(&handed.unconfirmed), [b"2", b"3"]);
        assert_eq!(bodies(&handed.unsent), [b"4", b"5"]);
        // Given up: nothing more is taken, nothing is handed back twice.
        assert!(pair.send(envelope("6")).is_err());
        assert!(pair.abandon().is_empty());
    }

    #[test]
    fn what_no_link_ever_wrote_is_all_unsent() {
        let pair = Pair::new(NodeId(2), 7, 100);
        pair.send(envelope("1")).unwrap();
        let handed = pair.abandon();
        assert!(handed.unconfirmed.is_empty());
        assert_eq!(bodies(&handed.unsent), [b"1"]);
    }
}
