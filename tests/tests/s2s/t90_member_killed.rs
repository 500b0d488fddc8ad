//! A member killed with SIGKILL while its users' messages flow to another
//! server loses none that a client saw acknowledged.
//!
//! A three-node cluster (localhost) federates with a single node (r.test)
//! that reads each incoming stream at a bounded rate (`[s2s]
//! stanzas_per_sec`); member 1 reaches r.test over a slow link (a latency
//! relay), so what it sends is long on its way. Client 1 (stream
//! management, member 1) and client 2 (member 2) send numbered messages to
//! rita@r.test as fast as they can, pipelining their ack requests. Client 1
//! waits until its first 100 are acknowledged, sends 300 more at once, and
//! member 1 is killed while they travel; client 1 cannot resume (the
//! session died with it), logs in again on member 2 and sends every
//! message its last `h` did not cover, as XEP-0198 asks. Rita must get
//! every number of both senders; duplicates are allowed only among what
//! client 1 sent again (delivered, but not yet confirmed when the member
//! died).
//!
//! A stanza to another server counts in `h` only once that server answered
//! a barrier behind it. Before, `h` counted it as soon as it was queued for
//! the outgoing stream, and what member 1 held at the kill (here: all of
//! client 1's messages, the stream still being set up over the slow link)
//! was lost although acknowledged.

use std::collections::BTreeMap;
use std::time::Duration;

use starling_tests::latency::LatencyRelay;
use starling_tests::{Client, ClientError, TestCluster, TestNode, free_port};

use crate::support::*;

/// Messages each client sends.
const COUNT: u32 = 500;
/// Client 1 waits until these are acknowledged (member 1's stream is up)...
const FIRST_ACKED: u32 = 100;
/// ... then sends up to this many at once, and member 1 is killed.
const KILL_AFTER_SENT: u32 = 400;
/// Messages between two `<r/>`.
const PER_REQUEST: u32 = 10;
/// `<r/>`s a client leaves unanswered before it waits for an `<a/>`.
const REQUESTS_IN_FLIGHT: u32 = 40;
/// Body padding: enough bytes that the sockets' buffers cannot hold what
/// a slow peer has not read.
const PADDING: usize = 1024;
/// One-way latency between member 1 and r.test.
const LATENCY: Duration = Duration::from_millis(300);
/// r.test reads this many stanzas per second from each incoming stream.
const PEER_RATE: u32 = 200;
const STREAMS_IN: &str = "starling_s2s_streams{direction=\"in\"}";
/// Bound for what should come (acks, the end marker); reached only when
/// it does not.
const PATIENCE: Duration = Duration::from_secs(120);

fn text(sender: &str, number: u32) -> String {
    format!("{sender}-{number} {}", "x".repeat(PADDING))
}

/// Which sender and number a body names.
fn numbered(body: &str) -> Option<(String, u32)> {
    let (head, _) = body.split_once(' ')?;
    let (sender, number) = head.rsplit_once('-')?;
    Some((sender.to_owned(), number.parse().ok()?))
}

/// A stream-managed client sending numbered messages to `to`, pipelining
/// its ack requests; `acked` is the last `h` it saw.
struct Sender {
    client: Client,
    name: &'static str,
    to: String,
    /// The numbers sent since `<enable/>`, in order: `h` counts them.
    sent: Vec<u32>,
    acked: u32,
    requests: u32,
    /// The resumption id from `<enabled/>`.
    previd: String,
}

impl Sender {
    async fn new(mut client: Client, name: &'static str, to: &str) -> Sender {
        let enabled = client.enable_sm(true).await.unwrap();
        Sender {
            previd: enabled.id.expect("a resumable session"),
            client,
            name,
            to: to.to_owned(),
            sent: Vec::new(),
            acked: 0,
            requests: 0,
        }
    }

    async fn send(&mut self, number: u32) -> Result<(), ClientError> {
        let body = text(self.name, number);
        self.client
            .send(&format!(
                "<message to='{}' type='chat' id='{}-{number}'><body>{body}</body></message>",
                self.to, self.name
            ))
            .await?;
        self.sent.push(number);
        if self.sent.len() as u32 % PER_REQUEST == 0 {
            self.client.send_ack_request().await?;
            self.requests += 1;
            while self.requests > REQUESTS_IN_FLIGHT {
                self.read_ack().await?;
            }
        }
        Ok(())
    }

    async fn read_ack(&mut self) -> Result<(), ClientError> {
        let h = self.client.expect_ack(PATIENCE).await?;
        assert!(
            h >= self.acked,
            "{}: h went back from {} to {h}",
            self.name,
            self.acked
        );
        self.acked = h;
        self.requests -= 1;
        Ok(())
    }

    /// The `<a/>`s already read from the socket (kept while waiting for
    /// something else): the newest `h` among them.
    fn take_buffered_acks(&mut self) {
        let newest = self
            .client
            .pending()
            .filter(|e| e.is("a", "urn:xmpp:sm:3"))
            .filter_map(|e| e.attr("h")?.parse::<u32>().ok())
            .max();
        if let Some(h) = newest {
            self.acked = self.acked.max(h);
        }
    }

    /// Asks until everything sent is acknowledged.
    async fn settle(&mut self) -> Result<(), ClientError> {
        while self.acked < self.sent.len() as u32 {
            if self.requests == 0 {
                self.client.send_ack_request().await?;
                self.requests += 1;
            }
            self.read_ack().await?;
        }
        Ok(())
    }

    /// The numbers sent but not covered by the last `h`.
    fn unacknowledged(&self) -> Vec<u32> {
        self.sent[self.acked as usize..].to_vec()
    }
}

#[tokio::test]
async fn a_member_killed_while_messages_flow_to_another_server_loses_none() {
    let cluster_s2s: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peer_s2s = free_port();
    // Member 1 reaches r.test over a slow link (a relay in the test).
    let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let slow = LatencyRelay::start(local(free_port()), local(peer_s2s), LATENCY);
    let mut builder = TestCluster::builder(3)
        .user("c1", PW)
        .user("c2", PW)
        .set("cluster", "heartbeat_ms = 250")
        .set("cluster", "suspect_after_ms = 1000")
        .set("cluster", "down_after_ms = 2000");
    for (index, port) in cluster_s2s.iter().enumerate() {
        let route = if index == 0 {
            slow.addr.port()
        } else {
            peer_s2s
        };
        builder = builder
            .set_on(index, "s2s", &format!("bind = \"127.0.0.1:{port}\""))
            .set_on(
                index,
                "s2s.routes",
                &format!("\"r.test\" = \"127.0.0.1:{route}\""),
            );
    }
    let mut cluster = builder.start();
    // r.test reaches the cluster through member 3, which lives: the answers
    // to members 1 and 2's barriers arrive there and cross to them.
    let peer = server("r.test", peer_s2s, &[("localhost", cluster_s2s[2])])
        .user("rita", PW)
        .user("ray", PW)
        .set("s2s", &format!("stanzas_per_sec = {PEER_RATE}"))
        .start();

    let rita = online(&peer, "rita", PW, "desk").await;
    let rita_jid = "rita@r.test/desk";
    let reading = tokio::spawn(read_until_end(rita));

    let one = online(cluster.node(0), "c1", PW, "one").await;
    let two = online(cluster.node(1), "c2", PW, "two").await;
    let mut first = Sender::new(one, "first", rita_jid).await;
    let mut second = Sender::new(two, "second", rita_jid).await;

    // Client 2 sends all its messages while member 1 dies.
    let flooding = tokio::spawn(async move {
        for number in 0..COUNT {
            second.send(number).await.expect("client 2 sends");
        }
        second
            .settle()
            .await
            .expect("client 2's messages acknowledged");
        second
    });

    // Member 1's stream is up once these are acknowledged (the old code
    // acknowledged them at once, whether or not it was).
    for number in 0..FIRST_ACKED {
        first.send(number).await.expect("client 1 sends");
    }
    first
        .settle()
        .await
        .expect("client 1's first messages acknowledged");
    // Then a burst: written by member 1 (or waiting to be) and on its way
    // when member 1 dies. The ping's answer comes after every <a/> the
    // server gave so far: the client has seen its newest h.
    for number in FIRST_ACKED..KILL_AFTER_SENT {
        first.send(number).await.expect("client 1 sends");
    }
    iq(
        &mut first.client,
        "get",
        None,
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await;
    first.take_buffered_acks();
    // Incoming streams at r.test: member 1's is one of them.
    let streams_before_kill = peer.metric(STREAMS_IN).await;
    cluster.kill(0);
    let acked_at_kill = first.acked;
    let resend: Vec<u32> = first
        .unacknowledged()
        .into_iter()
        .chain(KILL_AFTER_SENT..COUNT)
        .collect();
    eprintln!(
        "member 1 killed: client 1 sent {KILL_AFTER_SENT}, saw {acked_at_kill} acknowledged; \
         sends {} again or for the first time",
        resend.len()
    );

    // The session died with member 1: no resumption anywhere.
    let previd = first.previd.clone();
    let error = Client::resume(
        cluster.node(1).c2s,
        &options(cluster.node(1), "c1", PW, "one"),
        &previd,
        first.client.sm_handled().unwrap_or(0),
    )
    .await
    .err()
    .expect("no session to resume");
    assert!(
        matches!(&error, ClientError::SmFailed { condition, .. } if condition == "item-not-found"),
        "{error}"
    );
    // A new session on member 2 sends what `h` did not cover.
    let again = online(cluster.node(1), "c1", PW, "again").await;
    let mut first_again = Sender::new(again, "first", rita_jid).await;
    for &number in &resend {
        first_again
            .send(number)
            .await
            .expect("client 1 sends again");
    }
    first_again
        .settle()
        .await
        .expect("client 1's messages acknowledged");
    let mut second = flooding.await.unwrap();
    assert_eq!(second.acked, COUNT);
    // Markers behind everything each client sent through member 2's stream:
    // what went that way has reached rita when they do.
    for sender in [&mut first_again, &mut second] {
        let marker = format!("end-{}", sender.name);
        sender
            .client
            .send(&format!(
                "<message to='{rita_jid}' type='chat'><body>{marker}</body></message>"
            ))
            .await
            .unwrap();
    }

    // Member 1's dead stream may still be read at r.test: once r.test holds
    // one incoming stream fewer, all it carried is in rita's mailbox, and
    // ray's marker follows it there.
    wait_streams_in(&peer, streams_before_kill - 1.0).await;
    let mut ray = online(&peer, "ray", PW, "r").await;
    ray.send(&format!(
        "<message to='{rita_jid}' type='chat'><body>end</body></message>"
    ))
    .await
    .unwrap();
    let bodies = reading.await.unwrap();

    let mut seen: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for body in &bodies {
        let (sender, number) = numbered(body).unwrap_or_else(|| panic!("odd body {body:.40}"));
        *seen.entry((sender, number)).or_default() += 1;
    }
    let mut missing = Vec::new();
    for sender in ["first", "second"] {
        for number in 0..COUNT {
            if !seen.contains_key(&(sender.to_owned(), number)) {
                missing.push(format!("{sender}-{number}"));
            }
        }
    }
    let duplicates: Vec<&(String, u32)> = seen
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|(key, _)| key)
        .collect();
    eprintln!(
        "rita got {} messages: {} missing, {} numbers twice or more",
        bodies.len(),
        missing.len(),
        duplicates.len()
    );
    assert!(
        missing.is_empty(),
        "lost {} acknowledged messages (client 1 saw h={acked_at_kill} at the kill): {missing:?}",
        missing.len()
    );
    for (sender, number) in duplicates {
        assert!(
            sender == "first" && resend.contains(number),
            "{sender}-{number} arrived twice but was sent once"
        );
        assert!(seen[&(sender.clone(), *number)] <= 2, "{sender}-{number}");
    }
    // The members confirmed with barriers, and nothing waits any more once
    // the last barrier (sent a moment after the last stanza) is answered.
    let two = cluster.node(1);
    assert!(two.metric("starling_s2s_barriers_total").await >= 1.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut unconfirmed = two.metric("starling_s2s_unconfirmed").await;
    while unconfirmed > 0.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        unconfirmed = two.metric("starling_s2s_unconfirmed").await;
    }
    assert_eq!(unconfirmed, 0.0, "stanzas still unconfirmed after 10 s");
    assert!(two.metric("starling_s2s_confirmed_total").await >= f64::from(COUNT));
}

/// Rita's bodies, in arrival order, until ray's "end" and both senders'
/// markers came.
async fn read_until_end(mut rita: Client) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut ends = std::collections::BTreeSet::new();
    while ends.len() < 3 {
        let message = rita
            .expect(
                |e| e.is("message", starling_core::xml::ns::CLIENT),
                PATIENCE,
            )
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "rita stopped getting messages after {}: {error}",
                    bodies.len()
                )
            });
        let text = body(&message);
        if ["end", "end-first", "end-second"].contains(&text.as_str()) {
            ends.insert(text);
            continue;
        }
        if message.attr("type") == Some("error") {
            panic!("rita got an error: {message}");
        }
        bodies.push(text);
    }
    bodies
}

/// Waits until `node` holds `count` incoming federation streams (a stream
/// whose peer died is read to its end first).
async fn wait_streams_in(node: &TestNode, count: f64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while node.metric(STREAMS_IN).await > count {
        assert!(
            std::time::Instant::now() < deadline,
            "{} still reads a dead member's stream:\n{}",
            node.domain,
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
