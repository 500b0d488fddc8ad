//! The peer port is open to anyone who can reach it; only a node that
//! proves the cluster secret (and speaks the same protocol version) gets a
//! link. These tests knock on it: a real node configured with another
//! secret, and fake peers written here from the wire format (TLS 1.3, then
//! postcard frames and the HMAC-SHA-256 challenge of `transport::handshake`
//! over the session's exporter value).

use std::time::Duration;

use rand::RngExt;
use starling_cluster::transport::frame::{
    Frame, MAGIC, PROTOCOL_VERSION, PeerInfo, encode_into, read_frame,
};
use starling_cluster::transport::handshake::{Role, proof};
use starling_cluster::transport::tls::{EXPORTER_LABEL, EXPORTER_LEN};
use starling_tests::tls::insecure_connector;
use starling_tests::{TestCluster, TestNode, free_port};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;

use crate::t50_faults::{
    Chat, DOWN_WAIT, WAIT, assert_no_bounce, chat_once, friend_online, friends, jid, plain_log,
    quick, say, sync, view, wait_log_count,
};

/// How long a message that must not arrive is given to arrive anyway.
const NOT_ARRIVING: Duration = Duration::from_secs(5);

/// A node with the cluster's seeds and store but another secret is never
/// linked: both sides log why, and users on either side cannot reach each
/// other (their messages are stored as for offline users).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_is_refused() {
    let cluster = quick(TestCluster::builder(2)).start();
    friends(&cluster, "w", 2);
    let seeds: Vec<String> = cluster
        .cluster_ports
        .iter()
        .map(|port| format!("\"127.0.0.1:{port}\""))
        .collect();
    let stranger = TestNode::builder()
        .shared_store(&cluster.dir().join("starling.db"))
        .set("cluster", "enabled = true")
        .set("cluster", "node_name = \"node9\"")
        .set("cluster", &format!("bind = \"127.0.0.1:{}\"", free_port()))
        .set("cluster", &format!("seeds = [{}]", seeds.join(", ")))
        .set("cluster", "secret = \"not-the-cluster-secret\"")
        .set("cluster", "heartbeat_ms = 250")
        .start();
    // With no seed accepting it, it forms a cluster of its own.
    wait_log_count(&stranger, "cluster ready", 1, DOWN_WAIT).await;
    for index in 0..2 {
        wait_log_count(
            cluster.node(index),
            "the peer did not prove the cluster secret",
            1,
            WAIT,
        )
        .await;
        let log = plain_log(cluster.node(index));
        assert!(
            !log.contains("peer=node9"),
            "node{} linked the stranger:\n{log}",
            index + 1
        );
        let members = view(cluster.node(index))
            .expect("a membership view")
            .members;
        assert_eq!(members.len(), 2, "node{}: {members:?}", index + 1);
    }
    wait_log_count(&stranger, "the cluster secret does not match", 1, WAIT).await;
    let log = plain_log(&stranger);
    assert!(!log.contains("cluster link up"), "{log}");

    let mut inside = friend_online(cluster.node(0), "w", 1, "in").await;
    let mut outside = friend_online(&stranger, "w", 2, "out").await;
    let (inside_jid, outside_jid) = (jid(&inside), jid(&outside));
    say(&mut inside, &outside_jid, "across-the-wall").await;
    say(&mut outside, &inside_jid, "back-across").await;
    for client in [&mut inside, &mut outside] {
        sync(client).await;
        assert_no_bounce(client);
    }
    for (client, text) in [
        (&mut inside, "back-across"),
        (&mut outside, "across-the-wall"),
    ] {
        let arrived = client.expect(|e| e.name() == "message", NOT_ARRIVING).await;
        assert!(arrived.is_err(), "{text} crossed: {arrived:?}");
    }
    // The cluster itself is unharmed.
    let mut other = friend_online(cluster.node(1), "w", 2, "in").await;
    chat_once(&mut inside, &mut other, "inside").await;
}

/// Fake peers on one node's peer port while users on both nodes chat: a
/// newer protocol version, a clear-text hello, a wrong proof, garbage, an
/// unknown magic, a frame out of turn, and silence are each answered as
/// they should be and closed; the chat loses nothing and no member is
/// suspected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_peers_are_refused_and_do_no_harm() {
    let cluster = quick(TestCluster::builder(2)).start();
    friends(&cluster, "f", 2);
    let target = cluster.node(0);
    let port = cluster.cluster_ports[0];
    let f1 = friend_online(cluster.node(0), "f", 1, "r").await;
    let f2 = friend_online(cluster.node(1), "f", 2, "r").await;
    let mut chat = Chat::start(f1, f2);
    chat.flowing(20).await;

    // A newer protocol: a goodbye naming both versions, then the close.
    let mut peer = connect(port).await;
    send(&mut peer, &hello(PROTOCOL_VERSION + 1, [7; 32])).await;
    let reason = expect_goodbye(&mut peer).await;
    let ours = format!("version {PROTOCOL_VERSION}");
    let theirs = format!("version {}", PROTOCOL_VERSION + 1);
    assert!(
        reason.contains(&ours) && reason.contains(&theirs),
        "the goodbye does not name both versions: {reason:?}"
    );
    expect_closed(&mut peer, WAIT).await;
    wait_log_count(target, "protocol version mismatch", 1, WAIT).await;
    let line = log_line(target, "protocol version mismatch");
    assert!(line.contains(&ours) && line.contains(&theirs), "{line}");
    chat.flowing(20).await;

    // The right version in clear text: TLS is required.
    let mut peer = connect(port).await;
    send(&mut peer, &hello(PROTOCOL_VERSION, [8; 32])).await;
    let reason = expect_goodbye(&mut peer).await;
    assert!(reason.contains("requires TLS"), "{reason:?}");
    expect_closed(&mut peer, WAIT).await;
    wait_log_count(target, "this node requires TLS", 1, WAIT).await;

    // The right version and a wrong proof: refused.
    let mut peer = connect_tls(port).await;
    let dialer_nonce: [u8; 32] = rand::rng().random();
    send(&mut peer, &hello(PROTOCOL_VERSION, dialer_nonce)).await;
    let acceptor_nonce = expect_hello(&mut peer).await;
    let forged = dialer_proof(b"a guess", &peer, &dialer_nonce, &acceptor_nonce);
    send(&mut peer, &Frame::Auth { proof: forged }).await;
    let reason = expect_goodbye(&mut peer).await;
    assert!(reason.contains("secret"), "{reason:?}");
    expect_closed(&mut peer, WAIT).await;
    wait_log_count(target, "the peer did not prove the cluster secret", 1, WAIT).await;

    // The control: the same steps with the real secret are accepted, so the
    // refusal above was for the proof alone.
    let mut peer = connect_tls(port).await;
    let dialer_nonce: [u8; 32] = rand::rng().random();
    send(&mut peer, &hello(PROTOCOL_VERSION, dialer_nonce)).await;
    let acceptor_nonce = expect_hello(&mut peer).await;
    let secret = cluster.secret.as_bytes();
    let right = dialer_proof(secret, &peer, &dialer_nonce, &acceptor_nonce);
    send(&mut peer, &Frame::Auth { proof: right }).await;
    match next_frame(&mut peer).await {
        Some(Frame::Auth { .. }) => {}
        other => panic!("a peer with the secret got {other:?} instead of the node's proof"),
    }
    drop(peer);

    // Bytes that are no frame at all (read as a 1.2 GB length), an
    // undecodable frame, another magic, a frame before the hello.
    let refusals = refusals(target);
    let mut junk = Vec::new();
    encode_into(&Frame::Heartbeat, &mut junk).unwrap();
    let mut not_starling = Vec::new();
    let Frame::Hello {
        protocol_version,
        info,
        nonce,
        ..
    } = hello(PROTOCOL_VERSION, [1; 32])
    else {
        unreachable!("hello() makes a hello")
    };
    let other_magic = Frame::Hello {
        magic: *b"NOTSTARL",
        protocol_version,
        info,
        nonce,
    };
    encode_into(&other_magic, &mut not_starling).unwrap();
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an undecodable frame", vec![0, 0, 0, 3, 0xff, 0xff, 0xff]),
        ("another magic", not_starling),
        ("a heartbeat before the hello", junk),
    ];
    for (what, bytes) in &cases {
        let mut peer = connect(port).await;
        peer.write_all(bytes).await.unwrap();
        let answer = read_to_close(&mut peer, WAIT)
            .await
            .unwrap_or_else(|| panic!("{what}: the node kept the connection open"));
        assert!(
            !answer
                .iter()
                .any(|frame| matches!(frame, Frame::Hello { .. } | Frame::Auth { .. })),
            "{what}: the node answered {answer:?}"
        );
        chat.flowing(10).await;
    }
    wait_log_count(target, "cluster link refused", refusals + cases.len(), WAIT).await;

    // Silence: closed when the handshake times out (5 s).
    let mut peer = connect(port).await;
    let answer = read_to_close(&mut peer, DOWN_WAIT).await;
    assert_eq!(answer, Some(Vec::new()), "a silent peer was not closed");
    wait_log_count(target, "handshake timed out", 1, WAIT).await;

    chat.flowing(20).await;
    let chatted = chat.finish().await;
    eprintln!(
        "{} messages each way across the nodes during the fake peers' visits, none lost",
        chatted.each_way
    );
    for index in 0..2 {
        let log = plain_log(cluster.node(index));
        for name in ["node1", "node2"] {
            let troubled = log.lines().find(|line| {
                line.contains(&format!("peer={name} "))
                    && (line.contains("is suspect") || line.contains("is down"))
            });
            assert!(troubled.is_none(), "node{}: {troubled:?}", index + 1);
        }
        assert_eq!(
            view(cluster.node(index)).map(|v| v.members.len()),
            Some(2),
            "node{}",
            index + 1
        );
    }
}

// ----- a fake peer -----

fn hello(protocol_version: u32, nonce: [u8; 32]) -> Frame {
    Frame::Hello {
        magic: MAGIC,
        protocol_version,
        info: PeerInfo {
            node_id: 0x5eed_0000_0000_0042,
            name: "intruder".into(),
            incarnation: 1,
            cluster_addr: "127.0.0.1:9".into(),
            c2s_addr: "127.0.0.1:9".into(),
            http_addr: "127.0.0.1:9".into(),
            web_url: "http://127.0.0.1:9".into(),
            max_connections: 0,
        },
        nonce,
    }
}

/// The dialer's proof of the handshake, bound to this TLS session.
fn dialer_proof(
    secret: &[u8],
    session: &TlsStream<TcpStream>,
    dialer_nonce: &[u8; 32],
    acceptor_nonce: &[u8; 32],
) -> [u8; 32] {
    let exporter = session
        .get_ref()
        .1
        .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
        .expect("an exporter value");
    proof(
        secret,
        Role::Dialer,
        dialer_nonce,
        acceptor_nonce,
        &exporter,
    )
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the peer port accepts connections")
}

/// A TLS session with the node's peer port (any certificate will do, as a
/// member's own does).
async fn connect_tls(port: u16) -> TlsStream<TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("starling-cluster-peer").unwrap();
    insecure_connector()
        .expect("a TLS client")
        .connect(name, connect(port).await)
        .await
        .expect("the peer port speaks TLS")
}

async fn send<S: AsyncWrite + Unpin>(peer: &mut S, frame: &Frame) {
    let mut out = Vec::new();
    encode_into(frame, &mut out).unwrap();
    peer.write_all(&out).await.expect("write to the node");
    peer.flush().await.expect("write to the node");
}

/// The next frame; `None` when the node closed the connection.
async fn next_frame<S: AsyncRead + Unpin>(peer: &mut S) -> Option<Frame> {
    timeout(WAIT, read_frame(peer, &mut Vec::new()))
        .await
        .expect("the node answers in time")
        .ok()
        .flatten()
}

async fn expect_hello<S: AsyncRead + Unpin>(peer: &mut S) -> [u8; 32] {
    match next_frame(peer).await {
        Some(Frame::Hello {
            magic,
            protocol_version,
            nonce,
            ..
        }) => {
            assert_eq!(magic, MAGIC);
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            nonce
        }
        other => panic!("expected the node's hello, got {other:?}"),
    }
}

async fn expect_goodbye<S: AsyncRead + Unpin>(peer: &mut S) -> String {
    match next_frame(peer).await {
        Some(Frame::Goodbye { reason }) => reason,
        other => panic!("expected a goodbye, got {other:?}"),
    }
}

/// Waits for the node to close the connection.
async fn expect_closed<S: AsyncRead + Unpin>(peer: &mut S, bound: Duration) {
    let rest = read_to_close(peer, bound).await;
    assert!(rest.is_some(), "the node kept the connection open");
}

/// Reads frames until the node closes the connection (`None` if it is still
/// open after `bound`); an unreadable byte stream counts as closed there.
async fn read_to_close<S: AsyncRead + Unpin>(peer: &mut S, bound: Duration) -> Option<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut bytes = Vec::new();
    let read_all = async {
        let mut chunk = [0u8; 4096];
        loop {
            match peer.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    };
    timeout(bound, read_all).await.ok()?;
    let mut reader = &bytes[..];
    while let Ok(Some(frame)) = read_frame(&mut reader, &mut Vec::new()).await {
        frames.push(frame);
    }
    Some(frames)
}

/// How many refusals the node logged so far.
fn refusals(node: &TestNode) -> usize {
    plain_log(node).matches("cluster link refused").count()
}

/// The first log line containing `needle`.
fn log_line(node: &TestNode, needle: &str) -> String {
    plain_log(node)
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_default()
        .to_owned()
}
