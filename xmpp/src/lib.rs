//! starling-xmpp: the XMPP server and the `starling` binary.
//!
//! Inbound, a client's bytes go `c2s` → `stream` (events) → `stanza` (typed
//! addressing) → `router`, which delivers to a `session` here or, through
//! the cluster seam in `starling_core::cluster`, to the node that owns the
//! recipient. Services the server answers itself:
//!
//! - `presence`: broadcast, probes, directed and unavailable presence.
//! - `roster`: roster items and the subscription state machine.
//! - `iq`: disco, ping, version, registration, and the catch-all error.
//! - `router::offline`: the offline message store and its flush.
//! - `pubsub`: XEP-0060 on `pubsub.<domain>`, its cluster fan-out, and the
//!   seam the CometD bridge subscribes and publishes through.
//!
//! Around them: `auth` (SASL mechanisms and SCRAM credentials), `users`
//! (accounts), `storage` (sqlx, SQLite or PostgreSQL), `tls`, `metrics`,
//! `server` (the shared state), `piefxis` (the XEP-0227 import/export
//! format) and `cli` (the commands of the binary).

pub mod auth;
pub mod balance;
pub mod c2s;
pub mod cli;
pub mod http;
pub mod iq;
pub mod metrics;
pub mod piefxis;
pub mod presence;
pub mod pubsub;
pub mod roster;
pub mod router;
pub mod server;
pub mod session;
pub mod stanza;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod users;
pub mod util;

/// A boxed future, for the recursive routing paths.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
