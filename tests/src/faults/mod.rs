//! A fault campaign under load: three members, each in its own network
//! namespace, sharing a PostgreSQL store; sessions chatting in pairs
//! ([`driver`]) while faults are injected one after another, each followed
//! by its recovery; then a check of what every client sent and received.
//!
//! The faults, in order (the member hit rotates from one round to the next):
//!
//! - `kill`: SIGKILL of a member, restarted at once;
//! - `stop`: SIGSTOP of a member for 5 s, then SIGCONT;
//! - `partition`: a member cut from the other two, both ways, for 20 s;
//! - `one-way`: member A hears member B, B does not hear A (B drops what A
//!   sends), for 20 s;
//! - `half-open`: a member's client connections fall silent (both ways
//!   dropped, no RST), for 20 s: its clients must notice and move;
//! - `loss-latency`: 5 % loss and 50 ms latency on every member's link
//!   (`tc netem`), for a minute; on a kernel without `sch_netem`, an
//!   nftables rule drops 5 % of what each member sends and a netfilter
//!   queue holds the rest for 50 ms ([`delay`]), and the report says which;
//! - `store`: PostgreSQL unreachable (its packets dropped) for 10 s.
//!
//! For each fault the campaign measures the time to recover (from the end
//! of the fault until every directed stream has delivered a message sent
//! after it), then 5 s later compares each member's session directory with
//! the sessions the clients hold (ghosts: entries beyond them) and checks
//! that every session sees its partner available. At the end it counts,
//! per fault (by when a message was sent, or arrived): messages the server
//! acked that never arrived (lost), duplicates and reordering per pair.
//!
//! Needs root, `ip`, `nft`, `tc`, `iptables-legacy` (for the netfilter
//! queue where netem is missing) and a PostgreSQL database (a URL; the
//! campaign works in a schema of its own, dropped at the end). The members
//! reach the database through a relay on this side of the bridge, so the
//! database needs no other address than its own.

pub mod delay;
pub mod driver;
pub mod net;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{Instant, sleep};

use crate::latency::LatencyRelay;
use crate::node::{NodeBuilder, TestNode};
use driver::{Driver, DriverConfig, Shared};
use net::Net;

/// Ports inside the members' namespaces (each has its own, so every
/// member uses the same).
const C2S_PORT: u16 = 22222;
const HTTP_PORT: u16 = 22280;
const CLUSTER_PORT: u16 = 22701;
const ADMIN: (&str, &str) = ("fltadmin", "fltadmin-pw");
const MEMBERS: usize = 3;
/// How long after recovery the directories and presence are checked.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// A message received later than this after it was sent (or after the end
/// of the fault it was sent during) counts as late.
pub const LATE: Duration = Duration::from_secs(30);

/// The kinds of fault, in campaign order.
pub const FAULTS: [&str; 7] = [
    "kill",
    "stop",
    "partition",
    "one-way",
    "half-open",
    "loss-latency",
    "store",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Sessions (two per pair).
    pub sessions: usize,
    /// Each session sends a message this often.
    pub interval: Duration,
    /// Keep injecting rounds of faults until this much time has passed
    /// (at least one round).
    pub duration: Duration,
    /// Scale of the long faults: 1.0 is 20 s partitions and a minute of
    /// netem; the short form shortens them.
    pub fault_scale: f64,
    /// The longest wait for recovery after a fault.
    pub recovery_limit: Duration,
    /// `postgres://user:password@host:port/database`.
    pub postgres_url: String,
    /// The store relay's port on this side's bridge address (0: any free).
    pub relay_port: u16,
    pub login_rate: f64,
    /// Only these faults (by name; empty: all of [`FAULTS`]).
    pub only: Vec<String>,
    /// Copy each member's log here at the end, and keep the store's schema
    /// (named in `store.txt` there) for a look at what was stored; the
    /// sessions seeing their partner wrong after each fault go here too
    /// (`presence-N-FAULT.txt`).
    pub logs: Option<std::path::PathBuf>,
}

/// The figures of one fault.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FaultResult {
    pub fault: String,
    /// Members hit (1-based).
    pub target: String,
    /// From the start of the campaign's load.
    pub at_s: f64,
    /// From injection to the end of the fault.
    pub length_s: f64,
    /// From the end of the fault until every stream delivered a message
    /// sent after it; `None`: not within the limit.
    pub recovery_s: Option<f64>,
    /// From the end of the fault until the last message sent during it
    /// arrived (0: all arrived during the fault).
    pub backlog_s: f64,
    /// Messages sent in this fault's window.
    pub sent: u64,
    /// Acked by the server, never received, not bounced.
    pub lost: u64,
    /// Never acked (the client resends those) and never received.
    pub unacked_unreceived: u64,
    /// Acked and received, but more than [`LATE`] after it was sent or the
    /// fault ended (whichever is later): held somewhere until something
    /// else (a new login) fetched it.
    pub late: u64,
    pub bounced: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Directory entries beyond the sessions the clients hold, at the check
    /// (the largest over the members).
    pub ghosts: i64,
    /// Sessions the clients hold, and how many sessions the members hold.
    pub clients_connected: usize,
    pub sessions_held: i64,
    /// Sessions not seeing their partner available at the check.
    pub presence_wrong: usize,
    /// Per member: sessions its directory knows (cluster-wide).
    pub directories: Vec<i64>,
}

/// The whole campaign's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignReport {
    pub sessions: usize,
    pub interval_s: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub unacked_unreceived: u64,
    pub late: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub bounced: u64,
    pub resumed: u64,
    pub relogins: u64,
    pub connection_failures: u64,
    pub faults: Vec<FaultResult>,
    /// The baseline window before the first fault and the final drain.
    pub baseline_lost: u64,
}

impl CampaignReport {
    /// Losses (acked, never received, or received late) and ghosts over
    /// the whole campaign.
    pub fn losses_and_ghosts(&self) -> (u64, i64) {
        let ghosts = self.faults.iter().map(|f| f.ghosts.max(0)).sum();
        (self.lost + self.late, ghosts)
    }

    /// The figures as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} sessions, a message each every {:.1} s, {:.0} s: sent {}, received {}, lost {}, \
             late {}, unacked-unreceived {}, duplicates {}, reordered {}, bounced {}; resumed {}, \
             logged in again {}, connection failures {}\n",
            self.sessions,
            self.interval_s,
            self.duration_s,
            self.sent,
            self.received,
            self.lost,
            self.late,
            self.unacked_unreceived,
            self.duplicates,
            self.reordered,
            self.bounced,
            self.resumed,
            self.relogins,
            self.connection_failures
        );
        out.push_str(
            "fault         target        at(s)  len(s)  recover(s)  backlog(s)  sent    lost  late  unacked  dup  reord  \
             bounced  ghosts  presence-wrong  held/clients  directories\n",
        );
        for f in &self.faults {
            out.push_str(&format!(
                "{:<13} {:<13} {:>5.0}  {:>6.1}  {:>10}  {:>10.1}  {:>6}  {:>4}  {:>4}  {:>7}  {:>3}  {:>5}  {:>7}  \
                 {:>6}  {:>14}  {:>5}/{:<6}  {:?}\n",
                f.fault,
                f.target,
                f.at_s,
                f.length_s,
                f.recovery_s
                    .map_or_else(|| "none".to_owned(), |s| format!("{s:.1}")),
                f.backlog_s,
                f.sent,
                f.lost,
                f.late,
                f.unacked_unreceived,
                f.duplicates,
                f.reordered,
                f.bounced,
                f.ghosts,
                f.presence_wrong,
                f.sessions_held,
                f.clients_connected,
                f.directories
            ));
        }
        out
    }
}

/// A running cluster of three members, one per namespace.
pub struct Cluster {
    pub net: Net,
    pub nodes: Vec<TestNode>,
    _relay: LatencyRelay,
    relay_addr: SocketAddr,
    pg: (String, String),
    keep_schema: bool,
}

impl Cluster {
    /// Creates the namespaces, the store's schema and relay, the accounts,
    /// and starts the members.
    pub fn start(config: &CampaignConfig) -> Result<Cluster, String> {
        let net = Net::start(MEMBERS)?;
        let (target, url_for) = relay_target(&config.postgres_url)?;
        let relay_listen = SocketAddr::new(net.host_addr(), config.relay_port);
        let relay_port = if config.relay_port == 0 {
            crate::node::free_port()
        } else {
            config.relay_port
        };
        let relay_listen = SocketAddr::new(relay_listen.ip(), relay_port);
        let relay = LatencyRelay::start(relay_listen, target, Duration::ZERO);
        let schema = format!("flt_{}", std::process::id());
        psql(
            &config.postgres_url,
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        )?;
        let base = url_for(relay.addr);
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={schema}");
        let secret = format!("flt-secret-{}", std::process::id());
        let mut nodes = Vec::new();
        for member in 1..=MEMBERS {
            let addr = net.addr(member);
            let seeds: Vec<String> = (1..=MEMBERS)
                .filter(|&other| other != member)
                .map(|other| format!("\"{}\"", SocketAddr::new(net.addr(other), CLUSTER_PORT)))
                .collect();
            let mut builder = NodeBuilder::default()
                .netns_named(&net.namespace(member), addr)
                .ports(C2S_PORT, HTTP_PORT)
                .plain_without_tls()
                .set("c2s", "direct_tls_bind = \"\"")
                .set("storage", &format!("url = {url:?}"))
                .set("limits", "connections_per_ip_per_sec = 0")
                .set("cluster", "enabled = true")
                .set("cluster", &format!("node_name = \"node{member}\""))
                .set(
                    "cluster",
                    &format!("bind = \"{}\"", SocketAddr::new(addr, CLUSTER_PORT)),
                )
                .set("cluster", &format!("seeds = [{}]", seeds.join(", ")))
                .set("cluster", &format!("secret = \"{secret}\""));
            if member == 1 {
                builder = builder.admin(ADMIN.0, ADMIN.1);
            }
            let node = builder.start();
            if member == 1 {
                let count = config.sessions.to_string();
                let output = node.cli(&[
                    "user",
                    "provision",
                    "--prefix",
                    "u",
                    "--count",
                    &count,
                    "--password",
                    "pw",
                    "--roster-size",
                    "2",
                    "--iterations",
                    "4096",
                ]);
                if !output.status.success() {
                    return Err(format!(
                        "user provision: {}",
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
            }
            nodes.push(node);
        }
        let cluster = Cluster {
            net,
            nodes,
            _relay: relay,
            relay_addr: SocketAddr::new(relay_listen.ip(), relay_port),
            pg: (config.postgres_url.clone(), schema),
            keep_schema: config.logs.is_some(),
        };
        for index in 0..MEMBERS {
            cluster.wait_log_count(index, "cluster ready", 1)?;
        }
        Ok(cluster)
    }

    fn wait_log_count(&self, index: usize, needle: &str, count: usize) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while self.nodes[index].log().matches(needle).count() < count {
            if std::time::Instant::now() > deadline {
                return Err(format!("node{} did not log {needle:?}", index + 1));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn servers(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|node| node.c2s).collect()
    }

    fn signal(&self, index: usize, signal: &str) -> Result<(), String> {
        let pid = self.nodes[index]
            .pid()
            .ok_or_else(|| format!("node{} is not running", index + 1))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .map_err(|error| format!("kill: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill {signal} {pid} failed"))
        }
    }

    fn restart(&mut self, index: usize) -> Result<(), String> {
        let readies = self.nodes[index].log().matches("cluster ready").count();
        self.nodes[index].spawn();
        self.wait_log_count(index, "cluster ready", readies + 1)
    }

    /// Each member's view: (its sessions, sessions its directory knows).
    async fn directories(&self) -> Vec<(i64, i64)> {
        let mut views = Vec::new();
        for node in &self.nodes {
            let request = crate::http::HttpRequest::new(node.http, "GET", "/api/sessions?limit=1")
                .basic(ADMIN.0, ADMIN.1)
                .send();
            let view = match tokio::time::timeout(Duration::from_secs(10), request).await {
                Ok(Ok(response)) if response.status == 200 => {
                    let json = response.json();
                    (
                        json["local_count"].as_i64().unwrap_or(-1),
                        json["cluster_count"].as_i64().unwrap_or(-1),
                    )
                }
                _ => (-1, -1),
            };
            views.push(view);
        }
        views
    }

    /// Injects `fault` on `member` (0-based) and ends it; returns when it
    /// ended.
    async fn inject(&mut self, fault: &str, member: usize, scale: f64) -> Result<String, String> {
        let others: Vec<usize> = (0..MEMBERS).filter(|&m| m != member).collect();
        let long = Duration::from_secs_f64(20.0 * scale);
        let name = |m: usize| format!("node{}", m + 1);
        Ok(match fault {
            "kill" => {
                self.nodes[member].kill();
                tokio::task::block_in_place(|| self.restart(member))?;
                name(member)
            }
            "stop" => {
                self.signal(member, "-STOP")?;
                sleep(Duration::from_secs(5)).await;
                self.signal(member, "-CONT")?;
                name(member)
            }
            "partition" => {
                let addrs: Vec<String> = others
                    .iter()
                    .map(|&o| self.net.addr(o + 1).to_string())
                    .collect();
                let set = format!("{{ {} }}", addrs.join(", "));
                self.net.block(
                    member + 1,
                    &[
                        ("input", format!("ip saddr {set} drop")),
                        ("output", format!("ip daddr {set} drop")),
                    ],
                )?;
                sleep(long).await;
                self.net.unblock(member + 1)?;
                name(member)
            }
            "one-way" => {
                // `member` hears `deaf`; `deaf` does not hear `member`.
                let deaf = others[0];
                let from = self.net.addr(member + 1);
                self.net
                    .block(deaf + 1, &[("input", format!("ip saddr {from} drop"))])?;
                sleep(long).await;
                self.net.unblock(deaf + 1)?;
                format!("{}->{}", name(member), name(deaf))
            }
            "half-open" => {
                let host = self.net.host_addr();
                self.net.block(
                    member + 1,
                    &[
                        (
                            "input",
                            format!("ip saddr {host} tcp dport {C2S_PORT} drop"),
                        ),
                        (
                            "output",
                            format!("ip daddr {host} tcp sport {C2S_PORT} drop"),
                        ),
                    ],
                )?;
                sleep(long).await;
                self.net.unblock(member + 1)?;
                format!("{} c2s", name(member))
            }
            "loss-latency" => {
                // tc netem where the kernel has it (sch_netem); otherwise
                // the loss from the firewall and the latency from a
                // netfilter queue (`delay.rs`).
                let mut netem = true;
                for m in 1..=MEMBERS {
                    if let Err(error) = self.net.netem(m, 50, 5.0) {
                        if m == 1 && error.contains("unknown") {
                            netem = false;
                            break;
                        }
                        return Err(error);
                    }
                }
                let mut queued = None;
                if !netem {
                    for m in 1..=MEMBERS {
                        self.net.block(
                            m,
                            &[("output", "numgen random mod 100 < 5 drop".to_owned())],
                        )?;
                    }
                    let namespaces: Vec<String> =
                        (1..=MEMBERS).map(|m| self.net.namespace(m)).collect();
                    queued = Some(delay::Delay::start(&namespaces, Duration::from_millis(50))?);
                }
                sleep(Duration::from_secs_f64(60.0 * scale)).await;
                if let Some(queued) = queued {
                    for m in 1..=MEMBERS {
                        self.net.unblock(m)?;
                    }
                    let packets = queued.stop()?;
                    if packets == 0 {
                        return Err("the netfilter queue delayed no packet".into());
                    }
                    format!("all (netfilter queue: {packets} packets delayed)")
                } else {
                    for m in 1..=MEMBERS {
                        self.net.clear_netem(m)?;
                    }
                    "all (netem)".to_owned()
                }
            }
            "store" => {
                let relay = self.relay_addr;
                let rule = format!("ip daddr {} tcp dport {} drop", relay.ip(), relay.port());
                for m in 1..=MEMBERS {
                    self.net.block(m, &[("output", rule.clone())])?;
                }
                sleep(Duration::from_secs(10)).await;
                for m in 1..=MEMBERS {
                    self.net.unblock(m)?;
                }
                "postgres".to_owned()
            }
            other => return Err(format!("no fault {other:?}")),
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let (url, schema) = &self.pg;
        if !self.keep_schema {
            let _ = psql(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
        }
    }
}

/// Where the store listens, and how to spell its URL with another address.
#[allow(clippy::type_complexity)]
fn relay_target(url: &str) -> Result<(SocketAddr, Box<dyn Fn(SocketAddr) -> String>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let (credentials, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let target = host_port
        .to_socket_addrs()
        .map_err(|error| format!("{host_port}: {error}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{host_port}: no IPv4 address"))?;
    let (scheme, credentials, path) = (scheme.to_owned(), credentials.to_owned(), path.to_owned());
    let at = if credentials.is_empty() { "" } else { "@" };
    Ok((
        target,
        Box::new(move |addr| format!("{scheme}://{credentials}{at}{addr}/{path}")),
    ))
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|error| format!("psql: {error} (install the Debian package postgresql-client)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Whether everything the campaign needs is here, and if not, why.
pub fn available(postgres_url: Option<&str>) -> Result<(), String> {
    net::available()?;
    delay::available()?;
    if crate::tools::on_path("psql").is_none() {
        return Err("psql is not on PATH: install the Debian package postgresql-client".into());
    }
    match postgres_url {
        Some(_) => Ok(()),
        None => Err("no PostgreSQL: set STARLING_TEST_POSTGRES_URL".into()),
    }
}

/// One fault as run: name, target, injected, ended, recovery.
type Window = (String, String, Instant, Instant, Option<Duration>);
/// The check after a fault: clients connected, sessions not seeing their
/// partner available, sessions, each member's (held, directory) counts.
type Check = (usize, usize, usize, Vec<(i64, i64)>);

/// Runs the campaign. Needs a multi-threaded runtime.
pub async fn run(config: CampaignConfig) -> Result<CampaignReport, String> {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(&config))?;
    let driver = Driver::start(DriverConfig {
        servers: cluster.servers(),
        domain: "localhost".to_owned(),
        sessions: config.sessions,
        interval: config.interval,
        login_rate: config.login_rate,
    });
    let login_deadline = Instant::now()
        + Duration::from_secs_f64(config.sessions as f64 / config.login_rate.max(1.0) + 60.0);
    while driver.connected() < config.sessions {
        if Instant::now() > login_deadline {
            return Err(format!(
                "only {} of {} sessions logged in",
                driver.connected(),
                config.sessions
            ));
        }
        sleep(Duration::from_millis(200)).await;
    }
    eprintln!("faults: {} sessions logged in", config.sessions);
    let start = Instant::now();
    driver.start_sending();
    // A baseline: every stream delivers before the first fault.
    wait_recovered(&driver, start, config.recovery_limit).await;
    sleep(config.interval * 2).await;
    let mut windows: Vec<Window> = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    let mut round = 0;
    'rounds: loop {
        for fault in FAULTS {
            if !config.only.is_empty() && !config.only.iter().any(|f| f == fault) {
                continue;
            }
            if round > 0 && start.elapsed() >= config.duration {
                break 'rounds;
            }
            let member = (round + FAULTS.iter().position(|f| *f == fault).unwrap_or(0)) % MEMBERS;
            let injected = Instant::now();
            eprintln!(
                "faults: {:>5.0} s: {fault} on node{}",
                start.elapsed().as_secs_f64(),
                member + 1
            );
            let target = cluster.inject(fault, member, config.fault_scale).await?;
            let healed = Instant::now();
            let recovery = wait_recovered(&driver, healed, config.recovery_limit).await;
            eprintln!(
                "faults: {fault} ended after {:.1} s, recovered in {:?}",
                (healed - injected).as_secs_f64(),
                recovery
            );
            sleep(CHECK_AFTER).await;
            if let Some(dir) = &config.logs {
                // Each such session with its own and its partner's history.
                let wrong: String = driver
                    .presence_wrong()
                    .iter()
                    .map(|&(index, seen)| {
                        format!(
                            "{} sees its partner {seen}\n{}  its partner {}:\n{}",
                            driver::username(index),
                            driver.shared.history_text(index, start),
                            driver::username(index ^ 1),
                            driver.shared.history_text(index ^ 1, start),
                        )
                    })
                    .collect();
                let _ = std::fs::create_dir_all(dir);
                let _ = std::fs::write(
                    dir.join(format!("presence-{}-{fault}.txt", windows.len() + 1)),
                    wrong,
                );
            }
            let views = cluster.directories().await;
            checks.push((
                driver.connected(),
                config.sessions - driver.presence_right(),
                config.sessions,
                views,
            ));
            windows.push((fault.to_owned(), target, injected, healed, recovery));
        }
        round += 1;
    }
    driver.stop_sending();
    let stopped = Instant::now();
    // The drain: what was acked arrives, or the limit passes.
    // (At least a few seconds: the last messages sent are still on their way.)
    while (driver.acked_missing() > 0 || stopped.elapsed() < CHECK_AFTER)
        && stopped.elapsed() < config.recovery_limit
    {
        sleep(Duration::from_millis(500)).await;
    }
    let duration = start.elapsed();
    let resumed = driver.shared.resumed.load(Ordering::Relaxed);
    let relogins = driver.shared.relogins.load(Ordering::Relaxed);
    let failures = driver.shared.connection_failures.load(Ordering::Relaxed);
    let shared = driver.finish().await;
    if let Some(dir) = &config.logs {
        let _ = std::fs::create_dir_all(dir);
        for (index, node) in cluster.nodes.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("node{}.log", index + 1)), node.log());
        }
        let _ = std::fs::write(dir.join("lost.txt"), lost_list(&shared, start));
        let (url, schema) = &cluster.pg;
        let _ = std::fs::write(
            dir.join("store.txt"),
            format!("{url} schema {schema} (kept: drop it when done)\n"),
        );
    }
    drop(cluster);
    Ok(report(
        &config, &shared, start, duration, &windows, &checks, resumed, relogins, failures,
    ))
}

/// The messages lost or late: stream (sender), number, sent, acked and
/// received (seconds from the start), one a line.
fn lost_list(shared: &Shared, start: Instant) -> String {
    let mut out = String::new();
    let secs = |at: Option<Instant>| at.map_or(-1.0, |at| (at - start).as_secs_f64());
    for (sender, stream) in shared.streams.iter().enumerate() {
        let stream = stream.lock().expect("stream lock");
        for i in 0..stream.sent_at.len() {
            let acked = stream.acked_at[i];
            let received = stream.first_received_at[i];
            let late = received.is_some_and(|r| r > stream.sent_at[i] + LATE);
            if acked.is_some() && (received.is_none() || late) {
                out.push_str(&format!(
                    "u{} -> u{} #{i}: sent {:.3} acked {:.3} received {:.3}\n",
                    sender + 1,
                    (sender ^ 1) + 1,
                    secs(Some(stream.sent_at[i])),
                    secs(acked),
                    secs(received)
                ));
            }
        }
    }
    out
}

/// Waits until every stream has delivered a message sent at or after
/// `since`; returns how long that took, or `None` past `limit`.
async fn wait_recovered(driver: &Driver, since: Instant, limit: Duration) -> Option<Duration> {
    let streams = driver.shared.streams.len();
    loop {
        if driver.streams_delivering_since(since) >= streams {
            return Some(since.elapsed());
        }
        if since.elapsed() > limit {
            return None;
        }
        sleep(Duration::from_millis(200)).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    config: &CampaignConfig,
    shared: &Shared,
    start: Instant,
    duration: Duration,
    windows: &[Window],
    checks: &[Check],
    resumed: u64,
    relogins: u64,
    failures: u64,
) -> CampaignReport {
    let mut report = CampaignReport {
        sessions: config.sessions,
        interval_s: config.interval.as_secs_f64(),
        duration_s: duration.as_secs_f64(),
        resumed,
        relogins,
        connection_failures: failures,
        ..CampaignReport::default()
    };
    let mut faults: Vec<FaultResult> = windows
        .iter()
        .zip(checks)
        .map(
            |((fault, target, injected, healed, recovery), (connected, wrong, _, views))| {
                let held: i64 = views.iter().map(|v| v.0.max(0)).sum();
                let directories: Vec<i64> = views.iter().map(|v| v.1).collect();
                let ghosts = directories
                    .iter()
                    .map(|&d| d - *connected as i64)
                    .max()
                    .unwrap_or(0)
                    .max((held - *connected as i64).max(0));
                FaultResult {
                    fault: fault.clone(),
                    target: target.clone(),
                    at_s: (*injected - start).as_secs_f64(),
                    length_s: (*healed - *injected).as_secs_f64(),
                    recovery_s: recovery.map(|r| r.as_secs_f64()),
                    ghosts,
                    clients_connected: *connected,
                    sessions_held: held,
                    presence_wrong: *wrong,
                    directories,
                    ..FaultResult::default()
                }
            },
        )
        .collect();
    // Which window an instant falls in: the fault injected last before it.
    let window = |at: Instant| windows.iter().rposition(|w| w.2 <= at);
    for stream in &shared.streams {
        let stream = stream.lock().expect("stream lock");
        for i in 0..stream.sent_at.len() {
            report.sent += 1;
            let slot = window(stream.sent_at[i]);
            let received = stream.received[i] > 0;
            let lost = stream.acked_at[i].is_some() && !received && !stream.bounced[i];
            let unacked = stream.acked_at[i].is_none() && !received;
            let due = slot.map_or(stream.sent_at[i], |slot| {
                stream.sent_at[i].max(windows[slot].3)
            });
            let late = stream.acked_at[i].is_some()
                && stream.first_received_at[i].is_some_and(|at| at > due + LATE);
            report.late += u64::from(late);
            if received {
                report.received += 1;
            }
            report.lost += u64::from(lost);
            report.unacked_unreceived += u64::from(unacked);
            report.bounced += u64::from(stream.bounced[i]);
            match slot {
                Some(slot) => {
                    let f = &mut faults[slot];
                    f.sent += 1;
                    f.lost += u64::from(lost);
                    f.late += u64::from(late);
                    f.unacked_unreceived += u64::from(unacked);
                    f.bounced += u64::from(stream.bounced[i]);
                    let healed = windows[slot].3;
                    if let Some(arrived) = stream.first_received_at[i]
                        && stream.sent_at[i] < healed
                        && arrived > healed
                    {
                        f.backlog_s = f.backlog_s.max((arrived - healed).as_secs_f64());
                    }
                }
                None => report.baseline_lost += u64::from(lost),
            }
        }
        for at in &stream.duplicate_at {
            report.duplicates += 1;
            if let Some(slot) = window(*at) {
                faults[slot].duplicates += 1;
            }
        }
        for at in &stream.reordered_at {
            report.reordered += 1;
            if let Some(slot) = window(*at) {
                faults[slot].reordered += 1;
            }
        }
    }
    report.faults = faults;
    report
}

/// The short form CI runs: every fault once, shortened, about two minutes
/// of faults.
pub fn short_form(postgres_url: String) -> CampaignConfig {
    CampaignConfig {
        sessions: 600,
        interval: Duration::from_secs(3),
        duration: Duration::ZERO,
        fault_scale: 0.5,
        recovery_limit: Duration::from_secs(60),
        postgres_url,
        relay_port: 0,
        login_rate: 100.0,
        only: Vec::new(),
        logs: None,
    }
}
