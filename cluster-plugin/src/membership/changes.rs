//! Membership changes on the senior member: adding (or re-adding, or
//! updating) a member, and removing one. Each runs the steps
//! [`plan`](super::plan) picks until the config is where the caller wants
//! it, all within one bounded wait.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{ChangeMembers, ServerState};
use tokio::sync::MutexGuard;
use tokio::time::{Instant, timeout_at};

use super::plan::{AddStep, RemoveStep, plan_add, plan_remove};
use super::types::{RaftMembership, TypeConfig};
use super::{MemberId, MemberInfo, Membership, MembershipError, now_ms};

/// More writes than any change needs (update info, add learner, promote);
/// a guard against a plan that does not converge. Retries that wrote
/// nothing are bounded by the deadline instead.
const MAX_WRITES: usize = 6;

type WriteResult = Result<
    ClientWriteResponse<TypeConfig>,
    RaftError<MemberId, ClientWriteError<MemberId, MemberInfo>>,
>;

/// One change's deadline and the time it started, for error reports.
#[derive(Clone, Copy)]
struct Budget {
    started: Instant,
    deadline: Instant,
}

impl Budget {
    fn new(timeout: Duration) -> Budget {
        let started = Instant::now();
        Budget {
            started,
            deadline: started + timeout,
        }
    }

    fn no_quorum(&self) -> MembershipError {
        MembershipError::NoQuorum {
            waited: self.started.elapsed(),
        }
    }
}

impl Membership {
    /// On the senior member: makes `id` a voting member with `info`. A new
    /// member is added as a learner first, caught up, then made a voter; a
    /// known member with other info gets its info replaced (its
    /// `joined_at_ms` kept); a member that already is a voter with that info
    /// is left alone. Elsewhere: `Err(NotLeader { leader })`, so the caller
    /// can forward the request.
    pub async fn add_member(&self, id: MemberId, info: MemberInfo) -> Result<(), MembershipError> {
        let (budget, _change, mut membership) = self.begin_change().await?;
        let mut writes = 0;
        loop {
            let raft = &self.inner.raft;
            let outcome = match plan_add(&membership, id, &info) {
                AddStep::Done => return Ok(()),
                AddStep::AddLearner => {
                    let info = MemberInfo {
                        joined_at_ms: now_ms(),
                        ..info.clone()
                    };
                    tracing::info!(member = id, name = %info.name, "adding member as learner");
                    self.commit(budget, raft.add_learner(id, info, false))
                        .await?
                }
                AddStep::UpdateInfo { joined_at_ms } => {
                    let info = MemberInfo {
                        joined_at_ms,
                        ..info.clone()
                    };
                    tracing::info!(member = id, name = %info.name, "updating member info");
                    let change = ChangeMembers::SetNodes(BTreeMap::from([(id, info)]));
                    self.commit(budget, raft.change_membership(change, false))
                        .await?
                }
                AddStep::Promote => {
                    self.wait_caught_up(id, budget).await?;
                    tracing::info!(member = id, "making member a voter");
                    let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
                    self.commit(budget, raft.change_membership(change, false))
                        .await?
                }
            };
            membership = self.next_config(id, outcome, &mut writes)?;
        }
    }

    /// On the senior member: removes `id` from the cluster, voter and
    /// learner alike. Removing an unknown member succeeds; removing the last
    /// member fails with `LastMember`. Elsewhere: `Err(NotLeader { leader })`.
    pub async fn remove_member(&self, id: MemberId) -> Result<(), MembershipError> {
        let (budget, _change, mut membership) = self.begin_change().await?;
        let mut writes = 0;
        loop {
            let raft = &self.inner.raft;
            let outcome = match plan_remove(&membership, id) {
                RemoveStep::Done => return Ok(()),
                RemoveStep::LastMember => return Err(MembershipError::LastMember { id }),
                RemoveStep::RemoveVoter => {
                    tracing::info!(member = id, "removing member");
                    let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
                    self.commit(budget, raft.change_membership(change, false))
                        .await?
                }
                RemoveStep::RemoveLearner => {
                    tracing::info!(member = id, "removing learner");
                    let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                    self.commit(budget, raft.change_membership(change, false))
                        .await?
                }
            };
            membership = self.next_config(id, outcome, &mut writes)?;
        }
    }

    /// Waits for this node's earlier changes to finish, within the budget.
    /// The start of every change: its time budget, its turn (held until
    /// the change is done) and the configuration to plan from.
    async fn begin_change(
        &self,
    ) -> Result<(Budget, MutexGuard<'_, ()>, RaftMembership), MembershipError> {
        let budget = Budget::new(self.inner.timings.change_timeout());
        let turn = self.queue_behind_other_changes(budget).await?;
        Ok((budget, turn, self.leader_membership()?))
    }

    async fn queue_behind_other_changes(
        &self,
        budget: Budget,
    ) -> Result<MutexGuard<'_, ()>, MembershipError> {
        timeout_at(budget.deadline, self.inner.change_lock.lock())
            .await
            .map_err(|_| budget.no_quorum())
    }

    /// The config to plan the next step from: the one a write produced, or
    /// the current one after a retry.
    fn next_config(
        &self,
        id: MemberId,
        outcome: Option<RaftMembership>,
        writes: &mut usize,
    ) -> Result<RaftMembership, MembershipError> {
        let Some(membership) = outcome else {
            return self.leader_membership();
        };
        *writes += 1;
        if *writes > MAX_WRITES {
            return Err(MembershipError::Bug(format!(
                "changing member {id} did not converge"
            )));
        }
        Ok(membership)
    }

    /// The current membership config, if this node is the leader.
    fn leader_membership(&self) -> Result<RaftMembership, MembershipError> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        if let Err(fatal) = &metrics.running_state {
            return Err(MembershipError::Fatal(Box::new(fatal.clone())));
        }
        if metrics.state == ServerState::Leader && metrics.current_leader == Some(self.inner.id) {
            Ok(metrics.membership_config.membership().clone())
        } else {
            // Never point a caller back at this node.
            let leader = metrics
                .current_leader
                .filter(|leader| *leader != self.inner.id);
            Err(MembershipError::NotLeader { leader })
        }
    }

    /// Waits for one membership write to commit. `Ok(Some(config))` is the
    /// config after the write; `Ok(None)` means "nothing written, plan
    /// again" (another change was still committing, or the config moved).
    async fn commit(
        &self,
        budget: Budget,
        write: impl Future<Output = WriteResult>,
    ) -> Result<Option<RaftMembership>, MembershipError> {
        let result = timeout_at(budget.deadline, write)
            .await
            .map_err(|_| budget.no_quorum())?;
        let error = match result {
            Ok(response) => return Ok(response.membership),
            Err(RaftError::Fatal(fatal)) => return Err(MembershipError::Fatal(Box::new(fatal))),
            Err(RaftError::APIError(error)) => error,
        };
        match error {
            ClientWriteError::ForwardToLeader(forward) => Err(MembershipError::NotLeader {
                leader: forward.leader_id.filter(|leader| *leader != self.inner.id),
            }),
            // The previous change (maybe one that timed out, maybe the config
            // a new leader inherited) has not committed yet; or the config
            // moved under the plan. Either way: pause, then plan again.
            ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_) | ChangeMembershipError::LearnerNotFound(_),
            ) => {
                let pause = Instant::now() + self.inner.timings.heartbeat();
                tokio::time::sleep_until(pause.min(budget.deadline)).await;
                if Instant::now() >= budget.deadline {
                    return Err(budget.no_quorum());
                }
                Ok(None)
            }
            ClientWriteError::ChangeMembershipError(ChangeMembershipError::EmptyMembership(e)) => {
                Err(MembershipError::Bug(e.to_string()))
            }
        }
    }

    /// Waits until the leader has replicated its whole log (as of now) to
    /// `id`.
    async fn wait_caught_up(&self, id: MemberId, budget: Budget) -> Result<(), MembershipError> {
        if id == self.inner.id {
            return Ok(());
        }
        let goal = self.inner.raft.metrics().borrow().last_log_index;
        let caught_up = self
            .wait_metrics(budget.deadline, |m| {
                if m.state != ServerState::Leader {
                    let leader = m.current_leader.filter(|leader| *leader != self.inner.id);
                    return Some(Err(MembershipError::NotLeader { leader }));
                }
                let matched = m.replication.as_ref()?.get(&id)?.as_ref()?;
                (Some(matched.index) >= goal).then_some(Ok(()))
            })
            .await;
        caught_up.unwrap_or(Err(MembershipError::CatchUpTimeout {
            id,
            waited: budget.started.elapsed(),
        }))
    }
}
