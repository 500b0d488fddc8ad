//! Black-box tests of XEP-0060 pub/sub on `pubsub.<domain>`: real `starling`
//! processes, real sockets, Starling's own test client; one node first,
//! then a three-node cluster.

mod support;

mod t10_single_node;
mod t20_cluster;
mod t30_slixmpp;
mod t40_fresh_sessions;
