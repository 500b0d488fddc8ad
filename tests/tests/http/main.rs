//! Black-box tests of the HTTP side against real three-node clusters:
//! the JSON APIs with HTTP Basic, `/metrics`, and the load balancer
//! (`/lb/{username}` and see-other-host, with our client and slixmpp).
//!
//! - t10: the member table: every node agrees; a SIGKILLed member is down
//!   on every survivor within the failure-detection bound, and up again
//!   after a restart.
//! - t20: caches, sessions (kick, here and across nodes), users, messages.
//! - t30: `/metrics` parses as Prometheus text with every family listed.
//! - t40: capacities 2/3/5 and 10 users: `/lb` answers, stickiness, a full
//!   node's see-other-host.
//! - t50: `starling cluster status` against a node serving HTTPS, trusting
//!   only the certificate its config serves.

mod support;

mod t10_members;
mod t20_api;
mod t30_metrics;
mod t40_balance;
mod t50_status_tls;
