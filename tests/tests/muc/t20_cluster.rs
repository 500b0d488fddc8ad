//! Group chat across a three-node cluster.
