//! Black-box tests of the account data modules: XEP-0054 vcard-temp with
//! XEP-0153 photo hashes, XEP-0049 private XML storage and XEP-0012 last
//! activity; on one node, on a three-node cluster with the users on
//! different nodes, and with slixmpp's plugins.

mod support;

mod t10_single_node;
mod t20_cluster;
mod t30_slixmpp;
