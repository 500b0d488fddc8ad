//! Raft RPCs over the peer transport: openraft's `RaftNetworkFactory` /
//! `RaftNetwork` on the calling side, [`serve`] on the answering side, and the
//! postcard wire format between them.
//!
//! ```text
//!  leader's RaftCore ─▶ PeerClient ─encode RaftRpc─▶ dyn RaftTransport::call ──┐
//!                                                                             │
//!  peer: Membership::handle ◀─────────────────── bytes over the peer link ◀───┘
//!          └─▶ serve ─▶ Raft::{append_entries, vote, install_full_snapshot}
//!                 └─▶ encode RaftReply ─▶ back through the transport
//! ```
//!
//! The transport only moves opaque byte payloads and knows nothing of Raft.
//! Every request names the member it is for; a member that receives a
//! request for another id refuses it, so a transport that maps an id to the
//! wrong node cannot make two nodes share one Raft identity. Snapshots are a
//! few hundred bytes, so each goes in one request (openraft's `full_snapshot`)
//! rather than in chunks.

use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};
use serde::{Deserialize, Serialize};

use super::types::{MemberId, MemberInfo, Raft, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// Carries Raft request payloads to a member and brings back its reply.
/// Implemented by the peer transport; the receiving side hands the payload to
/// [`Membership::handle`](super::Membership::handle).
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends one request payload to `target` and waits for its reply payload.
    fn call(
        &self,
        target: MemberId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>>;
}

/// Why a [`RaftTransport::call`] brought back no reply.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No link to the member (not connected, or the link broke).
    #[error("member {0} is unreachable")]
    Unreachable(MemberId),
    /// The member did not reply within the timeout.
    #[error("member {0} did not reply in time")]
    Timeout(MemberId),
    /// The transport failed in some other way.
    #[error("transport failure: {0}")]
    Remote(String),
}

/// One Raft request as it travels.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RaftRpc {
    /// The member the caller means to reach.
    pub(crate) to: MemberId,
    pub(crate) call: RaftCall,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RaftCall {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<MemberId>),
    InstallSnapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
}

/// The answer to a [`RaftRpc`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RaftReply {
    AppendEntries(AppendEntriesResponse<MemberId>),
    Vote(VoteResponse<MemberId>),
    InstallSnapshot(SnapshotResponse<MemberId>),
    /// The request reached member `actual`, not the `addressed` one.
    WrongMember {
        addressed: MemberId,
        actual: MemberId,
    },
    /// The request could not be decoded (another protocol version, or damage).
    Malformed(String),
    /// The member's Raft is stopped or failed.
    Unavailable(String),
}

/// Why a reply could not be used; becomes one of openraft's RPC errors.
#[derive(Debug, thiserror::Error)]
enum ReplyError {
    #[error("cannot encode the request: {0}")]
    Encode(#[source] postcard::Error),
    #[error("cannot decode the reply: {0}")]
    Decode(#[source] postcard::Error),
    #[error("member {actual} answered a request for member {addressed}")]
    WrongMember {
        addressed: MemberId,
        actual: MemberId,
    },
    #[error("the peer could not decode the request: {0}")]
    Malformed(String),
    #[error("the peer's raft is not running: {0}")]
    Unavailable(String),
    #[error("the peer answered a {expected} request with another kind of reply")]
    Mismatched { expected: &'static str },
    #[error("chunked snapshot transfer is not used: snapshots go whole")]
    ChunkedSnapshot,
}

/// What a failed call means to openraft: back off (the member is gone or
/// not itself), give up this attempt (timeout), or retry (anything else).
enum Failure {
    Unreachable(Unreachable),
    Timeout(Duration),
    Network(NetworkError),
}

impl From<ReplyError> for Failure {
    fn from(error: ReplyError) -> Failure {
        match error {
            ReplyError::WrongMember { .. } | ReplyError::Unavailable(_) => {
                Failure::Unreachable(Unreachable::new(&error))
            }
            ReplyError::Encode(_)
            | ReplyError::Decode(_)
            | ReplyError::Malformed(_)
            | ReplyError::Mismatched { .. }
            | ReplyError::ChunkedSnapshot => Failure::Network(NetworkError::new(&error)),
        }
    }
}

/// Hands out one [`PeerClient`] per target member.
pub(crate) struct NetworkFactory {
    me: MemberId,
    transport: Arc<dyn RaftTransport>,
}

impl NetworkFactory {
    pub(crate) fn new(me: MemberId, transport: Arc<dyn RaftTransport>) -> NetworkFactory {
        NetworkFactory { me, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: MemberId, _node: &MemberInfo) -> PeerClient {
        // Addresses are the transport's business: it reaches members by id.
        PeerClient {
            me: self.me,
            target,
            transport: Arc::clone(&self.transport),
        }
    }
}

/// Raft RPCs from this member to one target member.
pub(crate) struct PeerClient {
    me: MemberId,
    target: MemberId,
    transport: Arc<dyn RaftTransport>,
}

impl PeerClient {
    async fn send(&self, call: RaftCall, timeout: Duration) -> Result<RaftReply, Failure> {
        let rpc = RaftRpc {
            to: self.target,
            call,
        };
        let payload = postcard::to_stdvec(&rpc).map_err(ReplyError::Encode)?;
        let bytes = match self.transport.call(self.target, payload, timeout).await {
            Ok(bytes) => bytes,
            Err(TransportError::Timeout(_)) => return Err(Failure::Timeout(timeout)),
            Err(error @ TransportError::Unreachable(_)) => {
                return Err(Failure::Unreachable(Unreachable::new(&error)));
            }
            Err(error @ TransportError::Remote(_)) => {
                return Err(Failure::Network(NetworkError::new(&error)));
            }
        };
        let reply: RaftReply = postcard::from_bytes(&bytes).map_err(ReplyError::Decode)?;
        match reply {
            RaftReply::WrongMember { addressed, actual } => {
                Err(ReplyError::WrongMember { addressed, actual }.into())
            }
            RaftReply::Malformed(reason) => Err(ReplyError::Malformed(reason).into()),
            RaftReply::Unavailable(reason) => Err(ReplyError::Unavailable(reason).into()),
            reply => Ok(reply),
        }
    }

    /// Sends one call and takes its reply, which must be of the kind
    /// `expected` (`take` returns `None` for any other).
    async fn call<R, E: std::error::Error>(
        &self,
        action: RPCTypes,
        call: RaftCall,
        option: &RPCOption,
        expected: &'static str,
        take: impl FnOnce(RaftReply) -> Option<R>,
    ) -> Result<R, RPCError<MemberId, MemberInfo, E>> {
        let reply = match self.send(call, option.hard_ttl()).await {
            Ok(reply) => reply,
            Err(failure) => return Err(self.rpc_error(action, failure)),
        };
        take(reply)
            .ok_or_else(|| self.rpc_error(action, ReplyError::Mismatched { expected }.into()))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        failure: Failure,
    ) -> RPCError<MemberId, MemberInfo, E> {
        match failure {
            Failure::Unreachable(e) => RPCError::Unreachable(e),
            Failure::Network(e) => RPCError::Network(e),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.me,
                target: self.target,
                timeout,
            }),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MemberId>, RPCError<MemberId, MemberInfo, RaftError<MemberId>>>
    {
        let call = RaftCall::AppendEntries(rpc);
        self.call(
            RPCTypes::AppendEntries,
            call,
            &option,
            "append",
            |reply| match reply {
                RaftReply::AppendEntries(resp) => Some(resp),
                _ => None,
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MemberId>, RPCError<MemberId, MemberInfo, RaftError<MemberId>>> {
        let call = RaftCall::Vote(rpc);
        self.call(RPCTypes::Vote, call, &option, "vote", |reply| match reply {
            RaftReply::Vote(resp) => Some(resp),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<MemberId>,
        RPCError<MemberId, MemberInfo, RaftError<MemberId, InstallSnapshotError>>,
    > {
        // openraft only sends chunks from the default `full_snapshot`, which
        // is replaced below.
        Err(RPCError::Network(NetworkError::new(
            &ReplyError::ChunkedSnapshot,
        )))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<MemberId>, StreamingError<TypeConfig, Fatal<MemberId>>> {
        let call = RaftCall::InstallSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let result = tokio::select! {
            result = self.send(call, option.hard_ttl()) => result,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match result {
            Ok(RaftReply::InstallSnapshot(resp)) => Ok(resp),
            Ok(_) => Err(StreamingError::Network(NetworkError::new(
                &ReplyError::Mismatched {
                    expected: "snapshot",
                },
            ))),
            Err(Failure::Unreachable(e)) => Err(StreamingError::Unreachable(e)),
            Err(Failure::Network(e)) => Err(StreamingError::Network(e)),
            Err(Failure::Timeout(timeout)) => Err(StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.me,
                target: self.target,
                timeout,
            })),
        }
    }
}

/// Answers one request payload with the local Raft, `me` being this member's
/// id. Never fails: every problem becomes a reply the caller understands.
pub(crate) async fn serve(raft: &Raft, me: MemberId, payload: &[u8]) -> Vec<u8> {
    let reply = match postcard::from_bytes::<RaftRpc>(payload) {
        Err(error) => RaftReply::Malformed(error.to_string()),
        Ok(rpc) if rpc.to != me => RaftReply::WrongMember {
            addressed: rpc.to,
            actual: me,
        },
        Ok(rpc) => match rpc.call {
            RaftCall::AppendEntries(req) => match raft.append_entries(req).await {
                Ok(resp) => RaftReply::AppendEntries(resp),
                Err(error) => RaftReply::Unavailable(error.to_string()),
            },
            RaftCall::Vote(req) => match raft.vote(req).await {
                Ok(resp) => RaftReply::Vote(resp),
                Err(error) => RaftReply::Unavailable(error.to_string()),
            },
            RaftCall::InstallSnapshot { vote, meta, data } => {
                let snapshot = Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                };
                match raft.install_full_snapshot(vote, snapshot).await {
                    Ok(resp) => RaftReply::InstallSnapshot(resp),
                    Err(error) => RaftReply::Unavailable(error.to_string()),
                }
            }
        },
    };
    encode_reply(&reply)
}

fn encode_reply(reply: &RaftReply) -> Vec<u8> {
    match postcard::to_stdvec(reply) {
        Ok(bytes) => bytes,
        Err(error) => {
            // Only a bug can get here (every reply type is plain data); an
            // empty payload makes the caller see a decode error and retry.
            tracing::error!(%error, "cannot encode a raft reply");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};

    use super::*;
    use crate::membership::types::Entry;

    /// Answers every call with a canned reply and records what was sent.
    struct Canned {
        reply: Result<Vec<u8>, fn(MemberId) -> TransportError>,
        sent: Mutex<Vec<(MemberId, Vec<u8>, Duration)>>,
    }

    impl RaftTransport for Canned {
        fn call(
            &self,
            target: MemberId,
            payload: Vec<u8>,
            timeout: Duration,
        ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, TransportError>> + Send + '_>> {
            self.sent.lock().unwrap().push((target, payload, timeout));
            let reply = self.reply.clone().map_err(|make| make(target));
            Box::pin(async move { reply })
        }
    }

    fn client(reply: Result<Vec<u8>, fn(MemberId) -> TransportError>) -> (PeerClient, Arc<Canned>) {
        let canned = Arc::new(Canned {
            reply,
            sent: Mutex::new(Vec::new()),
        });
        let client = PeerClient {
            me: 1,
            target: 2,
            transport: canned.clone(),
        };
        (client, canned)
    }

    fn vote_request() -> VoteRequest<MemberId> {
        VoteRequest::new(
            Vote::new(4, 1),
            Some(LogId::new(CommittedLeaderId::new(3, 1), 9)),
        )
    }

    fn reply_bytes(reply: &RaftReply) -> Vec<u8> {
        postcard::to_stdvec(reply).unwrap()
    }

    #[test]
    fn requests_survive_the_wire() {
        let mut nodes = std::collections::BTreeMap::new();
        nodes.insert(
            1,
            MemberInfo {
                name: "a".into(),
                cluster_addr: "10.0.0.1:7701".into(),
                ..MemberInfo::default()
            },
        );
        let membership = Membership::new(vec![[1].into()], nodes);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), 5),
            payload: EntryPayload::Membership(membership.clone()),
        };
        let rpc = RaftRpc {
            to: 2,
            call: RaftCall::AppendEntries(AppendEntriesRequest {
                vote: Vote::new_committed(2, 1),
                prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 4)),
                entries: vec![entry],
                leader_commit: None,
            }),
        };
        let bytes = postcard::to_stdvec(&rpc).unwrap();
        let back: RaftRpc = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.to, 2);
        let RaftCall::AppendEntries(req) = back.call else {
            panic!("wrong call kind");
        };
        assert_eq!(req.vote, Vote::new_committed(2, 1));
        assert_eq!(req.entries.len(), 1);
        assert_eq!(req.entries[0].payload, EntryPayload::Membership(membership));
    }

    #[tokio::test]
    async fn vote_goes_to_the_target_and_comes_back() {
        let resp = VoteResponse {
            vote: Vote::new(4, 1),
            vote_granted: true,
            last_log_id: None,
        };
        let (mut client, canned) = client(Ok(reply_bytes(&RaftReply::Vote(resp.clone()))));
        let option = RPCOption::new(Duration::from_millis(300));
        let got = client.vote(vote_request(), option).await.unwrap();
        assert_eq!(got, resp);

        let sent = canned.sent.lock().unwrap();
        let (target, payload, timeout) = &sent[0];
        assert_eq!((*target, *timeout), (2, Duration::from_millis(300)));
        let rpc: RaftRpc = postcard::from_bytes(payload).unwrap();
        assert_eq!(rpc.to, 2);
        assert!(matches!(rpc.call, RaftCall::Vote(req) if req == vote_request()));
    }

    #[tokio::test]
    async fn failures_map_to_what_openraft_expects() {
        let option = || RPCOption::new(Duration::from_millis(100));

        let (mut c, _) = client(Err(TransportError::Unreachable));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");

        let (mut c, _) = client(Err(TransportError::Timeout));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(
            matches!(&e, RPCError::Timeout(t) if t.target == 2 && t.id == 1),
            "{e}"
        );

        // A stopped peer raft and a misrouted request both mean "back off".
        let stopped = reply_bytes(&RaftReply::Unavailable("raft stopped".into()));
        let (mut c, _) = client(Ok(stopped));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");

        let wrong = reply_bytes(&RaftReply::WrongMember {
            addressed: 2,
            actual: 3,
        });
        let (mut c, _) = client(Ok(wrong));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Unreachable(_)), "{e}");

        let (mut c, _) = client(Ok(vec![0xff, 0xff, 0xff]));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e}");

        // A reply of the wrong kind is not taken for an answer.
        let snapshot_reply = reply_bytes(&RaftReply::InstallSnapshot(SnapshotResponse::new(
            Vote::new(1, 1),
        )));
        let (mut c, _) = client(Ok(snapshot_reply));
        let e = c.vote(vote_request(), option()).await.unwrap_err();
        assert!(matches!(e, RPCError::Network(_)), "{e}");
    }
}
