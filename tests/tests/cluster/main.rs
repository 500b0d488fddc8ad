//! Black-box tests of a cluster: real `starling` processes sharing one
//! store, driven with Starling's own client: members failing, leaving,
//! refusing strangers and being cut off from each other.

mod t50_faults;
mod t60_security;
mod t70_partition;
