//! Black-box tests of federation (RFC 6120 server-to-server streams):
//! real `starling` processes serving different domains on 127.0.0.1,
//! finding each other through `[s2s.routes]`, with clients on each.
//!
//! - t10: two servers: messages, presence subscriptions and broadcast,
//!   iqs to the remote server and accounts; dialback without valid
//!   certificates, SASL EXTERNAL with a test CA.
//! - t20: refusals: `require_valid_certificates`, a peer that spoofs its
//!   `from`, a wrong dialback key, stanzas before authentication.
//! - t25: a peer whose certificate names another domain: refused where
//!   valid certificates are required, dialback otherwise.
//! - t30: no stream: an unresolvable domain, a peer that never answers.
//! - t40: a three-node cluster federating with a single node.
//! - t45: two two-node clusters federating, dialback and EXTERNAL.
//! - t50: peers found through DNS (SRV, then the address) in a private
//!   network namespace with its own DNS server; unresolvable domains.
//! - t60: a three-node cluster and Prosody, both ways, found by DNS.
//! - t65: XEP-0288 bidirectional streams between two servers.
//! - t66: XEP-0288 with Prosody, either side dialing.
//! - t70: a three-node cluster and ejabberd, both ways, found by DNS.
//! - t80: pub/sub, PEP, rosters and MUC between that cluster and Prosody.
//! - t85: a hanging dialback verification; `max_inbound_streams`.
//! - t90: a member killed while its users' messages flow to another
//!   server: nothing a client saw acknowledged is lost.

mod support;

mod t10_two_servers;
mod t20_refusals;
mod t25_foreign_certificate;
mod t30_unreachable;
mod t40_cluster;
mod t45_clusters;
mod t50_dns;
mod t60_prosody;
mod t65_bidi;
mod t66_prosody_bidi;
mod t70_ejabberd;
mod t80_remote_services;
mod t85_limits;
mod t90_member_killed;
