//! `fanout`: many subscribers of one pub/sub node, one publisher at a fixed rate.
//!
//! Subscribers are Bayeux clients on WebSockets (channel `/pubsub/<node>` at each node's
//! `/cometd`) or XMPP sessions subscribed to the node on `pubsub.<domain>`, dealt out
//! round-robin over the nodes given. They live in the worker processes; the publisher, an
//! XMPP client, lives in the parent: it creates the node, and once every subscriber is in,
//! publishes items at a fixed rate (open loop) whose XEP-0335 JSON payload carries the run's
//! token, a sequence number and the *scheduled* publish time in Unix microseconds. Bayeux
//! clients receive that JSON as JSON, XMPP subscribers as the text of `<json/>`; both
//! measure latency from the scheduled time to arrival (driver and server share the
//! machine's clock), so a publisher or server that falls behind cannot hide it.
//!
//! Every subscriber expects every item: deliveries expected are items published times
//! subscribers, and anything missing at the end of the drain is lost.
//!
//! Users: `PREFIX<first>` publishes; XMPP subscribers are the next `subscribers` users.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use starling_core::xml::{Element, escape, ns};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::bayeux::{BayeuxClient, Incoming};
use super::chat::SequenceTracker;
use super::hold::answer_ping;
use super::login::{LoginOutcome, collect_logins, login_user, schedule_offset, spawn_on_schedule};
use super::report::MemoryReport;
use super::rss::MemorySample;
use super::servers::Servers;
use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, ErrorCounts, Users, WorkerReport, count_error, merge_errors};
use crate::client::Client;
use crate::error::ClientError;
use crate::stats::{Histogram, Summary};

/// XEP-0335: JSON containers.
pub const JSON_NS: &str = "urn:xmpp:json:0";

/// How subscribers reach the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FanoutTransport {
    /// Bayeux (CometD) over WebSocket at each node's `/cometd`.
    Bayeux,
    /// XMPP pub/sub subscriptions over c2s.
    Xmpp,
}

impl FanoutTransport {
    pub fn name(self) -> &'static str {
        match self {
            FanoutTransport::Bayeux => "bayeux",
            FanoutTransport::Xmpp => "xmpp",
        }
    }
}

/// The whole run, as the parent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FanoutPlan {
    pub transport: FanoutTransport,
    pub subscribers: u64,
    /// The nodes' HTTP listeners, for Bayeux subscribers.
    pub http: Option<Servers>,
    /// The pub/sub node (created by the publisher unless it exists).
    pub node: String,
    /// Tells this run's items from older ones a node may still hold.
    pub run: u64,
    /// Items published per second.
    pub rate: f64,
    pub duration_s: f64,
    /// How long subscribers wait for items in flight once publishing stops.
    pub drain_s: f64,
    /// Subscribers connected per second, in total.
    pub connect_rate: f64,
    /// Server processes to sample, one per subscriber server in order; empty: none.
    pub server_pids: Vec<u32>,
    /// Pause between the last subscribe and the memory sample.
    pub settle_s: f64,
}

impl FanoutPlan {
    /// The servers subscribers are spread over.
    pub fn subscriber_servers<'a>(&'a self, c2s: &'a Servers) -> Option<&'a Servers> {
        match self.transport {
            FanoutTransport::Bayeux => self.http.as_ref(),
            FanoutTransport::Xmpp => Some(c2s),
        }
    }

    pub fn publishes(&self) -> u64 {
        planned_publishes(self.rate, self.duration_s)
    }
}

/// Items published at `rate` for `duration_s`: one at each `k / rate` before the end.
pub fn planned_publishes(rate: f64, duration_s: f64) -> u64 {
    if !(rate > 0.0 && rate.is_finite() && duration_s > 0.0) {
        return 0;
    }
    // The tolerance keeps 10/s for 5 s at 50 items despite rounding.
    (rate * duration_s - 1e-9).ceil().max(0.0) as u64
}

/// One worker's subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutJob {
    pub connection: Connection,
    pub transport: FanoutTransport,
    /// Where Bayeux subscribers connect (unused for XMPP).
    pub http: Option<Servers>,
    /// This worker's XMPP subscribers (also its count of Bayeux subscribers).
    pub users: Users,
    /// Index in the run of this worker's first subscriber, for spreading them over servers.
    pub first_index: u64,
    pub node: String,
    pub run: u64,
    /// Items the publisher will publish: a subscriber with all of them is done.
    pub expected: u64,
    /// Subscribers connected per second by this worker.
    pub connect_rate: f64,
    pub duration_s: f64,
    pub drain_s: f64,
}

/// Deliveries to the subscribers of one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerDeliveries {
    /// Subscribers that were in when publishing started.
    pub subscribers: u64,
    pub received: u64,
    /// Publish (scheduled) to arrival, microseconds.
    pub latency: Histogram,
}

impl ServerDeliveries {
    fn merge(&mut self, other: &ServerDeliveries) {
        self.subscribers += other.subscribers;
        self.received += other.received;
        self.latency.merge(&other.latency);
    }
}

/// What the subscribers of a worker (or of the run) saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FanoutStats {
    /// Subscribers the server removed or whose connection ended before the end.
    pub dropped: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Items of another run, or not ours at all.
    pub stray: u64,
    pub errors: ErrorCounts,
    /// Unix microseconds of the last arrival (0: none).
    pub last_arrival_unix_us: u64,
    /// Per server, by index in the subscribers' server list.
    pub by_server: Vec<ServerDeliveries>,
}

impl FanoutStats {
    pub fn merge(&mut self, other: &FanoutStats) {
        self.dropped += other.dropped;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.stray += other.stray;
        merge_errors(&mut self.errors, &other.errors);
        self.last_arrival_unix_us = self.last_arrival_unix_us.max(other.last_arrival_unix_us);
        if self.by_server.len() < other.by_server.len() {
            self.by_server
                .resize_with(other.by_server.len(), ServerDeliveries::default);
        }
        for (total, server) in self.by_server.iter_mut().zip(&other.by_server) {
            total.merge(server);
        }
    }

    fn add(&mut self, subscriber: Subscriber) {
        let mut share = ServerDeliveries {
            subscribers: 1,
            received: subscriber.tracker.unique,
            latency: subscriber.latency,
        };
        let mut one = FanoutStats {
            dropped: u64::from(subscriber.dropped.is_some()),
            duplicates: subscriber.tracker.duplicates,
            out_of_order: subscriber.tracker.out_of_order,
            stray: subscriber.stray,
            errors: subscriber.errors,
            last_arrival_unix_us: subscriber.last_arrival_unix_us,
            by_server: Vec::new(),
        };
        if let Some(kind) = subscriber.dropped {
            count_error(&mut one.errors, format!("dropped:{kind}"));
        }
        one.by_server
            .resize_with(subscriber.server + 1, ServerDeliveries::default);
        std::mem::swap(&mut one.by_server[subscriber.server], &mut share);
        self.merge(&one);
    }
}

/// The token, sequence number and scheduled time (Unix µs) an item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub run: u64,
    pub seq: u64,
    pub stamp: u64,
}

impl Stamp {
    /// The item's JSON payload.
    pub fn to_json(self) -> String {
        format!(
            r#"{{"run":{},"seq":{},"stamp":{}}}"#,
            self.run, self.seq, self.stamp
        )
    }

    /// Reads a payload; `None` if it is not one of ours.
    pub fn from_json(payload: &Value) -> Option<Stamp> {
        let field = |name| payload.get(name).and_then(Value::as_u64);
        Some(Stamp {
            run: field("run")?,
            seq: field("seq")?,
            stamp: field("stamp")?,
        })
    }

    /// The `data` of a Bayeux event from the bridge: the item's JSON itself.
    pub fn from_bayeux(data: &Value) -> Option<Stamp> {
        Stamp::from_json(data)
    }

    /// The payload of an XMPP pub/sub notification for `node` (the first item's `<json/>`).
    pub fn from_notification(stanza: &Element, node: &str) -> Option<Stamp> {
        if !stanza.is("message", ns::CLIENT) {
            return None;
        }
        let items = stanza
            .child("event", ns::PUBSUB_EVENT)?
            .child("items", ns::PUBSUB_EVENT)
            .filter(|items| items.attr("node") == Some(node))?;
        let json = items
            .child("item", ns::PUBSUB_EVENT)?
            .child("json", JSON_NS)?;
        Stamp::from_json(&serde_json::from_str(&json.text()).ok()?)
    }
}

pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// One subscriber's deliveries.
struct Subscriber {
    server: usize,
    run: u64,
    expected: u64,
    tracker: SequenceTracker,
    latency: Histogram,
    stray: u64,
    last_arrival_unix_us: u64,
    errors: ErrorCounts,
    /// Why it ended before the run did.
    dropped: Option<String>,
}

impl Subscriber {
    fn new(server: usize, job: &FanoutJob) -> Subscriber {
        Subscriber {
            server,
            run: job.run,
            expected: job.expected,
            tracker: SequenceTracker::default(),
            latency: Histogram::new(),
            stray: 0,
            last_arrival_unix_us: 0,
            errors: ErrorCounts::new(),
            dropped: None,
        }
    }

    fn see(&mut self, stamp: Option<Stamp>) {
        match stamp {
            Some(stamp) if stamp.run == self.run && stamp.seq < self.expected => {
                super::progress::received();
                let now = unix_micros();
                let before = self.tracker.unique;
                self.tracker.see(stamp.seq);
                // A repeat is counted as a duplicate, not timed again.
                if self.tracker.unique > before {
                    self.latency.record(now.saturating_sub(stamp.stamp));
                    self.last_arrival_unix_us = now;
                }
            }
            _ => self.stray += 1,
        }
    }

    fn has_all(&self) -> bool {
        self.tracker.unique >= self.expected
    }
}

/// Resolves at the end of the run (once the parent said go and the time is up).
async fn run_over(end: &mut watch::Receiver<Option<Instant>>) {
    let end = match end.wait_for(Option::is_some).await {
        Ok(end) => *end,
        // The worker is going away: nothing more will be measured.
        Err(_) => return,
    };
    if let Some(end) = end {
        sleep_until(end).await;
    }
}

pub async fn run(job: FanoutJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let job = Arc::new(job);
    let (report, mut outcomes) = mpsc::unbounded_channel();
    let (end_tx, end_rx) = watch::channel::<Option<Instant>>(None);
    let start = Instant::now();
    let count = job.users.count;
    let logins = tokio::spawn(async move { collect_logins(&mut outcomes, count, start).await });
    let mut tasks = spawn_on_schedule(count, job.connect_rate, start, |index, scheduled| {
        let job = job.clone();
        let report = report.clone();
        let end = end_rx.clone();
        async move {
            match job.transport {
                FanoutTransport::Bayeux => {
                    bayeux_subscriber(&job, index, scheduled, report, end).await
                }
                FanoutTransport::Xmpp => xmpp_subscriber(&job, index, scheduled, report, end).await,
            }
        }
    })
    .await;
    drop(report);
    let login = logins.await.unwrap_or_default();
    gate.ready(ReadyInfo::of(&login)).await?;
    let window = Duration::from_secs_f64((job.duration_s + job.drain_s).max(0.0));
    end_tx.send_replace(Some(Instant::now() + window));
    let mut stats = FanoutStats::default();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Some(subscriber)) => stats.add(subscriber),
            Ok(None) => {}
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    Ok(WorkerReport {
        login,
        fanout: Some(stats),
        ..WorkerReport::default()
    })
}

fn outcome(server: usize, scheduled: Instant, error: Option<String>) -> LoginOutcome {
    let finished = Instant::now();
    LoginOutcome {
        latency: finished.saturating_duration_since(scheduled),
        finished,
        server,
        error,
    }
}

/// Handshake, subscribe, then events until the run is over; `None` if it never subscribed.
async fn bayeux_subscriber(
    job: &FanoutJob,
    index: u64,
    scheduled: Instant,
    report: mpsc::UnboundedSender<LoginOutcome>,
    mut end: watch::Receiver<Option<Instant>>,
) -> Option<Subscriber> {
    let http = job.http.as_ref()?;
    let server = http.for_user(job.first_index + index);
    let timeout = Duration::from_secs_f64(job.connection.timeout_s.max(0.001));
    let channel = format!("/pubsub/{}", job.node);
    let subscribed = async {
        let mut client =
            BayeuxClient::handshake(http.address(server), job.connection.source, timeout).await?;
        client.subscribe(&channel, timeout).await?;
        Ok::<_, super::bayeux::BayeuxError>(client)
    }
    .await;
    let error = subscribed.as_ref().err().map(|error| error.kind());
    report.send(outcome(server, scheduled, error)).ok();
    drop(report);
    let mut client = subscribed.ok()?;
    let mut subscriber = Subscriber::new(server, job);
    while !subscriber.has_all() {
        tokio::select! {
            message = client.recv() => match message {
                Ok(Incoming::Event { channel: on, data }) if on == channel => {
                    subscriber.see(Stamp::from_bayeux(&data));
                }
                Ok(Incoming::Event { .. }) => subscriber.stray += 1,
                Ok(Incoming::Meta(reply)) if reply.channel == "/meta/connect" => {
                    if !reply.successful {
                        let why = reply.error.unwrap_or_else(|| "connect refused".to_owned());
                        subscriber.dropped = Some(format!("connect:{why}"));
                        break;
                    }
                    if let Err(error) = client.connect().await {
                        subscriber.dropped = Some(error.kind());
                        break;
                    }
                }
                Ok(Incoming::Meta(_)) => {}
                Err(error) => {
                    subscriber.dropped = Some(error.kind());
                    break;
                }
            },
            () = run_over(&mut end) => break,
        }
    }
    if subscriber.dropped.is_none()
        && let Err(error) = client.disconnect(timeout).await
    {
        count_error(
            &mut subscriber.errors,
            format!("disconnect:{}", error.kind()),
        );
    }
    Some(subscriber)
}

/// Logs in, subscribes with its bare JID (and sends presence, so it is available to
/// notify), then items until the run is over; `None` if it never subscribed.
async fn xmpp_subscriber(
    job: &FanoutJob,
    index: u64,
    scheduled: Instant,
    report: mpsc::UnboundedSender<LoginOutcome>,
    mut end: watch::Receiver<Option<Instant>>,
) -> Option<Subscriber> {
    let connection = &job.connection;
    let server = connection.servers.for_user(job.first_index + index);
    let (login, client) = login_user(connection, server, &job.users, index, scheduled).await;
    let subscribed = match client {
        Some(mut client) => match subscribe(&mut client, job).await {
            Ok(()) => Ok(client),
            Err(error) => Err(format!("subscribe:{}", error.kind())),
        },
        None => Err(login.error.unwrap_or_default()),
    };
    let error = subscribed.as_ref().err().cloned();
    report.send(outcome(server, scheduled, error)).ok();
    drop(report);
    let mut client = subscribed.ok()?;
    let mut subscriber = Subscriber::new(server, job);
    while !subscriber.has_all() {
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    if let Some(stamp) = Stamp::from_notification(&stanza, &job.node) {
                        subscriber.see(Some(stamp));
                    } else if stanza.name() == "message" {
                        subscriber.see(None);
                    } else if let Err(error) = answer_ping(&mut client, &stanza).await {
                        subscriber.dropped = Some(error.kind());
                        break;
                    }
                }
                Err(error) => {
                    subscriber.dropped = Some(error.kind());
                    break;
                }
            },
            () = run_over(&mut end) => break,
        }
    }
    if subscriber.dropped.is_none()
        && let Err(error) = client.close().await
    {
        count_error(&mut subscriber.errors, format!("close:{}", error.kind()));
    }
    Some(subscriber)
}

async fn subscribe(client: &mut Client, job: &FanoutJob) -> Result<(), ClientError> {
    client.send("<presence/>").await?;
    let bare = client
        .jid()
        .map(|jid| jid.to_bare().to_string())
        .unwrap_or_default();
    let subscribe = Element::new("subscribe", ns::PUBSUB)
        .with_attr("node", job.node.as_str())
        .with_attr("jid", bare);
    let request = pubsub_iq(&job.connection.domain, ns::PUBSUB, subscribe);
    let timeout = Duration::from_secs_f64(job.connection.timeout_s.max(0.001));
    client.iq(request, timeout).await.map(drop)
}

/// `<iq type='set' to='pubsub.DOMAIN'><pubsub xmlns=...>INNER</pubsub></iq>`.
fn pubsub_iq(domain: &str, namespace: &'static str, inner: Element) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("to", format!("pubsub.{domain}"))
        .with_child(Element::new("pubsub", namespace).with_child(inner))
}

/// What the publisher did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishStats {
    pub planned: u64,
    /// Publishes the service confirmed.
    pub published: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
    /// Scheduled publish to the service's result, microseconds.
    pub latency: Histogram,
    /// Scheduled publish to actual send: how far the publisher fell behind.
    pub send_lag: Histogram,
    /// Unix microseconds of the first scheduled publish.
    pub start_unix_us: u64,
}

/// The publishing XMPP client, in the parent process.
pub struct Publisher {
    client: Client,
    domain: String,
    node: String,
    /// The node was made for this run and goes with it.
    created: bool,
    timeout: Duration,
}

impl Publisher {
    /// Logs in as user 0 of `users` on `server` and creates `node` (an existing node is
    /// used as it is).
    pub async fn prepare(
        connection: &Connection,
        users: &Users,
        node: &str,
    ) -> Result<Publisher, ClientError> {
        let options = connection.login_options(users.username(0), users.password(0));
        let mut client = Client::login(connection.server(0), &options).await?;
        let timeout = options.timeout;
        let create = Element::new("create", ns::PUBSUB).with_attr("node", node);
        let create = pubsub_iq(&connection.domain, ns::PUBSUB, create);
        let created = match client.iq(create, timeout).await {
            Ok(_) => true,
            Err(ClientError::IqError { condition, .. }) if condition == "conflict" => false,
            Err(error) => return Err(error),
        };
        Ok(Publisher {
            client,
            domain: connection.domain.clone(),
            node: node.to_owned(),
            created,
            timeout,
        })
    }

    /// Publishes `planned` items at `rate`, then waits up to `wait` (at least the step
    /// timeout) for the outstanding results: a busy service confirms late, and an item
    /// counts as published only once confirmed.
    pub async fn publish(
        &mut self,
        run: u64,
        planned: u64,
        rate: f64,
        wait: Duration,
    ) -> PublishStats {
        let epoch = Instant::now();
        let epoch_unix = unix_micros();
        let mut stats = PublishStats {
            planned,
            start_unix_us: epoch_unix,
            ..PublishStats::default()
        };
        let prefix = format!(
            "<iq type='set' to='pubsub.{}' id='pub",
            escape(&self.domain)
        );
        let publish_open = format!(
            "'><pubsub xmlns='{}'><publish node='{}'><item><json xmlns='{JSON_NS}'>",
            ns::PUBSUB,
            escape(&self.node)
        );
        let mut sent = 0u64;
        let mut answered = 0u64;
        let mut deadline = None;
        while answered < sent || sent < planned {
            let scheduled = epoch + schedule_offset(sent, rate);
            tokio::select! {
                biased;
                () = sleep_until(scheduled), if sent < planned => {
                    let offset = scheduled.saturating_duration_since(epoch);
                    let stamp = Stamp {
                        run,
                        seq: sent,
                        stamp: epoch_unix + u64::try_from(offset.as_micros()).unwrap_or(0),
                    };
                    let xml = format!(
                        "{prefix}{sent}{publish_open}{}</json></item></publish></pubsub></iq>",
                        escape(&stamp.to_json())
                    );
                    stats.send_lag.record_duration(Instant::now().saturating_duration_since(scheduled));
                    if let Err(error) = self.client.send(&xml).await {
                        count_error(&mut stats.errors, format!("send:{}", error.kind()));
                        break;
                    }
                    sent += 1;
                    super::progress::sent();
                    if sent == planned {
                        deadline = Some(Instant::now() + wait.max(self.timeout));
                    }
                }
                stanza = self.client.recv() => match stanza {
                    Ok(stanza) => {
                        let Some(seq) = publish_reply(&stanza) else {
                            if let Err(error) = answer_ping(&mut self.client, &stanza).await {
                                count_error(&mut stats.errors, format!("publisher:{}", error.kind()));
                                break;
                            }
                            continue;
                        };
                        answered += 1;
                        if stanza.attr("type") == Some("result") {
                            stats.published += 1;
                            let scheduled = epoch + schedule_offset(seq, rate);
                            stats.latency.record_duration(Instant::now().saturating_duration_since(scheduled));
                        } else {
                            stats.failed += 1;
                            let condition = crate::error::condition_of(
                                stanza.child("error", ns::CLIENT).unwrap_or(&stanza),
                                ns::STANZAS,
                            );
                            count_error(&mut stats.errors, format!("publish:{}", condition.unwrap_or_default()));
                        }
                    }
                    Err(error) => {
                        count_error(&mut stats.errors, format!("publisher:{}", error.kind()));
                        break;
                    }
                },
                () = sleep_until(deadline.unwrap_or(epoch)), if deadline.is_some() => {
                    count_error(&mut stats.errors, "publish:no-result".to_owned());
                    break;
                }
            }
        }
        stats.failed += sent.saturating_sub(answered);
        stats.failed += planned - sent;
        stats
    }

    /// Deletes the node if this run created it, and logs out.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        if self.created {
            let delete =
                Element::new("delete", ns::PUBSUB_OWNER).with_attr("node", self.node.as_str());
            let iq = pubsub_iq(&self.domain, ns::PUBSUB_OWNER, delete);
            self.client.iq(iq, self.timeout).await?;
        }
        self.client.close().await
    }
}

/// The sequence number of a publish result or error (`id='pubN'`).
fn publish_reply(stanza: &Element) -> Option<u64> {
    if stanza.name() != "iq" || !matches!(stanza.attr("type"), Some("result" | "error")) {
        return None;
    }
    stanza.attr("id")?.strip_prefix("pub")?.parse().ok()
}

/// The report's view of a fan-out run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutSummary {
    pub transport: FanoutTransport,
    pub node: String,
    /// The servers subscribers were spread over, as given.
    pub subscriber_servers: String,
    pub subscribers_wanted: u64,
    /// Subscribed when publishing started.
    pub subscribers: u64,
    pub offered_rate: f64,
    pub duration_s: f64,
    pub planned: u64,
    pub published: u64,
    pub publish_failed: u64,
    /// Scheduled publish to the service's result.
    pub publish_latency: Summary,
    pub publish_send_lag: Summary,
    /// Items published times subscribers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub stray: u64,
    pub dropped: u64,
    /// From the first scheduled publish to the last arrival, seconds.
    pub last_arrival_s: f64,
    /// Received over the time from the first publish to the last arrival (at least the
    /// publishing window).
    pub delivered_per_s: f64,
    /// Scheduled publish to arrival, every delivery.
    pub latency: Summary,
    pub errors: ErrorCounts,
    pub by_server: Vec<ServerSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSummary {
    pub address: String,
    pub subscribers: u64,
    pub expected: u64,
    pub received: u64,
    pub latency: Summary,
    /// With its pid: before the subscribers, once all were in (idle), and when publishing
    /// ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<FanoutMemory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutMemory {
    /// Before and once every subscriber was in, per subscriber of this server.
    pub idle: MemoryReport,
    /// When publishing ended.
    pub end: MemorySample,
}

pub fn summary(
    plan: &FanoutPlan,
    servers: &Servers,
    stats: &FanoutStats,
    publish: &PublishStats,
    memory: Vec<FanoutMemory>,
) -> FanoutSummary {
    let subscribers: u64 = stats.by_server.iter().map(|s| s.subscribers).sum();
    let received: u64 = stats.by_server.iter().map(|s| s.received).sum();
    let expected = publish.published * subscribers;
    let mut latency = Histogram::new();
    for server in &stats.by_server {
        latency.merge(&server.latency);
    }
    let last_arrival_s = if stats.last_arrival_unix_us > publish.start_unix_us {
        (stats.last_arrival_unix_us - publish.start_unix_us) as f64 / 1e6
    } else {
        0.0
    };
    let window = last_arrival_s.max(plan.duration_s);
    let mut memory = memory.into_iter();
    let by_server = (0..servers.len())
        .map(|index| {
            let share = stats.by_server.get(index).cloned().unwrap_or_default();
            ServerSummary {
                address: servers.address(index).to_string(),
                subscribers: share.subscribers,
                expected: publish.published * share.subscribers,
                received: share.received,
                latency: share.latency.summary(),
                memory: memory.next(),
            }
        })
        .collect();
    FanoutSummary {
        transport: plan.transport,
        node: plan.node.clone(),
        subscriber_servers: servers.to_string(),
        subscribers_wanted: plan.subscribers,
        subscribers,
        offered_rate: plan.rate,
        duration_s: plan.duration_s,
        planned: publish.planned,
        published: publish.published,
        publish_failed: publish.failed,
        publish_latency: publish.latency.summary(),
        publish_send_lag: publish.send_lag.summary(),
        expected,
        received,
        lost: expected.saturating_sub(received),
        duplicates: stats.duplicates,
        out_of_order: stats.out_of_order,
        stray: stats.stray,
        dropped: stats.dropped,
        last_arrival_s,
        delivered_per_s: if window > 0.0 {
            received as f64 / window
        } else {
            0.0
        },
        latency: latency.summary(),
        errors: {
            let mut errors = stats.errors.clone();
            merge_errors(&mut errors, &publish.errors);
            errors
        },
        by_server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_publishes_fill_the_window() {
        assert_eq!(planned_publishes(10.0, 5.0), 50);
        assert_eq!(planned_publishes(1.0, 0.5), 1);
        assert_eq!(planned_publishes(3.0, 1.1), 4);
        assert_eq!(planned_publishes(0.0, 5.0), 0);
        assert_eq!(planned_publishes(10.0, 0.0), 0);
    }

    #[test]
    fn stamps_round_trip_through_both_transports() {
        let stamp = Stamp {
            run: 7,
            seq: 42,
            stamp: 1_700_000_000_123_456,
        };
        let json: Value = serde_json::from_str(&stamp.to_json()).unwrap();
        assert_eq!(Stamp::from_json(&json), Some(stamp));
        // The bridge hands Bayeux clients the item's JSON as `data`, other XML as {"xml": ...}.
        assert_eq!(Stamp::from_bayeux(&json), Some(stamp));
        assert_eq!(
            Stamp::from_bayeux(&serde_json::json!({"xml": "<x/>"})),
            None
        );
        let item = Element::new("item", ns::PUBSUB_EVENT)
            .with_attr("id", "i")
            .with_child(Element::new("json", JSON_NS).with_text(stamp.to_json()));
        let notification = Element::new("message", ns::CLIENT)
            .with_attr("from", "pubsub.localhost")
            .with_child(
                Element::new("event", ns::PUBSUB_EVENT).with_child(
                    Element::new("items", ns::PUBSUB_EVENT)
                        .with_attr("node", "n")
                        .with_child(item),
                ),
            );
        assert_eq!(Stamp::from_notification(&notification, "n"), Some(stamp));
        assert_eq!(Stamp::from_notification(&notification, "other"), None);
    }

    #[test]
    fn subscribers_count_their_items_and_ignore_others() {
        let job = FanoutJob {
            connection: Connection {
                servers: "127.0.0.1:1".parse().unwrap(),
                domain: "localhost".to_owned(),
                server_domains: Vec::new(),
                tls: false,
                mechanism: crate::sasl::Mechanism::Plain,
                resource: "r".to_owned(),
                timeout_s: 1.0,
                source: None,
                transport: Default::default(),
            },
            transport: FanoutTransport::Bayeux,
            http: None,
            users: Users {
                prefix: "u".to_owned(),
                password_prefix: "p".to_owned(),
                first: 2,
                count: 1,
            },
            first_index: 0,
            node: "n".to_owned(),
            run: 9,
            expected: 3,
            connect_rate: 1.0,
            duration_s: 1.0,
            drain_s: 1.0,
        };
        let mut subscriber = Subscriber::new(1, &job);
        let item = |run, seq| {
            Some(Stamp {
                run,
                seq,
                stamp: unix_micros(),
            })
        };
        for stamp in [
            item(9, 0),
            item(9, 2),
            item(8, 1),
            item(9, 7),
            None,
            item(9, 2),
        ] {
            subscriber.see(stamp);
        }
        assert!(!subscriber.has_all());
        subscriber.see(item(9, 1));
        assert!(subscriber.has_all());
        assert_eq!(subscriber.stray, 3, "other run, beyond the plan, not ours");
        let mut stats = FanoutStats::default();
        stats.add(subscriber);
        assert_eq!(
            (stats.duplicates, stats.out_of_order, stats.stray),
            (1, 1, 3)
        );
        assert_eq!(stats.by_server.len(), 2);
        assert_eq!(
            (stats.by_server[1].subscribers, stats.by_server[1].received),
            (1, 3)
        );
        assert_eq!(stats.by_server[1].latency.count(), 3);
    }

    #[test]
    fn summary_expects_every_item_at_every_subscriber() {
        let servers: Servers = "127.0.0.1:1,127.0.0.1:2".parse().unwrap();
        let plan = FanoutPlan {
            transport: FanoutTransport::Xmpp,
            subscribers: 3,
            http: None,
            node: "n".to_owned(),
            run: 1,
            rate: 10.0,
            duration_s: 1.0,
            drain_s: 1.0,
            connect_rate: 10.0,
            server_pids: Vec::new(),
            settle_s: 0.0,
        };
        let stats = FanoutStats {
            last_arrival_unix_us: 3_000_000,
            by_server: vec![
                ServerDeliveries {
                    subscribers: 2,
                    received: 20,
                    latency: Histogram::new(),
                },
                ServerDeliveries {
                    subscribers: 1,
                    received: 9,
                    latency: Histogram::new(),
                },
            ],
            ..FanoutStats::default()
        };
        let publish = PublishStats {
            planned: 10,
            published: 10,
            start_unix_us: 1_000_000,
            ..PublishStats::default()
        };
        let summary = summary(&plan, &servers, &stats, &publish, Vec::new());
        assert_eq!(
            (summary.expected, summary.received, summary.lost),
            (30, 29, 1)
        );
        assert_eq!(summary.last_arrival_s, 2.0);
        assert_eq!(summary.delivered_per_s, 14.5);
        assert_eq!(summary.by_server[1].expected, 10);
        assert_eq!(summary.by_server[1].address, "127.0.0.1:2");
    }

    #[test]
    fn publish_replies_are_recognised_by_id() {
        let reply = |id| {
            Element::new("iq", ns::CLIENT)
                .with_attr("type", "result")
                .with_attr("id", id)
        };
        assert_eq!(publish_reply(&reply("pub12")), Some(12));
        assert_eq!(publish_reply(&reply("c1")), None);
        let request = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", "pub3");
        assert_eq!(publish_reply(&request), None);
    }
}
