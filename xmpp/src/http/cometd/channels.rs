//! Which local clients subscribed to which channel, and the one feed per
//! channel that fills their queues.
//!
//! A channel exists here while it has a local subscriber. The first
//! subscriber starts the channel's feed (the pub/sub bridge's watch task);
//! the last one leaving stops it, so this node stops receiving the
//! channel's events from the cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::AbortHandle;

use super::clients::{Client, ClientId};

#[derive(Default)]
pub(crate) struct Channels {
    map: Mutex<HashMap<String, Channel>>,
}

struct Channel {
    subscribers: HashMap<ClientId, Arc<Client>>,
    /// The task feeding this channel; aborted with the last subscriber.
    feed: Option<AbortHandle>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.take() {
            feed.abort();
        }
    }
}

impl Channels {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `client` to `channel`; `start_feed` runs (under the lock, so
    /// exactly once) when the channel gains its first subscriber.
    pub(crate) fn subscribe(
        &self,
        channel: &str,
        client: &Arc<Client>,
        start_feed: impl FnOnce() -> AbortHandle,
    ) {
        let mut map = self.map();
        let entry = map.entry(channel.to_owned()).or_insert_with(|| Channel {
            subscribers: HashMap::new(),
            feed: None,
        });
        if entry.feed.is_none() {
            entry.feed = Some(start_feed());
        }
        entry.subscribers.insert(client.id.clone(), client.clone());
    }

    /// Removes `client` from `channel`; the channel's feed stops with its
    /// last subscriber.
    pub(crate) fn unsubscribe(&self, channel: &str, client: &str) {
        let mut map = self.map();
        if let Some(entry) = map.get_mut(channel) {
            entry.subscribers.remove(client);
            if entry.subscribers.is_empty() {
                map.remove(channel);
            }
        }
    }

    /// The local subscribers of `channel`, to deliver an event to.
    pub(crate) fn subscribers(&self, channel: &str) -> Vec<Arc<Client>> {
        self.map()
            .get(channel)
            .map(|entry| entry.subscribers.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Channels with at least one local subscriber.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::clients::{Capacity, Clients, Identity};
    use super::*;

    fn idle_feed() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    #[tokio::test]
    async fn the_feed_runs_from_the_first_subscriber_to_the_last() {
        let room = Capacity {
            total: 10,
            per_ip: 10,
        };
        let clients = Clients::new(Duration::from_secs(10), 10, room);
        let channels = Channels::default();
        let here = std::net::IpAddr::from([127, 0, 0, 1]);
        let a = clients.create(Identity::Anonymous, false, here).unwrap();
        let b = clients.create(Identity::Anonymous, false, here).unwrap();
        let mut started = Vec::new();
        channels.subscribe("/pubsub/x", &a, || {
            let feed = idle_feed();
            started.push(feed.clone());
            feed
        });
        channels.subscribe("/pubsub/x", &b, || unreachable!("one feed per channel"));
        assert_eq!(channels.subscribers("/pubsub/x").len(), 2);
        channels.unsubscribe("/pubsub/x", &a.id);
        tokio::task::yield_now().await;
        assert!(!started[0].is_finished(), "b still listens");
        channels.unsubscribe("/pubsub/x", &b.id);
        tokio::task::yield_now().await;
        assert!(
            started[0].is_finished(),
            "feed stopped with the last subscriber"
        );
        assert_eq!(channels.len(), 0);
        assert!(channels.subscribers("/pubsub/x").is_empty());
    }
}
