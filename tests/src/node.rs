//! Real `starling` processes for black-box tests.
//!
//! A [`TestNode`] is the release of a real binary on real ports: the harness
//! writes a config file into a fresh temporary folder, creates accounts with
//! the `starling user` command, starts `starling serve`, and waits until the
//! client port answers. Dropping the node kills the process; its log stays
//! readable through [`TestNode::log`] until then.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The `starling` binary, built once per test process.
///
/// `STARLING_BIN` points at a prebuilt binary; otherwise the workspace's
/// debug binary is built with cargo (a no-op when it is up to date).
pub fn starling_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("STARLING_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "starling-xmpp",
                "--bin",
                "starling",
            ])
            .current_dir(workspace)
            .status()
            .expect("running cargo build for the starling binary");
        assert!(
            status.success(),
            "cargo build of the starling binary failed"
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("debug").join("starling")
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// Taken below the kernel's ephemeral range (32768 and up), so no outgoing
/// connection can take it between this pick and the node's bind; never the
/// same port twice in one test process; and each process starts at its own
/// place in the range, so test binaries run side by side rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7_919) % SPAN));
    for _ in 0..SPAN {
        let port = (FIRST + next.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free local port between {FIRST} and {}", FIRST + SPAN)
}

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    domain: String,
    /// Extra TOML appended to the generated config (sections the harness
    /// does not write itself, or keys inside `[limits]`, `[c2s]` ...).
    extra: Vec<(String, String)>,
    users: Vec<(String, String, bool)>,
    plain_without_tls: bool,
    /// A store shared with other nodes (cluster tests), instead of one in
    /// the node's own folder.
    shared_store: Option<PathBuf>,
    /// Ports chosen by the caller (cluster tests need them before start).
    ports: Option<(u16, u16)>,
    /// Run inside this network namespace, listening on this address of it
    /// (federation tests with their own DNS, see [`crate::netns`]).
    netns: Option<(String, IpAddr)>,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        NodeBuilder {
            domain: "localhost".into(),
            extra: Vec::new(),
            users: Vec::new(),
            plain_without_tls: false,
            shared_store: None,
            ports: None,
            netns: None,
        }
    }
}

impl NodeBuilder {
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = domain.into();
        self
    }

    /// Sets `key = value` (TOML literal) in `[section]`.
    pub fn set(mut self, section: &str, key_value: &str) -> Self {
        self.extra.push((section.into(), key_value.into()));
        self
    }

    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into(), false));
        self
    }

    pub fn admin(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into(), true));
        self
    }

    /// Allows PLAIN and legacy auth before STARTTLS (`c2s.allow_plain_without_tls`).
    pub fn plain_without_tls(mut self) -> Self {
        self.plain_without_tls = true;
        self
    }

    /// Uses the SQLite file at `path` (shared by the nodes of a cluster).
    pub fn shared_store(mut self, path: &Path) -> Self {
        self.shared_store = Some(path.to_owned());
        self
    }

    /// Uses these client and HTTP ports instead of fresh ones.
    pub fn ports(mut self, c2s: u16, http: u16) -> Self {
        self.ports = Some((c2s, http));
        self
    }

    /// Runs the node inside the network namespace `netns`, its listeners on
    /// `address` (one of the namespace's) instead of 127.0.0.1.
    pub fn netns(self, netns: &crate::netns::NetNs, address: IpAddr) -> Self {
        self.netns_named(&netns.name, address)
    }

    pub(crate) fn netns_named(mut self, netns: &str, address: IpAddr) -> Self {
        self.netns = Some((netns.to_owned(), address));
        self
    }

    pub fn start(self) -> TestNode {
        TestNode::start(self)
    }
}

/// A running `starling serve` process.
pub struct TestNode {
    pub domain: String,
    pub c2s: SocketAddr,
    /// The HTTP listener (`[http] bind`): admin page, APIs, `/metrics`, `/lb`, `/cometd`.
    pub http: SocketAddr,
    /// The XEP-0368 direct TLS listener (`[c2s] direct_tls_bind`).
    pub direct_tls: SocketAddr,
    pub config: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The network namespace the process runs in, if not this one.
    netns: Option<String>,
}

impl TestNode {
    /// A sample of this node's `/metrics` (0 when the metric is absent).
    pub async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.http)
            .await
            .unwrap_or_else(|error| panic!("cannot reach {}: {error}", self.http));
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut bytes = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes)).await;
        let response = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            matches!(read, Ok(Ok(_))),
            "metrics of {} not answered in time: {read:?} {response}",
            self.http
        );
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .unwrap_or(0.0)
    }

    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    fn start(builder: NodeBuilder) -> TestNode {
        let dir = tempfile::Builder::new()
            .prefix("starling-test-")
            .tempdir()
            .expect("a temporary folder");
        let (c2s_port, http_port) = builder.ports.unwrap_or_else(|| (free_port(), free_port()));
        let ip = builder
            .netns
            .as_ref()
            .map_or(IpAddr::from([127, 0, 0, 1]), |(_, ip)| *ip);
        let c2s = SocketAddr::new(ip, c2s_port);
        let http = SocketAddr::new(ip, http_port);
        let direct_tls = SocketAddr::new(ip, free_port());
        let config = dir.path().join("starling.toml");
        write_config(&config, &builder, c2s, http, direct_tls);
        let mut node = TestNode {
            domain: builder.domain.clone(),
            c2s,
            http,
            direct_tls,
            config,
            dir,
            child: None,
            netns: builder.netns.as_ref().map(|(name, _)| name.clone()),
        };
        for (name, password, admin) in &builder.users {
            let mut args = vec!["user", "add", name.as_str(), password.as_str()];
            if *admin {
                args.push("--admin");
            }
            let output = node.cli(&args);
            assert!(
                output.status.success(),
                "user add {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        node.spawn();
        node
    }

    /// Starts the server process (again, after [`TestNode::kill`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", netns])
                    .arg(starling_binary());
                command
            }
            None => Command::new(starling_binary()),
        };
        let child = command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("STARLING_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawning starling serve");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&self.c2s, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "starling exited with {status} before listening:\n{}",
                        self.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "starling did not listen within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `starling ARGS --config <this node's config>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(starling_binary())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("running the starling command")
    }

    /// The process id, for memory measurements.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// Everything the node has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- starling log ({}) ---\n{}", self.c2s, self.log());
        }
    }
}

fn write_config(
    path: &Path,
    builder: &NodeBuilder,
    c2s: SocketAddr,
    http: SocketAddr,
    direct_tls: SocketAddr,
) {
    let direct_tls_set = builder
        .extra
        .iter()
        .any(|(section, line)| section == "c2s" && line.starts_with("direct_tls_bind"));
    let direct_tls = (!direct_tls_set).then(|| format!("direct_tls_bind = \"{direct_tls}\""));
    let mut sections: Vec<(String, Vec<String>)> = vec![
        (
            "server".into(),
            vec![
                format!("domain = {:?}", builder.domain),
                "data_dir = \"data\"".into(),
            ],
        ),
        (
            "c2s".into(),
            vec![
                format!("bind = \"{c2s}\""),
                format!("allow_plain_without_tls = {}", builder.plain_without_tls),
            ]
            .into_iter()
            .chain(direct_tls)
            .collect(),
        ),
        ("http".into(), vec![format!("bind = \"{http}\"")]),
    ];
    // Federation only where a test asks for it: the default port (5269)
    // would be shared by every node a test run starts.
    let s2s_set = builder
        .extra
        .iter()
        .any(|(section, line)| section == "s2s" && line.starts_with("bind"));
    if !s2s_set {
        sections.push(("s2s".into(), vec!["bind = \"\"".into()]));
    }
    if let Some(store) = &builder.shared_store {
        sections.push((
            "storage".into(),
            vec![format!("url = \"sqlite://{}\"", store.display())],
        ));
    }
    for (section, key_value) in &builder.extra {
        match sections.iter_mut().find(|(name, _)| name == section) {
            Some((_, lines)) => lines.push(key_value.clone()),
            None => sections.push((section.clone(), vec![key_value.clone()])),
        }
    }
    let mut file = std::fs::File::create(path).expect("config file");
    for (section, lines) in sections {
        writeln!(file, "[{section}]").expect("write config");
        for line in lines {
            writeln!(file, "{line}").expect("write config");
        }
    }
}

/// Sends `which` (`-STOP`, `-CONT`, ...) to process `pid`: freezes and
/// wakes a node as a VM pause would.
pub fn send_signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} {pid} failed");
}
