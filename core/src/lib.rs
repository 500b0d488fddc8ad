//! starling-core: the vocabulary Starling's crates share.
//!
//! - [`xml`]: the element tree stanzas are carried in, and its serialiser.
//! - [`jid`]: the JID types (re-exported from the `jid` crate).
//! - [`config`]: the TOML configuration tree, its defaults and validation.
//! - [`cluster`]: the seam between the server and the cluster module, and
//!   the single-node [`cluster::LocalOnly`] implementation.
//! - [`cache`]: bounded LRU caches with counters, and the registry that
//!   reports them.
//! - [`shutdown`]: one signal for every task, and a way to wait for them.
//! - [`tls_trust`]: the TLS verifier for peers trusted other than by the
//!   web PKI (cluster links, the node's own command line, test clients).
//!
//! No XMPP protocol logic and no cluster logic live here.

pub mod cache;
pub mod cluster;
pub mod config;
pub mod jid;
pub mod shutdown;
pub mod tls_trust;
pub mod xml;
