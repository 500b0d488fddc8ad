//! Several real `starling` processes forming a cluster on 127.0.0.1.
//!
//! The nodes share one SQLite store in the cluster's temporary folder, each
//! lists the others as seeds, and all share one secret. [`TestCluster::start`]
//! returns once every node says it holds the directory and accepts logins.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::latency::{Gate, LatencyRelay};
use crate::node::{NodeBuilder, TestNode, free_port};
use crate::tap::TapRelay;

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: usize,
    users: Vec<(String, String, bool)>,
    settings: Vec<(String, String)>,
    /// Settings for one node only: (index, section, `key = value`).
    node_settings: Vec<(usize, String, String)>,
    plain_without_tls: bool,
    /// One-way latency added to every peer link (none: direct links).
    link_latency: Option<Duration>,
    /// Every peer link goes through a recording relay.
    tapped_links: bool,
    /// The served domain (default `localhost`).
    domain: Option<String>,
    /// Members run in this network namespace, each listening on its own
    /// address of it (by index).
    netns: Option<(String, Vec<std::net::IpAddr>)>,
    /// This node and the others reach each other only through gates that
    /// start shut: each side forms its own cluster.
    cut_off: Option<usize>,
}

impl ClusterBuilder {
    /// Every peer link goes through a relay that adds `one_way` latency each
    /// way (members advertise the relay in front of their peer port).
    pub fn link_latency(mut self, one_way: Duration) -> Self {
        self.link_latency = Some(one_way);
        self
    }

    /// Every peer link goes through a [`TapRelay`] in front of the
    /// accepting member's peer port ([`TestCluster::taps`]).
    pub fn tapped_links(mut self) -> Self {
        self.tapped_links = true;
        self
    }

    /// Starts node `index` cut off from the others (its seeds, and theirs
    /// for it, go through relays that close every connection), so each side
    /// forms a cluster of its own; [`TestCluster::heal`] opens the way.
    /// Set a short `[cluster] join_timeout_ms`: each side waits it out
    /// before forming.
    pub fn cut_off(mut self, index: usize) -> Self {
        self.cut_off = Some(index);
        self
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into(), false));
        self
    }

    /// An account with the admin flag (the admin page and HTTP APIs).
    pub fn admin(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into(), true));
        self
    }

    /// Sets `key = value` in `[section]` on every node.
    pub fn set(mut self, section: &str, key_value: &str) -> Self {
        self.settings.push((section.into(), key_value.into()));
        self
    }

    /// Sets `key = value` in `[section]` on node `index` (0-based) only.
    pub fn set_on(mut self, index: usize, section: &str, key_value: &str) -> Self {
        self.node_settings
            .push((index, section.into(), key_value.into()));
        self
    }

    pub fn plain_without_tls(mut self) -> Self {
        self.plain_without_tls = true;
        self
    }

    /// Serves `domain` instead of `localhost`.
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.to_owned());
        self
    }

    /// Runs member `i` inside `netns`, its client, HTTP and federation
    /// listeners on `addresses[i]` (peer links stay on the namespace's
    /// 127.0.0.1).
    pub fn netns(mut self, netns: &crate::netns::NetNs, addresses: &[std::net::IpAddr]) -> Self {
        assert_eq!(addresses.len(), self.nodes, "one address per member");
        self.netns = Some((netns.name.clone(), addresses.to_vec()));
        self
    }

    pub fn start(self) -> TestCluster {
        TestCluster::start(self)
    }
}

pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    pub secret: String,
    /// Cluster (peer) addresses, by node index.
    pub cluster_ports: Vec<u16>,
    /// Latency relays in front of the peer ports, by node index; they stop
    /// when the cluster is dropped (after the nodes).
    _relays: Vec<LatencyRelay>,
    /// Recording relays in front of the peer ports, by node index (with
    /// [`ClusterBuilder::tapped_links`]).
    pub taps: Vec<TapRelay>,
    /// The gated relays of [`ClusterBuilder::cut_off`] and their gate.
    _gates: Vec<LatencyRelay>,
    gate: Gate,
    /// The gate of the latency relays.
    links: Gate,
    dir: tempfile::TempDir,
}

impl TestCluster {
    pub fn builder(nodes: usize) -> ClusterBuilder {
        ClusterBuilder {
            nodes,
            users: Vec::new(),
            settings: Vec::new(),
            node_settings: Vec::new(),
            plain_without_tls: false,
            link_latency: None,
            tapped_links: false,
            domain: None,
            netns: None,
            cut_off: None,
        }
    }

    fn start(builder: ClusterBuilder) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("starling-cluster-")
            .tempdir()
            .expect("a temporary folder");
        let store = dir.path().join("starling.db");
        let secret = format!("test-secret-{}", std::process::id());
        let cluster_ports: Vec<u16> = (0..builder.nodes).map(|_| free_port()).collect();
        // The latency relays' gate: open, but [`TestCluster::cut_links`]
        // can close what they carry.
        let links = Gate::shut();
        links.open();
        let relays: Vec<LatencyRelay> = match builder.link_latency {
            Some(delay) => cluster_ports
                .iter()
                .map(|port| {
                    let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
                    LatencyRelay::gated(local(free_port()), local(*port), delay, links.clone())
                })
                .collect(),
            None => Vec::new(),
        };
        let taps: Vec<TapRelay> = if builder.tapped_links {
            let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
            cluster_ports
                .iter()
                .map(|port| TapRelay::start(local(free_port()), local(*port)))
                .collect()
        } else {
            Vec::new()
        };
        // Where members dial each other: the relays when there are any.
        let peer_ports: Vec<u16> = if !relays.is_empty() {
            relays.iter().map(|relay| relay.addr.port()).collect()
        } else if !taps.is_empty() {
            taps.iter().map(|tap| tap.addr.port()).collect()
        } else {
            cluster_ports.clone()
        };
        let gate = Gate::shut();
        let mut gates = Vec::new();
        // Through a shut gate: node `index`'s way to the peer at `port`.
        let mut gated = |port: u16| {
            let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let relay = LatencyRelay::gated(
                local(free_port()),
                local(port),
                Duration::ZERO,
                gate.clone(),
            );
            let port = relay.addr.port();
            gates.push(relay);
            port
        };
        let mut nodes = Vec::new();
        for index in 0..builder.nodes {
            let mut node = node_builder(&builder, index, &store, &cluster_ports, &secret);
            if peer_ports != cluster_ports {
                node = node.set(
                    "cluster",
                    &format!("advertise = \"127.0.0.1:{}\"", peer_ports[index]),
                );
            }
            let mut ways = peer_ports.clone();
            if let Some(cut) = builder.cut_off {
                for (other, port) in ways.iter_mut().enumerate() {
                    if other != index && (index == cut || other == cut) {
                        *port = gated(*port);
                    }
                }
            }
            node = node.set("cluster", &seeds(index, &ways));
            if index == 0 {
                for (name, password, admin) in &builder.users {
                    node = match admin {
                        true => node.admin(name, password),
                        false => node.user(name, password),
                    };
                }
            }
            nodes.push(node.start());
        }
        let cluster = TestCluster {
            nodes,
            secret,
            cluster_ports,
            _relays: relays,
            taps,
            _gates: gates,
            gate,
            links,
            dir,
        };
        for index in 0..cluster.nodes.len() {
            cluster.wait_ready(index);
        }
        cluster
    }

    /// Ends the cut of [`ClusterBuilder::cut_off`]: the gates pass
    /// connections from now on.
    pub fn heal(&self) {
        self.gate.open();
    }

    /// Closes every peer link at once, as a network flap does; the members
    /// link again at once. Needs [`ClusterBuilder::link_latency`] (zero
    /// will do): the links must pass its relays.
    pub fn cut_links(&self) {
        assert!(
            !self._relays.is_empty(),
            "cut_links needs the links to pass relays (ClusterBuilder::link_latency)"
        );
        self.links.cut();
    }

    /// Holds every peer link's traffic, both ways, until
    /// [`TestCluster::release_links`]: the links stay up but carry nothing,
    /// as on a stalled path. Needs [`ClusterBuilder::link_latency`].
    pub fn hold_links(&self) {
        assert!(
            !self._relays.is_empty(),
            "hold_links needs the links to pass relays (ClusterBuilder::link_latency)"
        );
        self.links.hold();
    }

    pub fn release_links(&self) {
        self.links.release();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&self, index: usize) -> &TestNode {
        &self.nodes[index]
    }

    /// Waits until node `index` logs that it accepts logins.
    pub fn wait_ready(&self, index: usize) {
        self.wait_log(index, "cluster ready", Duration::from_secs(60));
    }

    /// Waits until node `index`'s log contains `needle` `count` times in all.
    pub fn wait_log_count(&self, index: usize, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.nodes[index].log();
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not log {needle:?} ({count} times) within {timeout:?}:\n{log}",
                index + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_log(&self, index: usize, needle: &str, timeout: Duration) {
        self.wait_log_count(index, needle, 1, timeout);
    }

    /// SIGKILL of node `index`, as a crash.
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].kill();
    }

    /// Starts node `index` again (same ports, same data) and waits until it is ready.
    pub fn restart(&mut self, index: usize) {
        let readies = self.nodes[index].log().matches("cluster ready").count();
        self.nodes[index].spawn();
        self.wait_log_count(index, "cluster ready", readies + 1, Duration::from_secs(60));
    }
}

/// `seeds = [...]`: the other members' peer addresses.
fn seeds(index: usize, peer_ports: &[u16]) -> String {
    let seeds: Vec<String> = peer_ports
        .iter()
        .enumerate()
        .filter(|(other, _)| *other != index)
        .map(|(_, port)| format!("\"127.0.0.1:{port}\""))
        .collect();
    format!("seeds = [{}]", seeds.join(", "))
}

fn node_builder(
    builder: &ClusterBuilder,
    index: usize,
    store: &Path,
    cluster_ports: &[u16],
    secret: &str,
) -> NodeBuilder {
    let mut node = TestNode::builder();
    if let Some(domain) = &builder.domain {
        node = node.domain(domain);
    }
    if let Some((netns, addresses)) = &builder.netns {
        node = node.netns_named(netns, addresses[index]);
    }
    let mut node = node
        .shared_store(store)
        .set("cluster", "enabled = true")
        .set("cluster", &format!("node_name = \"node{}\"", index + 1))
        .set(
            "cluster",
            &format!("bind = \"127.0.0.1:{}\"", cluster_ports[index]),
        )
        .set("cluster", &format!("secret = \"{secret}\""));
    if builder.plain_without_tls {
        node = node.plain_without_tls();
    }
    for (section, key_value) in &builder.settings {
        node = node.set(section, key_value);
    }
    for (_, section, key_value) in builder
        .node_settings
        .iter()
        .filter(|(only, _, _)| *only == index)
    {
        node = node.set(section, key_value);
    }
    node
}
