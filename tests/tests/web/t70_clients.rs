//! Clients written by others: xmpp.js (`tests/xmppjs`, Node.js) over
//! WebSocket and direct TLS, StanzaJS (same folder) over WebSocket, and
//! slixmpp over direct TLS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use starling_tests::interop::{python_script, run_logged};
use starling_tests::tools::{require_node_packages, require_slixmpp};

use crate::support::*;

#[test]
#[ignore = "needs Node.js 20+ and `npm ci` in tests/xmppjs: run tests/run"]
fn t70_xmppjs_over_websocket_and_direct_tls() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xmppjs");
    require_node_packages(&dir, &["@xmpp/client", "ws"]);
    let node = https_node(&["alice", "bob"]).start();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .args(["--test", "--test-reporter=spec", "xmppjs.test.mjs"])
        .env(
            "STARLING_WS_URL",
            format!("wss://{}/xmpp-websocket", node.http),
        )
        .env("STARLING_XMPPS_URL", format!("xmpps://{}", node.direct_tls))
        .env("STARLING_DOMAIN", &node.domain)
        .env("STARLING_PASSWORD", PASSWORD)
        // The node's certificate is self-signed.
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0");
    let log = node.dir().join("xmppjs.log");
    let (status, output) = run_logged(command, &log, Duration::from_secs(120));
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "xmpp.js tests failed ({status}):\n{output}\nnode log:\n{}",
            node.log()
        ),
        None => panic!("xmpp.js tests killed after 120 s:\n{output}"),
    }
}

#[test]
#[ignore = "needs Node.js 20+ and `npm ci` in tests/xmppjs: run tests/run"]
fn t72_stanzajs_over_websocket() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xmppjs");
    require_node_packages(&dir, &["stanza"]);
    let node = https_node(&["alice", "bob"]).start();
    let mut command = Command::new("node");
    command
        .current_dir(&dir)
        .args(["--test", "--test-reporter=spec", "stanzajs.test.mjs"])
        .env(
            "STARLING_WS_URL",
            format!("wss://{}/xmpp-websocket", node.http),
        )
        .env("STARLING_DOMAIN", &node.domain)
        .env("STARLING_PASSWORD", PASSWORD)
        // The node's certificate is self-signed.
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0");
    let log = node.dir().join("stanzajs.log");
    let (status, output) = run_logged(command, &log, Duration::from_secs(120));
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "StanzaJS tests failed ({status}):\n{output}\nnode log:\n{}",
            node.log()
        ),
        None => panic!("StanzaJS tests killed after 120 s:\n{output}"),
    }
}

#[test]
#[ignore = "needs slixmpp: run tests/run"]
fn t71_slixmpp_over_direct_tls() {
    require_slixmpp();
    let node = https_node(&["alice", "bob"]).start();
    let mut command = python_script("slixmpp_direct_tls.py");
    command
        .args(["--host", "127.0.0.1"])
        .args(["--port", &node.direct_tls.port().to_string()])
        .args(["--domain", &node.domain])
        .args(["--password", PASSWORD]);
    let log = node.dir().join("slixmpp_direct_tls.log");
    let (status, output) = run_logged(command, &log, Duration::from_secs(90));
    match status {
        Some(status) if status.success() => println!("{output}"),
        Some(status) => panic!(
            "slixmpp_direct_tls.py failed ({status}):\n{output}\nnode log:\n{}",
            node.log()
        ),
        None => panic!("slixmpp_direct_tls.py killed after 90 s:\n{output}"),
    }
}
