//! The server's [`Cluster`] seam, implemented by the node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use starling_core::cluster::{
    BoxFuture, Cluster, ClusterStatus, Envelope, ForwardError, KickReason, NodeId, PubSubEvent,
    ResourceEntry, RetryPolicy, SessionChange,
};
use starling_core::jid::{BareJid, FullJid};

use super::{ClusterNode, lock};
use crate::transport::frame::{Frame, WireEnvelope};

impl ClusterNode {
    fn count_forward(&self, result: Result<(), ForwardError>) -> Result<(), ForwardError> {
        let counter = if result.is_ok() {
            &self.counters.forwarded
        } else {
            &self.counters.forward_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }
}

fn to_wire(envelope: Envelope) -> WireEnvelope {
    WireEnvelope {
        from: envelope.from.to_string(),
        to: envelope.to.to_string(),
        kind: envelope.kind.into(),
        xml: envelope.xml,
        hops: envelope.hops,
        // Numbered by the pair it is sent through.
        seq: 0,
    }
}

impl Cluster for ClusterNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn announce(&self, change: SessionChange) {
        lock(&self.directory).record(&change);
        // Sent at once: a client told "bound" may be messaged from another
        // node within a millisecond, and that node should already know.
        self.flush_now();
    }

    fn locate(&self, jid: &FullJid) -> Option<NodeId> {
        lock(&self.directory).locate(jid)
    }

    fn remote_resources(&self, jid: &BareJid) -> Vec<ResourceEntry> {
        lock(&self.directory).resources(jid)
    }

    fn has_remote_sessions(&self) -> bool {
        lock(&self.directory).remote_sessions() > 0
    }

    fn forward(&self, node: NodeId, envelope: Envelope) -> Result<(), ForwardError> {
        // Session changes recorded before this stanza reach the peer first:
        // whoever receives a presence or a message from a session that just
        // bound or changed priority can route back to it by the new state.
        self.flush_now();
        let result = self
            .transport
            .send(node, Frame::Envelope(to_wire(envelope)));
        self.count_forward(result)
    }

    fn forward_waiting(
        &self,
        node: NodeId,
        envelope: Envelope,
        patience: Duration,
    ) -> BoxFuture<'_, Result<(), ForwardError>> {
        Box::pin(async move {
            self.flush_now();
            let result = self
                .transport
                .send_waiting(node, to_wire(envelope), patience)
                .await;
            self.count_forward(result)
        })
    }

    fn miss_retry(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.config.lookup_attempts,
            window: Duration::from_millis(self.config.lookup_window_ms),
        }
    }

    fn kick(&self, node: NodeId, jid: &FullJid, reason: KickReason) {
        let _ = self.transport.send(
            node,
            Frame::Kick {
                jid: jid.to_string(),
                admin: reason == KickReason::Admin,
            },
        );
    }

    fn invalidate(&self, cache: &'static str, key: String) -> BoxFuture<'_, ()> {
        Box::pin(self.invalidate_everywhere(cache, key))
    }

    fn status(&self) -> ClusterStatus {
        ClusterNode::status(self)
    }

    fn pubsub_interest(&self, node: &str, interested: bool) {
        self.set_interest(node, interested);
    }

    fn pubsub_interest_applied(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.interest_applied())
    }

    fn pubsub_interested(&self, node: &str) -> Vec<NodeId> {
        lock(&self.interest).sets.interested(node)
    }

    fn pubsub_send(&self, node: NodeId, event: PubSubEvent) -> Result<(), ForwardError> {
        let result = self.transport.send(node, Frame::PubSub(event));
        if result.is_ok() {
            self.counters.pubsub_sent.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn handover(
        &self,
        node: NodeId,
        request: bytes::Bytes,
        patience: Duration,
    ) -> BoxFuture<'_, Result<bytes::Bytes, ForwardError>> {
        let call = self
            .transport
            .call_with(node.0, patience, move |id| Frame::HandoverRequest {
                id,
                request,
            });
        Box::pin(async move { call.await.map(bytes::Bytes::from) })
    }

    fn offline_stored(&self, node: NodeId, user: &BareJid) {
        let _ = self.transport.send(
            node,
            Frame::OfflineStored {
                user: user.to_string(),
            },
        );
    }
}
