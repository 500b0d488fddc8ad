//! Black-box tests of XEP-0198 stream management: acknowledgements, and
//! resumption after a lost connection on one node and on another member
//! of a cluster, with our client and with slixmpp; and of XEP-0352 client
//! state indication, which decides what such a client gets when.

mod support;

mod t10_single_node;
mod t20_cluster;
mod t30_slixmpp;
mod t40_csi;
