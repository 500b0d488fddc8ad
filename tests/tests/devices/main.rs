//! Black-box tests of what a user with several devices relies on: XEP-0280
//! message carbons and XEP-0313 archives with XEP-0359 stanza ids, on one
//! node and with the devices on different members of a cluster.

mod support;

mod t10_carbons;
mod t20_mam;
mod t30_mam_prefs;
