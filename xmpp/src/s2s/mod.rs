//! Federation: RFC 6120 server-to-server streams.
//!
//! ```text
//!  router ──(other domain)──▶ outbound: one stream per (our domain, remote domain)
//!                               on this node; connect.rs dials, negotiates
//!                               TLS and authenticates (SASL EXTERNAL or dialback)
//!  listener ──▶ inbound: negotiation, checks on every stanza ──▶ router
//! ```
//!
//! XEP-0288: a stream either side asked to be bidirectional carries
//! stanzas both ways (`bidi.rs` on the receiving side, `outbound.rs` on
//! the initiating side); `check.rs` checks what a peer sends on either.
//!
//! Every member runs its own listener and its own outgoing streams; keys
//! for dialback (`dialback.rs`) verify on any member. See ARCHITECTURE.md,
//! "Federation".

mod bidi;
mod check;
mod connect;
pub(crate) mod dialback;
mod inbound;
pub mod listener;
pub mod metrics;
mod outbound;
mod resolve;
pub mod streams;
mod tls;
mod verify;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::config::{Config, S2sConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::stream::Limits;

pub use self::metrics::S2sMetrics;
pub use self::outbound::{answered, queue, send};

/// The node's federation service: configuration, TLS, keys, and the
/// outgoing streams this node holds.
pub struct S2s {
    config: S2sConfig,
    keys: dialback::DialbackKeys,
    trust: tls::PeerTrust,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// XEP-0368: the same, with ALPN `xmpp-server`.
    direct_connector: TlsConnector,
    resolver: resolve::Resolver,
    links: Mutex<HashMap<outbound::Pair, Arc<outbound::Link>>>,
    /// `max_inbound_streams`: one permit per incoming stream.
    inbound_permits: Arc<tokio::sync::Semaphore>,
    /// Numbers the links, for the ids of their barriers.
    next_link: std::sync::atomic::AtomicU64,
    pub metrics: S2sMetrics,
    /// The streams open on this node, and per-domain counters.
    pub streams: Arc<streams::Streams>,
}

impl S2s {
    pub fn new(
        config: &Config,
        certificate: Arc<crate::tls::ReloadableCertificate>,
    ) -> anyhow::Result<S2s> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(S2s {
            config: config.s2s.clone(),
            keys: dialback::DialbackKeys::from_config(config),
            trust: tls::PeerTrust::from_config(config, &provider)?,
            acceptor: tls::acceptor(certificate.clone(), provider.clone())?,
            connector: tls::connector(certificate.clone(), provider.clone(), false)?,
            direct_connector: tls::connector(certificate, provider, true)?,
            resolver: resolve::Resolver::new(config.s2s.routes.clone()),
            links: Mutex::new(HashMap::new()),
            inbound_permits: Arc::new(tokio::sync::Semaphore::new(config.s2s.max_inbound_streams)),
            next_link: std::sync::atomic::AtomicU64::new(0),
            metrics: S2sMetrics::default(),
            streams: Arc::default(),
        })
    }

    fn blocked(&self, domain: &str) -> bool {
        self.config
            .blocked_domains
            .iter()
            .any(|blocked| blocked.eq_ignore_ascii_case(domain))
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.idle_timeout_secs)
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.config.connect_timeout_secs)
    }

    /// The remote domains this node has an outgoing stream to (or is
    /// setting one up), with the local domain each is for.
    pub fn outgoing(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .links
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .map(|pair| (pair.local.clone(), pair.remote.clone()))
            .collect();
        pairs.sort();
        pairs
    }
}

/// The reader limits of a server stream: the client ones in force.
fn limits(server: &crate::server::Server) -> Limits {
    let limits = server.limits();
    Limits {
        max_stanza_size: limits.max_stanza_size,
        max_depth: limits.max_depth,
    }
}
