//! The CometD bridge against a real three-node cluster, driven by clients
//! written by others:
//!
//! - `tests/cometd/*.test.mjs`: the official CometD JavaScript client and
//!   faye (both transports, cross-node delivery, a 200-message burst in
//!   order, unsubscribe, disconnect, recovery after an expired client id,
//!   malformed input, credentials);
//! - `tests/interop/slixmpp_cometd.py`: slixmpp publishing and subscribing
//!   over XMPP pub/sub while a Bayeux client does the other half on
//!   another node.
//!
//! - `starling-load fanout`: the load driver's own Bayeux-over-WebSocket and XMPP
//!   subscribers, every published item delivered to every one of them.
//!
//! The node.js packages come from `npm ci` in `tests/cometd`; the tests that need
//! them or slixmpp are ignored by a plain `cargo test` and run by `tests/run`.
//!
//! Timing-sensitive cases and limits use a small Bayeux client of our own
//! (`bayeux`): a publish the moment a subscribe reply arrives
//! (`subscribe_race`), handshakes beyond the client caps
//! (`handshake_limits`), and a client the server's writes wait on
//! (`slow_reader`).

mod bayeux;
mod handshake_limits;
#[path = "../pubsub/support.rs"]
#[allow(dead_code)]
mod pubsub;
mod slow_reader;
mod subscribe_race;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use starling_tests::TestCluster;
use starling_tests::interop::{python_script, run_logged};
use starling_tests::tools::{node_version, require_node_packages, require_slixmpp};

const NODES: usize = 3;

/// A short connect hold and maxInterval, so expiry is seen within a test.
fn cluster() -> TestCluster {
    TestCluster::builder(NODES)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .set("cometd", "timeout_ms = 3000")
        .set("cometd", "max_interval_ms = 2000")
        .start()
}

fn cometd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cometd")
}

fn urls(cluster: &TestCluster) -> String {
    (0..NODES)
        .map(|index| format!("http://{}/cometd", cluster.node(index).http))
        .collect::<Vec<_>>()
        .join(",")
}

/// `--test-force-exit` exists from node 20.14 (and in 22+).
fn node_has_force_exit() -> bool {
    node_version().is_some_and(|(major, minor)| major > 20 || (major == 20 && minor >= 14))
}

#[test]
#[ignore = "needs Node.js 20+ and `npm ci` in tests/cometd: run tests/run"]
fn official_cometd_client_and_faye_on_three_nodes() {
    let dir = cometd_dir();
    require_node_packages(&dir, &["cometd", "faye"]);
    let cluster = cluster();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"]);
    if node_has_force_exit() {
        // A failed test may leave a client connected, which would keep its
        // file's process alive; the failure is reported either way.
        command.arg("--test-force-exit");
    }
    command
        .args(["cometd.test.mjs", "faye.test.mjs"])
        .env("STARLING_COMETD_URLS", urls(&cluster))
        .env("STARLING_DOMAIN", &cluster.node(0).domain);
    let log = cluster.dir().join("node-test.log");
    let (status, output) = run_logged(command, &log, Duration::from_secs(300));
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "Bayeux client tests failed ({status}):\n{output}\nnode 1 log:\n{}",
            cluster.node(0).log()
        ),
        None => panic!("Bayeux client tests killed after 300 s:\n{output}"),
    }
}

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn slixmpp_and_bayeux_through_pubsub_across_nodes() {
    require_slixmpp();
    let cluster = cluster();
    let join = |port: fn(&starling_tests::TestNode) -> u16| {
        (0..NODES)
            .map(|index| port(cluster.node(index)).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut command = python_script("slixmpp_cometd.py");
    command
        .args(["--host", "127.0.0.1"])
        .args(["--port", &cluster.node(0).c2s.port().to_string()])
        .args(["--ports", &join(|node| node.c2s.port())])
        .args(["--http", &join(|node| node.http.port())])
        .args(["--domain", &cluster.node(0).domain]);
    let log = cluster.dir().join("slixmpp_cometd.log");
    let (status, output) = run_logged(command, &log, Duration::from_secs(90));
    match status {
        Some(status) if status.success() => println!("slixmpp_cometd.py passed:\n{output}"),
        Some(status) => panic!(
            "slixmpp_cometd.py failed ({status}):\n{output}\nnode 1 log:\n{}",
            cluster.node(0).log()
        ),
        None => panic!("slixmpp_cometd.py was killed after 90 s:\n{output}"),
    }
}

/// A short run of the load driver's fan-out mode on both transports: a few subscribers, one
/// per node, every item reaching every subscriber (a run with losses reports them).
#[test]
fn load_driver_fanout_delivers_every_item_to_every_subscriber() {
    // User fan1 publishes; fan2..fan4 subscribe over XMPP.
    let mut builder = TestCluster::builder(NODES);
    for index in 1..=4 {
        builder = builder.user(&format!("fan{index}"), &format!("fanpw{index}"));
    }
    let cluster = builder.start();
    let join = |address: fn(&starling_tests::TestNode) -> std::net::SocketAddr| {
        (0..NODES)
            .map(|index| address(cluster.node(index)).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let (c2s, http) = (join(|node| node.c2s), join(|node| node.http));
    for transport in ["bayeux", "xmpp"] {
        let output = Command::new(env!("CARGO_BIN_EXE_starling-load"))
            .args(["--json", "fanout", "--transport", transport])
            .args(["--server", &c2s, "--http", &http])
            .args(["--domain", &cluster.node(0).domain])
            .args(["--users", "fan", "--password-prefix", "fanpw", "--tls"])
            .args(["--subscribers", "3", "--rate", "5", "--duration", "1"])
            .args(["--drain", "10", "--settle", "0"])
            .output()
            .expect("running starling-load");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "starling-load fanout --transport {transport} failed:\n{stderr}\nnode 1 log:\n{}",
            cluster.node(0).log()
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON report");
        let fanout = &report["fanout"];
        let figures = |keys: &[&str]| {
            keys.iter()
                .map(|key| fanout[*key].as_u64())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            figures(&[
                "subscribers",
                "published",
                "expected",
                "received",
                "lost",
                "dropped"
            ]),
            [Some(3), Some(5), Some(15), Some(15), Some(0), Some(0)],
            "{transport}: {fanout:#}"
        );
        let per_node: Vec<_> = fanout["by_server"]
            .as_array()
            .expect("by_server")
            .iter()
            .map(|server| (server["subscribers"].as_u64(), server["received"].as_u64()))
            .collect();
        assert_eq!(
            per_node,
            [(Some(1), Some(5)); NODES],
            "{transport}: {fanout:#}"
        );
    }
}
