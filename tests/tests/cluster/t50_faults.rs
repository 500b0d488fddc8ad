//! Node failures: a crashed member (SIGKILL) and a member that leaves
//! cleanly (SIGTERM), in clusters of two and three nodes.
//!
//! What must hold, whatever node goes: chat between users on the survivors
//! goes on without a loss; the lost node's users go unavailable, from their
//! full JIDs, for their contacts on the survivors; messages to them are
//! stored offline and delivered at their next login, on any node; the
//! survivors agree on the membership without the lost node (the senior
//! member removes it); and the node, restarted, rejoins and serves again.
//!
//! Also the helpers the other fault tests (t60, t70) share: quick failure
//! detection, reading membership from the nodes' logs, and a chatting pair
//! that proves nothing was lost or reordered.
//!
//! Times are printed (run with `--nocapture` to see them), never asserted:
//! every bound here is a generous "it did not happen" limit.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use starling_core::xml::{Element, ns};
use starling_tests::node::send_signal;
use starling_tests::{Client, ClusterBuilder, TestCluster, TestNode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The c2s suite's helpers (login, presence predicates, barriers), which
/// hold across nodes too.
#[path = "../c2s/support.rs"]
#[allow(dead_code)]
pub(crate) mod c2s;

pub(crate) use crate::support::{assert_ends_up_available, plain_log, wait_log_count};
pub(crate) use c2s::{
    assert_none, body, expect_presence, is_message_with_body, is_presence, jid, login, online,
    provision, roster_get, sync,
};

/// The bound for what a failure must cause: detection (2 s here), a Raft
/// election (about 3 s) and a membership change, with room for a slow
/// machine.
pub(crate) const DOWN_WAIT: Duration = Duration::from_secs(30);

/// The bound for ordinary deliveries.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Failure detection in about 2 s instead of 3 (heartbeats every 250 ms).
pub(crate) fn quick(builder: ClusterBuilder) -> ClusterBuilder {
    builder
        .set("cluster", "heartbeat_ms = 250")
        .set("cluster", "suspect_after_ms = 1000")
        .set("cluster", "down_after_ms = 2000")
}

/// `PREFIX1..PREFIXn` (passwords `pw1..pwn`), every one a contact of every
/// other with subscription both.
pub(crate) fn friends(cluster: &TestCluster, prefix: &str, count: u32) {
    provision(cluster.node(0), prefix, count, count - 1);
}

/// Logs `PREFIXn` in on `node` with `resource`, requests the roster and
/// sends initial presence.
pub(crate) async fn friend_online(node: &TestNode, prefix: &str, n: u32, resource: &str) -> Client {
    online(node, &format!("{prefix}{n}"), &format!("pw{n}"), resource).await
}

/// Waits up to `bound` for a presence from `from` of type `ty`.
pub(crate) async fn presence_within(
    client: &mut Client,
    from: &str,
    ty: Option<&str>,
    bound: Duration,
) -> Element {
    client
        .expect(|e| is_presence(e, from, ty), bound)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{} got no presence type {ty:?} from {from} within {bound:?}: {error}",
                jid(client)
            )
        })
}

/// Checks an unavailable presence a node sent for a lost session: from the
/// lost full JID, to this client's full JID, type unavailable.
pub(crate) fn assert_lost_presence(presence: &Element, lost: &str, to: &str) {
    assert!(presence.is("presence", ns::CLIENT), "{presence}");
    assert_eq!(presence.attr("from"), Some(lost), "{presence}");
    assert_eq!(presence.attr("to"), Some(to), "{presence}");
    assert_eq!(presence.attr("type"), Some("unavailable"), "{presence}");
}

/// Sends a chat message with this body.
pub(crate) async fn say(client: &mut Client, to: &str, text: &str) {
    client
        .send(&format!(
            "<message to='{to}' type='chat'><body>{text}</body></message>"
        ))
        .await
        .unwrap_or_else(|error| panic!("{} cannot send: {error}", jid(client)));
}

/// Waits for a message with this body.
pub(crate) async fn hear(client: &mut Client, text: &str, bound: Duration) -> Element {
    client
        .expect(|e| is_message_with_body(e, text), bound)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?}: {error}", jid(client)))
}

/// A message each way, `a` to `b`'s full JID and back.
pub(crate) async fn chat_once(a: &mut Client, b: &mut Client, tag: &str) {
    let (a_jid, b_jid) = (jid(a), jid(b));
    say(a, &b_jid, &format!("{tag}-ab")).await;
    hear(b, &format!("{tag}-ab"), WAIT).await;
    say(b, &a_jid, &format!("{tag}-ba")).await;
    hear(a, &format!("{tag}-ba"), WAIT).await;
}

/// Asserts that a message came from offline storage: this body, from this
/// sender, with a XEP-0203 delay stamp.
pub(crate) fn assert_stored(message: &Element, from: &str) {
    assert_eq!(message.attr("from"), Some(from), "{message}");
    assert!(
        message.has_child("delay", ns::DELAY),
        "no delay stamp on a stored message: {message}"
    );
}

/// Asserts that no error stanza (a bounce) reached the client so far; call
/// after [`sync`].
pub(crate) fn assert_no_bounce(client: &Client) {
    assert_none(client, "bounce", |e| e.attr("type") == Some("error"));
}

// ----- membership from the logs -----

/// One "membership view" line: whom the node sees as senior member, and
/// the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) senior: String,
    pub(crate) members: BTreeSet<String>,
}

impl View {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.members.contains(name)
    }
}

/// Every membership view a node logged, oldest first.
pub(crate) fn views(node: &TestNode) -> Vec<View> {
    plain_log(node)
        .lines()
        .filter(|line| line.contains("membership view"))
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            View {
                senior: field("senior="),
                members: field("members=")
                    .split(',')
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect(),
            }
        })
        .collect()
}

/// The node's latest membership view.
pub(crate) fn view(node: &TestNode) -> Option<View> {
    views(node).pop()
}

/// How long after `since` the node first logged a line matching `wanted`,
/// read from the line's timestamp (so waiting for other things meanwhile
/// does not count).
pub(crate) fn logged_after(
    node: &TestNode,
    since: SystemTime,
    wanted: impl Fn(&str) -> bool,
) -> Option<Duration> {
    const DAY: f64 = 86_400.0;
    let start = since.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() % DAY;
    plain_log(node).lines().find_map(|line| {
        // "2026-01-02T03:04:05.678901Z ..." (UTC)
        let clock = line.split_whitespace().next()?.split_once('T')?.1;
        let mut parts = clock.trim_end_matches('Z').split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        let at = h.parse::<f64>().ok()? * 3600.0
            + m.parse::<f64>().ok()? * 60.0
            + s.parse::<f64>().ok()?;
        let after = (at - start).rem_euclid(DAY);
        // Lines from before `since` (up to an hour of them) do not count.
        (after < DAY - 3600.0 && wanted(line)).then(|| Duration::from_secs_f64(after))
    })
}

/// A "membership view" log line without `name` among the members.
pub(crate) fn view_without(line: &str, name: &str) -> bool {
    line.contains("membership view")
        && line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("members="))
            .is_some_and(|members| !members.split(',').any(|member| member == name))
}

/// Waits until the node's latest view satisfies `wanted`; returns it.
pub(crate) async fn wait_view(
    node: &TestNode,
    what: &str,
    wanted: impl Fn(&View) -> bool,
    bound: Duration,
) -> View {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(view) = view(node).filter(|view| wanted(view)) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "no membership view with {what} within {bound:?}; views: {:?}",
            views(node)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many times the node logged `cluster member is STATE` about `peer`
/// (`state`: up, suspect or down).
pub(crate) fn member_lines(node: &TestNode, state: &str, peer: &str) -> usize {
    member_lines_in(&plain_log(node), state, peer)
}

pub(crate) fn member_lines_in(log: &str, state: &str, peer: &str) -> usize {
    let event = format!("cluster member is {state}");
    let field = format!("peer={peer}");
    log.lines()
        .filter(|line| line.contains(&event) && line.split_whitespace().any(|w| w == field))
        .count()
}

/// Index of the node all nodes name as senior member (waits until they agree).
pub(crate) async fn senior(cluster: &TestCluster) -> usize {
    let all: BTreeSet<String> = (1..=cluster.nodes.len())
        .map(|n| format!("node{n}"))
        .collect();
    let first = wait_view(cluster.node(0), "every node", |v| v.members == all, WAIT).await;
    for index in 1..cluster.nodes.len() {
        wait_view(
            cluster.node(index),
            &format!("senior {}", first.senior),
            |v| v.members == all && v.senior == first.senior,
            WAIT,
        )
        .await;
    }
    number_of(&first.senior) - 1
}

/// 1 for "node1".
pub(crate) fn number_of(name: &str) -> usize {
    name.strip_prefix("node")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a node name: {name:?}"))
}

// ----- a chatting pair -----

/// Two clients chatting without pause in the background (a message each way
/// every 20 ms, to each other's full JIDs). [`Chat::finish`] proves that
/// every message arrived once and in order.
pub(crate) struct Chat {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Chatted, String>>,
    /// Messages received in order so far, both directions together.
    progress: Arc<AtomicU64>,
}

/// What a [`Chat`] leaves: the clients, how many messages went each way,
/// and the other stanzas each client received meanwhile.
pub(crate) struct Chatted {
    pub(crate) a: Client,
    pub(crate) b: Client,
    pub(crate) each_way: u64,
    pub(crate) a_other: Vec<Element>,
    pub(crate) b_other: Vec<Element>,
}

const CHAT_EVERY: Duration = Duration::from_millis(20);

impl Chat {
    pub(crate) fn start(a: Client, b: Client) -> Chat {
        let (stop, stopped) = oneshot::channel();
        let progress = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(chat(a, b, stopped, progress.clone()));
        Chat {
            stop,
            task,
            progress,
        }
    }

    /// Waits until `count` more messages arrived (the chat is flowing).
    pub(crate) async fn flowing(&mut self, count: u64) {
        let target = self.progress.load(Ordering::Relaxed) + count;
        let deadline = Instant::now() + WAIT;
        while self.progress.load(Ordering::Relaxed) < target {
            if self.task.is_finished() {
                match (&mut self.task).await {
                    Ok(Err(problem)) => panic!("the chat was disturbed: {problem}"),
                    other => panic!("the chat ended early: {:?}", other.map(|_| ())),
                }
            }
            assert!(
                Instant::now() < deadline,
                "the chat stalled at {} messages",
                self.progress.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops sending, waits for everything in flight and checks it.
    pub(crate) async fn finish(self) -> Chatted {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(chatted)) => chatted,
            Ok(Err(problem)) => panic!("the chat was disturbed: {problem}"),
            Err(error) => panic!("the chat task failed: {error}"),
        }
    }
}

enum Event {
    Stop,
    Tick,
    ToA(Result<Element, starling_tests::ClientError>),
    ToB(Result<Element, starling_tests::ClientError>),
}

async fn chat(
    mut a: Client,
    mut b: Client,
    mut stopped: oneshot::Receiver<()>,
    progress: Arc<AtomicU64>,
) -> Result<Chatted, String> {
    let (a_jid, b_jid) = (jid(&a), jid(&b));
    let mut ticks = tokio::time::interval(CHAT_EVERY);
    let (mut sent, mut a_got, mut b_got) = (0u64, 0u64, 0u64);
    let (mut a_other, mut b_other) = (Vec::new(), Vec::new());
    let mut stopping: Option<Instant> = None;
    loop {
        if stopping.is_some() && a_got == sent && b_got == sent {
            break;
        }
        if stopping.is_some_and(|since| since.elapsed() > WAIT) {
            return Err(format!(
                "{sent} sent each way; {a_jid} got {a_got}, {b_jid} got {b_got}"
            ));
        }
        let event = tokio::select! {
            _ = &mut stopped, if stopping.is_none() => Event::Stop,
            _ = ticks.tick() => Event::Tick,
            received = a.recv() => Event::ToA(received),
            received = b.recv() => Event::ToB(received),
        };
        match event {
            Event::Stop => stopping = Some(Instant::now()),
            Event::Tick if stopping.is_none() => {
                sent += 1;
                let to_b =
                    format!("<message to='{b_jid}' type='chat'><body>a-{sent}</body></message>");
                let to_a =
                    format!("<message to='{a_jid}' type='chat'><body>b-{sent}</body></message>");
                a.send(&to_b).await.map_err(|e| format!("{a_jid}: {e}"))?;
                b.send(&to_a).await.map_err(|e| format!("{b_jid}: {e}"))?;
            }
            Event::Tick => {}
            Event::ToA(received) => {
                let element = received.map_err(|e| format!("{a_jid}: {e}"))?;
                take(element, "b-", &mut a_got, &mut a_other)?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Event::ToB(received) => {
                let element = received.map_err(|e| format!("{b_jid}: {e}"))?;
                take(element, "a-", &mut b_got, &mut b_other)?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(Chatted {
        a,
        b,
        each_way: sent,
        a_other,
        b_other,
    })
}

/// Counts the next chat message, or keeps another stanza aside; a chat
/// message out of turn is a loss or a reordering.
fn take(
    element: Element,
    prefix: &str,
    got: &mut u64,
    other: &mut Vec<Element>,
) -> Result<(), String> {
    let text = body(&element);
    if element.name() != "message" || !text.starts_with(prefix) {
        other.push(element);
        return Ok(());
    }
    let expected = format!("{prefix}{}", *got + 1);
    if text != expected {
        return Err(format!("expected {expected:?}, got {element}"));
    }
    *got += 1;
    Ok(())
}

/// The unavailable presence from `lost` among stanzas a chatting client set
/// aside, or the next one it receives.
async fn lost_presence_at(client: &mut Client, other: &[Element], lost: &str) -> Element {
    let found = other
        .iter()
        .find(|e| is_presence(e, lost, Some("unavailable")))
        .cloned();
    match found {
        Some(presence) => presence,
        None => presence_within(client, lost, Some("unavailable"), DOWN_WAIT).await,
    }
}

// ----- the tests -----

/// A crash of a non-senior member of three while two users on the others
/// chat; then its users' messages, their next login elsewhere, and the
/// node's restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_member_is_mourned_and_comes_back() {
    let mut cluster = quick(TestCluster::builder(3)).start();
    friends(&cluster, "k", 4);
    let senior = senior(&cluster).await;
    // The crashed node is not the senior member (that is the next test).
    let victim = (senior + 1) % 3;
    let (one, two) = ((victim + 1) % 3, (victim + 2) % 3);
    let mut k1 = friend_online(cluster.node(one), "k", 1, "chat").await;
    let mut k2 = friend_online(cluster.node(two), "k", 2, "chat").await;
    let mut k4 = friend_online(cluster.node(two), "k", 4, "watch").await;
    let mut k3 = friend_online(cluster.node(victim), "k", 3, "victim").await;
    let k3_jid = jid(&k3);
    for client in [&mut k1, &mut k2, &mut k4] {
        expect_presence(client, &k3_jid, None).await;
    }
    sync(&mut k3).await;

    let mut chat = Chat::start(k1, k2);
    chat.flowing(50).await;
    let killed = Instant::now();
    let killed_at = SystemTime::now();
    cluster.kill(victim);
    let victim_name = format!("node{}", victim + 1);
    let k4_jid = jid(&k4);
    let gone = presence_within(&mut k4, &k3_jid, Some("unavailable"), DOWN_WAIT).await;
    let to_unavailable = killed.elapsed();
    assert_lost_presence(&gone, &k3_jid, &k4_jid);
    // The chat goes on meanwhile.
    chat.flowing(50).await;
    for index in [one, two] {
        wait_view(
            cluster.node(index),
            &format!("{victim_name} removed"),
            |v| !v.has(&victim_name) && v.members.len() == 2,
            DOWN_WAIT,
        )
        .await;
    }
    for index in [one, two] {
        let node = cluster.node(index);
        eprintln!(
            "SIGKILL of {victim_name}: node{} logged it down after {:?}, its removal after {:?}",
            index + 1,
            logged_after(node, killed_at, |l| l.contains("cluster member is down")),
            logged_after(node, killed_at, |l| view_without(l, &victim_name)),
        );
    }
    eprintln!(
        "SIGKILL of {victim_name}: unavailable presence at a contact after {to_unavailable:?}"
    );

    // Messages to the lost user now are stored, not bounced.
    say(&mut k4, &k3_jid, "after-crash-full").await;
    say(&mut k4, "k3@localhost", "after-crash-bare").await;
    sync(&mut k4).await;
    assert_no_bounce(&k4);

    let Chatted {
        a: mut k1,
        b: mut k2,
        each_way,
        a_other,
        b_other,
    } = chat.finish().await;
    eprintln!("{each_way} messages each way between the survivors, none lost");
    let (k1_jid, k2_jid) = (jid(&k1), jid(&k2));
    let at_k1 = lost_presence_at(&mut k1, &a_other, &k3_jid).await;
    assert_lost_presence(&at_k1, &k3_jid, &k1_jid);
    let at_k2 = lost_presence_at(&mut k2, &b_other, &k3_jid).await;
    assert_lost_presence(&at_k2, &k3_jid, &k2_jid);
    drop(k3);

    // The next login, on another node, gets what was stored.
    let mut k3 = login(cluster.node(one), "k3", "pw3", "back").await;
    roster_get(&mut k3).await;
    k3.send("<presence/>").await.unwrap();
    for text in ["after-crash-full", "after-crash-bare"] {
        let stored = hear(&mut k3, text, WAIT).await;
        assert_stored(&stored, &k4_jid);
    }
    k3.close().await.unwrap();

    // The node restarts, rejoins, and serves across the cluster again.
    tokio::task::block_in_place(|| cluster.restart(victim));
    for index in [one, two, victim] {
        wait_view(
            cluster.node(index),
            &format!("{victim_name} back"),
            |v| v.members.len() == 3,
            DOWN_WAIT,
        )
        .await;
    }
    let mut k3 = friend_online(cluster.node(victim), "k", 3, "again").await;
    expect_presence(&mut k1, &jid(&k3), None).await;
    chat_once(&mut k3, &mut k1, "rejoined").await;
    chat_once(&mut k3, &mut k2, "rejoined").await;
}

/// The senior member (the Raft leader) of three crashes: the two others
/// elect a new one, agree on the membership without it, and chat goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_senior_member_keeps_the_membership() {
    let mut cluster = quick(TestCluster::builder(3)).start();
    friends(&cluster, "s", 3);
    let senior = senior(&cluster).await;
    let senior_name = format!("node{}", senior + 1);
    let (one, two) = ((senior + 1) % 3, (senior + 2) % 3);
    let mut s1 = friend_online(cluster.node(one), "s", 1, "r").await;
    let mut s2 = friend_online(cluster.node(two), "s", 2, "r").await;
    let s3 = friend_online(cluster.node(senior), "s", 3, "r").await;
    let s3_jid = jid(&s3);
    for client in [&mut s1, &mut s2] {
        expect_presence(client, &s3_jid, None).await;
    }

    let mut chat = Chat::start(s1, s2);
    chat.flowing(50).await;
    let killed_at = SystemTime::now();
    cluster.kill(senior);
    let survivors = [one, two];
    let mut seen = Vec::new();
    for index in survivors {
        let view = wait_view(
            cluster.node(index),
            &format!("a new senior member and no {senior_name}"),
            |v| !v.has(&senior_name) && v.members.len() == 2 && v.has(&v.senior),
            DOWN_WAIT,
        )
        .await;
        seen.push(view);
    }
    assert_eq!(seen[0], seen[1], "the survivors disagree");
    for index in survivors {
        eprintln!(
            "SIGKILL of the senior member {senior_name}: node{} logged the view {:?} after {:?}",
            index + 1,
            seen[0],
            logged_after(cluster.node(index), killed_at, |l| view_without(
                l,
                &senior_name
            )),
        );
    }
    chat.flowing(50).await;
    let Chatted {
        a: mut s1,
        b: mut s2,
        each_way,
        a_other,
        b_other,
    } = chat.finish().await;
    eprintln!("{each_way} messages each way between the survivors, none lost");
    let (s1_jid, s2_jid) = (jid(&s1), jid(&s2));
    let at_s1 = lost_presence_at(&mut s1, &a_other, &s3_jid).await;
    assert_lost_presence(&at_s1, &s3_jid, &s1_jid);
    let at_s2 = lost_presence_at(&mut s2, &b_other, &s3_jid).await;
    assert_lost_presence(&at_s2, &s3_jid, &s2_jid);
    chat_once(&mut s1, &mut s2, "after").await;
}

/// Two nodes, one crashes (the senior member, so the survivor has no Raft
/// quorum): the survivor keeps serving chat and stores messages for the
/// lost users; the restarted node rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_survive_losing_one() {
    let mut cluster = quick(TestCluster::builder(2)).start();
    friends(&cluster, "t", 3);
    let senior = senior(&cluster).await;
    let survivor = 1 - senior;
    let mut t1 = friend_online(cluster.node(survivor), "t", 1, "r").await;
    let mut t2 = friend_online(cluster.node(survivor), "t", 2, "r").await;
    let t3 = friend_online(cluster.node(senior), "t", 3, "r").await;
    let t3_jid = jid(&t3);
    for client in [&mut t1, &mut t2] {
        expect_presence(client, &t3_jid, None).await;
    }

    let mut chat = Chat::start(t1, t2);
    chat.flowing(50).await;
    let killed_at = SystemTime::now();
    cluster.kill(senior);
    let node_name = format!("node{}", senior + 1);
    wait_log_count(
        cluster.node(survivor),
        "cluster member is down",
        1,
        DOWN_WAIT,
    )
    .await;
    chat.flowing(100).await;
    let Chatted {
        a: mut t1,
        b: mut t2,
        each_way,
        a_other,
        ..
    } = chat.finish().await;
    let t1_jid = jid(&t1);
    let gone = lost_presence_at(&mut t1, &a_other, &t3_jid).await;
    assert_lost_presence(&gone, &t3_jid, &t1_jid);
    eprintln!(
        "two nodes, SIGKILL of {node_name}: the survivor logged it down after {:?}; \
         {each_way} messages each way on the survivor, none lost",
        logged_after(cluster.node(survivor), killed_at, |l| l
            .contains("cluster member is down")),
    );

    say(&mut t1, &t3_jid, "while-down").await;
    sync(&mut t1).await;
    assert_no_bounce(&t1);
    chat_once(&mut t1, &mut t2, "alone").await;
    drop(t3);
    let mut t3 = login(cluster.node(survivor), "t3", "pw3", "back").await;
    roster_get(&mut t3).await;
    t3.send("<presence/>").await.unwrap();
    let stored = hear(&mut t3, "while-down", WAIT).await;
    assert_stored(&stored, &t1_jid);
    t3.close().await.unwrap();

    // Back to two: the survivor had no quorum; the restarted (empty) node
    // gives it one again.
    tokio::task::block_in_place(|| cluster.restart(senior));
    for index in [0, 1] {
        wait_view(
            cluster.node(index),
            "both nodes",
            |v| v.members.len() == 2 && v.has(&v.senior),
            DOWN_WAIT,
        )
        .await;
    }
    let mut t3 = friend_online(cluster.node(senior), "t", 3, "again").await;
    chat_once(&mut t3, &mut t1, "rejoined").await;
    chat_once(&mut t3, &mut t2, "rejoined").await;
}

/// A clean shutdown (SIGTERM) with a failure detector too slow to matter:
/// contacts hear of the leaver's users at once and the membership drops it
/// at once, first a follower, then the senior member itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_leave_is_immediate() {
    let mut cluster = TestCluster::builder(3)
        .set("cluster", "suspect_after_ms = 60000")
        .set("cluster", "down_after_ms = 120000")
        .start();
    friends(&cluster, "c", 3);
    let senior = senior(&cluster).await;
    let follower = (senior + 1) % 3;
    let last = (senior + 2) % 3;
    let mut at_senior = friend_online(cluster.node(senior), "c", 1, "r").await;
    let mut at_last = friend_online(cluster.node(last), "c", 2, "r").await;
    let leaver = friend_online(cluster.node(follower), "c", 3, "r").await;
    let leaver_jid = jid(&leaver);
    for client in [&mut at_senior, &mut at_last] {
        expect_presence(client, &leaver_jid, None).await;
    }

    let follower_name = format!("node{}", follower + 1);
    let senior_name = format!("node{}", senior + 1);
    let ups_before = [
        member_lines(cluster.node(last), "up", &follower_name),
        member_lines(cluster.node(last), "up", &senior_name),
    ];
    let stopped = Instant::now();
    let stopped_at = SystemTime::now();
    assert!(
        cluster.nodes[follower].stop(),
        "node{} did not exit cleanly",
        follower + 1
    );
    let stop_took = stopped.elapsed();
    // Its users' goodbyes were the last stanzas it forwarded; the peers
    // acknowledged them when told of the leave, so none is routed again.
    let leaver_log = plain_log(cluster.node(follower));
    assert!(
        !leaver_log.contains("routing again"),
        "the leaver doubted its last stanzas:\n{leaver_log}"
    );
    for client in [&mut at_senior, &mut at_last] {
        let me = jid(client);
        let gone = presence_within(client, &leaver_jid, Some("unavailable"), WAIT).await;
        assert_lost_presence_or_own(&gone, &leaver_jid, &me);
    }
    let to_unavailable = stopped.elapsed();
    for index in [senior, last] {
        wait_view(
            cluster.node(index),
            &format!("{follower_name} gone"),
            |v| !v.has(&follower_name) && v.members.len() == 2,
            WAIT,
        )
        .await;
    }
    eprintln!(
        "SIGTERM of {follower_name}: exit after {stop_took:?}, unavailable presence after \
         {to_unavailable:?}, removed after {:?}",
        logged_after(cluster.node(senior), stopped_at, |l| view_without(
            l,
            &follower_name
        ))
    );
    chat_once(&mut at_senior, &mut at_last, "two-left").await;

    // Now the senior member leaves: it hands over before it goes.
    let last_name = format!("node{}", last + 1);
    let at_senior_jid = jid(&at_senior);
    let stopped_at = SystemTime::now();
    assert!(
        cluster.nodes[senior].stop(),
        "{senior_name} did not exit cleanly"
    );
    let gone = presence_within(&mut at_last, &at_senior_jid, Some("unavailable"), WAIT).await;
    assert_lost_presence_or_own(&gone, &at_senior_jid, &jid(&at_last));
    let alone = wait_view(
        cluster.node(last),
        &format!("only {last_name}"),
        |v| v.members.len() == 1 && v.has(&last_name) && v.senior == last_name,
        WAIT,
    )
    .await;
    eprintln!(
        "SIGTERM of the senior member {senior_name}: {alone:?} logged after {:?}",
        logged_after(cluster.node(last), stopped_at, |l| view_without(
            l,
            &senior_name
        ))
    );
    let mut other = friend_online(cluster.node(last), "c", 3, "back").await;
    chat_once(&mut other, &mut at_last, "alone").await;
    // A leaver never linked again on its way out (it would count as up).
    let ups_after = [
        member_lines(cluster.node(last), "up", &follower_name),
        member_lines(cluster.node(last), "up", &senior_name),
    ];
    assert_eq!(
        ups_before,
        ups_after,
        "a leaver came back up:\n{}",
        plain_log(cluster.node(last))
    );
}

/// A leaving node closes its sessions first, so its users' unavailable
/// presence is their own broadcast (addressed to the contact's bare JID)
/// rather than one the cluster makes up for a lost session (addressed to
/// the full JID); either way it comes from the lost full JID.
fn assert_lost_presence_or_own(presence: &Element, lost: &str, to: &str) {
    assert_eq!(presence.attr("from"), Some(lost), "{presence}");
    assert_eq!(presence.attr("type"), Some("unavailable"), "{presence}");
    let bare = to.split('/').next().unwrap_or(to);
    let addressed = presence.attr("to");
    assert!(
        addressed.is_none() || addressed == Some(to) || addressed == Some(bare),
        "addressed elsewhere: {presence}"
    );
}

/// A client whose member crashed logs in again on another member, with the
/// same resource, before the crash is detected (as the fault campaign's
/// clients do). When the survivors then declare the member down, its lost
/// sessions must not include the one bound again: its contacts keep seeing
/// it available, not an unavailable from the full JID they just saw come
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_back_on_another_member_before_the_crash_is_detected_stays_available() {
    let mut cluster = quick(TestCluster::builder(3)).start();
    friends(&cluster, "q", 2);
    let senior = senior(&cluster).await;
    let victim = (senior + 1) % 3;
    let (one, two) = ((victim + 1) % 3, (victim + 2) % 3);
    let mut q1 = friend_online(cluster.node(one), "q", 1, "watch").await;
    let q2 = friend_online(cluster.node(victim), "q", 2, "phone").await;
    let q2_jid = jid(&q2);
    expect_presence(&mut q1, &q2_jid, None).await;

    cluster.kill(victim);
    drop(q2);
    let mut q2 = friend_online(cluster.node(two), "q", 2, "phone").await;
    assert_eq!(jid(&q2), q2_jid, "the same full JID again");

    // The survivors declare the member down and tell contacts about the
    // sessions it held (not the one bound again).
    for index in [one, two] {
        wait_log_count(
            cluster.node(index),
            "a member's users are gone",
            1,
            DOWN_WAIT,
        )
        .await;
    }
    // Time for what a wrong verdict would send to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sync(&mut q1).await;
    // An unavailable for the crashed session before the new one's available
    // is right; after it, it says the client left.
    assert_ends_up_available(&mut q1, &q2_jid).await;
    chat_once(&mut q1, &mut q2, "still-there").await;
}

/// Stanzas a member forwarded to a session that had just left: each is
/// routed again from the member that receives it, which ends in a store
/// write here, on a busy store. The receiving member must
/// keep reading its link meanwhile: before, a run of them stalled the
/// reader for seconds, heartbeats behind them went unread, and a healthy
/// member was declared down (as in the fault campaign after a crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanzas_for_a_session_that_left_do_not_stall_the_members_link() {
    const SENT: usize = 20;
    let cluster = TestCluster::builder(2)
        .link_latency(Duration::ZERO)
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let (n1, n2) = (cluster.node(0), cluster.node(1));
    let mut alice = online(n1, "alice", "pw", "a").await;
    let bob = online(n2, "bob", "pw", "gone").await;
    let bob_jid = jid(&bob);
    // Node 1 knows bob's session.
    let deadline = Instant::now() + WAIT;
    while n1
        .metric("starling_directory_entries{owner=\"remote\"}")
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "node 1 never heard of bob");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Bob leaves while node 1 cannot hear of it, and alice writes to him:
    // node 1 forwards every message to node 2.
    cluster.hold_links();
    bob.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..SENT {
        say(&mut alice, &bob_jid, &format!("after-{n}")).await;
    }
    sync(&mut alice).await;
    // The store is busy for 4 s (another writer holds its lock): storing
    // the first of them waits that long.
    let mut writer = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(4)\n\
             c.execute('COMMIT')\n",
        ])
        .arg(cluster.dir().join("starling.db"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 holds the store's lock");
    let mut locked = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().expect("stdout")),
        &mut locked,
    )
    .expect("python3 says it holds the lock");
    assert_eq!(locked.trim(), "locked");
    let suspected_before = plain_log(n2).matches("cluster member is suspect").count();
    cluster.release_links();

    // Node 2 stores them all (nobody to route them to) and never stops
    // hearing node 1 meanwhile.
    let stored = "starling_routing_outcomes_total{outcome=\"stored\"}";
    let deadline = Instant::now() + DOWN_WAIT;
    while n2.metric(stored).await < SENT as f64 {
        assert!(
            Instant::now() < deadline,
            "node 2 did not store the messages"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writer.wait().expect("python3 ends").success());
    assert_eq!(
        plain_log(n2).matches("cluster member is suspect").count(),
        suspected_before,
        "node 2 stopped hearing node 1 while it routed the messages:\n{}",
        plain_log(n2)
    );
    let mut bob = login(n1, "bob", "pw", "back").await;
    roster_get(&mut bob).await;
    bob.send("<presence/>").await.unwrap();
    for n in 0..SENT {
        hear(&mut bob, &format!("after-{n}"), WAIT).await;
    }
}

/// A login on another member replaces a session under the same full JID
/// (as the fault campaign's clients do when a resumption fails). The old
/// member ends the old session when the kick arrives, which can be after
/// the new session's available presence reached the contacts (here the old
/// member is frozen meanwhile); its goodbye then told them for good that
/// the client had left. The new member now says it, before the new
/// session's presence, and the old one stays silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_replaced_from_another_member_leaves_its_contacts_seeing_it_available() {
    let cluster = TestCluster::builder(2)
        .set("cluster", "suspect_after_ms = 15000")
        .set("cluster", "down_after_ms = 30000")
        .start();
    friends(&cluster, "w", 2);
    let (old_node, new_node) = (cluster.node(0), cluster.node(1));
    let mut w1 = friend_online(new_node, "w", 1, "watch").await;
    let mut old = friend_online(old_node, "w", 2, "phone").await;
    let w2_jid = jid(&old);
    expect_presence(&mut w1, &w2_jid, None).await;
    // The new member has the old session's entry, available.
    let deadline = Instant::now() + WAIT;
    while new_node
        .metric("starling_directory_entries{owner=\"remote\"}")
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "node 2 never heard of w2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = old_node.pid().expect("node 1 runs");
    send_signal("-STOP", pid);
    let new = friend_online(new_node, "w", 2, "phone").await;
    assert_eq!(jid(&new), w2_jid, "the same full JID");
    // Its available presence reached w1 (on this member) with the echo.
    send_signal("-CONT", pid);
    old.expect_stream_error("conflict", WAIT)
        .await
        .unwrap_or_else(|error| panic!("the old session was not replaced: {error}"));
    // Whatever the old session's end sends has come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sync(&mut w1).await;
    // An unavailable before the new session's available is right (the old
    // session is gone); after it, it says the client left.
    assert_ends_up_available(&mut w1, &w2_jid).await;
}
