//! starling-xmpp: the XMPP server and the `starling` binary.
//!
//! Inbound, a client's bytes go `c2s` → `stream` (events) → `stanza` (typed
//! addressing) → `router`, which delivers to a `session` here or, through
//! the cluster seam in `starling_core::cluster`, to the node that owns the
//! recipient. What the server answers or does itself is a feature module
//! (`modules`: presence, roster, offline, disco, ping, version, register,
//! pub/sub ...), which the router calls through the registry's hooks.
//! Engines the modules share:
//!
//! - `roster`: roster items, the subscription state machine, the roster cache.
//! - `pubsub`: XEP-0060 on `pubsub.<domain>`, its cluster fan-out, and the
//!   seam the CometD bridge subscribes and publishes through.
//!
//! Federation with other servers is `s2s` (the router's way out for other
//! domains, and a listener whose stanzas enter the router).
//!
//! Around them: `auth` (SASL mechanisms and SCRAM credentials), `users`
//! (accounts), `storage` (sqlx, SQLite or PostgreSQL), `tls`, `metrics`,
//! `server` (the shared state), `piefxis` (the XEP-0227 import/export
//! format) and `cli` (the commands of the binary).

pub mod accept;
pub mod auth;
pub mod balance;
pub mod c2s;
pub mod cli;
pub mod http;
pub mod metrics;
pub mod modules;
pub mod piefxis;
pub mod pubsub;
pub mod roster;
pub mod router;
pub mod s2s;
pub mod server;
pub mod session;
pub mod sm;
pub mod stanza;
pub mod storage;
pub mod stream;
pub mod tls;
pub mod users;
pub mod util;

/// A boxed future, for the recursive routing paths.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
