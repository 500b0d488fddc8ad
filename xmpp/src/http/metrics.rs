//! `GET /metrics`: the node's counters, in the Prometheus text format, or
//! in OpenMetrics 1.0 when the request's `Accept` asks for it. Public
//! unless `[http] metrics = false`; may live on its own address
//! (`[http] metrics_bind`).
//!
//! Families: connections, sessions (local and cluster), logins and
//! authentication failures, stanzas in and out by kind, routing outcomes
//! and tasks (local, remote, lookups retried and missed), the session
//! directory, every cache, cluster membership and each peer link, store
//! latency, pub/sub, each module's figures, the HTTP side's own logins,
//! the Bayeux clients and federation.
//!
//! The counters themselves are relaxed atomics where the work happens;
//! [`Node`] reads them at each scrape and writes them with
//! `prometheus-client` (see [`super::prometheus`]).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use starling_core::cluster::{PeerState, StanzaKind};

use super::HttpState;
use super::prometheus::{Families, Format};
use crate::metrics::Outcome;

pub(crate) async fn render(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        format.encode(Node(state)),
    )
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Everything this node exposes, read at each scrape.
struct Node(HttpState);

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Node")
    }
}

impl Collector for Node {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut out = Families::new(encoder);
        node(&mut out, &self.0)
    }
}

fn node(out: &mut Families<'_>, state: &HttpState) -> fmt::Result {
    let server = &state.server;
    let metrics = &server.metrics;
    let status = server.cluster.status();

    out.gauge(
        "starling_uptime_seconds",
        "Seconds since this node started.",
        server.started.elapsed().as_secs_f64(),
    )?;
    out.counter(
        "starling_connections_accepted_total",
        "Client connections accepted.",
        load(&metrics.connections_accepted),
    )?;
    out.counter(
        "starling_connections_refused_total",
        "Client connections refused (rate limit, or this node full).",
        load(&metrics.connections_refused),
    )?;
    out.gauge(
        "starling_connections_open",
        "Client connections open now.",
        load(&metrics.connections_open),
    )?;
    out.counter(
        "starling_tls_handshakes_total",
        "STARTTLS handshakes completed.",
        load(&metrics.tls_handshakes),
    )?;
    out.counter(
        "starling_stream_errors_total",
        "Streams ended with a stream error.",
        load(&metrics.stream_errors),
    )?;

    let local = server.sessions.count() as u64;
    let remote = status.remote_sessions as u64;
    out.gauges(
        "starling_sessions",
        "Bound sessions: on this node, and in the whole cluster.",
        [
            ([("scope", "local")], local),
            ([("scope", "cluster")], local + remote),
        ],
    )?;
    out.counter(
        "starling_logins_total",
        "Successful client authentications.",
        load(&metrics.logins),
    )?;
    out.counter(
        "starling_auth_failures_total",
        "Failed client authentications.",
        load(&metrics.auth_failures),
    )?;

    let kinds = [
        (StanzaKind::Message, "message"),
        (StanzaKind::Presence, "presence"),
        (StanzaKind::Iq, "iq"),
    ];
    out.counters(
        "starling_stanzas_in_total",
        "Stanzas received, from clients and from other members.",
        kinds.map(|(kind, name)| ([("kind", name)], metrics.stanzas_in(kind))),
    )?;
    out.counters(
        "starling_stanzas_out_total",
        "Stanzas written to clients.",
        kinds.map(|(kind, name)| ([("kind", name)], metrics.stanzas_out(kind))),
    )?;
    out.counters(
        "starling_routing_outcomes_total",
        "How the routing of each stanza ended.",
        Outcome::ALL.map(|outcome| ([("outcome", outcome.name())], metrics.outcomes(outcome))),
    )?;
    out.counters(
        "starling_routing_tasks_total",
        "Stanzas handed to a session on this node (local) or to another member (remote).",
        [
            ([("target", "local")], load(&metrics.routed_local)),
            ([("target", "remote")], load(&metrics.routed_remote)),
        ],
    )?;
    out.counter(
        "starling_routing_lookup_retries_total",
        "Session-directory lookups retried after a miss.",
        load(&metrics.lookup_retries),
    )?;
    out.counter(
        "starling_routing_lookup_misses_total",
        "Lookups that missed after every retry (handled as for an offline user).",
        load(&metrics.lookup_misses),
    )?;
    out.counter(
        "starling_offline_delivered_total",
        "Offline messages delivered at login.",
        load(&metrics.offline_delivered),
    )?;
    out.gauges(
        "starling_directory_entries",
        "Session-directory entries: this node's sessions, and those replicated from other members.",
        [
            ([("owner", "local")], local),
            ([("owner", "remote")], remote),
        ],
    )?;

    caches(out, state)?;
    cluster(out, &status, server.config.cluster.enabled)?;
    server.store.timings().expose(out)?;
    pubsub(out, state)?;
    for metric in server.modules.metrics() {
        if metric.counter {
            out.counter(metric.name, metric.help, metric.value)?;
        } else {
            out.gauge(metric.name, metric.help, metric.value)?;
        }
    }

    let counters = &state.counters;
    out.counter(
        "starling_admin_logins_total",
        "Admin logins on the HTTP side.",
        load(&counters.admin_logins),
    )?;
    out.counter(
        "starling_admin_login_failures_total",
        "Refused admin logins (form or HTTP Basic).",
        load(&counters.admin_login_failures),
    )?;
    out.counter(
        "starling_http_messages_total",
        "Messages sent with POST /api/messages.",
        load(&counters.messages_sent),
    )?;
    cometd(out, state)?;
    server.s2s.metrics.expose(out)?;
    server.s2s.streams.expose(out)
}

fn cometd(out: &mut Families<'_>, state: &HttpState) -> fmt::Result {
    let bayeux = &state.cometd;
    let counters = &bayeux.counters;
    out.gauge(
        "starling_cometd_clients",
        "Bayeux clients on this node.",
        bayeux.client_count() as u64,
    )?;
    out.gauge(
        "starling_cometd_channels",
        "Channels with a Bayeux subscriber on this node.",
        bayeux.channel_count() as u64,
    )?;
    for (name, help, counter) in [
        (
            "starling_cometd_handshakes_total",
            "Bayeux handshakes accepted.",
            &counters.handshakes,
        ),
        (
            "starling_cometd_handshake_failures_total",
            "Bayeux handshakes refused (bad input, credentials, or a limit).",
            &counters.handshake_failures,
        ),
        (
            "starling_cometd_expired_total",
            "Bayeux clients removed after maxInterval without a connect.",
            &counters.expired,
        ),
        (
            "starling_cometd_write_timeouts_total",
            "Bayeux WebSockets closed because the client read nothing for write_timeout_ms.",
            &counters.write_timeouts,
        ),
        (
            "starling_cometd_dropped_slow_total",
            "Bayeux clients removed because their queue was full.",
            &counters.dropped_slow,
        ),
        (
            "starling_cometd_events_queued_total",
            "Events queued for Bayeux clients.",
            &counters.events_queued,
        ),
        (
            "starling_cometd_publishes_total",
            "Bayeux publishes turned into pub/sub items.",
            &counters.publishes,
        ),
    ] {
        out.counter(name, help, load(counter))?;
    }
    out.counters(
        "starling_cometd_handshakes_refused_total",
        "Bayeux handshakes refused by a limit: this node full (max_clients), the address full (max_clients_per_ip), or its handshake rate.",
        [
            ([("reason", "node_full")], load(&counters.refused_node_full)),
            ([("reason", "address_full")], load(&counters.refused_address_full)),
            ([("reason", "rate")], load(&counters.refused_rate)),
        ],
    )
}

fn caches(out: &mut Families<'_>, state: &HttpState) -> fmt::Result {
    let snapshot = super::api::cache_snapshot(&state.server);
    out.gauges(
        "starling_cache_entries",
        "Entries held by each cache.",
        snapshot.iter().map(|cache| {
            let kind = match cache.kind {
                starling_core::cache::CacheKind::Replicated => "replicated",
                starling_core::cache::CacheKind::Invalidated => "invalidated",
                starling_core::cache::CacheKind::Local => "local",
            };
            ([("cache", cache.name.as_str()), ("kind", kind)], cache.size)
        }),
    )?;
    out.gauges(
        "starling_cache_limit",
        "Entry limit of each cache (0: never evicted).",
        snapshot
            .iter()
            .map(|cache| ([("cache", cache.name.as_str())], cache.limit)),
    )?;
    let counters: [(&str, &str, fn(&starling_core::cache::CacheStats) -> u64); 3] = [
        (
            "starling_cache_hits_total",
            "Cache lookups answered from the cache.",
            |c| c.hits,
        ),
        (
            "starling_cache_misses_total",
            "Cache lookups that went to the store.",
            |c| c.misses,
        ),
        (
            "starling_cache_evictions_total",
            "Entries evicted to stay within the limit.",
            |c| c.evictions,
        ),
    ];
    for (name, help, value) in counters {
        out.counters(
            name,
            help,
            snapshot
                .iter()
                .map(|cache| ([("cache", cache.name.as_str())], value(cache))),
        )?;
    }
    Ok(())
}

fn cluster(
    out: &mut Families<'_>,
    status: &starling_core::cluster::ClusterStatus,
    enabled: bool,
) -> fmt::Result {
    let states = [
        (PeerState::Up, "up"),
        (PeerState::Suspect, "suspect"),
        (PeerState::Down, "down"),
        (PeerState::Leaving, "leaving"),
    ];
    out.gauges(
        "starling_cluster_members",
        "Members by state, as this node sees them.",
        states.map(|(state, name)| {
            let members = status.members.iter().filter(|m| m.state == state).count();
            ([("state", name)], members as u64)
        }),
    )?;
    let quorum = !enabled || super::api::cluster::has_quorum(status);
    out.gauge(
        "starling_cluster_quorum",
        "1 while a senior member is known and a majority of the members is up.",
        u64::from(quorum),
    )?;
    out.gauge(
        "starling_cluster_ready",
        "1 once this node holds the session directory and accepts logins.",
        u64::from(status.ready),
    )?;
    out.gauge(
        "starling_cluster_term",
        "The Raft term this node knows.",
        status.term,
    )?;
    let peers: Vec<_> = status
        .members
        .iter()
        .filter(|member| member.id != status.this_node)
        .collect();
    out.gauges(
        "starling_cluster_peer_up",
        "1 when the peer is up and its link established.",
        peers.iter().map(|peer| {
            let up = peer.state == PeerState::Up && peer.link.is_some();
            ([("peer", peer.name.as_str())], u64::from(up))
        }),
    )?;
    out.gauges(
        "starling_cluster_peer_queue_depth",
        "Frames waiting in the send queue to each peer.",
        peers.iter().map(|peer| {
            let depth = peer.link.as_ref().map_or(0, |link| link.queue_depth);
            ([("peer", peer.name.as_str())], depth as u64)
        }),
    )?;
    out.gauges(
        "starling_cluster_peer_heard_seconds",
        "Seconds since anything arrived from each linked peer.",
        peers.iter().filter_map(|peer| {
            let link = peer.link.as_ref()?;
            Some((
                [("peer", peer.name.as_str())],
                link.heard_ms_ago as f64 / 1000.0,
            ))
        }),
    )?;
    let counters = &status.counters;
    for (name, help, value) in [
        (
            "starling_cluster_forwarded_total",
            "Stanzas handed to a peer link.",
            counters.forwarded,
        ),
        (
            "starling_cluster_forward_failures_total",
            "Stanzas a peer link could not take.",
            counters.forward_failures,
        ),
        (
            "starling_cluster_received_total",
            "Stanzas received from peers.",
            counters.received,
        ),
        (
            "starling_cluster_directory_deltas_sent_total",
            "Session-directory deltas sent to peers.",
            counters.deltas_sent,
        ),
        (
            "starling_cluster_directory_resyncs_total",
            "Full session-directory resyncs.",
            counters.resyncs,
        ),
        (
            "starling_cluster_invalidations_total",
            "Cache invalidations sent to peers.",
            counters.invalidations,
        ),
        (
            "starling_cluster_pubsub_sent_total",
            "Pub/sub events queued for peers (one per interested peer and event).",
            counters.pubsub_sent,
        ),
        (
            "starling_cluster_pubsub_received_total",
            "Pub/sub events received from peers.",
            counters.pubsub_received,
        ),
        (
            "starling_cluster_pubsub_interest_changes_total",
            "Changes to this node's pub/sub interest set announced to peers.",
            counters.interest_changes,
        ),
        (
            "starling_cluster_pubsub_interest_ack_timeouts_total",
            "Bayeux subscribes answered before every peer confirmed the interest change (timeout).",
            counters.interest_ack_timeouts,
        ),
        (
            "starling_cluster_resent_total",
            "Stanzas a dead peer link left unacknowledged, sent again on the next link to the same peer.",
            counters.resent,
        ),
        (
            "starling_cluster_duplicates_dropped_total",
            "Stanzas from a peer dropped as copies of ones already delivered (sent again after a link flap).",
            counters.duplicates_dropped,
        ),
        (
            "starling_cluster_handed_back_unsent_total",
            "Stanzas a given-up peer had not acknowledged and no link had begun to write, routed again as if never forwarded.",
            counters.handed_back_unsent,
        ),
        (
            "starling_cluster_handed_back_unconfirmed_total",
            "Stanzas a given-up peer had not acknowledged after a link wrote them (it may have handled them), routed again as returned.",
            counters.handed_back_unconfirmed,
        ),
    ] {
        out.counter(name, help, value)?;
    }
    Ok(())
}

fn pubsub(out: &mut Families<'_>, state: &HttpState) -> fmt::Result {
    let pubsub = &state.server.pubsub;
    let counters = &pubsub.counters;
    for (name, help, value) in [
        (
            "starling_pubsub_published_total",
            "Items published through this node.",
            &counters.published,
        ),
        (
            "starling_pubsub_notifications_total",
            "Event notifications handed to sessions on this node.",
            &counters.notifications_local,
        ),
        (
            "starling_pubsub_federated_notifications_total",
            "Event notifications queued for subscribers of other servers.",
            &counters.notifications_remote_servers,
        ),
        (
            "starling_pubsub_watcher_events_total",
            "Events handed to local watchers (CometD subscribers), once per watch.",
            &counters.watcher_events,
        ),
        (
            "starling_pubsub_cluster_events_sent_total",
            "Events sent to other members that have subscribers or watchers.",
            &counters.cluster_events_sent,
        ),
        (
            "starling_pubsub_cluster_events_received_total",
            "Events other members sent to this node.",
            &counters.cluster_events_received,
        ),
        (
            "starling_pubsub_cluster_events_failed_total",
            "Events a member's link could not take.",
            &counters.cluster_events_failed,
        ),
        (
            "starling_pubsub_notify_lookup_retries_total",
            "Directory lookups repeated for subscribers found on no member (their login may not have arrived yet).",
            &counters.late_retries,
        ),
        (
            "starling_pubsub_notify_late_total",
            "Notifications sent on after a repeated lookup found the subscriber (once per session).",
            &counters.late_delivered,
        ),
        (
            "starling_pubsub_notify_misses_total",
            "Notifications not delivered after the repeated lookups: the subscriber is offline (items stay stored).",
            &counters.late_misses,
        ),
        (
            "starling_pubsub_notify_queue_overflow_total",
            "Notifications dropped because too many waited for one subscriber's repeated lookup.",
            &counters.late_overflow,
        ),
    ] {
        out.counter(name, help, load(value))?;
    }
    out.gauge(
        "starling_pubsub_notify_waiting_subscribers",
        "Subscribers (per pub/sub node) whose notifications wait for a repeated directory lookup.",
        pubsub.waiting_subscribers() as u64,
    )?;
    out.gauge(
        "starling_pubsub_watched_nodes",
        "Pub/sub nodes with local watchers.",
        pubsub.watched_nodes() as u64,
    )
}
