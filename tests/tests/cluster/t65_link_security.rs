//! Peer links are TLS 1.3 and the secret's proof is bound to the TLS
//! session. These tests stand on the wire between two real members: a
//! relay that terminates TLS towards each side with its own certificate,
//! a replay of a member's recorded bytes, a byte flipped in an established
//! link, a capture of everything the links carried while users chat, and
//! links checked against the operators' own CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use starling_tests::pki::Pki;
use starling_tests::tap::Recorded;
use starling_tests::tls::insecure_connector;
use starling_tests::{TestCluster, TestNode, free_port, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::t50_faults::{
    Chat, WAIT, friend_online, friends, hear, jid, plain_log, quick, say, view, wait_log_count,
    wait_view,
};

/// A member dials another through a relay that terminates TLS towards both
/// with a certificate of its own and passes the frames between the two
/// sessions. Both members know the secret, yet the proof made over one
/// session's exporter value fails on the other: no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_terminating_tls_on_both_sides_is_refused() {
    let cluster = quick(TestCluster::builder(1)).start();
    let relay = TlsRelay::start(cluster.cluster_ports[0]).await;
    let dialer = TestNode::builder()
        .shared_store(&cluster.dir().join("starling.db"))
        .set("cluster", "enabled = true")
        .set("cluster", "node_name = \"node2\"")
        .set("cluster", &format!("bind = \"127.0.0.1:{}\"", free_port()))
        .set("cluster", &format!("seeds = [\"{}\"]", relay.addr))
        .set("cluster", &format!("secret = \"{}\"", cluster.secret))
        .set("cluster", "heartbeat_ms = 250")
        .start();
    let target = cluster.node(0);
    wait_log_count(target, "the peer did not prove the cluster secret", 1, WAIT).await;
    wait_log_count(&dialer, "the cluster secret does not match", 1, WAIT).await;
    assert!(
        relay.bridged() >= 1,
        "the relay never held TLS sessions with both members"
    );
    for (name, log) in [("node1", plain_log(target)), ("node2", plain_log(&dialer))] {
        assert!(
            !log.contains("cluster link up"),
            "{name} linked through the relay:\n{log}"
        );
    }
}

/// The bytes a member sent to open its link, replayed on a new connection
/// to the same member: the TLS handshake cannot complete (fresh keys on
/// the member's side), so nothing links and the link in use stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_link_opening_is_refused() {
    let cluster = quick(TestCluster::builder(2)).tapped_links().start();
    let index = live_tap(&cluster).await;
    let target = cluster.node(index);
    let recorded = cluster.taps[index]
        .recorded()
        .pop()
        .expect("a recorded connection");
    assert!(
        !recorded.to_target.is_empty(),
        "nothing recorded from the dialer"
    );
    let ups = count(target, "cluster link up");
    let downs = [0, 1].map(|i| count(cluster.node(i), "cluster link down"));
    let refusals = count(target, "cluster link refused");

    let mut replay = TcpStream::connect(("127.0.0.1", cluster.cluster_ports[index]))
        .await
        .expect("the peer port accepts connections");
    // The member may close before it has read everything.
    let _ = replay.write_all(&recorded.to_target).await;
    let mut answer = Vec::new();
    let closed = timeout(WAIT, replay.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the member kept the replayed connection open"
    );
    wait_log_count(target, "cluster link refused", refusals + 1, WAIT).await;
    let refusal = plain_log(target)
        .lines()
        .filter(|line| line.contains("cluster link refused"))
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(refusal.contains("TLS"), "{refusal}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(count(target, "cluster link up"), ups, "the replay linked");
    for i in 0..2 {
        assert_eq!(
            count(cluster.node(i), "cluster link down"),
            downs[i],
            "node{}: the replay disturbed the link in use",
            i + 1
        );
    }
}

/// Users on two members chat; a byte of the link between them is flipped
/// on the wire. The receiving member cannot authenticate the record and
/// ends the link; the members link again, and the chat after it arrives
/// once each and in order, with nothing from before repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_ends_the_link_which_comes_back_with_nothing_lost_or_repeated() {
    let cluster = quick(TestCluster::builder(2)).tapped_links().start();
    friends(&cluster, "x", 2);
    let a = friend_online(cluster.node(0), "x", 1, "r").await;
    let b = friend_online(cluster.node(1), "x", 2, "r").await;
    let mut chat = Chat::start(a, b);
    chat.flowing(40).await;
    let before = chat.finish().await;
    // Acknowledgements ride on heartbeats (every 250 ms here): after this,
    // the link holds nothing that could be sent again.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let ups = [0, 1].map(|i| count(cluster.node(i), "cluster link up"));
    let downs = [0, 1].map(|i| count(cluster.node(i), "cluster link down"));
    let tap = &cluster.taps[live_tap(&cluster).await];
    tap.flip_next_byte();
    for i in 0..2 {
        wait_log_count(cluster.node(i), "cluster link down", downs[i] + 1, WAIT).await;
    }
    assert!(!tap.flip_pending());
    let reasons: Vec<String> = (0..2)
        .flat_map(|i| {
            plain_log(cluster.node(i))
                .lines()
                .filter(|line| line.contains("cluster link down"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        reasons.iter().any(|line| line.contains("connection error")),
        "no member saw the corrupted record: {reasons:#?}"
    );
    for i in 0..2 {
        wait_log_count(cluster.node(i), "cluster link up", ups[i] + 1, WAIT).await;
    }

    let mut chat = Chat::start(before.a, before.b);
    chat.flowing(40).await;
    let after = chat.finish().await;
    for (name, other) in [("x1", &after.a_other), ("x2", &after.b_other)] {
        let messages: Vec<_> = other.iter().filter(|e| e.name() == "message").collect();
        assert!(messages.is_empty(), "{name} got more: {messages:?}");
    }
    eprintln!(
        "{} messages each way before the flip and {} after, each once and in order; {reasons:#?}",
        before.each_way, after.each_way
    );
}

/// Everything the links carry while users chat across two members, seen
/// from a relay on the wire: no message body in it. With clear-text links
/// the same capture shows the body, so the capture does see the traffic;
/// the node warns at start and says so in `/api/cluster`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_the_links_holds_no_message_body() {
    for plaintext in [false, true] {
        let mut builder = quick(TestCluster::builder(2))
            .tapped_links()
            .admin("root", "rootpw");
        if plaintext {
            builder = builder.set("cluster", "insecure_plaintext = true");
        }
        let cluster = builder.start();
        friends(&cluster, "c", 2);
        let mut a = friend_online(cluster.node(0), "c", 1, "r").await;
        let mut b = friend_online(cluster.node(1), "c", 2, "r").await;
        let token: u64 = rand::rng().random();
        let (there, back) = (
            format!("confidential-{token:x}"),
            format!("reply-{token:x}"),
        );
        say(&mut a, &jid(&b), &there).await;
        hear(&mut b, &there, WAIT).await;
        say(&mut b, &jid(&a), &back).await;
        hear(&mut a, &back, WAIT).await;

        let captured: Vec<Recorded> = cluster.taps.iter().flat_map(|tap| tap.recorded()).collect();
        let bytes: usize = captured
            .iter()
            .map(|r| r.to_target.len() + r.from_target.len())
            .sum();
        assert!(bytes > 0, "the relays saw no traffic");
        for body in [&there, &back] {
            let seen = captured.iter().any(|r| {
                contains(&r.to_target, body.as_bytes()) || contains(&r.from_target, body.as_bytes())
            });
            assert_eq!(
                seen, plaintext,
                "plaintext links: {plaintext}; {body:?} in the {bytes} captured bytes: {seen}"
            );
        }

        let status = http::get(cluster.node(0).http, "/api/cluster", "root", "rootpw")
            .await
            .json();
        let expected = if plaintext { "plaintext" } else { "tls" };
        assert_eq!(status["link_security"], expected, "{status}");
        let warned = plain_log(cluster.node(0))
            .lines()
            .any(|line| line.contains("WARN") && line.contains("cluster links are clear text"));
        assert_eq!(
            warned, plaintext,
            "a warning at start iff links are clear text"
        );
        eprintln!("plaintext links: {plaintext}; {bytes} bytes captured");
    }
}

/// With the operators' own CA (`tls_ca`, `tls_cert`, `tls_key`), members
/// whose certificates it signed link and route; a node that knows the
/// secret but holds a certificate from another CA is refused by both and
/// ends up alone, and `/api/cluster` says which kind of links these are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_ca_only_members_it_signed_link() {
    let pki = tempfile::tempdir().unwrap();
    let ours = Pki::new(pki.path(), "ours");
    let theirs = Pki::new(pki.path(), "theirs");
    let mut builder = quick(TestCluster::builder(3)).admin("root", "rootpw");
    for (index, name) in ["node1", "node2", "node3"].into_iter().enumerate() {
        let (cert, key) = if index < 2 {
            ours.issue(name)
        } else {
            theirs.issue(name)
        };
        builder = builder
            .set_on(index, "cluster", &format!("tls_ca = {:?}", ours.ca_path()))
            .set_on(index, "cluster", &format!("tls_cert = {cert:?}"))
            .set_on(index, "cluster", &format!("tls_key = {key:?}"));
    }
    let cluster = builder.start();
    for index in [0, 1] {
        wait_view(
            cluster.node(index),
            "node1 and node2 together",
            |v| v.members.len() == 2 && v.has("node1") && v.has("node2"),
            WAIT,
        )
        .await;
    }
    friends(&cluster, "k", 2);
    let mut a = friend_online(cluster.node(0), "k", 1, "r").await;
    let mut b = friend_online(cluster.node(1), "k", 2, "r").await;
    say(&mut a, &jid(&b), "over the CA's links").await;
    hear(&mut b, "over the CA's links", WAIT).await;

    for index in [0, 1] {
        let log = plain_log(cluster.node(index));
        assert!(
            !view(cluster.node(index)).is_some_and(|v| v.has("node3")),
            "node{} took the member with a foreign certificate:\n{log}",
            index + 1
        );
    }
    // Refused for its certificate, not for anything else.
    wait_log_count(cluster.node(0), "cluster link refused", 1, WAIT).await;
    let refusals = plain_log(cluster.node(0));
    assert!(
        refusals
            .lines()
            .any(|line| line.contains("cluster link refused") && line.contains("certificate")),
        "no certificate refusal on node1:\n{refusals}"
    );
    let outsider = plain_log(cluster.node(2));
    assert!(
        !outsider.contains("cluster link up"),
        "node3 linked with a foreign certificate:\n{outsider}"
    );
    let status = http::get(cluster.node(0).http, "/api/cluster", "root", "rootpw")
        .await
        .json();
    assert_eq!(status["link_security"], "tls_ca", "{status}");
}

// ----- helpers -----

fn count(node: &TestNode, needle: &str) -> usize {
    plain_log(node).matches(needle).count()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The tap that carries the link in use: its newest connection keeps
/// growing with heartbeats (every 250 ms here).
async fn live_tap(cluster: &TestCluster) -> usize {
    let sizes = |cluster: &TestCluster| -> Vec<usize> {
        cluster
            .taps
            .iter()
            .map(|tap| tap.recorded().last().map_or(0, |r| r.to_target.len()))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let first = sizes(cluster);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let then = sizes(cluster);
        if let Some(index) = (0..first.len()).find(|&i| then[i] > first[i]) {
            return index;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no link carries traffic"
        );
    }
}

/// A man in the middle: accepts TLS with a certificate of its own, dials
/// the member with TLS too, and copies the bytes between the two sessions.
struct TlsRelay {
    addr: SocketAddr,
    /// Connections it held TLS sessions on with both sides.
    bridged: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsRelay {
    async fn start(target_port: u16) -> TlsRelay {
        let generated =
            rcgen::generate_simple_self_signed(vec!["starling-cluster-peer".to_owned()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![generated.cert.der().clone()], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bridged = Arc::new(AtomicU64::new(0));
        let counter = bridged.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut dialer_side) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                        return;
                    };
                    let name = ServerName::try_from("starling-cluster-peer").unwrap();
                    let connector = insecure_connector().expect("a TLS client");
                    let Ok(mut member_side) = connector.connect(name, outbound).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = tokio::io::copy_bidirectional(&mut dialer_side, &mut member_side).await;
                });
            }
        });
        TlsRelay {
            addr,
            bridged,
            task,
        }
    }

    fn bridged(&self) -> u64 {
        self.bridged.load(Ordering::Relaxed)
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
