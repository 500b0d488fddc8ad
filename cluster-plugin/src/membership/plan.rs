//! The next step of a membership change, decided from the current Raft
//! membership config alone (no I/O), so that add and remove are idempotent
//! and finish whatever an earlier, interrupted change left behind.
//!
//! openraft changes voters in two committed steps (a joint config, then the
//! new uniform config). A change that timed out can leave the config joint;
//! the plans below treat "joint" as "not done yet", and openraft's own
//! `AddVoterIds` / `RemoveVoters` then lead from the joint config to the
//! intended uniform one.

use super::types::{MemberId, MemberInfo, RaftMembership};

/// What `add_member` does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddStep {
    /// A voter with that info, in a uniform config: nothing to do.
    Done,
    /// Unknown member: add it as a learner, stamped with the join time.
    AddLearner,
    /// Known with other info: replace the info, keeping the join time.
    UpdateInfo { joined_at_ms: i64 },
    /// Known with that info but not (yet) a voter of a uniform config:
    /// let it catch up, then make it a voter.
    Promote,
}

/// What `remove_member` does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoveStep {
    /// Not in the config at all.
    Done,
    /// The only voter of the target config; a cluster is never emptied.
    LastMember,
    /// A voter of the current or the target config: remove it as a voter,
    /// and its node entry with it.
    RemoveVoter,
    /// Only a learner: drop its node entry.
    RemoveLearner,
}

/// The voters the config is heading to: the uniform config, or the second
/// half of a joint one.
fn target_voters(membership: &RaftMembership) -> impl Iterator<Item = &MemberId> {
    membership.get_joint_config().last().into_iter().flatten()
}

pub(crate) fn plan_add(membership: &RaftMembership, id: MemberId, info: &MemberInfo) -> AddStep {
    let Some(current) = membership.get_node(&id) else {
        return AddStep::AddLearner;
    };
    if !current.same_as(info) {
        return AddStep::UpdateInfo {
            joined_at_ms: current.joined_at_ms,
        };
    }
    let voter = target_voters(membership).any(|voter| *voter == id);
    if voter && membership.get_joint_config().len() == 1 {
        AddStep::Done
    } else {
        AddStep::Promote
    }
}

pub(crate) fn plan_remove(membership: &RaftMembership, id: MemberId) -> RemoveStep {
    if membership.get_node(&id).is_none() {
        return RemoveStep::Done;
    }
    let in_target = target_voters(membership).any(|voter| *voter == id);
    if in_target && target_voters(membership).count() == 1 {
        return RemoveStep::LastMember;
    }
    let voter = membership.voter_ids().any(|voter| voter == id);
    if voter {
        RemoveStep::RemoveVoter
    } else {
        RemoveStep::RemoveLearner
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn info(name: &str, joined_at_ms: i64) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            cluster_addr: format!("{name}:7701"),
            joined_at_ms,
            ..MemberInfo::default()
        }
    }

    /// `configs` are the voter sets (two of them for a joint config);
    /// `learners` are node entries that are in no config.
    fn membership(configs: &[&[MemberId]], learners: &[MemberId]) -> RaftMembership {
        let configs: Vec<BTreeSet<MemberId>> = configs
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect();
        let mut nodes = BTreeMap::new();
        for id in configs.iter().flatten().chain(learners) {
            nodes.insert(*id, info(&format!("n{id}"), 1000 + *id as i64));
        }
        RaftMembership::new(configs, nodes)
    }

    #[test]
    fn add_unknown_member_starts_as_learner() {
        let m = membership(&[&[1]], &[]);
        assert_eq!(plan_add(&m, 2, &info("n2", 0)), AddStep::AddLearner);
    }

    #[test]
    fn add_existing_voter_with_same_info_is_a_no_op() {
        let m = membership(&[&[1, 2]], &[]);
        // The join time the caller sends does not matter.
        assert_eq!(plan_add(&m, 2, &info("n2", 0)), AddStep::Done);
    }

    #[test]
    fn add_with_changed_info_keeps_join_time() {
        let m = membership(&[&[1, 2]], &[]);
        let mut moved = info("n2", 0);
        moved.c2s_addr = "10.0.0.9:5222".into();
        assert_eq!(
            plan_add(&m, 2, &moved),
            AddStep::UpdateInfo { joined_at_ms: 1002 }
        );
    }

    #[test]
    fn add_learner_or_unfinished_change_promotes() {
        let m = membership(&[&[1]], &[2]);
        assert_eq!(plan_add(&m, 2, &info("n2", 0)), AddStep::Promote);
        // A joint config left by an interrupted add of 2.
        let m = membership(&[&[1], &[1, 2]], &[]);
        assert_eq!(plan_add(&m, 2, &info("n2", 0)), AddStep::Promote);
        // A joint config left by an interrupted removal of 2: adding it back
        // must not be taken as done, or the next change would drop it.
        let m = membership(&[&[1, 2], &[1]], &[]);
        assert_eq!(plan_add(&m, 2, &info("n2", 0)), AddStep::Promote);
    }

    #[test]
    fn remove_unknown_member_is_done() {
        let m = membership(&[&[1, 2]], &[]);
        assert_eq!(plan_remove(&m, 3), RemoveStep::Done);
    }

    #[test]
    fn remove_voter_and_learner() {
        let m = membership(&[&[1, 2, 3]], &[4]);
        assert_eq!(plan_remove(&m, 3), RemoveStep::RemoveVoter);
        assert_eq!(plan_remove(&m, 4), RemoveStep::RemoveLearner);
        // Still a voter of the old half of a joint config.
        let m = membership(&[&[1, 2], &[1]], &[]);
        assert_eq!(plan_remove(&m, 2), RemoveStep::RemoveVoter);
    }

    #[test]
    fn never_removes_the_last_member() {
        let m = membership(&[&[1]], &[]);
        assert_eq!(plan_remove(&m, 1), RemoveStep::LastMember);
        let m = membership(&[&[1, 2], &[1]], &[]);
        assert_eq!(plan_remove(&m, 1), RemoveStep::LastMember);
        // The last voter with a learner beside it is still the last member.
        let m = membership(&[&[1]], &[2]);
        assert_eq!(plan_remove(&m, 1), RemoveStep::LastMember);
    }
}
