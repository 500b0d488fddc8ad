//! The `starling-load` driver: many XMPP clients against one server or the nodes of a
//! cluster, with honest figures.
//!
//! A run is split over K worker processes (one process can hold about 19,900 sockets), each
//! binding its sockets to its own loopback source address. The parent sends each worker a
//! [`Job`] as one JSON line, waits until every worker says it is ready (logged in, for
//! `hold` and `chat`), tells them all to go, and merges their [`WorkerReport`]s.
//!
//! - [`login`]: log users in at a fixed rate (open loop), measure login latency.
//! - [`hold`]: keep logged-in sessions open, measure the server's memory per session.
//! - [`chat`]: pairs exchange messages on a schedule, measure end-to-end latency and loss.
//! - [`converge`]: a fresh session on one node gets a message from another node right
//!   after its bind, measure how soon the cluster's directory lets it through.
//! - [`failover`]: kill a node, measure how soon its users' contacts elsewhere see them go.
//! - [`fanout`]: many subscribers of one pub/sub node (Bayeux over WebSocket, or XMPP), one
//!   publisher at a fixed rate: deliveries/s, latency and loss. [`bayeux`] is its client.
//! - [`muc`]: rooms of occupants spread over the servers, groupchat at a fixed rate:
//!   deliveries/s, loss and latency.
//! - [`servers`]: which node each connection goes to.
//! - [`worker`]: the parent/worker protocol and process handling.
//! - [`report`]: merging worker results and printing them.
//! - [`rss`]: reading a process's resident memory.
//! - [`run`]: the parent: splitting a plan over workers and merging the results.
//! - [`pep`]: the modern login storm: logins of users whose many contacts all publish an
//!   avatar and a device list (XEP-0163 last items with XEP-0115 caps), server CPU per
//!   login and memory per session.
//! - [`prosody`]: bulk user provisioning for a Prosody store, for side-by-side runs.
//! - [`cpu`]: reading a process's CPU time.
//! - [`progress`]: live counts from the workers, one line for the fleet every few seconds.

pub mod bayeux;
pub mod chat;
pub mod churn;
pub mod converge;
pub mod cpu;
pub mod failover;
pub mod fanout;
pub mod hold;
pub mod login;
pub mod mam;
pub mod muc;
pub mod pep;
pub mod progress;
pub mod prosody;
pub mod report;
pub mod rss;
pub mod run;
pub mod servers;
pub mod worker;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{LoginOptions, TlsMode};
use crate::sasl::Mechanism;
use crate::stats::Histogram;
use servers::Servers;

/// Sockets one worker may hold: the hard open-file limit here is 20,000, and a process
/// needs a few descriptors of its own.
pub const SOCKETS_PER_WORKER: u64 = 19_900;

/// Users `PREFIX<first>..PREFIX<first+count-1>`, passwords `PWPREFIX<i>` (Tsung's
/// convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    pub prefix: String,
    pub password_prefix: String,
    pub first: u64,
    pub count: u64,
}

impl Users {
    pub fn username(&self, index: u64) -> String {
        format!("{}{}", self.prefix, self.first + index)
    }

    pub fn password(&self, index: u64) -> String {
        format!("{}{}", self.password_prefix, self.first + index)
    }

    /// The sub-range `[start, start + count)` of this range.
    pub fn slice(&self, start: u64, count: u64) -> Users {
        Users {
            first: self.first + start,
            count,
            ..self.clone()
        }
    }
}

/// What the clients of a run speak to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientTransport {
    /// RFC 6120 over TCP (STARTTLS with `tls`) to the c2s port.
    #[default]
    Tcp,
    /// RFC 7395 at `/xmpp-websocket` of the HTTP port (`wss:` with `tls`).
    WebSocket,
    /// XEP-0206 BOSH at `/http-bind` of the HTTP port (`https:` with `tls`).
    Bosh,
}

/// How every connection of a run reaches and logs in to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub servers: Servers,
    pub domain: String,
    /// The domain of each server, in `servers` order, when they are different
    /// servers (federation): users logging in on server `i` are on
    /// `server_domains[i]`. Empty: every server serves `domain`.
    #[serde(default)]
    pub server_domains: Vec<String>,
    pub tls: bool,
    pub mechanism: Mechanism,
    pub resource: String,
    /// Limit for each negotiation step, in seconds.
    pub timeout_s: f64,
    /// Local address for this worker's sockets.
    pub source: Option<IpAddr>,
    /// TCP, or a web transport (then `servers` are HTTP addresses).
    #[serde(default)]
    pub transport: ClientTransport,
}

impl Connection {
    /// The address of server `index` of [`Connection::servers`].
    pub fn server(&self, index: usize) -> SocketAddr {
        self.servers.address(index)
    }

    /// The domain of the users who log in on server `index`.
    pub fn domain_of(&self, index: usize) -> &str {
        match self.server_domains.len() {
            0 => &self.domain,
            count => &self.server_domains[index % count],
        }
    }

    pub fn login_options(&self, username: String, password: String) -> LoginOptions {
        LoginOptions {
            domain: self.domain.clone(),
            username,
            password,
            resource: Some(self.resource.clone()),
            tls: if self.tls {
                TlsMode::Required
            } else {
                TlsMode::Off
            },
            mechanism: Some(self.mechanism),
            channel_binding: crate::sasl::ChannelBinding::Auto,
            legacy_session: true,
            local_addr: self.source,
            timeout: Duration::from_secs_f64(self.timeout_s.max(0.001)),
        }
    }
}

/// What one worker process is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    Login(login::LoginJob),
    Hold(hold::HoldJob),
    Chat(chat::ChatJob),
    Converge(converge::ConvergeJob),
    Failover(failover::FailoverJob),
    Fanout(fanout::FanoutJob),
    PepPublish(pep::publish::PublishJob),
    PepStorm(pep::storm::StormJob),
    Muc(muc::MucJob),
}

/// Error counts by [`crate::ClientError::kind`].
pub type ErrorCounts = BTreeMap<String, u64>;

pub fn count_error(errors: &mut ErrorCounts, kind: String) {
    progress::error();
    *errors.entry(kind).or_default() += 1;
}

pub fn merge_errors(into: &mut ErrorCounts, from: &ErrorCounts) {
    for (kind, count) in from {
        *into.entry(kind.clone()).or_default() += count;
    }
}

/// Login figures of one worker or of a whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginStats {
    pub attempted: u64,
    pub succeeded: u64,
    pub errors: ErrorCounts,
    /// From the scheduled start to a bound session, in microseconds.
    pub latency: Histogram,
    /// From the first scheduled login to the last completed one, in seconds.
    pub elapsed_s: f64,
    /// Successful logins per server, by index in [`Connection::servers`].
    #[serde(default)]
    pub by_server: Vec<u64>,
}

impl LoginStats {
    pub fn merge(&mut self, other: &LoginStats) {
        self.attempted += other.attempted;
        self.succeeded += other.succeeded;
        merge_errors(&mut self.errors, &other.errors);
        self.latency.merge(&other.latency);
        // Workers start together, so the run lasts as long as the slowest one.
        self.elapsed_s = self.elapsed_s.max(other.elapsed_s);
        if self.by_server.len() < other.by_server.len() {
            self.by_server.resize(other.by_server.len(), 0);
        }
        for (total, count) in self.by_server.iter_mut().zip(&other.by_server) {
            *total += count;
        }
    }

    /// Counts a successful login on server `server`.
    pub fn count_success(&mut self, server: usize) {
        self.succeeded += 1;
        if self.by_server.len() <= server {
            self.by_server.resize(server + 1, 0);
        }
        self.by_server[server] += 1;
    }
}

/// Everything one worker measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    pub login: LoginStats,
    pub hold: Option<hold::HoldStats>,
    pub chat: Option<chat::ChatStats>,
    pub converge: Option<converge::ConvergeStats>,
    pub failover: Option<failover::FailoverStats>,
    #[serde(default)]
    pub fanout: Option<fanout::FanoutStats>,
    #[serde(default)]
    pub pep_publish: Option<pep::publish::PublishStats>,
    #[serde(default)]
    pub pep_storm: Option<pep::storm::StormStats>,
    #[serde(default)]
    pub muc: Option<muc::MucStats>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_follow_tsung_naming() {
        let users = Users {
            prefix: "load".to_owned(),
            password_prefix: "pw".to_owned(),
            first: 1,
            count: 500,
        };
        assert_eq!(users.username(0), "load1");
        assert_eq!(users.password(499), "pw500");
        let slice = users.slice(100, 50);
        assert_eq!(slice.username(0), "load101");
        assert_eq!(slice.count, 50);
    }

    #[test]
    fn login_stats_merge_adds_counts_and_keeps_the_longest_run() {
        let mut a = LoginStats {
            attempted: 3,
            succeeded: 2,
            elapsed_s: 1.5,
            ..Default::default()
        };
        count_error(&mut a.errors, "timeout:bind".to_owned());
        let mut b = LoginStats {
            attempted: 4,
            succeeded: 4,
            elapsed_s: 2.0,
            ..Default::default()
        };
        count_error(&mut b.errors, "timeout:bind".to_owned());
        a.merge(&b);
        assert_eq!((a.attempted, a.succeeded, a.elapsed_s), (7, 6, 2.0));
        assert_eq!(a.errors["timeout:bind"], 2);
    }

    #[test]
    fn successes_are_counted_per_server_and_merged() {
        let mut a = LoginStats::default();
        a.count_success(0);
        a.count_success(2);
        a.count_success(2);
        assert_eq!((a.succeeded, a.by_server.clone()), (3, vec![1, 0, 2]));
        let mut b = LoginStats::default();
        b.count_success(1);
        b.count_success(3);
        a.merge(&b);
        assert_eq!(a.by_server, vec![1, 1, 2, 1]);
        let mut short = LoginStats::default();
        short.merge(&a);
        assert_eq!(short.by_server, vec![1, 1, 2, 1]);
        assert_eq!(short.succeeded, 5);
    }
}
