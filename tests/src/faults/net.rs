//! The campaign's network: one namespace per member, joined by a bridge in
//! a hub namespace, with this (the driver's) namespace on the same bridge.
//!
//! Subnet `10.A.B.0/24` (A and B from a key made of the process id and a
//! count of this process's networks): member `i` (1 to 3) is `10.A.B.i` in
//! namespace `flt<key>n<i>`; this side is `10.A.B.254`.
//! Every member has its own address and its own firewall, so a cut can be
//! one way (a rule in one member's input chain), and `tc netem` on a
//! member's link delays and drops what it sends. Nothing is forwarded
//! through this namespace: the bridge lives in the hub namespace.
//!
//! Dropping the [`Net`] kills whatever still runs in the namespaces and
//! deletes them (their links and firewalls go with them).

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};

/// The namespaces and links of one campaign.
pub struct Net {
    prefix: String,
    subnet: (u8, u8),
    members: usize,
    host_link: String,
}

impl Net {
    /// Creates the hub (a bridge), `members` member namespaces and this
    /// side's link to the bridge.
    pub fn start(members: usize) -> Result<Net, String> {
        // One key per network of this process (tests of one binary build
        // theirs side by side, and each cleans its names up first).
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let started = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = u64::from(std::process::id()) * 16 + started % 16;
        let prefix = format!("flt{key}");
        let subnet = (
            u8::try_from(230 + key % 20).expect("below 256"),
            u8::try_from((key / 20) % 250).expect("below 256"),
        );
        let net = Net {
            host_link: format!("flt{}h", key % 10_000_000),
            prefix,
            subnet,
            members,
        };
        net.cleanup();
        let hub = net.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        ip(&[
            "link",
            "add",
            &net.host_link,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0", "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_addr()),
            "dev",
            &net.host_link,
        ])?;
        ip(&["link", "set", &net.host_link, "up"])?;
        for member in 1..=members {
            let ns = net.namespace(member);
            let port = format!("m{member}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(member)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // Each member's firewall: empty chains the faults fill.
            nft_in(
                &ns,
                "add table inet flt\n\
                 add chain inet flt input { type filter hook input priority 0; }\n\
                 add chain inet flt output { type filter hook output priority 0; }\n",
            )?;
        }
        Ok(net)
    }

    /// The namespace of member `member` (1-based).
    pub fn namespace(&self, member: usize) -> String {
        format!("{}n{member}", self.prefix)
    }

    fn hub(&self) -> String {
        format!("{}h", self.prefix)
    }

    /// Member `member`'s address (1-based).
    pub fn addr(&self, member: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(
            10,
            self.subnet.0,
            self.subnet.1,
            u8::try_from(member).expect("a few members"),
        ))
    }

    /// This side's address on the bridge: clients and the store's relay.
    pub fn host_addr(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, self.subnet.0, self.subnet.1, 254))
    }

    /// Adds rules (nft syntax after `add rule inet flt CHAIN`) to member
    /// `member`'s firewall: `("input", "ip saddr 10.0.0.1 drop")`.
    pub fn block(&self, member: usize, rules: &[(&str, String)]) -> Result<(), String> {
        let script: String = rules
            .iter()
            .map(|(chain, rule)| format!("add rule inet flt {chain} {rule}\n"))
            .collect();
        nft_in(&self.namespace(member), &script)
    }

    /// Empties member `member`'s firewall.
    pub fn unblock(&self, member: usize) -> Result<(), String> {
        nft_in(
            &self.namespace(member),
            "flush chain inet flt input\nflush chain inet flt output\n",
        )
    }

    /// `tc netem` on member `member`'s link: what it sends is delayed by
    /// `delay_ms` and `loss_percent` of it is dropped.
    pub fn netem(&self, member: usize, delay_ms: u32, loss_percent: f64) -> Result<(), String> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.namespace(member),
            "tc",
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "netem",
            "delay",
            &format!("{delay_ms}ms"),
            "loss",
            &format!("{loss_percent}%"),
        ]))
    }

    /// Removes the netem of [`Net::netem`].
    pub fn clear_netem(&self, member: usize) -> Result<(), String> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            &self.namespace(member),
            "tc",
            "qdisc",
            "del",
            "dev",
            "eth0",
            "root",
        ]))
    }

    /// Kills what runs in the namespaces and deletes them.
    fn cleanup(&self) {
        let mut spaces: Vec<String> = (1..=self.members).map(|m| self.namespace(m)).collect();
        spaces.push(self.hub());
        for ns in &spaces {
            if let Ok(output) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Whether this process can build the campaign's network (root, `ip`,
/// `nft`, `tc`), and if not, why.
pub fn available() -> Result<(), String> {
    crate::tools::firewall_available()?;
    for (program, package) in [("ip", "iproute2"), ("tc", "iproute2")] {
        if crate::tools::on_path(program).is_none() {
            return Err(format!(
                "{program} is not on PATH: install the Debian package {package}"
            ));
        }
    }
    Ok(())
}

fn nft_in(namespace: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("nft: {error}"))?;
    child
        .stdin
        .take()
        .expect("a pipe")
        .write_all(script.as_bytes())
        .map_err(|error| format!("nft: {error}"))?;
    let output = child
        .wait_with_output()
        .map_err(|error| format!("nft: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft in {namespace}: {}\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args))
}

/// Runs `command`; its stderr is the error when it fails.
pub(super) fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|error| format!("{command:?}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
