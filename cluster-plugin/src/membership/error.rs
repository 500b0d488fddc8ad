//! Errors of the membership API.

use std::time::Duration;

use super::types::MemberId;

/// Why a membership request failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Only the senior member (the Raft leader) changes the membership;
    /// forward the request to `leader`, if one is known.
    #[error("this node is not the senior member (leader: {leader:?})")]
    NotLeader { leader: Option<MemberId> },
    /// `bootstrap` on a node that is already part of a cluster.
    #[error("this node already belongs to a cluster")]
    AlreadyInitialized,
    /// The change could not commit in time: too few members answered. The
    /// cluster keeps serving; retry once members are back.
    #[error("the membership change did not commit within {waited:?}: no quorum answered")]
    NoQuorum { waited: Duration },
    /// A joining member did not receive the log in time (unreachable or too
    /// slow); it stays a non-voting learner until a retry promotes it or
    /// `remove_member` drops it.
    #[error("member {id} did not catch up with the leader's log within {waited:?}")]
    CatchUpTimeout { id: MemberId, waited: Duration },
    /// Removing the only member would leave no cluster at all.
    #[error("member {id} is the last member; a cluster is never emptied")]
    LastMember { id: MemberId },
    /// The [`Timings`](super::Timings) are inconsistent.
    #[error("invalid membership timings: {0}")]
    InvalidTimings(#[source] Box<openraft::ConfigError>),
    /// This node's Raft stopped (shut down, or failed); it answers nothing more.
    #[error("raft stopped: {0}")]
    Fatal(#[source] Box<openraft::error::Fatal<MemberId>>),
    /// openraft refused a request this module should never make.
    #[error("membership bug: {0}")]
    Bug(String),
}
