//! Black-box tests of XEP-0045 multi-user chat: real `starling` processes,
//! real sockets, Starling's own test client; one node, then a three-node
//! cluster with occupants on every member and the room's host killed;
//! slixmpp's own MUC plugin as an independent client.

mod support;

mod t10_single_node;
mod t20_cluster;
mod t30_bad_input;
mod t40_slixmpp;
mod t50_moderation;
mod t60_registration;
mod t70_occupant_iqs;
mod t80_load;
