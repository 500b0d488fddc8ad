//! A network partition between two members of three, made with nftables
//! on the loopback interface, and its healing.
//!
//! The cut: an `inet` table whose output chain drops, in both directions,
//! the packets of every established TCP connection between node 1's and
//! node 2's processes (found in `/proc/net/tcp` through each process's
//! socket inodes), and every new connection to node 1's or node 2's peer
//! port. Node 3's links, established before, are untouched, so node 3 sees
//! both sides. Dropping (not rejecting) makes the links fall silent, as a
//! cable cut does: only the failure detector can notice.
//!
//! What the cluster does (and the test checks):
//!
//! - Node 1 and node 2 each declare the other down after `down_after_ms`;
//!   node 3 declares nobody down.
//! - Each side drops the other side's sessions from its directory: users on
//!   node 1 get unavailable presence from node 2's users and the other way
//!   round, while node 3's users see everyone online.
//! - Messages across the cut (1 to 2 or 2 to 1) are stored offline, not
//!   bounced, and are delivered once the cut heals: to the recipient's
//!   session that lived on (each side asks the other to deliver what is
//!   stored for the users it sees again), or at its next login.
//!   Users on node 3 keep chatting with both sides.
//! - Membership: the senior member (the Raft leader) is on one side of the
//!   cut with node 3, a majority: it removes the member across the cut. That
//!   member, cut from the leader, keeps its stale view and holds elections
//!   it cannot win (node 3 still hears from the leader).
//! - Healed, the links come back, the directories resync, the removed member
//!   asks the senior member to add it back, and all three agree again. Each
//!   side finds the sessions it had dropped alive and probes them for their
//!   users' contacts, so users on node 1 and node 2 see each other online
//!   again, and chat directly.
//!
//! Messages forwarded over a link in the moments between the cut and its
//! detection were never acknowledged by the peer: when the link is closed
//! they are routed again, and so stored (the third test).
//!
//! The firewall needs root and `nft`: the two tests that use it are ignored
//! by a plain `cargo test` (tests/run runs them, as root) and fail, saying
//! what is missing, when run without them. The rules are removed when the
//! test ends, passing or failing.
//!
//! A member frozen with SIGSTOP past `down_after_ms` is cut off from
//! everyone, firewall or not: the others give it up, and it comes back,
//! sessions and all, when resumed (the second test).

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use starling_core::xml::ns;
use starling_tests::node::send_signal;
use starling_tests::tools::require_firewall;
use starling_tests::{TestCluster, TestNode};

use crate::t50_faults::{
    DOWN_WAIT, View, WAIT, assert_lost_presence, assert_no_bounce, assert_none, assert_stored,
    chat_once, expect_presence, friend_online, friends, hear, is_presence, jid, logged_after,
    login, member_lines, member_lines_in, number_of, plain_log, presence_within, quick, roster_get,
    say, senior, sync, view, view_without, wait_view,
};

/// How long a message that must not arrive is given to arrive anyway.
const NOT_ARRIVING: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and nftables: run tests/run as root"]
async fn a_partition_between_two_members_loses_nothing_and_heals() {
    require_firewall();
    let cluster = quick(TestCluster::builder(3)).start();
    friends(&cluster, "p", 3);
    let senior = senior(&cluster).await;
    let mut p1 = friend_online(cluster.node(0), "p", 1, "r").await;
    let mut p2 = friend_online(cluster.node(1), "p", 2, "r").await;
    let mut p3 = friend_online(cluster.node(2), "p", 3, "r").await;
    let (p1_jid, p2_jid, p3_jid) = (jid(&p1), jid(&p2), jid(&p3));
    for (client, others) in [
        (&mut p1, [&p2_jid, &p3_jid]),
        (&mut p2, [&p1_jid, &p3_jid]),
        (&mut p3, [&p1_jid, &p2_jid]),
    ] {
        for other in others {
            expect_presence(client, other, None).await;
        }
    }
    chat_once(&mut p1, &mut p2, "before").await;

    let partition = Partition::between(&cluster, 0, 1);
    let cut = Instant::now();
    let cut_at = SystemTime::now();
    // Each side finds the other down and tells its users.
    let gone = presence_within(&mut p1, &p2_jid, Some("unavailable"), DOWN_WAIT).await;
    assert_lost_presence(&gone, &p2_jid, &p1_jid);
    let gone = presence_within(&mut p2, &p1_jid, Some("unavailable"), DOWN_WAIT).await;
    assert_lost_presence(&gone, &p1_jid, &p2_jid);
    eprintln!(
        "partition 1|2: both sides told their users after {:?}; node1 logged node2 down after \
         {:?}, node2 node1 after {:?}",
        cut.elapsed(),
        logged_after(cluster.node(0), cut_at, |l| l
            .contains("cluster member is down")),
        logged_after(cluster.node(1), cut_at, |l| l
            .contains("cluster member is down")),
    );
    assert!(member_lines(cluster.node(0), "down", "node2") > 0);
    assert!(member_lines(cluster.node(1), "down", "node1") > 0);

    // Across the cut: stored. Through node 3: delivered.
    say(&mut p1, &p2_jid, "cut-1").await;
    say(&mut p1, "p2@localhost", "cut-2").await;
    say(&mut p2, &p1_jid, "cut-3").await;
    for client in [&mut p1, &mut p2] {
        sync(client).await;
        assert_no_bounce(client);
    }
    chat_once(&mut p3, &mut p1, "via-3").await;
    chat_once(&mut p3, &mut p2, "via-3").await;
    // Node 3's users saw nobody go.
    assert_none(&p3, "unavailable presence", |e| {
        is_presence(e, &p1_jid, Some("unavailable")) || is_presence(e, &p2_jid, Some("unavailable"))
    });
    for (client, texts) in [(&mut p1, ["cut-3", "cut-3"]), (&mut p2, ["cut-1", "cut-2"])] {
        let crossed = client
            .expect(|e| texts.iter().any(|text| body_is(e, text)), NOT_ARRIVING)
            .await;
        assert!(crossed.is_err(), "a message crossed the cut: {crossed:?}");
    }

    // Membership: the side with the senior member and node 3 (a majority)
    // removes the member across the cut; node 3 declares nobody down.
    let senior_name = format!("node{}", senior + 1);
    if senior < 2 {
        let removed = format!("node{}", 2 - senior);
        for index in [senior, 2] {
            wait_view(
                cluster.node(index),
                &format!("{removed} removed"),
                |v| !v.has(&removed) && v.members.len() == 2,
                DOWN_WAIT,
            )
            .await;
        }
        eprintln!(
            "partition 1|2: the senior member {senior_name} removed {removed} after {:?}; \
             {removed} sees {:?}",
            logged_after(cluster.node(senior), cut_at, |l| view_without(l, &removed)),
            view(cluster.node(1 - senior))
        );
    } else {
        eprintln!("partition 1|2: the senior member is node3, which sees both sides");
    }
    assert_eq!(member_lines(cluster.node(2), "down", "node1"), 0);
    assert_eq!(member_lines(cluster.node(2), "down", "node2"), 0);
    let views: Vec<Option<View>> = (0..3).map(|index| view(cluster.node(index))).collect();
    eprintln!("partition 1|2: views {views:?}");

    // Healing.
    let ups = [
        member_lines(cluster.node(0), "up", "node2"),
        member_lines(cluster.node(1), "up", "node1"),
    ];
    partition.heal();
    let healed = Instant::now();
    wait_lines(cluster.node(0), "up again", |log| {
        member_lines_in(log, "up", "node2") > ups[0]
    })
    .await;
    wait_lines(cluster.node(1), "up again", |log| {
        member_lines_in(log, "up", "node1") > ups[1]
    })
    .await;
    let mut agreed: Option<View> = None;
    for index in 0..3 {
        let view = wait_view(
            cluster.node(index),
            "all three members",
            |v| {
                v.members.len() == 3
                    && v.has(&v.senior)
                    && agreed.as_ref().is_none_or(|first| first.senior == v.senior)
            },
            DOWN_WAIT,
        )
        .await;
        agreed.get_or_insert(view);
    }
    eprintln!(
        "healed: links up, all agree on {agreed:?} after {:?}",
        healed.elapsed()
    );
    let senior_after = number_of(&agreed.expect("a view").senior);
    eprintln!("senior member before {senior_name}, after node{senior_after}");

    // The directories resynced: each side sees the other's users online
    // again, and they chat directly.
    expect_presence(&mut p1, &p2_jid, None).await;
    expect_presence(&mut p2, &p1_jid, None).await;
    chat_once(&mut p1, &mut p2, "healed").await;
    // Nothing was lost: what was stored across the cut reaches the sessions
    // that lived on, once each side sees the other's sessions again.
    for text in ["cut-1", "cut-2"] {
        let stored = hear(&mut p2, text, WAIT).await;
        assert_stored(&stored, &p1_jid);
    }
    let stored = hear(&mut p1, "cut-3", WAIT).await;
    assert_stored(&stored, &p2_jid);
    // Once: the next logins find nothing left.
    let mut p2_again = login(cluster.node(2), "p2", "pw2", "again").await;
    roster_get(&mut p2_again).await;
    p2_again.send("<presence/>").await.unwrap();
    let mut p1_again = login(cluster.node(0), "p1", "pw1", "again").await;
    roster_get(&mut p1_again).await;
    p1_again.send("<presence/>").await.unwrap();
    chat_once(&mut p1_again, &mut p2_again, "fresh").await;
    for client in [&p1_again, &p2_again] {
        assert_none(client, "a second copy", |e| {
            ["cut-1", "cut-2", "cut-3"]
                .iter()
                .any(|text| body_is(e, text))
        });
    }
}

/// A message forwarded over a link just after the link was cut (before the
/// failure detector gives the peer up) dies with the link unless the link
/// hands back what the peer never acknowledged: then it is stored, and the
/// recipient gets it at the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and nftables: run tests/run as root"]
async fn a_message_in_flight_when_the_link_is_cut_is_not_lost() {
    require_firewall();
    let cluster = quick(TestCluster::builder(2)).start();
    friends(&cluster, "q", 2);
    let mut q1 = friend_online(cluster.node(0), "q", 1, "r").await;
    let mut q2 = friend_online(cluster.node(1), "q", 2, "r").await;
    let (q1_jid, q2_jid) = (jid(&q1), jid(&q2));
    expect_presence(&mut q1, &q2_jid, None).await;
    chat_once(&mut q1, &mut q2, "before").await;

    let partition = Partition::between(&cluster, 0, 1);
    say(&mut q1, &q2_jid, "in-flight").await;
    presence_within(&mut q1, &q2_jid, Some("unavailable"), DOWN_WAIT).await;
    partition.heal();
    expect_presence(&mut q1, &q2_jid, None).await;
    chat_once(&mut q1, &mut q2, "after").await;
    // Stored when the link died, then delivered to the session once its
    // node was back (asked for beside the link's reader, so it may come
    // after the newer "after" messages), or through before the cut.
    if let Ok(early) = q2.expect(|e| body_is(e, "in-flight"), WAIT).await {
        eprintln!(
            "in flight at the cut: delivered to the session, {}",
            if early.has_child("delay", ns::DELAY) {
                "from storage"
            } else {
                "live"
            }
        );
        return;
    }
    let mut q2_again = login(cluster.node(1), "q2", "pw2", "again").await;
    roster_get(&mut q2_again).await;
    q2_again.send("<presence/>").await.unwrap();
    let stored = hear(&mut q2_again, "in-flight", WAIT).await;
    assert_stored(&stored, &q1_jid);
    eprintln!("in flight at the cut: stored when the link died, delivered at the next login");
}

/// A member frozen (SIGSTOP) longer than the failure detector waits is
/// given up by the others, then resumed: its links come back, the senior
/// member adds it again, and its users, whose sessions lived on, are seen
/// online and chat again; what was stored for them meanwhile is delivered
/// to those sessions then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_member_is_given_up_then_welcomed_back() {
    let cluster = quick(TestCluster::builder(3)).start();
    friends(&cluster, "z", 3);
    let senior = senior(&cluster).await;
    let frozen = (senior + 1) % 3;
    let (one, two) = ((frozen + 1) % 3, (frozen + 2) % 3);
    let frozen_name = format!("node{}", frozen + 1);
    let mut z1 = friend_online(cluster.node(one), "z", 1, "r").await;
    let mut z2 = friend_online(cluster.node(two), "z", 2, "r").await;
    let mut z3 = friend_online(cluster.node(frozen), "z", 3, "r").await;
    let (z1_jid, z2_jid, z3_jid) = (jid(&z1), jid(&z2), jid(&z3));
    for client in [&mut z1, &mut z2] {
        expect_presence(client, &z3_jid, None).await;
    }
    expect_presence(&mut z3, &z1_jid, None).await;
    expect_presence(&mut z3, &z2_jid, None).await;

    let ups = member_lines(cluster.node(one), "up", &frozen_name);
    let pause = Pause::start(cluster.node(frozen));
    let paused_at = SystemTime::now();
    for client in [&mut z1, &mut z2] {
        let me = jid(client);
        let gone = presence_within(client, &z3_jid, Some("unavailable"), DOWN_WAIT).await;
        assert_lost_presence(&gone, &z3_jid, &me);
    }
    say(&mut z1, &z3_jid, "while-frozen").await;
    sync(&mut z1).await;
    assert_no_bounce(&z1);
    for index in [one, two] {
        wait_view(
            cluster.node(index),
            &format!("{frozen_name} removed"),
            |v| !v.has(&frozen_name) && v.members.len() == 2,
            DOWN_WAIT,
        )
        .await;
    }
    eprintln!(
        "SIGSTOP of {frozen_name}: down after {:?}, removed after {:?}",
        logged_after(cluster.node(one), paused_at, |l| l
            .contains("cluster member is down")),
        logged_after(cluster.node(one), paused_at, |l| view_without(
            l,
            &frozen_name
        )),
    );

    // Silent all along: suspect, then down, never up in between.
    assert_eq!(
        member_lines(cluster.node(one), "up", &frozen_name),
        ups,
        "{frozen_name} came up while frozen:\n{}",
        plain_log(cluster.node(one))
    );
    assert_eq!(member_lines(cluster.node(one), "down", &frozen_name), 1);
    let resumed = Instant::now();
    pause.resume();
    // Its users' sessions lived on: their contacts see them online again.
    for client in [&mut z1, &mut z2] {
        presence_within(client, &z3_jid, None, DOWN_WAIT).await;
    }
    for index in 0..3 {
        wait_view(
            cluster.node(index),
            "all three members",
            |v| v.members.len() == 3 && v.has(&v.senior),
            DOWN_WAIT,
        )
        .await;
    }
    eprintln!(
        "SIGCONT of {frozen_name}: seen online and a member again after {:?}",
        resumed.elapsed()
    );
    chat_once(&mut z3, &mut z1, "thawed").await;
    chat_once(&mut z3, &mut z2, "thawed").await;
    // What was stored while it was frozen reaches the session that lived on,
    // without a new login: the members that stored it ask the thawed one to
    // deliver it once they see its sessions again. (It used to wait for the
    // user's next login: the fault campaign counted it lost.)
    let stored = hear(&mut z3, "while-frozen", WAIT).await;
    assert_stored(&stored, &z1_jid);
    // Once: a new login finds nothing left.
    let mut z3_again = login(cluster.node(two), "z3", "pw3", "again").await;
    roster_get(&mut z3_again).await;
    z3_again.send("<presence/>").await.unwrap();
    sync(&mut z3_again).await;
    assert_none(&z3_again, "a second copy", |e| body_is(e, "while-frozen"));
    sync(&mut z3).await;
    assert_none(&z3, "a second copy", |e| body_is(e, "while-frozen"));
}

/// A node stopped with SIGSTOP; continued when resumed or dropped.
struct Pause {
    pid: u32,
    running: bool,
}

impl Pause {
    fn start(node: &TestNode) -> Pause {
        let pid = node.pid().expect("node running");
        send_signal("-STOP", pid);
        Pause {
            pid,
            running: false,
        }
    }

    fn resume(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if !self.running {
            self.running = true;
            send_signal("-CONT", self.pid);
        }
    }
}

impl Drop for Pause {
    fn drop(&mut self) {
        self.cont();
    }
}

fn body_is(element: &starling_core::xml::Element, text: &str) -> bool {
    element.name() == "message" && crate::t50_faults::body(element) == text
}

async fn wait_lines(node: &TestNode, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + DOWN_WAIT;
    loop {
        let log = plain_log(node);
        if done(&log) {
            return;
        }
        assert!(Instant::now() < deadline, "not {what}:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the firewall -----

/// nftables rules cutting the peer traffic between two nodes; removed when
/// healed or dropped.
struct Partition {
    table: String,
    removed: bool,
}

impl Partition {
    fn between(cluster: &TestCluster, a: usize, b: usize) -> Partition {
        let table = unique_table("starling_partition");
        nft(&format!("add table inet {table}")).expect("nft table");
        let partition = Partition {
            table: table.clone(),
            removed: false,
        };
        nft(&format!(
            "add chain inet {table} cut {{ type filter hook output priority 0 ; policy accept ; }}"
        ))
        .expect("nft chain");
        let (port_a, port_b) = (cluster.cluster_ports[a], cluster.cluster_ports[b]);
        // No new link to either side; node 3's links exist already.
        nft(&format!(
            "add rule inet {table} cut tcp dport {{ {port_a}, {port_b} }} ct state new drop"
        ))
        .expect("nft rule");
        let pids = [
            cluster.node(a).pid().expect("node running"),
            cluster.node(b).pid().expect("node running"),
        ];
        let mut cut = HashSet::new();
        // Twice: a link whose handshake was under way at the first look.
        for _ in 0..2 {
            for (ours, theirs) in links_between(pids, (port_a, port_b)) {
                if cut.insert((ours, theirs)) {
                    for (from, to) in [(ours, theirs), (theirs, ours)] {
                        nft(&format!(
                            "add rule inet {table} cut tcp sport {from} tcp dport {to} drop"
                        ))
                        .expect("nft rule");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            !cut.is_empty(),
            "no link between node{} and node{}",
            a + 1,
            b + 1
        );
        partition
    }

    fn heal(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(error) = nft(&format!("delete table inet {}", self.table)) {
                eprintln!("could not remove the partition: {error}");
            }
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A table name no other test (of this process or another) uses: tests
/// run side by side, and each removes only its own table.
fn unique_table(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn nft(command: &str) -> Result<(), String> {
    let args: Vec<&str> = command.split(' ').collect();
    let output = Command::new("nft")
        .args(&args)
        .output()
        .map_err(|error| format!("nft {command}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {command}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The established connections between the two processes as (local port,
/// peer port) pairs: a dialed from an ephemeral port to b's peer port, or
/// b to a's.
fn links_between(pids: [u32; 2], ports: (u16, u16)) -> Vec<(u16, u16)> {
    let inodes = |pid: u32| -> HashSet<u64> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_link(entry.path()).ok())
            .filter_map(|target| {
                let target = target.to_string_lossy().into_owned();
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (of_a, of_b) = (inodes(pids[0]), inodes(pids[1]));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let mut links = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state), Some(inode)) =
            (fields.get(1), fields.get(2), fields.get(3), fields.get(9))
        else {
            continue;
        };
        // 01: ESTABLISHED.
        if *state != "01" {
            continue;
        }
        let port = |address: &str| {
            address
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
        };
        let (Some(local), Some(remote), Ok(inode)) = (port(local), port(remote), inode.parse())
        else {
            continue;
        };
        if (of_a.contains(&inode) && remote == ports.1)
            || (of_b.contains(&inode) && remote == ports.0)
        {
            links.push((local, remote));
        }
    }
    links
}
