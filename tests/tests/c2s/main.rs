//! Black-box tests of one node's client side: real `starling` processes,
//! real sockets, Starling's own test client.

mod support;
mod wire;

mod t10_login;
mod t20_roster;
mod t30_presence;
mod t40_messages;
mod t50_iq;
mod t60_accounts;
mod t70_bad_input;
mod t80_limits;
mod t90_blocking_rosterver;
