//! Cluster membership held by openraft (to be written).
