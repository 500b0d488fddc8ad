//! starling-cluster: the cluster module the server loads when
//! `[cluster] enabled = true`.
//!
//! - `membership`: who is in the cluster and who is the senior member,
//!   held by openraft; joins, clean leaves, removals of dead members.

pub mod membership;
