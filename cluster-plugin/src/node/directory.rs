//! Replicating the session directory: deltas to every link, a snapshot to
//! a new link or on request.

use std::sync::atomic::Ordering;

use super::{ClusterNode, lock};
use crate::transport::Link;
use crate::transport::frame::Frame;

impl ClusterNode {
    /// Sends batched directory changes to every peer.
    pub(super) fn flush_now(&self) {
        let mut directory = lock(&self.directory);
        let Some(delta) = directory.take_delta() else {
            return;
        };
        // Enqueued under the directory lock, so a snapshot sent to a new
        // link is never overtaken by a delta it already contains.
        for link in self.transport.links() {
            if link.send(Frame::Directory(delta.clone())).is_err() {
                // The peer will see a sequence gap and ask for a snapshot.
                tracing::warn!(peer = %link.peer.name, "directory delta not queued");
            }
        }
        self.counters.deltas_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn send_snapshot(&self, link: &Link) {
        let directory = lock(&self.directory);
        for message in directory.snapshot() {
            if link.send(Frame::Directory(message)).is_err() {
                tracing::warn!(peer = %link.peer.name, "directory snapshot not queued");
                return;
            }
        }
        self.counters.snapshots_sent.fetch_add(1, Ordering::Relaxed);
    }
}
