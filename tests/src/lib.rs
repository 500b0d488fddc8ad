//! starling-tests: black-box testing tools for XMPP servers, written from RFC 6120/6121
//! and independent of the server's own code.
//!
//! - [`bosh`]: BOSH (XEP-0124/0206) as a byte pipe for the client, and raw requests.
//! - [`client`]: an async XMPP client for tests (STARTTLS, SASL, bind, send/expect).
//! - [`raw`]: a raw TCP connection for bad-input tests.
//! - [`xml_reader`]: the incremental XML reader both use.
//! - [`sasl`]: the client side of SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN.
//! - [`tls`]: a TLS client config that accepts any certificate (tests only).
//! - [`transport`]: TCP/TLS connections, bound to a chosen source address if asked.
//! - [`websocket`]: XMPP over WebSocket (RFC 7395) as a byte pipe for the client.
//! - [`error`]: client errors that name the failing step and what arrived instead.
//! - [`http`]: an HTTP/1.1 client for a node's admin APIs, metrics and `/lb`.
//! - [`stats`]: mergeable latency histograms.
//! - [`load`]: the `starling-load` driver (login, hold and chat runs over worker processes).
//! - [`node`]: real `starling` processes on free ports for black-box tests.
//! - [`cluster`]: several nodes forming a cluster, with one shared store.
//! - [`netns`]: a network namespace with its own DNS server (federation by DNS).
//! - [`peers`]: Prosody and ejabberd as federation peers in such a namespace.
//! - [`pki`]: a test certificate authority (cluster links, federation).
//! - [`latency`]: a TCP relay adding latency to peer links (distant members).
//! - [`tools`]: the external tools some tests drive (slixmpp, Node.js, nftables ...), checked.
//! - [`interop`]: running those tools with a log and a time bound.
//! - [`tap`]: a TCP relay recording peer links, and flipping a byte on demand.

pub mod bosh;
pub mod client;
pub mod cluster;
pub mod error;
pub mod faults;
pub mod http;
pub mod interop;
pub mod latency;
pub mod load;
pub mod netns;
pub mod node;
pub mod peers;
pub mod pki;
pub mod raw;
pub mod sasl;
pub mod stats;
pub mod tap;
pub mod tls;
pub mod tools;
pub mod transport;
pub mod websocket;
pub mod xml_reader;

pub use client::{Client, DEFAULT_TIMEOUT, LoginOptions, SM, SmEnabled, TlsMode};
pub use cluster::{ClusterBuilder, TestCluster};
pub use error::ClientError;
pub use node::{NodeBuilder, TestNode, free_port, starling_binary};
pub use raw::{RawConnection, RawRead, connect_raw};
pub use sasl::Mechanism;
