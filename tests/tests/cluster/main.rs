//! Black-box tests of a cluster: real `starling` processes sharing one
//! store, driven with Starling's own client (and slixmpp).
//!
//! - t10-t40, t80: what one node does for its clients works the same when
//!   the users sit on different nodes (routing, roster and presence,
//!   offline storage, order and login races, a client written by others).
//! - t50-t75: members failing, leaving, refusing strangers (t60), keeping
//!   their links private and intact (t65), being cut off from each other
//!   (t70), and clusters formed apart merging when they meet (t75).

mod support;

mod t10_routing;
mod t20_roster_presence;
mod t30_offline;
mod t40_order_and_races;
mod t50_faults;
mod t60_security;
mod t65_link_security;
mod t70_partition;
mod t75_merge;
mod t80_slixmpp;
mod t90_blocking_rosterver;
