//! The invalidation protocol: a cache entry changed here, every member that
//! is up drops its copy and acknowledges, and the caller waits (boundedly)
//! for all of them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ClusterNode, lock};
use crate::failure::PeerState;
use crate::transport::Link;
use crate::transport::frame::Frame;

/// How long `invalidate` waits for acknowledgements.
const INVALIDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Invalidations waiting for acknowledgements: for each id, how many are
/// still missing and whom to tell when none is.
#[derive(Default)]
pub(super) struct Invalidations {
    waiting: std::sync::Mutex<HashMap<u64, (usize, Option<oneshot::Sender<()>>)>>,
    next: AtomicU64,
}

impl Invalidations {
    /// One peer acknowledged `id`.
    pub(super) fn acknowledged(&self, id: u64) {
        let mut waiting = lock(&self.waiting);
        if let Some((remaining, sender)) = waiting.get_mut(&id) {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(());
                }
                waiting.remove(&id);
            }
        }
    }
}

impl ClusterNode {
    /// Tells every member that is up to drop `key` from `cache`, and waits
    /// for their acknowledgements.
    pub(super) async fn invalidate_everywhere(&self, cache: &'static str, key: String) {
        let up: Vec<Arc<Link>> = {
            let detector = lock(&self.detector);
            self.transport
                .links()
                .into_iter()
                .filter(|link| detector.state(link.node()) == Some(PeerState::Up))
                .collect()
        };
        if up.is_empty() {
            return;
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        let id = self.invalidations.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (done, wait) = oneshot::channel();
        lock(&self.invalidations.waiting).insert(id, (up.len(), Some(done)));
        let mut sent = 0;
        for link in &up {
            let frame = Frame::Invalidate {
                id,
                cache: cache.to_owned(),
                key: key.clone(),
            };
            if link.send(frame).is_ok() {
                sent += 1;
            }
        }
        if sent < up.len() {
            let mut waiting = lock(&self.invalidations.waiting);
            if let Some((remaining, _)) = waiting.get_mut(&id) {
                *remaining = remaining.saturating_sub(up.len() - sent);
            }
            if sent == 0 {
                waiting.remove(&id);
                return;
            }
        }
        if tokio::time::timeout(INVALIDATE_TIMEOUT, wait)
            .await
            .is_err()
        {
            self.counters
                .invalidation_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(cache, %key, "a peer did not acknowledge a cache invalidation in time");
            lock(&self.invalidations.waiting).remove(&id);
        }
    }

    /// A peer asks this member to drop a cache entry.
    pub(super) async fn on_invalidate(&self, link: &Link, id: u64, cache: String, key: String) {
        if let Some(delivery) = self.delivery() {
            delivery.invalidate(&cache, &key).await;
        }
        let _ = link.send(Frame::InvalidateAck { id });
    }
}
