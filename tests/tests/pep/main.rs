//! Black-box tests of XEP-0163 personal eventing (PEP): real `starling`
//! processes, real sockets, Starling's own test client; one node, then a
//! three-node cluster with the publisher and its contacts on different
//! nodes.

mod support;

mod t10_single_node;
mod t20_cluster;
mod t30_bad_input;
