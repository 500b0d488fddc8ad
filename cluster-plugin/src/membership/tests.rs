//! In-process clusters: several `Membership`s in one runtime, joined by a
//! transport that routes payloads straight to the target's `handle` and can
//! cut a member off. No sockets; waits are on the view watch channel, with
//! bounds generous enough for a loaded machine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::network::{RaftCall, RaftReply, RaftRpc};
use super::*;

/// Routes calls between the members registered with it.
#[derive(Default)]
struct Router {
    members: Mutex<HashMap<MemberId, Membership>>,
    /// Members cut off from everyone, both ways.
    cut: Mutex<HashSet<MemberId>>,
}

/// One member's end of the router.
struct Link {
    from: MemberId,
    router: Arc<Router>,
}

impl RaftTransport for Link {
    fn call(
        &self,
        target: MemberId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>> {
        Box::pin(async move {
            let member = {
                let cut = self.router.cut.lock().unwrap();
                if cut.contains(&self.from) || cut.contains(&target) {
                    return Err(TransportError::Unreachable(target));
                }
                let members = self.router.members.lock().unwrap();
                members
                    .get(&target)
                    .cloned()
                    .ok_or(TransportError::Unreachable(target))?
            };
            tokio::time::timeout(timeout, member.handle(&payload))
                .await
                .map_err(|_| TransportError::Timeout(target))
        })
    }
}

struct TestCluster {
    router: Arc<Router>,
    timings: Timings,
}

/// Quicker than the defaults, still far from what a loaded machine could
/// miss: a heartbeat every 150 ms, elections after 1.4 to 2.0 s of silence.
fn quick_timings() -> Timings {
    Timings {
        heartbeat_ms: 150,
        election_min_ms: 500,
        election_max_ms: 900,
        change_timeout_ms: 10_000,
    }
}

/// Bound for anything that should take a few seconds at most.
const WITHIN: Duration = Duration::from_secs(20);

fn info(id: MemberId) -> MemberInfo {
    MemberInfo {
        name: format!("node{id}"),
        cluster_addr: format!("10.0.0.{id}:7701"),
        c2s_addr: format!("10.0.0.{id}:5222"),
        http_addr: format!("10.0.0.{id}:5280"),
        web_url: format!("https://10.0.0.{id}:5280"),
        max_connections: 10_000,
        joined_at_ms: 0,
    }
}

fn ids(view: &MembershipView) -> BTreeSet<MemberId> {
    view.members.keys().copied().collect()
}

fn set(ids: &[MemberId]) -> BTreeSet<MemberId> {
    ids.iter().copied().collect()
}

impl TestCluster {
    fn new(timings: Timings) -> TestCluster {
        TestCluster {
            router: Arc::default(),
            timings,
        }
    }

    /// Starts a member (replacing any earlier one with that id in the router).
    async fn start(&self, id: MemberId) -> Membership {
        let link = Arc::new(Link {
            from: id,
            router: Arc::clone(&self.router),
        });
        let member = Membership::start(id, info(id), link, self.timings)
            .await
            .unwrap();
        self.router
            .members
            .lock()
            .unwrap()
            .insert(id, member.clone());
        member
    }

    fn cut(&self, id: MemberId) {
        self.router.cut.lock().unwrap().insert(id);
    }

    fn heal(&self, id: MemberId) {
        self.router.cut.lock().unwrap().remove(&id);
    }

    /// Bootstraps member 1 and adds the others, in order.
    async fn form(&self, count: MemberId) -> Vec<Membership> {
        let mut members = Vec::new();
        for id in 1..=count {
            members.push(self.start(id).await);
        }
        members[0].bootstrap().await.unwrap();
        for id in 2..=count {
            members[0].add_member(id, info(id)).await.unwrap();
        }
        let all: Vec<MemberId> = (1..=count).collect();
        for member in &members {
            wait_view(member, "cluster formed", |v| {
                ids(v) == set(&all) && v.leader == Some(1)
            })
            .await;
        }
        members
    }

    async fn shutdown(&self) {
        let members: Vec<Membership> = self
            .router
            .members
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for member in members {
            member.shutdown().await;
        }
    }
}

/// Waits until `member`'s view satisfies `ok`, and returns that view.
async fn wait_view(
    member: &Membership,
    what: &str,
    ok: impl Fn(&MembershipView) -> bool,
) -> MembershipView {
    let mut views = member.subscribe();
    let waited = tokio::time::timeout(WITHIN, async {
        loop {
            let view = views.borrow_and_update().clone();
            if ok(&view) {
                return view;
            }
            if views.changed().await.is_err() {
                // The member stopped: its view will not change again.
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    match waited {
        Ok(view) => view,
        Err(_) => panic!(
            "member {}: {what} not reached within {WITHIN:?}; view: {:?}",
            member.id(),
            member.view()
        ),
    }
}

fn last_log_index(member: &Membership) -> Option<u64> {
    member.inner.raft.metrics().borrow().last_log_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_bootstrap_and_two_joins_make_three_voters() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(3).await;

    let first = members[0].view();
    assert!(first.initialized);
    assert!(first.term > 0);
    for member in &members {
        let view = member.view();
        assert_eq!(
            view.members,
            first.members,
            "member {} disagrees",
            member.id()
        );
        assert_eq!(view.leader, Some(1));
    }
    for (id, member_info) in &first.members {
        assert_eq!(member_info.name, format!("node{id}"));
        assert_eq!(member_info.c2s_addr, info(*id).c2s_addr);
        assert!(
            member_info.joined_at_ms > 1_600_000_000_000,
            "joined_at set by the leader"
        );
    }

    // Adding a member again with the same info writes nothing.
    let before = last_log_index(&members[0]);
    members[0].add_member(2, info(2)).await.unwrap();
    assert_eq!(last_log_index(&members[0]), before);

    let again = members[1].bootstrap().await;
    assert!(
        matches!(again, Err(MembershipError::AlreadyInitialized)),
        "{again:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_non_leader_refuses_changes_and_names_the_leader() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(2).await;

    let add = members[1].add_member(3, info(3)).await;
    assert!(
        matches!(add, Err(MembershipError::NotLeader { leader: Some(1) })),
        "{add:?}"
    );
    let remove = members[1].remove_member(1).await;
    assert!(
        matches!(remove, Err(MembershipError::NotLeader { leader: Some(1) })),
        "{remove:?}"
    );

    // A node in no cluster knows no leader to forward to.
    let loner = cluster.start(9).await;
    assert!(!loner.view().initialized);
    let add = loner.add_member(3, info(3)).await;
    assert!(
        matches!(add, Err(MembershipError::NotLeader { leader: None })),
        "{add:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_changed_info_replaces_the_old_and_keeps_the_join_time() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(2).await;
    let joined = members[0].view().members[&2].joined_at_ms;

    let mut moved = info(2);
    moved.c2s_addr = "10.9.9.9:5222".into();
    moved.max_connections = 5;
    members[0].add_member(2, moved.clone()).await.unwrap();
    for member in &members {
        let view = wait_view(member, "new info", |v| {
            v.members
                .get(&2)
                .is_some_and(|i| i.c2s_addr == moved.c2s_addr)
        })
        .await;
        assert_eq!(view.members[&2].max_connections, 5);
        assert_eq!(view.members[&2].joined_at_ms, joined);
        assert_eq!(ids(&view), set(&[1, 2]), "still a voter");
    }
    cluster.shutdown().await;
}

/// The whole life of a failed leader, with the default timings so the
/// failover time measured is the one production gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_leader_dies_is_replaced_removed_and_rejoins() {
    let cluster = TestCluster::new(Timings::default());
    let members = cluster.form(3).await;
    let (old, survivors) = (&members[0], &members[1..]);

    let killed = Instant::now();
    cluster.cut(1);
    let mut leaders = BTreeSet::new();
    for member in survivors {
        let view = wait_view(member, "new leader", |v| matches!(v.leader, Some(2 | 3))).await;
        assert_eq!(
            ids(&view),
            set(&[1, 2, 3]),
            "a lost leader is not a lost member"
        );
        leaders.insert(view.leader);
    }
    let failover = killed.elapsed();
    assert_eq!(
        leaders.len(),
        1,
        "survivors agree on the leader: {leaders:?}"
    );
    eprintln!("failover with default timings: new leader after {failover:?}");
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    let leader_id = leaders.first().copied().flatten().unwrap();
    let leader = &members[leader_id as usize - 1];
    let removing = Instant::now();
    leader.remove_member(1).await.unwrap();
    eprintln!(
        "removal of the dead member committed after {:?}",
        removing.elapsed()
    );
    for member in survivors {
        wait_view(member, "dead member removed", |v| ids(v) == set(&[2, 3])).await;
    }
    // Removing it again is a no-op.
    leader.remove_member(1).await.unwrap();

    // The dead node comes back as a fresh process with the same id.
    old.shutdown().await;
    let reborn = cluster.start(1).await;
    cluster.heal(1);
    assert!(!reborn.view().initialized);
    let joining = Instant::now();
    leader.add_member(1, info(1)).await.unwrap();
    eprintln!(
        "re-adding the member committed after {:?}",
        joining.elapsed()
    );
    for member in [&reborn, &members[1], &members[2]] {
        let view = wait_view(member, "member back", |v| {
            ids(v) == set(&[1, 2, 3]) && v.leader == Some(leader_id)
        })
        .await;
        assert!(view.initialized);
    }
    let before = members[1].view().members[&2].joined_at_ms;
    assert!(
        reborn.view().members[&1].joined_at_ms >= before,
        "re-added later"
    );
    cluster.shutdown().await;
}

/// A member restarts (empty log, new incarnation, same id) while the others
/// still count it as a voter: the leader replays the log to it, with no
/// membership change. Needs openraft's `loosen-follower-log-revert` feature;
/// without it the leader's log replication treats the emptied follower as a
/// bug (a debug assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_restarted_voter_is_caught_up_by_the_leader() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(3).await;

    members[2].shutdown().await;
    let reborn = cluster.start(3).await;
    let view = wait_view(&reborn, "caught up", |v| {
        v.initialized && ids(v) == set(&[1, 2, 3]) && v.leader == Some(1)
    })
    .await;
    assert_eq!(view.members, members[0].view().members);

    // The leader is still healthy and the reborn member takes part.
    let fourth = cluster.start(4).await;
    members[0].add_member(4, info(4)).await.unwrap();
    for member in [&members[0], &members[1], &reborn, &fourth] {
        wait_view(member, "fourth member", |v| ids(v) == set(&[1, 2, 3, 4])).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_two_members_losing_one_cannot_change_membership() {
    let timings = Timings {
        change_timeout_ms: 3_000,
        ..quick_timings()
    };
    let cluster = TestCluster::new(timings);
    let members = cluster.form(2).await;

    cluster.cut(2);
    let asked = Instant::now();
    let removal = members[0].remove_member(2).await;
    let waited = asked.elapsed();
    assert!(
        matches!(removal, Err(MembershipError::NoQuorum { .. })),
        "{removal:?}"
    );
    assert!(
        waited >= Duration::from_millis(2_900),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "bounded wait overran: {waited:?}"
    );
    eprintln!("no-quorum removal gave up after {waited:?}");
    let view = members[0].view();
    assert_eq!(
        ids(&view),
        set(&[1, 2]),
        "an uncommitted removal changes nothing"
    );
    assert_eq!(view.leader, Some(1));

    // Asking again meets the first attempt still uncommitted; same answer.
    let asked = Instant::now();
    let again = members[0].remove_member(2).await;
    let waited = asked.elapsed();
    assert!(
        matches!(again, Err(MembershipError::NoQuorum { .. })),
        "{again:?}"
    );
    assert!(
        waited < Duration::from_secs(8),
        "bounded wait overran: {waited:?}"
    );
    assert_eq!(ids(&members[0].view()), set(&[1, 2]));

    // Once the member is back, the change completes (the half-done change
    // left behind does not block it). The returning member has been
    // campaigning in higher terms meanwhile, so the leader steps down and
    // is elected again (its log is the longer one).
    cluster.heal(2);
    wait_view(&members[0], "leader again", |v| {
        v.leader == Some(1) && v.term > view.term
    })
    .await;
    members[0].remove_member(2).await.unwrap();
    wait_view(&members[0], "member removed", |v| ids(v) == set(&[1])).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_the_last_member_is_never_removed() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(1).await;
    let removal = members[0].remove_member(1).await;
    assert!(
        matches!(removal, Err(MembershipError::LastMember { id: 1 })),
        "{removal:?}"
    );
    members[0].remove_member(42).await.unwrap();
    assert_eq!(ids(&members[0].view()), set(&[1]));

    members[0].shutdown().await;
    let after = members[0].add_member(2, info(2)).await;
    assert!(matches!(after, Err(MembershipError::Fatal(_))), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_member_behind_a_purged_log_gets_a_snapshot() {
    let cluster = TestCluster::new(quick_timings());
    let members = cluster.form(1).await;
    let leader = &members[0];
    // Grow the log: each info update is one committed entry.
    for round in 0..5 {
        let mut changed = info(1);
        changed.http_addr = format!("10.0.0.1:{}", 8000 + round);
        leader.add_member(1, changed).await.unwrap();
    }
    let last = last_log_index(leader).unwrap();
    // Both triggers return at once; the purge needs the snapshot built.
    leader.inner.raft.trigger().snapshot().await.unwrap();
    let built = leader
        .wait_metrics(Instant::now() + WITHIN, |m| {
            m.snapshot.filter(|s| s.index == last)
        })
        .await;
    assert!(
        built.is_some(),
        "no snapshot: {:?}",
        leader.inner.raft.metrics().borrow()
    );
    leader.inner.raft.trigger().purge_log(last).await.unwrap();
    let purged = leader
        .wait_metrics(Instant::now() + WITHIN, |m| {
            m.purged.filter(|p| p.index == last)
        })
        .await;
    assert!(
        purged.is_some(),
        "log not purged: {:?}",
        leader.inner.raft.metrics().borrow()
    );

    let late = cluster.start(2).await;
    leader.add_member(2, info(2)).await.unwrap();
    let view = wait_view(&late, "caught up by snapshot", |v| ids(v) == set(&[1, 2])).await;
    assert_eq!(view.members[&1].http_addr, "10.0.0.1:8004");
    let snapshot = late.inner.raft.metrics().borrow().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.index >= last),
        "no snapshot installed: {snapshot:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_handle_refuses_garbage_and_misrouted_requests() {
    let cluster = TestCluster::new(quick_timings());
    let member = cluster.start(5).await;

    let reply: RaftReply = postcard::from_bytes(&member.handle(b"\xff\xff\xff").await).unwrap();
    assert!(matches!(reply, RaftReply::Malformed(_)), "{reply:?}");

    let misrouted = RaftRpc {
        to: 6,
        call: RaftCall::Vote(openraft::raft::VoteRequest::new(
            openraft::Vote::new(1, 7),
            None,
        )),
    };
    let payload = postcard::to_stdvec(&misrouted).unwrap();
    let reply: RaftReply = postcard::from_bytes(&member.handle(&payload).await).unwrap();
    assert!(
        matches!(
            reply,
            RaftReply::WrongMember {
                addressed: 6,
                actual: 5
            }
        ),
        "{reply:?}"
    );

    // A well-addressed vote is answered by the Raft node.
    let vote = RaftRpc {
        to: 5,
        call: RaftCall::Vote(openraft::raft::VoteRequest::new(
            openraft::Vote::new(1, 7),
            None,
        )),
    };
    let payload = postcard::to_stdvec(&vote).unwrap();
    let reply: RaftReply = postcard::from_bytes(&member.handle(&payload).await).unwrap();
    assert!(matches!(reply, RaftReply::Vote(_)), "{reply:?}");

    // After shutdown the member answers that it is unavailable.
    member.shutdown().await;
    let reply: RaftReply = postcard::from_bytes(&member.handle(&payload).await).unwrap();
    assert!(matches!(reply, RaftReply::Unavailable(_)), "{reply:?}");
}

#[test]
fn default_timings_elect_within_three_seconds_and_validate() {
    let timings = Timings::default();
    let worst = 2 * timings.election_max_ms + timings.heartbeat_ms * 3 / 2;
    assert!(worst <= 3_000, "worst-case election after {worst} ms");
    assert!(timings.raft_config().is_ok());

    let bad = Timings {
        election_min_ms: 100,
        ..Timings::default()
    };
    assert!(matches!(
        bad.raft_config(),
        Err(MembershipError::InvalidTimings(_))
    ));
}
