//! Membership decisions: joining, forming a cluster, becoming ready, and the
//! senior member's adds and removals, as pure functions from what this node
//! sees to the actions it should take. No locks, no I/O, no clock: the
//! runtime (`upkeep`) gathers a [`NodeView`], asks here, and carries the
//! actions out, so every rule can be tested on plain values.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::membership::{MemberInfo, MembershipView};
use crate::transport::frame::{MemberStatus, PeerInfo};

/// One linked peer as this node sees it.
#[derive(Debug, Clone)]
pub(super) struct LinkedPeer {
    pub node: u64,
    /// The address the peer advertises for cluster links.
    pub cluster_addr: String,
    /// The peer's last `Status`, if one arrived on this link.
    pub status: Option<MemberStatus>,
}

/// How this node sees another member, for readiness.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MemberHealth {
    /// The failure detector says up.
    pub up: bool,
    /// This node holds a replica of its sessions.
    pub replica: bool,
    /// A link to it exists.
    pub linked: bool,
}

/// Everything the membership decisions read.
#[derive(Debug, Clone)]
pub(super) struct NodeView {
    pub me: u64,
    /// This node's advertised cluster address.
    pub my_addr: String,
    pub seeds: Vec<String>,
    pub membership: MembershipView,
    /// Since this node's membership started: at start, or when it left a
    /// separately formed cluster to merge.
    pub since_start: Duration,
    pub join_timeout: Duration,
    pub links: Vec<LinkedPeer>,
    /// Every member but this node.
    pub members: BTreeMap<u64, MemberHealth>,
    /// Nodes the failure detector considers down.
    pub down: Vec<u64>,
    pub ready: bool,
}

/// What the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Form a new cluster with this node as its only member.
    Bootstrap,
    /// Ask this linked peer to have this node added.
    RequestJoin(u64),
    /// Start accepting logins.
    BecomeReady,
    /// Senior member: add (or update) a member.
    AddMember { id: u64, info: MemberInfo },
    /// Pass a join request on to the senior member.
    ForwardJoin { leader: u64, joiner: PeerInfo },
    /// Senior member: remove a member that is down or leaving.
    RemoveMember(u64),
    /// This node's cluster formed apart from a larger one it now reaches
    /// (say both sides of a partition bootstrapped): leave it, start the
    /// membership afresh and join the one led by `leader`. Sessions stay.
    MergeInto { leader: u64, members: usize },
}

/// How clusters that formed apart are ordered when they meet: more members
/// first, then the lowest member id. Both sides compute the same order from
/// the statuses they exchange, so exactly one side gives way.
pub(super) fn rank(members: &[u64]) -> (usize, Reverse<u64>) {
    (
        members.len(),
        Reverse(members.iter().copied().min().unwrap_or(u64::MAX)),
    )
}

/// A linked peer in a cluster other than this node's: its senior member is
/// not one of ours and it does not count us. (A senior member of our own
/// cluster that dropped us is not foreign: we ask it to add us back.)
fn foreign<'a>(view: &NodeView, link: &'a LinkedPeer) -> Option<(u64, &'a MemberStatus)> {
    let status = link.status.as_ref().filter(|status| status.initialized)?;
    let leader = status.leader?;
    let ours = view.membership.members.contains_key(&leader) || leader == view.me;
    (!ours && !status.members.contains(&view.me)).then_some((leader, status))
}

/// The best-ranked foreign cluster this node reaches, if it outranks ours.
fn stronger_cluster(view: &NodeView) -> Option<Action> {
    let ours: Vec<u64> = view.membership.members.keys().copied().collect();
    view.links
        .iter()
        .filter_map(|link| foreign(view, link))
        .filter(|(_, status)| rank(&status.members) > rank(&ours))
        .max_by_key(|(_, status)| rank(&status.members))
        .map(|(leader, status)| Action::MergeInto {
            leader,
            members: status.members.len(),
        })
}

/// The peers an uninitialized node asks to join: those of the best-ranked
/// cluster among the linked peers' statuses, or every linked peer while no
/// initialized status is known (a peer passes the request on).
fn join_targets(view: &NodeView) -> Vec<u64> {
    let best = view
        .links
        .iter()
        .filter_map(|link| link.status.as_ref().filter(|status| status.initialized))
        .map(|status| rank(&status.members))
        .max();
    view.links
        .iter()
        .filter(|link| match (best, &link.status) {
            (None, _) => true,
            (Some(best), Some(status)) => status.initialized && rank(&status.members) == best,
            (Some(_), None) => false,
        })
        .map(|link| link.node)
        .collect()
}

/// Whether this node's Raft should answer a request from `peer`. Inside a
/// cluster, always: a member removed while cut off holds elections until it
/// is added back, and answering its votes is how both sides learn the
/// higher term and settle. Outside any cluster (just started, or just left
/// one to merge), only the members of the cluster it would join: the rest of
/// a cluster it left must not win its vote and take it back.
pub(super) fn answers_raft_from(view: &NodeView, peer: u64) -> bool {
    view.membership.initialized || join_targets(view).contains(&peer)
}

/// The actions of one tick.
pub(super) fn upkeep(view: &NodeView) -> Vec<Action> {
    if !view.membership.initialized {
        if should_form(view) {
            return vec![Action::Bootstrap];
        }
        return join_targets(view)
            .into_iter()
            .map(Action::RequestJoin)
            .collect();
    }
    if let Some(merge) = stronger_cluster(view) {
        return vec![merge];
    }
    let mut actions = Vec::new();
    // A leader of our cluster that does not list this node (after a
    // removal) is asked to add it back.
    for link in &view.links {
        if let Some(status) = &link.status {
            if status.leader == Some(link.node)
                && !status.members.contains(&view.me)
                && foreign(view, link).is_none()
            {
                actions.push(Action::RequestJoin(link.node));
            }
        }
    }
    if !view.ready && is_complete(view) {
        actions.push(Action::BecomeReady);
    }
    if view.membership.leader == Some(view.me) {
        let down = view
            .down
            .iter()
            .find(|id| **id != view.me && view.membership.members.contains_key(id));
        if let Some(&id) = down {
            actions.push(Action::RemoveMember(id));
        }
    }
    actions
}

/// An uninitialized node forms a cluster alone when nobody answers before
/// the join timeout, or when every linked peer is uninitialized too, this
/// node has the lowest id, and every seed is linked (or time is up): the
/// lowest id wins, so two seeds never form two clusters.
fn should_form(view: &NodeView) -> bool {
    let timed_out = view.since_start >= view.join_timeout;
    if view.links.is_empty() {
        return timed_out;
    }
    let peers_uninitialized = view.links.iter().all(|link| {
        link.status
            .as_ref()
            .is_some_and(|status| !status.initialized)
    });
    let lowest = view.links.iter().all(|link| link.node > view.me);
    let all_seeds_linked = view.seeds.iter().all(|seed| {
        *seed == view.my_addr || view.links.iter().any(|link| link.cluster_addr == *seed)
    });
    peers_uninitialized && lowest && (all_seeds_linked || timed_out)
}

/// Ready once this node is a member and holds the sessions of every member
/// that is up; a member neither up nor linked has nothing to wait for.
fn is_complete(view: &NodeView) -> bool {
    view.membership.members.contains_key(&view.me)
        && view
            .membership
            .members
            .keys()
            .filter(|id| **id != view.me)
            .all(|id| {
                let health = view.members.get(id).copied().unwrap_or_default();
                if health.up {
                    health.replica
                } else {
                    !health.linked
                }
            })
}

/// A join request: the senior member adds the joiner (keeping its join
/// time) unless it is a member with that info already; another member
/// passes it to the senior member.
pub(super) fn on_join(membership: &MembershipView, me: u64, joiner: PeerInfo) -> Option<Action> {
    if !membership.initialized {
        return None;
    }
    match membership.leader? {
        leader if leader == me => {
            let id = joiner.node_id;
            let mut info = member_info(&joiner);
            if let Some(existing) = membership.members.get(&id) {
                info.joined_at_ms = existing.joined_at_ms;
                if *existing == info {
                    return None;
                }
            }
            Some(Action::AddMember { id, info })
        }
        leader => Some(Action::ForwardJoin { leader, joiner }),
    }
}

/// What the cluster records of a node, from its hello; the senior member
/// stamps the join time.
pub(super) fn member_info(peer: &PeerInfo) -> MemberInfo {
    MemberInfo {
        name: peer.name.clone(),
        cluster_addr: peer.cluster_addr.clone(),
        c2s_addr: peer.c2s_addr.clone(),
        http_addr: peer.http_addr.clone(),
        web_url: peer.web_url.clone(),
        max_connections: peer.max_connections,
        joined_at_ms: 0,
    }
}

/// A member announced its leave: the senior member removes it.
pub(super) fn on_leave(membership: &MembershipView, me: u64, id: u64) -> Option<Action> {
    (membership.leader == Some(me)).then_some(Action::RemoveMember(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 10;

    fn info(name: &str) -> MemberInfo {
        MemberInfo {
            name: name.to_owned(),
            cluster_addr: format!("{name}:7000"),
            ..MemberInfo::default()
        }
    }

    fn status(initialized: bool, leader: Option<u64>, members: &[u64]) -> MemberStatus {
        MemberStatus {
            initialized,
            leader,
            term: 1,
            members: members.to_vec(),
            down: Vec::new(),
            client_stanzas: 0,
        }
    }

    fn link(node: u64, addr: &str, status: Option<MemberStatus>) -> LinkedPeer {
        LinkedPeer {
            node,
            cluster_addr: addr.to_owned(),
            status,
        }
    }

    /// A fresh, uninitialized node with seeds a and b, itself at "me:7000".
    fn fresh() -> NodeView {
        NodeView {
            me: ME,
            my_addr: "me:7000".to_owned(),
            seeds: vec!["me:7000".to_owned(), "b:7000".to_owned()],
            membership: MembershipView::default(),
            since_start: Duration::from_millis(100),
            join_timeout: Duration::from_secs(5),
            links: Vec::new(),
            members: BTreeMap::new(),
            down: Vec::new(),
            ready: false,
        }
    }

    /// An initialized view with these members and leader.
    fn cluster(leader: u64, members: &[u64]) -> MembershipView {
        MembershipView {
            leader: Some(leader),
            term: 1,
            members: members
                .iter()
                .map(|id| (*id, info(&id.to_string())))
                .collect(),
            initialized: true,
        }
    }

    #[test]
    fn alone_waits_then_forms_after_the_join_timeout() {
        let mut view = fresh();
        assert_eq!(upkeep(&view), Vec::new());
        view.since_start = view.join_timeout;
        assert_eq!(upkeep(&view), vec![Action::Bootstrap]);
    }

    #[test]
    fn lowest_uninitialized_node_forms_once_every_seed_is_linked() {
        let mut view = fresh();
        view.links = vec![link(20, "b:7000", Some(status(false, None, &[])))];
        assert_eq!(upkeep(&view), vec![Action::Bootstrap]);
    }

    #[test]
    fn a_higher_id_asks_to_join_instead_of_forming() {
        let mut view = fresh();
        view.links = vec![link(5, "b:7000", Some(status(false, None, &[])))];
        assert_eq!(upkeep(&view), vec![Action::RequestJoin(5)]);
    }

    #[test]
    fn an_initialized_peer_is_joined_not_raced() {
        let mut view = fresh();
        view.links = vec![link(20, "b:7000", Some(status(true, Some(20), &[20])))];
        view.since_start = view.join_timeout;
        assert_eq!(upkeep(&view), vec![Action::RequestJoin(20)]);
    }

    #[test]
    fn a_peer_without_status_yet_is_not_taken_for_uninitialized() {
        let mut view = fresh();
        view.links = vec![link(20, "b:7000", None)];
        assert_eq!(upkeep(&view), vec![Action::RequestJoin(20)]);
    }

    #[test]
    fn an_unlinked_seed_delays_forming_until_the_timeout() {
        let mut view = fresh();
        view.seeds.push("c:7000".to_owned());
        view.links = vec![link(20, "b:7000", Some(status(false, None, &[])))];
        assert_eq!(upkeep(&view), vec![Action::RequestJoin(20)]);
        view.since_start = view.join_timeout;
        assert_eq!(upkeep(&view), vec![Action::Bootstrap]);
    }

    #[test]
    fn ready_once_every_up_member_is_replicated() {
        let mut view = fresh();
        view.membership = cluster(20, &[ME, 20, 30]);
        view.members.insert(
            20,
            MemberHealth {
                up: true,
                replica: false,
                linked: true,
            },
        );
        // 30 is neither up nor linked: nothing to wait for.
        view.members.insert(30, MemberHealth::default());
        assert_eq!(upkeep(&view), Vec::new());
        view.members.get_mut(&20).unwrap().replica = true;
        assert_eq!(upkeep(&view), vec![Action::BecomeReady]);
        view.ready = true;
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn a_linked_member_not_yet_up_holds_readiness() {
        let mut view = fresh();
        view.membership = cluster(20, &[ME, 20]);
        view.members.insert(
            20,
            MemberHealth {
                up: false,
                replica: false,
                linked: true,
            },
        );
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn not_ready_while_not_a_member() {
        let mut view = fresh();
        view.membership = cluster(20, &[20]);
        view.members.insert(
            20,
            MemberHealth {
                up: true,
                replica: true,
                linked: true,
            },
        );
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn a_leader_that_dropped_this_node_is_asked_again() {
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(20, &[ME, 20]);
        view.links = vec![link(20, "b:7000", Some(status(true, Some(20), &[20])))];
        assert_eq!(upkeep(&view), vec![Action::RequestJoin(20)]);
        view.links[0].status = Some(status(true, Some(20), &[ME, 20]));
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn the_leader_removes_one_down_member_per_tick() {
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(ME, &[ME, 20, 30]);
        view.down = vec![40, 30, 20];
        // 40 is not a member: skipped.
        assert_eq!(upkeep(&view), vec![Action::RemoveMember(30)]);
        view.membership.leader = Some(20);
        view.down = vec![30];
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn a_smaller_cluster_formed_apart_merges_into_the_larger() {
        // Both sides of a partition formed a cluster: we are {ME}, alone;
        // peer 20 leads {20, 30}.
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(ME, &[ME]);
        view.links = vec![link(20, "b:7000", Some(status(true, Some(20), &[20, 30])))];
        assert_eq!(
            upkeep(&view),
            vec![Action::MergeInto {
                leader: 20,
                members: 2
            }]
        );
    }

    #[test]
    fn the_larger_cluster_stays_and_does_not_ask_the_smaller() {
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(ME, &[ME, 30]);
        // 20 leads a cluster of one: it merges into ours, we do nothing
        // (not even ask its leader to add us).
        view.links = vec![link(20, "b:7000", Some(status(true, Some(20), &[20])))];
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn equal_clusters_are_ordered_by_their_lowest_member() {
        assert!(rank(&[5, 40]) > rank(&[ME, 20]));
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(ME, &[ME, 20]);
        view.links = vec![link(40, "c:7000", Some(status(true, Some(40), &[5, 40])))];
        assert_eq!(
            upkeep(&view),
            vec![Action::MergeInto {
                leader: 40,
                members: 2
            }]
        );
        view.links = vec![link(40, "c:7000", Some(status(true, Some(40), &[40, 50])))];
        assert_eq!(upkeep(&view), Vec::new());
    }

    #[test]
    fn a_member_of_our_cluster_that_merged_elsewhere_draws_us_after_it() {
        // We are 20 of {ME=10.., 20}: our old fellow 30 already joined the
        // cluster led by 5, which now counts 30 and is larger than ours.
        let mut view = fresh();
        view.ready = true;
        view.membership = cluster(30, &[ME, 30]);
        view.links = vec![link(30, "c:7000", Some(status(true, Some(5), &[5, 6, 30])))];
        assert_eq!(
            upkeep(&view),
            vec![Action::MergeInto {
                leader: 5,
                members: 3
            }]
        );
    }

    #[test]
    fn outside_a_cluster_only_the_strongest_cluster_is_asked() {
        let mut view = fresh();
        view.ready = true;
        view.links = vec![
            // What is left of the cluster this node left to merge.
            link(30, "c:7000", Some(status(true, Some(30), &[ME, 30]))),
            link(20, "b:7000", Some(status(true, Some(20), &[20, 21, 22]))),
            link(21, "d:7000", Some(status(true, Some(20), &[20, 21, 22]))),
        ];
        view.since_start = view.join_timeout;
        assert_eq!(
            upkeep(&view),
            vec![Action::RequestJoin(20), Action::RequestJoin(21)]
        );
        assert!(answers_raft_from(&view, 20));
        assert!(!answers_raft_from(&view, 30));
    }

    #[test]
    fn raft_requests_are_filtered_only_outside_a_cluster() {
        let mut view = fresh();
        view.membership = cluster(20, &[ME, 20]);
        assert!(answers_raft_from(&view, 20));
        // A member removed while cut off: its votes settle the term.
        assert!(answers_raft_from(&view, 30));
        // Not yet in any cluster, no status known: anyone may be the one
        // adding us (a peer passes a join on to its leader).
        let fresh = fresh();
        assert!(answers_raft_from(
            &NodeView {
                links: vec![link(30, "c:7000", None)],
                ..fresh
            },
            30
        ));
    }

    fn hello(id: u64, name: &str) -> PeerInfo {
        PeerInfo {
            node_id: id,
            name: name.to_owned(),
            incarnation: 1,
            cluster_addr: format!("{name}:7000"),
            c2s_addr: String::new(),
            http_addr: String::new(),
            web_url: String::new(),
            max_connections: 0,
        }
    }

    #[test]
    fn joins_are_added_by_the_leader_and_forwarded_elsewhere() {
        let leading = cluster(ME, &[ME]);
        assert_eq!(
            on_join(&leading, ME, hello(20, "b")),
            Some(Action::AddMember {
                id: 20,
                info: info("b")
            })
        );
        let following = cluster(30, &[ME, 30]);
        assert_eq!(
            on_join(&following, ME, hello(20, "b")),
            Some(Action::ForwardJoin {
                leader: 30,
                joiner: hello(20, "b")
            })
        );
        assert_eq!(
            on_join(&MembershipView::default(), ME, hello(20, "b")),
            None
        );
        let leaderless = MembershipView {
            leader: None,
            ..following
        };
        assert_eq!(on_join(&leaderless, ME, hello(20, "b")), None);
    }

    #[test]
    fn a_known_member_keeps_its_join_time_and_is_not_re_added() {
        let mut leading = cluster(ME, &[ME, 20]);
        let mut known = info("20");
        known.joined_at_ms = 1234;
        leading.members.insert(20, known.clone());
        assert_eq!(on_join(&leading, ME, hello(20, "20")), None);
        let mut moved = hello(20, "20");
        moved.c2s_addr = "elsewhere:5222".to_owned();
        let mut expected = member_info(&moved);
        expected.joined_at_ms = 1234;
        assert_eq!(
            on_join(&leading, ME, moved),
            Some(Action::AddMember {
                id: 20,
                info: expected
            })
        );
    }

    #[test]
    fn only_the_leader_removes_a_leaver() {
        assert_eq!(
            on_leave(&cluster(ME, &[ME, 20]), ME, 20),
            Some(Action::RemoveMember(20))
        );
        assert_eq!(on_leave(&cluster(20, &[ME, 20]), ME, 20), None);
    }
}
