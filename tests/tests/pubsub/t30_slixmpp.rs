//! slixmpp and its own XEP-0060 plugin against a three-node cluster: the
//! script `tests/interop/slixmpp_pubsub.py` creates, configures, publishes,
//! subscribes, retrieves, unsubscribes, retracts and deletes with its users
//! on different nodes, and exits 0 when its scenario passed.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use starling_tests::TestCluster;

/// The interpreter python3-slixmpp installs into (the `python3` on PATH may be another).
const PYTHON: &str = "/usr/bin/python3";

/// Bound for the script; it bounds itself well below this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

#[test]
fn slixmpp_pubsub_across_nodes() {
    let found = Command::new(PYTHON)
        .args(["-c", "import slixmpp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "{PYTHON} cannot import slixmpp: install the Debian package python3-slixmpp"
    );
    // The scripts' convention: every password is the name followed by `-pw`.
    let cluster = TestCluster::builder(3)
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .user("carol", "carol-pw")
        .start();
    let ports: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| node.c2s.port().to_string())
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join("slixmpp_pubsub.py");
    let log_path = cluster.dir().join("slixmpp_pubsub.log");
    let log = File::create(&log_path).expect("script log file");
    let started = Instant::now();
    let mut child = Command::new(PYTHON)
        .arg(&script)
        .args(["--host", "127.0.0.1"])
        .args(["--port", &ports[0]])
        .args(["--ports", &ports.join(",")])
        .args(["--domain", &cluster.node(0).domain])
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("script log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("starting {PYTHON} {}: {error}", script.display()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    match status {
        Some(status) if status.success() => {
            println!(
                "slixmpp_pubsub.py passed in {:?}:\n{output}",
                started.elapsed()
            );
        }
        Some(status) => panic!("slixmpp_pubsub.py failed ({status}):\n{output}"),
        None => panic!("slixmpp_pubsub.py was killed after {SCRIPT_LIMIT:?}:\n{output}"),
    }
}
