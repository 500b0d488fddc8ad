//! What the node does with each frame a peer sends, and with links coming
//! up, going down, or giving back what the peer did not acknowledge.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use starling_core::cluster::{BoxFuture, KickReason, NodeId, Reached};
use starling_core::jid::{BareJid, FullJid};

use super::peer_work::PeerWork;
use super::{ClusterNode, lock};
use crate::transport::frame::{DirectoryMessage, Frame};
use crate::transport::{FrameHandler, HandedBack, Link, Transport};

impl FrameHandler for ClusterNode {
    fn on_frame<'a>(&'a self, link: &'a Arc<Link>, frame: Frame) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let node = link.node();
            match frame {
                Frame::Heartbeat => {}
                Frame::Status(status) => {
                    lock(&self.peer_status).insert(node.0, status);
                }
                Frame::Envelope(wire) => {
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    match (super::to_envelope(wire), self.delivery()) {
                        (Some(envelope), Some(delivery)) => delivery.deliver(envelope, node).await,
                        (None, _) => {
                            tracing::warn!(peer = %link.peer.name, "stanza with unreadable addresses from peer")
                        }
                        (_, None) => {
                            tracing::error!("stanza from a peer before the server was ready")
                        }
                    }
                }
                Frame::Directory(DirectoryMessage::ResyncRequest) => {
                    self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
                    self.send_snapshot(link);
                }
                Frame::Directory(message) => {
                    let applied = lock(&self.directory).apply(node, message);
                    if applied.resync {
                        let _ = link.send(Frame::Directory(DirectoryMessage::ResyncRequest));
                    }
                    // Beside the reader, in order (`peer_work.rs`).
                    if !applied.lost.is_empty() {
                        let sessions = applied.lost;
                        self.peer_work(
                            node,
                            PeerWork::Lost {
                                sessions,
                                then: None,
                            },
                        );
                    }
                    // Both kinds of session may be unknown to contacts here.
                    let mut unknown = applied.regained;
                    unknown.extend(applied.met);
                    if !unknown.is_empty() {
                        self.peer_work(node, PeerWork::Regained(unknown));
                    }
                }
                Frame::RaftRequest { id, payload } => {
                    if !self.answers_raft_from(node.0) {
                        tracing::debug!(peer = %link.peer.name, "raft request from outside this node's cluster ignored");
                        return;
                    }
                    if let Some(membership) = self.membership() {
                        let link = link.clone();
                        tokio::spawn(async move {
                            let payload = membership.handle(&payload).await;
                            let _ = link.send(Frame::RaftReply { id, payload });
                        });
                    }
                }
                Frame::HandoverRequest { id, request } => match self.delivery().cloned() {
                    // Beside the link's reader: the holder of the session
                    // may take a moment to let it go.
                    Some(delivery) => {
                        let link = link.clone();
                        let transport = self.transport.clone();
                        tokio::spawn(async move {
                            let reply = delivery.handover(request, node).await;
                            if !send_handover_reply(&transport, &link, id, reply.clone()).await {
                                tracing::warn!(peer = %link.peer.name, "session handover reply not sent; the peer's resumption fails and the session ends here");
                                delivery.handover_abandoned(reply).await;
                            }
                        });
                    }
                    None => tracing::error!("session handover request before the server was ready"),
                },
                // Only a reply nobody waits for reaches here (the transport
                // completes the others).
                Frame::HandoverReply { reply, .. } => match self.delivery().cloned() {
                    Some(delivery) => {
                        tracing::warn!(peer = %link.peer.name, "a session handover came after the resumption gave up; the session ends");
                        tokio::spawn(async move { delivery.handover_abandoned(reply).await });
                    }
                    None => tracing::error!("session handover reply before the server was ready"),
                },
                Frame::Join { info } => self.on_join(info),
                Frame::Leave => {
                    // Before it goes: what it sent arrived, it need not
                    // route it again.
                    link.acknowledge();
                    let transition = lock(&self.detector).leaving(node, Instant::now());
                    if let Some(transition) = transition {
                        self.on_transition(transition).await;
                    }
                    self.on_leave(node);
                }
                Frame::Kick { jid, admin } => match (FullJid::new(&jid), self.delivery()) {
                    (Ok(jid), Some(delivery)) => delivery.kick(
                        jid,
                        if admin {
                            KickReason::Admin
                        } else {
                            KickReason::Conflict
                        },
                    ),
                    _ => tracing::warn!(%jid, "kick for an unreadable JID"),
                },
                Frame::Invalidate { id, cache, key } => {
                    self.on_invalidate(link, id, cache, key).await;
                }
                Frame::InvalidateAck { id } => self.invalidations.acknowledged(id),
                // Beside the reader: delivering what is stored reads the
                // store, and a member that regains hundreds of sessions
                // sends one of these for each; awaited here, they kept
                // heartbeats unread for seconds and the link was given up
                // again after every partition.
                Frame::OfflineStored { user } => {
                    if let (Ok(user), Some(delivery)) = (BareJid::new(&user), self.delivery()) {
                        let delivery = delivery.clone();
                        tokio::spawn(async move { delivery.offline_stored(user).await });
                    }
                }
                Frame::Interest(message) => self.on_interest(link, message),
                Frame::InterestAck { seq } => self.on_interest_ack(link, seq),
                Frame::PubSub(event) => {
                    self.counters
                        .pubsub_received
                        .fetch_add(1, Ordering::Relaxed);
                    match self.delivery() {
                        Some(delivery) => delivery.pubsub_event(event, node),
                        None => {
                            tracing::error!("pub/sub event from a peer before the server was ready")
                        }
                    }
                }
                Frame::Hello { .. }
                | Frame::Auth { .. }
                | Frame::Goodbye { .. }
                | Frame::RaftReply { .. }
                | Frame::Received { .. } => {}
            }
        })
    }

    fn on_link_up(&self, link: &Arc<Link>) {
        lock(&self.peers).insert(link.peer.node_id, link.peer.clone());
        let transition = lock(&self.detector).heard(link.node(), Instant::now());
        self.send_snapshot(link);
        self.interest_link_up(link);
        let _ = link.send(Frame::Status(self.own_status()));
        if let Some(transition) = transition {
            let name = link.peer.name.clone();
            self.record_event(transition.node, &name, transition.to);
            tracing::info!(peer = %name, node = transition.node.0, "cluster member is up");
            self.peer_work(transition.node, PeerWork::Up);
        }
    }

    fn on_undelivered(&self, peer: NodeId, envelopes: HandedBack) -> BoxFuture<'static, ()> {
        let name = lock(&self.peers)
            .get(&peer.0)
            .map(|info| info.name.clone())
            .unwrap_or_default();
        tracing::info!(
            peer = %name,
            node = peer.0,
            unconfirmed = envelopes.unconfirmed.len(),
            unsent = envelopes.unsent.len(),
            "routing again what the peer did not acknowledge"
        );
        let Some(delivery) = self.delivery().cloned() else {
            return Box::pin(async {});
        };
        // Oldest first: every unconfirmed envelope is older than every unsent one.
        let envelopes: Vec<_> = (envelopes.unconfirmed.into_iter())
            .map(|wire| (wire, Reached::Maybe))
            .chain(
                envelopes
                    .unsent
                    .into_iter()
                    .map(|wire| (wire, Reached::Never)),
            )
            .filter_map(|(wire, reached)| Some((super::to_envelope(wire)?, reached)))
            .collect();
        // Called now, run later: the senders are noted at once.
        delivery.undelivered(envelopes)
    }

    fn on_link_down(&self, link: &Arc<Link>, reason: &str) {
        tracing::debug!(peer = %link.peer.name, %reason, "link closed; the failure detector decides");
        lock(&self.peer_status).remove(&link.peer.node_id);
        self.interest_link_down(link.node());
    }
}

/// How long a handover reply may wait for room in a busy link's queue: the
/// asking member waits longer than this for it.
const HANDOVER_REPLY_PATIENCE: Duration = Duration::from_secs(5);

/// Sends a handover reply on the link the request came by, or on the link
/// that replaced it, waiting for room in the queue rather than dropping it:
/// the reply carries a session that is bound nowhere until it arrives.
async fn send_handover_reply(transport: &Transport, link: &Link, id: u64, reply: Bytes) -> bool {
    let frame = || Frame::HandoverReply {
        id,
        reply: reply.clone(),
    };
    if link
        .send_waiting(frame(), HANDOVER_REPLY_PATIENCE)
        .await
        .is_ok()
    {
        return true;
    }
    match transport.link(link.node().0) {
        Some(current) if !std::ptr::eq(current.as_ref(), link) => current
            .send_waiting(frame(), HANDOVER_REPLY_PATIENCE)
            .await
            .is_ok(),
        _ => false,
    }
}
