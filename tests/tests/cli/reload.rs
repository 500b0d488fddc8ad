//! SIGHUP on a running node: a renewed certificate, new limits and the
//! keys that wait for a restart, as an operator changes them in the file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use starling_tests::{Client, LoginOptions, TestNode};

/// Writes a new self-signed certificate and key for `localhost` at these
/// paths; returns the certificate (DER).
fn new_certificate(cert: &Path, key: &Path) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(cert, generated.cert.pem()).unwrap();
    std::fs::write(key, generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().to_vec()
}

async fn alice(node: &TestNode) -> Client {
    let options = LoginOptions::new(&node.domain, "alice", "pw");
    Client::login(node.c2s, &options).await.unwrap()
}

/// Waits (bounded) until the node's log has `count` lines containing `text`.
fn wait_for_log(node: &TestNode, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.log().matches(text).count() < count {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hang_up(node: &TestNode) {
    let pid = node.pid().expect("running").to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(status.success(), "kill -HUP {pid}");
}

/// A chat to the client itself with a body of `size` bytes.
fn message_of(client: &Client, size: usize) -> String {
    let to = client.jid().expect("bound").to_string();
    format!(
        "<message to='{to}' type='chat'><body>{}</body></message>",
        "x".repeat(size)
    )
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_limits_and_names_what_waits() {
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    let first = new_certificate(&cert, &key);
    let node = TestNode::builder()
        .set("tls", &format!("cert = {:?}", cert.display().to_string()))
        .set("tls", &format!("key = {:?}", key.display().to_string()))
        .user("alice", "pw")
        .start();
    let mut before = alice(&node).await;
    assert_eq!(before.peer_certificate(), Some(first.clone()));

    // The operator renews the certificate, lowers a limit, turns up the
    // log and moves the client port.
    let second = new_certificate(&cert, &key);
    let config = std::fs::read_to_string(&node.config).unwrap();
    let moved = config.replace(
        &format!("bind = \"{}\"", node.c2s),
        "bind = \"127.0.0.1:1\"",
    );
    assert_ne!(moved, config, "the c2s bind line is in the config");
    std::fs::write(
        &node.config,
        format!("{moved}[limits]\nmax_stanza_size = 5000\n[log]\nlevel = \"debug\"\n"),
    )
    .unwrap();
    hang_up(&node);
    wait_for_log(&node, "SIGHUP: configuration reloaded", 1);
    let log = node.log();
    assert!(log.contains("SIGHUP: TLS certificate reloaded"), "{log}");
    assert!(
        log.contains("takes effect after a restart") && log.contains("c2s.bind"),
        "{log}"
    );
    // The test harness sets RUST_LOG, which wins over the file.
    assert!(log.contains("RUST_LOG is set"), "{log}");

    // New connections: the new certificate and the new limit, on the old port.
    let mut after = alice(&node).await;
    assert_eq!(after.peer_certificate(), Some(second));
    after.send(&message_of(&after, 8000)).await.unwrap();
    after
        .expect_stream_error("policy-violation", Duration::from_secs(10))
        .await
        .unwrap();
    // The connection opened before keeps what it negotiated.
    before.send(&message_of(&before, 8000)).await.unwrap();
    let echoed = before
        .expect(|e| e.name() == "message", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(echoed.to_string().len() > 8000);

    // A config that no longer loads changes nothing, and says so.
    std::fs::write(&node.config, "[c2s]\nno_such_key = 1\n").unwrap();
    hang_up(&node);
    wait_for_log(&node, "SIGHUP: the config does not load", 1);
    assert!(node.log().contains("no_such_key"), "{}", node.log());
    let mut still = alice(&node).await;
    still.send(&message_of(&still, 1000)).await.unwrap();
    still
        .expect(|e| e.name() == "message", Duration::from_secs(10))
        .await
        .unwrap();
}
