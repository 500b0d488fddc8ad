//! The admin console in a real headless Chromium: starts three nodes, logs
//! XMPP clients in, and runs `node --test admin.test.mjs` in tests/browser
//! (playwright-core driving /usr/bin/chromium). The script logs in (after a
//! wrong password), sees the three members, asks this test to SIGKILL and
//! restart node3 and sees it go down and come back without a reload, kicks
//! a session (this test checks the client is disconnected), clears a cache,
//! manages users and logs out.
//!
//! Needs node (20+), chromium and `npm ci` in tests/browser: ignored by a
//! plain `cargo test`, run by `tests/run`, and failing with what is missing
//! when run without them. Screenshots go to
//! `STARLING_SCREENSHOT_DIR` (default: the cluster's temporary folder).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use starling_tests::tools::require_node_packages;
use starling_tests::{Client, LoginOptions, Mechanism, TestCluster, TlsMode};

const ADMIN: &str = "admin";
const ADMIN_PW: &str = "admin-secret";
const PW: &str = "pw";
/// Bound for the whole browser scenario (it bounds each step itself).
const SCRIPT_LIMIT: Duration = Duration::from_secs(600);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

async fn login(addr: std::net::SocketAddr, user: &str, resource: &str) -> Client {
    let mut options = LoginOptions::new("localhost", user, PW);
    options.resource = Some(resource.to_owned());
    options.tls = TlsMode::Required;
    options.mechanism = Some(Mechanism::ScramSha256);
    let mut client = Client::login(addr, &options)
        .await
        .unwrap_or_else(|error| panic!("{user} cannot log in: {error}"));
    client.send("<presence/>").await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+, chromium and `npm ci` in tests/browser: run tests/run"]
async fn admin_console_in_headless_chromium() {
    let chromium =
        std::env::var("STARLING_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install the Debian package chromium (tests/run does)"
    );
    require_node_packages(&browser_dir(), &["playwright-core"]);

    let mut cluster = TestCluster::builder(3)
        .admin(ADMIN, ADMIN_PW)
        .user("alice", PW)
        .user("bob", PW)
        .user("carol", PW)
        .set("cluster", "heartbeat_ms = 250")
        .set("cluster", "suspect_after_ms = 1000")
        .set("cluster", "down_after_ms = 2000")
        .start();
    let (n1, n2) = (cluster.node(0).c2s, cluster.node(1).c2s);
    let alice = login(n1, "alice", "desk").await;
    let bob = login(n1, "bob", "laptop").await;
    let carol = login(n2, "carol", "tablet").await;
    let kick_jid = bob.jid().expect("bound").to_string();
    let session_jids = [alice.jid().unwrap().to_string(), kick_jid.clone()];

    // The kicked client must see its stream end with policy-violation.
    let mut bob = bob;
    let kicked = tokio::spawn(async move {
        bob.expect_stream_error("policy-violation", SCRIPT_LIMIT)
            .await
            .map(|_| ())
    });

    let control = cluster.dir().join("control");
    std::fs::create_dir_all(&control).unwrap();
    let shots = std::env::var_os("STARLING_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cluster.dir().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let log_path = cluster.dir().join("browser.log");
    let log = File::create(&log_path).expect("browser log file");
    let mut script = Command::new("node")
        .args(["--test", "--test-reporter=spec", "admin.test.mjs"])
        .current_dir(browser_dir())
        .env(
            "STARLING_ADMIN_URL",
            format!("http://{}", cluster.node(0).http),
        )
        .env("STARLING_ADMIN_USER", ADMIN)
        .env("STARLING_ADMIN_PASSWORD", ADMIN_PW)
        .env("STARLING_NODE_NAME", "node1")
        .env("STARLING_KILL_NODE", "node3")
        .env("STARLING_KICK_JID", &kick_jid)
        .env("STARLING_SESSION_JIDS", session_jids.join(","))
        .env("STARLING_CONTROL_DIR", &control)
        .env("STARLING_SCREENSHOT_DIR", &shots)
        .env("STARLING_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("starting node --test");

    // Answer the script's requests until it ends.
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = script.try_wait().expect("waiting for node") {
            break status;
        }
        for action in ["kill", "restart"] {
            let request = control.join(format!("{action}.request"));
            if request.exists() {
                std::fs::remove_file(&request).unwrap();
                match action {
                    "kill" => cluster.kill(2),
                    _ => cluster.restart(2),
                }
                std::fs::write(control.join(format!("{action}.done")), "").unwrap();
            }
        }
        if Instant::now() > deadline {
            let _ = script.kill();
            let _ = script.wait();
            panic!(
                "the browser scenario did not finish within {SCRIPT_LIMIT:?}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "the browser scenario failed ({status}); screenshots in {}:\n{output}",
        shots.display()
    );
    eprintln!("{output}\nscreenshots in {}", shots.display());
    kicked
        .await
        .expect("the kicked client's task")
        .unwrap_or_else(|error| {
            panic!("{kick_jid} kicked in the console was not disconnected: {error}")
        });
    drop((alice, carol));
}
