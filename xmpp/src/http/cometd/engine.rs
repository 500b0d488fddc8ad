//! What each Bayeux message does, whatever transport carried it:
//! handshake (with optional XMPP credentials), subscribe, unsubscribe,
//! publish, disconnect, and the bookkeeping of a connect (the transports
//! decide how long to hold it and how to write what it returns).
//!
//! One [`Bayeux`] per node owns the client registry and the channel table;
//! a sweeper task removes clients that stopped connecting.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Map, Value, json};
use starling_core::config::AnonymousAccess;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::channels::Channels;
use super::clients::{Capacity, Client, Clients, Full, Identity, Removal};
use super::message::{self, BayeuxError, Kind, LONG_POLLING, Message, Rejected, WEBSOCKET, advice};
use super::outbox::Event;
use super::{bridge, payload};
use crate::http::auth::prepared_username;
use crate::server::Server;

/// Advice `interval` for a handshake refused because this node or the
/// client's address holds as many clients as allowed.
const FULL_RETRY_MS: u64 = 5_000;
/// Advice `interval` for a handshake refused by the per-address rate.
const RATE_RETRY_MS: u64 = 1_000;

/// The Bayeux server of this node.
pub struct Bayeux {
    server: Arc<Server>,
    pub(crate) clients: Clients,
    channels: Channels,
    /// How long an idle connect is held.
    pub(crate) timeout: Duration,
    /// How long a WebSocket write may wait for the client to read.
    pub(crate) write_timeout: Duration,
    interval_ms: u64,
    max_interval: Duration,
    anonymous: AnonymousAccess,
    pub(crate) counters: BayeuxCounters,
    this: Weak<Bayeux>,
}

/// Counters of the Bayeux side, on `/metrics`.
#[derive(Debug, Default)]
pub struct BayeuxCounters {
    pub handshakes: AtomicU64,
    /// Every refused handshake, the limits' refusals below included.
    pub handshake_failures: AtomicU64,
    /// Refused: this node holds `max_clients` clients.
    pub refused_node_full: AtomicU64,
    /// Refused: the address holds `max_clients_per_ip` clients.
    pub refused_address_full: AtomicU64,
    /// Refused: the address exceeded `[limits] connections_per_ip_per_sec`.
    pub refused_rate: AtomicU64,
    pub expired: AtomicU64,
    /// WebSockets closed because a write waited `write_timeout` for the
    /// client to read.
    pub write_timeouts: AtomicU64,
    /// Clients removed because their queue overflowed.
    pub dropped_slow: AtomicU64,
    pub events_queued: AtomicU64,
    pub publishes: AtomicU64,
}

/// What handling one message produced.
pub(crate) enum Step {
    Reply(Map<String, Value>),
    /// A connect: the transport holds it until [`HeldConnect::ready`] or
    /// its deadline, then answers it.
    Connect(HeldConnect),
}

pub(crate) struct HeldConnect {
    pub(crate) message: Message,
    pub(crate) client: Arc<Client>,
    seq: u64,
    /// How long to hold it at most.
    pub(crate) hold: Duration,
}

impl HeldConnect {
    /// True when the connect should be answered now: there is something to
    /// write, the client is gone, or a newer connect took over.
    pub(crate) fn ready(&self, pushing: bool) -> bool {
        let state = self.client.state();
        state.removed.is_some()
            || state.connect_seq != self.seq
            || (!pushing && state.outbox.has_unsent())
    }

    fn superseded(&self) -> bool {
        self.client.state().connect_seq != self.seq
    }
}

impl Drop for HeldConnect {
    /// Answered or abandoned (the HTTP client went away): either way the
    /// client's `max_interval` starts now.
    fn drop(&mut self) {
        self.client.end_connect();
    }
}

impl Bayeux {
    pub fn new(server: Arc<Server>) -> Arc<Bayeux> {
        let config = server.config.cometd.clone();
        let bayeux = Arc::new_cyclic(|this| Bayeux {
            clients: Clients::new(
                Duration::from_millis(config.max_interval_ms),
                config.max_queue,
                Capacity {
                    total: config.max_clients,
                    per_ip: config.max_clients_per_ip,
                },
            ),
            channels: Channels::default(),
            timeout: Duration::from_millis(config.timeout_ms),
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            interval_ms: config.interval_ms,
            max_interval: Duration::from_millis(config.max_interval_ms),
            anonymous: config.anonymous,
            counters: BayeuxCounters::default(),
            this: this.clone(),
            server,
        });
        tokio::spawn(sweep(Arc::downgrade(&bayeux)));
        bayeux
    }

    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub(crate) fn shutdown(&self) -> &starling_core::shutdown::Shutdown {
        &self.server.shutdown
    }

    /// Handles one message that came on `connection` (0: long-polling)
    /// from `ip`.
    pub(crate) async fn handle(
        &self,
        message: Result<Message, Rejected>,
        connection: u64,
        ip: IpAddr,
    ) -> Step {
        let message = match message {
            Ok(message) => message,
            Err(rejected) => return Step::Reply(rejected.reply()),
        };
        let reply = match message.kind {
            Kind::Handshake => self.handshake(&message, ip).await,
            Kind::Connect => return self.connect(message, connection),
            Kind::Subscribe => self.subscribe(&message).await,
            Kind::Unsubscribe => self.unsubscribe(&message),
            Kind::Disconnect => self.disconnect(&message),
            Kind::Publish => self.publish(&message).await,
            Kind::UnknownMeta => message.error_reply(&BayeuxError::with_arg(
                400,
                &message.channel,
                "unknown meta channel",
            )),
            Kind::Service => message.error_reply(&BayeuxError::with_arg(
                404,
                &message.channel,
                "no service on this channel",
            )),
        };
        Step::Reply(reply)
    }

    /// The client a message names, or the `402::Unknown client` reply that
    /// sends it back to the handshake.
    fn client_of(&self, message: &Message) -> Result<Arc<Client>, Map<String, Value>> {
        let client = message
            .client_id
            .as_deref()
            .and_then(|id| self.clients.get(id));
        client.ok_or_else(|| {
            let mut reply = message.error_reply(&BayeuxError::unknown_client());
            reply.insert("advice".into(), advice("handshake", self.interval_ms, 0));
            reply
        })
    }

    /// The client and the channels of a subscribe or unsubscribe, or the
    /// reply refusing it.
    fn subscription_request(
        &self,
        message: &Message,
    ) -> Result<(Arc<Client>, Vec<String>), Map<String, Value>> {
        let client = self.client_of(message)?;
        let channels = message
            .subscriptions()
            .map_err(|error| message.error_reply(&error))?;
        Ok((client, channels))
    }

    async fn handshake(&self, message: &Message, ip: IpAddr) -> Map<String, Value> {
        let refuse = |error: BayeuxError| {
            self.counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            let mut reply = message.error_reply(&error);
            reply.insert("advice".into(), json!({"reconnect": "none"}));
            reply
        };
        if let Some(types) = message.fields.get("supportedConnectionTypes") {
            let ours = types
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == LONG_POLLING || t == WEBSOCKET));
            if !ours {
                return refuse(BayeuxError::new(
                    400,
                    "no supported connection type (long-polling, websocket)",
                ));
            }
        }
        // Limits before credentials: a refused handshake costs no password check.
        if let Err(full) = self.clients.has_room(ip) {
            return self.refuse_full(message, ip, full);
        }
        if !self
            .server
            .ip_limits
            .allow_connection(ip, std::time::Instant::now())
        {
            self.counters.refused_rate.fetch_add(1, Ordering::Relaxed);
            return self.refuse_for_now(
                message,
                BayeuxError::new(429, "Too many handshakes from this address"),
                RATE_RETRY_MS,
            );
        }
        let credentials = message
            .ext()
            .and_then(|ext| ext.get("authentication"))
            .and_then(Value::as_object);
        let identity = match credentials {
            Some(credentials) => match self.authenticate(credentials, ip).await {
                Ok(identity) => identity,
                Err(error) => return refuse(error),
            },
            None if self.anonymous == AnonymousAccess::None => {
                return refuse(BayeuxError::new(
                    403,
                    "Authentication required: ext.authentication {user, credentials}",
                ));
            }
            None => Identity::Anonymous,
        };
        let acks = message.wants_acks();
        let client = match self.clients.create(identity, acks, ip) {
            Ok(client) => client,
            // Others took the last room while this one authenticated.
            Err(full) => return self.refuse_full(message, ip, full),
        };
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client = %client.id, identity = ?client.identity, acks, "Bayeux handshake");
        let mut reply = message.reply(Some(&client.id), true);
        reply.insert("version".into(), "1.0".into());
        reply.insert(
            "supportedConnectionTypes".into(),
            json!([WEBSOCKET, LONG_POLLING]),
        );
        reply.insert("advice".into(), self.retry_advice());
        if acks {
            reply.insert("ext".into(), json!({"ack": true}));
        }
        reply
    }

    /// The reply to a handshake refused because `full`: nothing was created.
    fn refuse_full(&self, message: &Message, ip: IpAddr, full: Full) -> Map<String, Value> {
        let (counter, error) = match full {
            Full::Node => (
                &self.counters.refused_node_full,
                BayeuxError::new(503, "Too many clients on this server"),
            ),
            Full::Address => (
                &self.counters.refused_address_full,
                BayeuxError::new(503, "Too many clients from this address"),
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%ip, ?full, "Bayeux handshake refused: no room");
        self.refuse_for_now(message, error, FULL_RETRY_MS)
    }

    /// A handshake refused for now: the client may try again after `retry_ms`.
    fn refuse_for_now(
        &self,
        message: &Message,
        error: BayeuxError,
        retry_ms: u64,
    ) -> Map<String, Value> {
        self.counters
            .handshake_failures
            .fetch_add(1, Ordering::Relaxed);
        let mut reply = message.error_reply(&error);
        reply.insert(
            "advice".into(),
            json!({"reconnect": "handshake", "interval": retry_ms}),
        );
        reply
    }

    /// `ext.authentication = {user, credentials}`: an XMPP account
    /// (`name` or `name@domain`) and its password, checked as SASL PLAIN is.
    async fn authenticate(
        &self,
        credentials: &Map<String, Value>,
        ip: IpAddr,
    ) -> Result<Identity, BayeuxError> {
        let failed = || BayeuxError::new(403, "Authentication failed");
        let user = credentials.get("user").and_then(Value::as_str);
        let password = credentials.get("credentials").and_then(Value::as_str);
        let (Some(user), Some(password)) = (user, password) else {
            return Err(BayeuxError::new(
                400,
                "ext.authentication needs user and credentials strings",
            ));
        };
        let limits = &self.server.ip_limits;
        if !limits.may_authenticate(ip, std::time::Instant::now()) {
            return Err(BayeuxError::new(
                403,
                "Too many failed logins; try again later",
            ));
        }
        let name = match user.rsplit_once('@') {
            Some((name, domain)) if domain.eq_ignore_ascii_case(&self.server.domain) => name,
            Some(_) => "",
            None => user,
        };
        let record = match prepared_username(name) {
            Some(name) => self.server.users.authenticate(&name, password).await,
            None => Ok(None),
        };
        match record {
            Ok(Some(record)) => Ok(Identity::User(format!(
                "{}@{}",
                record.username, self.server.domain
            ))),
            Ok(None) => {
                limits.record_auth_failure(ip, std::time::Instant::now());
                tracing::info!(%ip, user, "Bayeux handshake: authentication failed");
                Err(failed())
            }
            Err(error) => {
                tracing::error!(%error, "Bayeux handshake: cannot read the account");
                Err(BayeuxError::new(500, "account store unavailable"))
            }
        }
    }

    fn retry_advice(&self) -> Value {
        advice("retry", self.interval_ms, self.timeout.as_millis() as u64)
    }

    fn connect(&self, message: Message, connection: u64) -> Step {
        let client = match self.client_of(&message) {
            Ok(client) => client,
            Err(reply) => return Step::Reply(reply),
        };
        let seq = client.begin_connect(connection, message.ack_batch());
        let hold = message
            .advice_timeout()
            .map(Duration::from_millis)
            .map_or(self.timeout, |asked| asked.min(self.timeout));
        Step::Connect(HeldConnect {
            message,
            client,
            seq,
            hold,
        })
    }

    /// Answers a held connect, taking what it carries out of the queue:
    /// everything queued for a long-poll reply (`pushing` false), nothing
    /// for a connection that pushed its messages as they came.
    pub(crate) fn answer(&self, held: &HeldConnect, pushing: bool) -> (Vec<Event>, Value) {
        let client = &held.client;
        match client.removed() {
            // It said goodbye while this connect was held: the connect ends
            // normally, with nothing more to come.
            Some(Removal::Disconnected) => {
                let mut reply = held.message.reply(Some(&client.id), true);
                reply.insert("advice".into(), json!({"reconnect": "none"}));
                return (Vec::new(), Value::Object(reply));
            }
            Some(Removal::Dropped) => {
                let mut reply = held.message.error_reply(&BayeuxError::unknown_client());
                reply.insert(
                    "advice".into(),
                    json!({"reconnect": "handshake", "interval": 0}),
                );
                return (Vec::new(), Value::Object(reply));
            }
            None => {}
        }
        let superseded = held.superseded();
        let (events, batch) = {
            let mut state = client.state();
            if superseded {
                (Vec::new(), None)
            } else if pushing {
                (Vec::new(), state.outbox.close_batch_for_reply())
            } else {
                state.outbox.take_for_reply()
            }
        };
        let mut reply = held.message.reply(Some(&client.id), true);
        reply.insert("advice".into(), self.retry_advice());
        if let Some(batch) = batch {
            reply.insert("ext".into(), json!({"ack": batch}));
        }
        (events, Value::Object(reply))
    }

    async fn subscribe(&self, message: &Message) -> Map<String, Value> {
        let (client, channels) = match self.subscription_request(message) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        // Check every channel first: a subscribe is all or nothing.
        let mut nodes = Vec::with_capacity(channels.len());
        for channel in &channels {
            match self.may_subscribe(&client, channel).await {
                Ok(node) => nodes.push(node),
                Err(error) => return message.error_reply(&error),
            }
        }
        for (channel, node) in channels.iter().zip(&nodes) {
            let Some(node) = node else { continue };
            {
                let mut state = client.state();
                if state.removed.is_some() {
                    drop(state);
                    return message.error_reply(&BayeuxError::unknown_client());
                }
                state.subscriptions.insert(channel.clone());
            }
            self.channels
                .subscribe(channel, &client, || self.start_feed(channel, node));
            // Removed meanwhile: its removal may have missed this channel.
            if client.removed().is_some() {
                self.channels.unsubscribe(channel, &client.id);
            }
        }
        if nodes.iter().any(Option::is_some) {
            // The client may have a publish made elsewhere the moment it
            // reads this reply: the other members must know of the watch.
            self.server.pubsub.watches_known().await;
        }
        let mut reply = message.reply(Some(&client.id), true);
        reply.insert(
            "subscription".into(),
            message.fields["subscription"].clone(),
        );
        reply
    }

    /// The node behind `channel` when `client` may subscribe to it;
    /// `None` for `/service` channels (accepted, nothing to feed).
    async fn may_subscribe(
        &self,
        client: &Client,
        channel: &str,
    ) -> Result<Option<String>, BayeuxError> {
        if channel.starts_with("/meta/") {
            return Err(BayeuxError::with_arg(
                403,
                channel,
                "meta channels cannot be subscribed",
            ));
        }
        if channel.starts_with("/service/") {
            return Ok(None);
        }
        if message::is_wildcard(channel) {
            return Err(BayeuxError::with_arg(
                403,
                channel,
                "wildcard subscriptions are not supported",
            ));
        }
        let Some(node) = bridge::node_of(channel) else {
            return Err(BayeuxError::with_arg(
                404,
                channel,
                "only /pubsub/<node> channels exist",
            ));
        };
        self.server
            .pubsub
            .may_subscribe(&bridge::actor(&client.identity), node)
            .await
            .map_err(|error| bridge::error_of(channel, &error))?;
        Ok(Some(node.to_owned()))
    }

    /// Starts feeding `channel` from pub/sub node `node`. The watch is
    /// taken before the task starts, so the subscribe reply is only sent
    /// once this node is listening (and, see `subscribe`, once the other
    /// members know it).
    fn start_feed(&self, channel: &str, node: &str) -> AbortHandle {
        let mut watch = self.server.pubsub.watch(node);
        let this = self.this.clone();
        let channel = channel.to_owned();
        tokio::spawn(async move {
            while let Some(event) = watch.recv().await {
                let Some(bayeux) = this.upgrade() else { break };
                bayeux.fan_out(&channel, payload::event_message(&event));
            }
        })
        .abort_handle()
    }

    /// Queues `event` for every local subscriber of `channel`.
    fn fan_out(&self, channel: &str, event: Event) {
        for client in self.channels.subscribers(channel) {
            match client.deliver(event.clone()) {
                Ok(()) => {
                    self.counters.events_queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_overflow) => {
                    self.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(client = %client.id, channel, "Bayeux client too slow: its queue is full; removed, it must handshake again");
                    self.remove(&client.id, Removal::Dropped);
                }
            }
        }
    }

    fn unsubscribe(&self, message: &Message) -> Map<String, Value> {
        let (client, channels) = match self.subscription_request(message) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        for channel in &channels {
            client.state().subscriptions.remove(channel);
            self.channels.unsubscribe(channel, &client.id);
        }
        let mut reply = message.reply(Some(&client.id), true);
        reply.insert(
            "subscription".into(),
            message.fields["subscription"].clone(),
        );
        reply
    }

    async fn publish(&self, message: &Message) -> Map<String, Value> {
        let client = match self.client_of(message) {
            Ok(client) => client,
            Err(reply) => return reply,
        };
        let channel = &message.channel;
        let refuse =
            |code, text: &str| message.error_reply(&BayeuxError::with_arg(code, channel, text));
        if message::is_wildcard(channel) {
            return refuse(400, "cannot publish to a wildcard channel");
        }
        let Some(node) = bridge::node_of(channel) else {
            return refuse(404, "only /pubsub/<node> channels exist");
        };
        let Some(data) = message.data() else {
            return refuse(400, "publish without data");
        };
        let user = matches!(client.identity, Identity::User(_));
        if !user && self.anonymous != AnonymousAccess::Publish {
            return refuse(403, "anonymous clients may not publish");
        }
        let actor = bridge::actor(&client.identity);
        // Users may create the node by publishing; anonymous clients may not own nodes.
        let published = self
            .server
            .pubsub
            .publish(&actor, node, None, payload::item_payload(data), user)
            .await;
        match published {
            Ok(item_id) => {
                self.counters.publishes.fetch_add(1, Ordering::Relaxed);
                let mut reply = message.reply(Some(&client.id), true);
                reply.insert("ext".into(), json!({"pubsub": {"id": item_id}}));
                reply
            }
            Err(error) => message.error_reply(&bridge::error_of(channel, &error)),
        }
    }

    fn disconnect(&self, message: &Message) -> Map<String, Value> {
        let client = match self.client_of(message) {
            Ok(client) => client,
            Err(reply) => return reply,
        };
        self.remove(&client.id, Removal::Disconnected);
        message.reply(Some(&client.id), true)
    }

    /// Removes a client and its subscriptions.
    fn remove(&self, id: &str, why: Removal) {
        if let Some((client, channels)) = self.clients.remove(id, why) {
            for channel in channels {
                self.channels.unsubscribe(&channel, &client.id);
            }
        }
    }

    fn expire(&self) {
        for (client, channels) in self.clients.expire(Instant::now()) {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %client.id, "Bayeux client expired");
            for channel in channels {
                self.channels.unsubscribe(&channel, &client.id);
            }
        }
    }
}

/// Removes expired clients a few times per `max_interval` until the node
/// stops.
async fn sweep(bayeux: Weak<Bayeux>) {
    let (period, shutdown) = match bayeux.upgrade() {
        Some(bayeux) => (
            (bayeux.max_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)),
            bayeux.server.shutdown.clone(),
        ),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match bayeux.upgrade() {
            Some(bayeux) => bayeux.expire(),
            None => return,
        }
    }
}
