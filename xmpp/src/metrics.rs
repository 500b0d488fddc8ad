//! Counters for everything an operator wants to graph.
//!
//! Plain relaxed atomics: incremented on the hot path, read by `/metrics` and
//! the admin page. Every stanza routed ends in exactly one [`Outcome`].

use std::sync::atomic::{AtomicU64, Ordering};

use starling_core::cluster::StanzaKind;

/// How the routing of one stanza ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Queued for a session on this node or handed to the owner node.
    Delivered,
    /// Kept in the offline store for the user's next login.
    StoredOffline,
    /// Answered with a stanza error to the sender.
    Bounced,
    /// Dropped because the RFC says so (e.g. a headline for an offline user,
    /// an error stanza nobody can take, unavailable presence to nobody).
    Discarded,
    /// Handled by the server itself (iq to the server, probe answered, ...).
    Handled,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Delivered,
        Outcome::StoredOffline,
        Outcome::Bounced,
        Outcome::Discarded,
        Outcome::Handled,
    ];

    /// The name `/metrics` and the HTTP API use.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::StoredOffline => "stored",
            Outcome::Bounced => "bounced",
            Outcome::Discarded => "discarded",
            Outcome::Handled => "handled",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_open: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub logins: AtomicU64,
    pub auth_failures: AtomicU64,
    pub stream_errors: AtomicU64,
    stanzas_in: [AtomicU64; 3],
    stanzas_out: [AtomicU64; 3],
    outcomes: [AtomicU64; 5],
    /// Stanzas handed to a session on this node.
    pub routed_local: AtomicU64,
    /// Stanzas handed to a peer link for a session on another node.
    pub routed_remote: AtomicU64,
    pub lookup_retries: AtomicU64,
    pub lookup_misses: AtomicU64,
    pub offline_delivered: AtomicU64,
}

fn kind_index(kind: StanzaKind) -> usize {
    match kind {
        StanzaKind::Message => 0,
        StanzaKind::Presence => 1,
        StanzaKind::Iq => 2,
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Delivered => 0,
        Outcome::StoredOffline => 1,
        Outcome::Bounced => 2,
        Outcome::Discarded => 3,
        Outcome::Handled => 4,
    }
}

pub fn incr(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn stanza_in(&self, kind: StanzaKind) {
        incr(&self.stanzas_in[kind_index(kind)]);
    }

    pub fn stanza_out(&self, kind: StanzaKind) {
        incr(&self.stanzas_out[kind_index(kind)]);
    }

    pub fn outcome(&self, outcome: Outcome) {
        incr(&self.outcomes[outcome_index(outcome)]);
    }

    pub fn stanzas_in(&self, kind: StanzaKind) -> u64 {
        self.stanzas_in[kind_index(kind)].load(Ordering::Relaxed)
    }

    /// Stanzas this node's clients sent and received so far, every kind.
    pub fn client_stanzas(&self) -> u64 {
        [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq]
            .into_iter()
            .map(|kind| self.stanzas_in(kind) + self.stanzas_out(kind))
            .sum()
    }

    pub fn stanzas_out(&self, kind: StanzaKind) -> u64 {
        self.stanzas_out[kind_index(kind)].load(Ordering::Relaxed)
    }

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome_index(outcome)].load(Ordering::Relaxed)
    }
}
