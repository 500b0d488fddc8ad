//! A private network for federation tests: a Linux network namespace joined
//! to this one by a veth pair, with its own DNS server.
//!
//! Servers (starling nodes, Prosody, ejabberd) run inside the namespace
//! (`ip netns exec NAME ...`), where `/etc/netns/NAME/resolv.conf` names a
//! dnsmasq that answers A and SRV records for `.test` domains from the
//! test's [`Zone`], says NXDOMAIN for other `.test` names and refuses every
//! other name (it has no upstream: nothing leaves the machine). The test's
//! own clients stay outside and connect over the veth pair.
//!
//! Addresses: the namespace's subnet is `10.N.K.0/24`, with N from the test
//! process id and K counting the namespaces of this process; this side is
//! `10.N.K.254`, the namespace holds `10.N.K.1` to `10.N.K.9` (the DNS
//! server is `.9`). Dropping a [`NetNs`] kills every process still inside,
//! deletes the namespace (and with it the veth pair) and
//! `/etc/netns/NAME`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::tools::on_path;

/// Whether this process can make namespaces and run a DNS server in one
/// (root, `ip`, `dnsmasq`), and if not, why.
pub fn netns_available() -> Result<(), String> {
    if on_path("ip").is_none() {
        return Err("ip is not on PATH: install the Debian package iproute2".into());
    }
    if on_path("dnsmasq").is_none() {
        return Err("dnsmasq is not on PATH: install the Debian package dnsmasq-base".into());
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default();
    if uid != "0" {
        return Err("network namespaces need root".into());
    }
    Ok(())
}

/// Fails the test with what to do when namespaces cannot be used here.
pub fn require_netns() {
    if let Err(why) = netns_available() {
        panic!("no private network for the federation tests: {why}; run tests/run as root");
    }
}

/// DNS records the namespace's server answers.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    /// (name, index of the namespace address: 1 for `10.N.K.1` ...).
    hosts: Vec<(String, u8)>,
    srvs: Vec<Srv>,
}

#[derive(Debug, Clone)]
struct Srv {
    /// `_xmpp-server._tcp.DOMAIN`.
    name: String,
    target: String,
    port: u16,
    priority: u16,
    weight: u16,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    /// An A record for the namespace's address `index` (1 to 8; see
    /// [`NetNs::addr`]).
    pub fn host(mut self, name: &str, index: u8) -> Zone {
        assert!((1..=8).contains(&index), "namespace addresses are 1 to 8");
        self.hosts.push((name.to_owned(), index));
        self
    }

    /// `_xmpp-server._tcp.DOMAIN SRV PRIORITY WEIGHT PORT TARGET`.
    pub fn xmpp_server(
        self,
        domain: &str,
        target: &str,
        port: u16,
        priority: u16,
        weight: u16,
    ) -> Zone {
        self.srv("_xmpp-server._tcp", domain, target, port, priority, weight)
    }

    fn srv(
        mut self,
        service: &str,
        domain: &str,
        target: &str,
        port: u16,
        priority: u16,
        weight: u16,
    ) -> Zone {
        self.srvs.push(Srv {
            name: format!("{service}.{domain}"),
            target: target.to_owned(),
            port,
            priority,
            weight,
        });
        self
    }
}

/// A network namespace with a veth pair to this one and a DNS server.
pub struct NetNs {
    pub name: String,
    host_link: String,
    net: (u8, u8),
    dir: tempfile::TempDir,
    dns: Option<Child>,
}

impl NetNs {
    /// Creates the namespace, the veth pair and the resolver configuration,
    /// and starts dnsmasq with `zone`.
    pub fn start(zone: &Zone) -> NetNs {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let k = COUNT.fetch_add(1, Ordering::Relaxed);
        // 10.N.K.0/24: N from the process, K from the count in it.
        let net = (
            u8::try_from(20 + pid % 200).expect("below 256"),
            u8::try_from(k % 256).expect("below 256"),
        );
        let name = format!("starling-{pid}-{k}");
        let host_link = format!("vs{}h{k}", pid % 1_000_000);
        let ns_link = format!("vs{}n{k}", pid % 1_000_000);
        let dir = tempfile::Builder::new()
            .prefix("starling-netns-")
            .tempdir()
            .expect("a temporary folder");
        let mut netns = NetNs {
            name: name.clone(),
            host_link: host_link.clone(),
            net,
            dir,
            dns: None,
        };
        // A leftover of a crashed run with the same names.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link, "netns", &name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", netns.host_addr()),
            "dev",
            &host_link,
        ]);
        ip(&["link", "set", &host_link, "up"]);
        for index in 1..=9 {
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/24", netns.addr(index)),
                "dev",
                &ns_link,
            ]);
        }
        ip(&["-n", &name, "link", "set", &ns_link, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        let etc = netns.etc_dir();
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAME");
        std::fs::write(
            etc.join("resolv.conf"),
            format!(
                "nameserver {}\noptions timeout:1 attempts:2\n",
                netns.dns_addr()
            ),
        )
        .expect("write the namespace's resolv.conf");
        netns.start_dns(zone);
        netns
    }

    /// `10.N.K.index` (1 to 9: inside the namespace; 254: this side).
    pub fn addr(&self, index: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, self.net.0, self.net.1, index))
    }

    /// This side's address, which the namespace's servers see clients come from.
    pub fn host_addr(&self) -> IpAddr {
        self.addr(254)
    }

    /// The DNS server's address in the namespace.
    pub fn dns_addr(&self) -> IpAddr {
        self.addr(9)
    }

    /// `ip netns exec NAME program`: `program` with the namespace's network
    /// and resolver configuration.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    fn dns_log(&self) -> PathBuf {
        self.dir.path().join("dnsmasq.log")
    }

    /// What the DNS server logged (every query, with `--log-queries`).
    pub fn dns_queries(&self) -> String {
        std::fs::read_to_string(self.dns_log()).unwrap_or_default()
    }

    fn start_dns(&mut self, zone: &Zone) {
        let mut args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".into(),
            // No upstream: names outside the zone are refused.
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--user=root".into(),
            "--pid-file=".into(),
            format!("--listen-address={}", self.dns_addr()),
            "--bind-interfaces".into(),
            // Other .test names: NXDOMAIN, from here.
            "--local=/test/".into(),
            "--log-queries".into(),
            "--log-facility=-".into(),
        ];
        for (name, index) in &zone.hosts {
            args.push(format!("--host-record={name},{}", self.addr(*index)));
        }
        for srv in &zone.srvs {
            args.push(format!(
                "--srv-host={},{},{},{},{}",
                srv.name, srv.target, srv.port, srv.priority, srv.weight
            ));
        }
        let log = std::fs::File::create(self.dns_log()).expect("the DNS log");
        let child = self
            .command("dnsmasq")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the DNS log"))
            .stderr(log)
            .spawn()
            .expect("starting dnsmasq");
        self.dns = Some(child);
        // Ready when it says so (it listens before it logs "started").
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.dns_queries().contains("started") {
            if let Some(Ok(Some(status))) = self.dns.as_mut().map(Child::try_wait) {
                panic!("dnsmasq exited with {status}:\n{}", self.dns_queries());
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start:\n{}",
                self.dns_queries()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(mut dns) = self.dns.take() {
            let _ = dns.kill();
            let _ = dns.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- DNS queries in {} ---\n{}",
                self.name,
                self.dns_queries()
            );
        }
        // Whatever still runs inside (a server a test leaked, ejabberd's epmd).
        if let Ok(output) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
