//! Notifications for subscribers the session directory does not know yet.
//!
//! The directory is replicated without acknowledgements, so a session that
//! logged in on another member a moment ago may not be in this member's
//! replica when an event is published. Such a subscriber is looked up again
//! as the cluster's miss-retry policy says (as a message to it would be),
//! and only then handled as offline: no delivery, the item stays stored.
//! While a lookup is being retried, later events of the same node for that
//! subscriber wait behind it in a lane ([`Waiting`]), so nothing overtakes.
//!
//! A retry round runs under the node's order lock, like every fan-out, and
//! sends each event once to each member where it found subscribers' sessions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use starling_core::cluster::{NodeId, PubSubEvent, PubSubEventKind, RetryPolicy};
use starling_core::jid::{FullJid, Jid};
use starling_core::xml::Element;

use super::PubSub;
use super::notify::{Session, sessions_of};
use super::waiting::{Queued, Waiting};
use crate::metrics::incr;
use crate::server::Server;

/// Most lanes open at once on this member; a subscriber missed beyond that
/// is handled as offline at once.
const MAX_LANES: usize = 50_000;
/// Most notifications waiting in one lane; later ones are dropped.
const PER_LANE: usize = 256;

/// One event's notification, shared by every lane it waits in.
#[derive(Debug)]
pub(super) struct Notice {
    /// Publish order across the lanes of a node.
    seq: u64,
    /// The `<message/>` without a `to`.
    template: Element,
}

/// A subscriber being looked up again: its JID as stored (the lane's key)
/// and parsed.
pub(super) type Missed = (String, Jid);

/// The lanes of one order-lock stripe.
pub(super) type Lanes = Waiting<Arc<Notice>>;

/// The lanes of this member's pub/sub service, striped like the order
/// locks: only a holder of a node's order lock touches its stripe, so the
/// stripe's mutex never waits.
#[derive(Debug)]
pub(super) struct Late {
    stripes: Vec<Mutex<Lanes>>,
    /// Open lanes, readable without a lock: 0 on the hot path.
    lanes: AtomicUsize,
    next_seq: AtomicU64,
}

impl Late {
    pub(super) fn new(stripes: usize) -> Late {
        Late {
            stripes: (0..stripes)
                .map(|_| Mutex::new(Waiting::new(PER_LANE)))
                .collect(),
            lanes: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
        }
    }

    /// The lanes of order-lock stripe `stripe`; the caller holds its lock.
    fn stripe(&self, stripe: usize) -> MutexGuard<'_, Lanes> {
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn notice(&self, template: &Element) -> Arc<Notice> {
        Arc::new(Notice {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            template: template.clone(),
        })
    }

    fn close(&self, lanes: &mut Lanes, node: &str, subscriber: &str) -> VecDeque<Arc<Notice>> {
        let lane = lanes.close(node, subscriber);
        if !lane.is_empty() {
            self.lanes.fetch_sub(1, Ordering::Relaxed);
        }
        lane
    }
}

impl PubSub {
    /// Subscribers (per pub/sub node) whose notifications wait for a
    /// repeated lookup now.
    pub fn waiting_subscribers(&self) -> usize {
        self.late.lanes.load(Ordering::Relaxed)
    }

    /// The lanes of `node` when a subscriber of it waits for a retry, for
    /// one event's fan-out; the caller holds the node's order lock. While
    /// nobody waits anywhere this is one atomic load.
    pub(super) fn lanes_of(&self, node: &str) -> Option<MutexGuard<'_, Lanes>> {
        if self.late.lanes.load(Ordering::Relaxed) == 0 {
            return None;
        }
        Some(self.late.stripe(self.stripe(node))).filter(|lanes| lanes.has_node(node))
    }

    /// Queues the event behind the subscriber's open lane, if it has one;
    /// `notice` is made on first use. True when the event was taken.
    pub(super) fn queue_behind(
        &self,
        lanes: &mut Lanes,
        node: &str,
        subscriber: &str,
        notice: &mut Option<Arc<Notice>>,
        template: &Element,
    ) -> bool {
        if !lanes.is_waiting(node, subscriber) {
            return false;
        }
        let item = notice
            .get_or_insert_with(|| self.late.notice(template))
            .clone();
        if let Ok(queued) = lanes.queue_behind(node, subscriber, item) {
            self.overflowed(node, subscriber, queued);
        }
        true
    }

    /// Opens lanes for the subscribers this event found nowhere and starts
    /// looking them up again; the caller holds the node's order lock.
    pub(super) fn retry_missed(
        &self,
        node: &str,
        notice: Arc<Notice>,
        missed: Vec<Missed>,
        policy: RetryPolicy,
    ) {
        let mut retried = Vec::with_capacity(missed.len());
        {
            let mut lanes = self.late.stripe(self.stripe(node));
            for (subscriber, jid) in missed {
                if !lanes.is_waiting(node, &subscriber)
                    && self.late.lanes.load(Ordering::Relaxed) >= MAX_LANES
                {
                    incr(&self.counters.late_misses);
                    tracing::warn!(node, %subscriber, lanes = MAX_LANES, "too many subscribers wait for a directory lookup; notification handled as for an offline subscriber");
                    continue;
                }
                match lanes.open(node, &subscriber, notice.clone()) {
                    None => {
                        self.late.lanes.fetch_add(1, Ordering::Relaxed);
                        retried.push((subscriber, jid));
                    }
                    // A second subscription of the same JID in this event.
                    Some(queued) => self.overflowed(node, &subscriber, queued),
                }
            }
        }
        if retried.is_empty() {
            return;
        }
        let server = self.server.clone();
        let node = node.to_owned();
        tokio::spawn(retry(server, node, retried, policy));
    }

    fn overflowed(&self, node: &str, subscriber: &str, queued: Queued) {
        if let Queued::Overflow { first } = queued {
            incr(&self.counters.late_overflow);
            if first {
                tracing::warn!(node, %subscriber, limit = PER_LANE, "too many notifications wait for one subscriber's directory lookup; later ones dropped (items stay stored)");
            }
        }
    }

    /// Delivers the lanes of the subscribers a retry round found, in
    /// publish order: each event to the sessions here, and once to each
    /// other member with the sessions there.
    fn flush(
        &self,
        server: &Server,
        node: &str,
        found: Vec<(VecDeque<Arc<Notice>>, Vec<Session>)>,
    ) {
        let mut events: BTreeMap<u64, Flush> = BTreeMap::new();
        for (lane, sessions) in found {
            for notice in lane {
                let flush = events.entry(notice.seq).or_insert_with(|| Flush {
                    notice: notice.clone(),
                    here: Vec::new(),
                    there: BTreeMap::new(),
                });
                for session in &sessions {
                    match session {
                        Session::Here(jid) => flush.here.push(jid.clone()),
                        Session::There(jid, member) => flush
                            .there
                            .entry(*member)
                            .or_default()
                            .push(jid.to_string()),
                    }
                }
            }
        }
        for flush in events.into_values() {
            let template = &flush.notice.template;
            for jid in &flush.here {
                self.send_local(server, template, jid);
            }
            let mut late = flush.here.len();
            if flush.there.is_empty() {
                self.counters
                    .late_delivered
                    .fetch_add(late as u64, Ordering::Relaxed);
                continue;
            }
            let bytes = Bytes::from(template.to_bytes());
            for (member, recipients) in flush.there {
                late += recipients.len();
                let event = PubSubEvent {
                    node: node.to_owned(),
                    kind: PubSubEventKind::Notification,
                    notification: bytes.clone(),
                    recipients,
                };
                self.send_to_member(node, member, event);
            }
            self.counters
                .late_delivered
                .fetch_add(late as u64, Ordering::Relaxed);
        }
    }
}

/// One event of a flush and where it goes.
struct Flush {
    notice: Arc<Notice>,
    here: Vec<FullJid>,
    there: BTreeMap<NodeId, Vec<String>>,
}

/// Looks the missed subscribers up again as `policy` says; delivers the
/// lanes of those found, and gives up the others after the last attempt.
async fn retry(server: Weak<Server>, node: String, mut missed: Vec<Missed>, policy: RetryPolicy) {
    for attempt in 0..policy.attempts {
        tokio::time::sleep(policy.delay(attempt)).await;
        let Some(server) = server.upgrade() else {
            return;
        };
        let pubsub = server.pubsub.clone();
        let _ordered = pubsub.order_lock(&node).lock().await;
        let last = attempt + 1 == policy.attempts;
        pubsub
            .counters
            .late_retries
            .fetch_add(missed.len() as u64, Ordering::Relaxed);
        let mut found = Vec::new();
        {
            let mut lanes = pubsub.late.stripe(pubsub.stripe(&node));
            missed.retain(|(subscriber, jid)| {
                let sessions = sessions_of(&server, jid);
                if !sessions.is_empty() {
                    let lane = pubsub.late.close(&mut lanes, &node, subscriber);
                    found.push((lane, sessions));
                    return false;
                }
                if !last {
                    return true;
                }
                let lost = pubsub.late.close(&mut lanes, &node, subscriber).len();
                pubsub
                    .counters
                    .late_misses
                    .fetch_add(lost as u64, Ordering::Relaxed);
                tracing::debug!(node, %subscriber, notifications = lost, "subscriber not online on any member; not notified (items stay stored)");
                false
            });
        }
        pubsub.flush(&server, &node, found);
        if missed.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The retry driver on an in-process node whose cluster is a directory
    //! the test fills in by hand: sessions "arrive" when the test says.

    use std::sync::Mutex;
    use std::time::Duration;

    use starling_core::cluster::{
        BoxFuture, Cluster, ClusterStatus, Envelope, ForwardError, KickReason, LocalOnly,
        ResourceEntry, SessionChange,
    };
    use starling_core::config::Config;
    use starling_core::jid::BareJid;
    use starling_core::shutdown::Shutdown;

    use super::*;
    use crate::pubsub::NodeEvent;
    use crate::pubsub::config::NodeConfig;
    use crate::storage::StoredSubscription;

    /// A directory replica the test updates, and the events sent to members.
    struct Directory {
        entries: Mutex<Vec<ResourceEntry>>,
        sent: Mutex<Vec<(NodeId, PubSubEvent)>>,
        policy: RetryPolicy,
        inner: LocalOnly,
    }

    impl Directory {
        fn new(policy: RetryPolicy) -> Directory {
            Directory {
                entries: Mutex::new(Vec::new()),
                sent: Mutex::new(Vec::new()),
                policy,
                inner: LocalOnly::default(),
            }
        }

        fn arrive(&self, jid: &str, member: u64) {
            self.entries.lock().unwrap().push(ResourceEntry {
                jid: FullJid::new(jid).unwrap(),
                node: NodeId(member),
                priority: 0,
                available: true,
            });
        }

        /// (member, kind is late, item ids in the notification, recipients)
        fn sent(&self) -> Vec<(u64, bool, String, Vec<String>)> {
            self.sent
                .lock()
                .unwrap()
                .iter()
                .map(|(member, event)| {
                    let xml = String::from_utf8_lossy(&event.notification).into_owned();
                    let id = xml
                        .split("id=\"")
                        .filter_map(|rest| rest.split('"').next())
                        .find(|id| id.starts_with("item-"))
                        .unwrap_or_default()
                        .to_owned();
                    (
                        member.0,
                        event.kind == PubSubEventKind::Notification,
                        id,
                        event.recipients.clone(),
                    )
                })
                .collect()
        }
    }

    impl Cluster for Directory {
        fn node_id(&self) -> NodeId {
            NodeId(1)
        }
        fn ready(&self) -> bool {
            true
        }
        fn announce(&self, _change: SessionChange) {}
        fn locate(&self, jid: &FullJid) -> Option<NodeId> {
            let entries = self.entries.lock().unwrap();
            entries.iter().find(|e| &e.jid == jid).map(|e| e.node)
        }
        fn remote_resources(&self, jid: &BareJid) -> Vec<ResourceEntry> {
            let entries = self.entries.lock().unwrap();
            entries
                .iter()
                .filter(|e| &e.jid.to_bare() == jid)
                .cloned()
                .collect()
        }
        fn has_remote_sessions(&self) -> bool {
            !self.entries.lock().unwrap().is_empty()
        }
        fn forward(&self, node: NodeId, envelope: Envelope) -> Result<(), ForwardError> {
            self.inner.forward(node, envelope)
        }
        fn miss_retry(&self) -> RetryPolicy {
            self.policy
        }
        fn kick(&self, _node: NodeId, _jid: &FullJid, _reason: KickReason) {}
        fn invalidate(&self, cache: &'static str, key: String) -> BoxFuture<'_, ()> {
            self.inner.invalidate(cache, key)
        }
        fn offline_stored(&self, _node: NodeId, _user: &BareJid) {}
        fn status(&self) -> ClusterStatus {
            self.inner.status()
        }
        fn pubsub_send(&self, node: NodeId, event: PubSubEvent) -> Result<(), ForwardError> {
            self.sent.lock().unwrap().push((node, event));
            Ok(())
        }
    }

    struct Node {
        server: Arc<Server>,
        directory: Arc<Directory>,
        _dir: tempfile::TempDir,
    }

    async fn node(policy: RetryPolicy) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        let directory = Arc::new(Directory::new(policy));
        let server = Server::new(config, directory.clone(), Shutdown::new())
            .await
            .unwrap();
        Node {
            server,
            directory,
            _dir: dir,
        }
    }

    fn subscription(jid: &str) -> StoredSubscription {
        StoredSubscription {
            node: "feed".to_owned(),
            jid: jid.to_owned(),
            subid: jid.to_owned(),
            state: "subscribed".to_owned(),
            deliver: true,
        }
    }

    /// Publishes item `id` on "feed" to `subscriptions`, as a publish
    /// would: under the node's order lock.
    async fn publish(server: &Server, id: &str, subscriptions: &[StoredSubscription]) {
        let pubsub = &server.pubsub;
        let _ordered = pubsub.order_lock("feed").lock().await;
        let event = NodeEvent::Published {
            node: "feed".to_owned(),
            item_id: id.to_owned(),
            publisher: None,
            payload: Element::new("entry", "urn:t"),
        };
        pubsub.notify_to(
            "feed",
            &NodeConfig::default(),
            Arc::new(event),
            None,
            subscriptions,
        );
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    const POLICY: RetryPolicy = RetryPolicy {
        attempts: 5,
        window: Duration::from_secs(2),
    };

    #[tokio::test]
    async fn late_sessions_get_every_event_in_order_once_per_member() {
        let node = node(POLICY).await;
        let (server, directory) = (&node.server, &node.directory);
        let counters = &server.pubsub.counters;
        directory.arrive("old@localhost/r", 2);
        let subscriptions = [
            subscription("old@localhost"),
            subscription("new1@localhost"),
            subscription("new2@localhost/phone"),
        ];
        publish(server, "item-1", &subscriptions).await;
        // One round looked for both newcomers and found neither.
        until("a first retry round", || load(&counters.late_retries) >= 2).await;
        {
            // Later events queue behind e1 even once the sessions are known.
            let _held = server.pubsub.order_lock("feed").lock().await;
            directory.arrive("new1@localhost/a", 3);
            directory.arrive("new2@localhost/phone", 3);
        }
        publish(server, "item-2", &subscriptions).await;
        publish(server, "item-3", &subscriptions).await;
        until("the late flush", || load(&counters.late_delivered) == 6).await;
        publish(server, "item-4", &subscriptions).await;

        let late = |id: &str| {
            (
                3,
                true,
                id.to_owned(),
                vec![
                    "new1@localhost/a".to_owned(),
                    "new2@localhost/phone".to_owned(),
                ],
            )
        };
        let direct = |id: &str| (2, false, id.to_owned(), vec!["old@localhost/r".to_owned()]);
        assert_eq!(
            directory.sent(),
            [
                direct("item-1"),
                direct("item-2"),
                direct("item-3"),
                late("item-1"),
                late("item-2"),
                late("item-3"),
                // Found now: the usual fan-out, one event per member.
                (
                    2,
                    false,
                    "item-4".to_owned(),
                    vec!["old@localhost/r".to_owned()]
                ),
                (
                    3,
                    false,
                    "item-4".to_owned(),
                    vec![
                        "new1@localhost/a".to_owned(),
                        "new2@localhost/phone".to_owned()
                    ]
                ),
            ]
        );
        assert_eq!(load(&counters.late_misses), 0);
        assert_eq!(server.pubsub.late.lanes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_offline_subscriber_is_looked_up_as_the_policy_says_then_given_up() {
        let policy = RetryPolicy {
            attempts: 5,
            window: Duration::from_millis(200),
        };
        let node = node(policy).await;
        let server = &node.server;
        let counters = &server.pubsub.counters;
        let subscriptions = [subscription("gone@localhost")];
        for id in ["item-1", "item-2", "item-3"] {
            publish(server, id, &subscriptions).await;
        }
        until("the misses", || load(&counters.late_misses) == 3).await;
        assert_eq!(load(&counters.late_retries), 5, "one lane, five lookups");
        tokio::time::sleep(policy.window * 2).await;
        assert_eq!(
            load(&counters.late_retries),
            5,
            "no lookups after giving up"
        );
        assert_eq!(load(&counters.late_misses), 3);
        assert_eq!(load(&counters.late_delivered), 0);
        assert!(node.directory.sent().is_empty());
        assert_eq!(server.pubsub.late.lanes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn without_retries_a_missing_subscriber_is_offline_at_once() {
        let node = node(RetryPolicy::NONE).await;
        let server = &node.server;
        publish(server, "item-1", &[subscription("gone@localhost")]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counters = &server.pubsub.counters;
        assert_eq!(load(&counters.late_retries), 0);
        assert_eq!(load(&counters.late_misses), 0);
        assert_eq!(server.pubsub.late.lanes.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_late_notification_from_a_member_is_not_an_event_for_watchers() {
        let node = node(POLICY).await;
        let pubsub = &node.server.pubsub;
        let mut watch = pubsub.watch("feed");
        let late = PubSubEvent {
            node: "feed".to_owned(),
            kind: PubSubEventKind::Notification,
            notification: Bytes::from_static(b"<message xmlns='jabber:client'/>"),
            recipients: vec!["nobody@localhost/r".to_owned()],
        };
        pubsub.receive(late, NodeId(2));
        assert!(watch.try_recv().is_none(), "watchers had the event already");
        assert_eq!(load(&pubsub.counters.watcher_events), 0);
        assert_eq!(load(&pubsub.counters.cluster_events_received), 1);
    }

    #[tokio::test]
    async fn a_full_lane_drops_and_counts_the_overflow() {
        let node = node(POLICY).await;
        let server = &node.server;
        let subscriptions = [subscription("gone@localhost")];
        for index in 0..PER_LANE + 3 {
            publish(server, &format!("item-{index}"), &subscriptions).await;
        }
        assert_eq!(load(&server.pubsub.counters.late_overflow), 3);
    }
}
