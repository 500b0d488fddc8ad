//! Black-box tests of what a user with several devices relies on: XEP-0280
//! message carbons, on one node and with the devices on different members
//! of a cluster.

mod support;

mod t10_carbons;
