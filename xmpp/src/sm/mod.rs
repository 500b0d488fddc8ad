//! XEP-0198 stream management: acknowledgements both ways and resumption
//! of a session on any member of the cluster.
//!
//! - `state`: the counters and the unacknowledged queue (no I/O).
//! - `confirm`: stanzas to other servers counted once confirmed (no I/O).
//! - `token`: resumption ids: the creating member and 128 random bits.
//! - `wire`: the elements the server sends.
//! - `registry`: this member's resumable sessions and pending takeovers.
//! - `resume`: a client's `<resume/>`: the session from here or another member.
//! - `handover`: moving a session between members (state out, state in).
//!
//! The connection side lives in `c2s::session_loop` (counting, acks,
//! detaching when the socket goes) and `c2s::detached` (the wait for a
//! resumption). The `sm` module (`modules::sm`) offers the feature and
//! holds the service below.

pub mod confirm;
pub mod handover;
pub mod registry;
pub mod resume;
pub mod state;
pub mod token;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

pub use self::confirm::Confirm;
pub use self::registry::{Registry, Taken};
pub use self::state::{Resumption, SmState};

/// `[modules.sm]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmConfig {
    /// Longest a session whose socket is gone waits for its client to
    /// resume (the `max` of `<enabled/>`; a client may ask for less).
    pub max_resume_secs: u32,
    /// The server asks for an acknowledgement after this many
    /// unacknowledged stanzas...
    pub request_every: u32,
    /// ... or once stanzas have waited this long unacknowledged.
    pub request_after_ms: u64,
    /// A client that leaves an `<r/>` unanswered this long has lost its
    /// connection: a resumable session detaches (0: wait for the idle
    /// timeout instead).
    pub ack_timeout_ms: u64,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig {
            max_resume_secs: 300,
            request_every: 5,
            request_after_ms: 5000,
            ack_timeout_ms: 60_000,
        }
    }
}

/// What the connections of this member share for stream management.
pub struct StreamManagement {
    pub config: SmConfig,
    pub registry: Registry,
    pub counters: Counters,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub enabled: AtomicU64,
    pub resumed: AtomicU64,
    /// Resumptions of a session another member held.
    pub resumed_from_peer: AtomicU64,
    /// Sessions handed to another member.
    pub handed_over: AtomicU64,
    pub failed: AtomicU64,
    /// Detached sessions whose window closed.
    pub expired: AtomicU64,
    /// Handovers that reached no member (see `handover::abandoned`).
    pub abandoned: AtomicU64,
    /// Sessions waiting for their client now.
    pub detached: AtomicU64,
}

impl Counters {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl StreamManagement {
    pub fn new(config: SmConfig) -> StreamManagement {
        StreamManagement {
            config,
            registry: Registry::default(),
            counters: Counters::default(),
        }
    }

    /// The resumption window granted to a client that asked for `wanted`.
    pub fn max_secs(&self, wanted: Option<u32>) -> u32 {
        let max = self.config.max_resume_secs;
        wanted.map_or(max, |wanted| wanted.clamp(1, max.max(1)))
    }

    pub fn request_after(&self) -> Duration {
        Duration::from_millis(self.config.request_after_ms.max(1))
    }

    pub fn ack_timeout(&self) -> Option<Duration> {
        (self.config.ack_timeout_ms > 0).then(|| Duration::from_millis(self.config.ack_timeout_ms))
    }
}
