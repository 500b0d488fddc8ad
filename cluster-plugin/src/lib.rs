//! starling-cluster: the cluster module the server loads when
//! `[cluster] enabled = true`.
//!
//! - `transport`: one authenticated TCP link per pair of members, frames
//!   encoded with postcard, bounded send queues, heartbeats.
//! - `membership`: who is in the cluster and who is the senior member,
//!   held by openraft.
//! - `failure`: the failure detector (up, suspect, down).
//! - `replication`: the session directory, replicated by its owners.
//! - `node`: ties them together and implements the server's `Cluster` seam.

pub mod failure;
pub mod membership;
pub mod node;
pub mod replication;
pub mod transport;

pub use node::{ClusterError, ClusterNode, node_id_of};
pub use starling_core::cluster::ClusterStatus;
