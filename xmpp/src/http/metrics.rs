//! `GET /metrics`: the node's counters in the Prometheus text format.
//! Public unless `[http] metrics = false`; may live on its own address
//! (`[http] metrics_bind`).
//!
//! Families: connections, sessions (local and cluster), logins and
//! authentication failures, stanzas in and out by kind, routing outcomes
//! and tasks (local, remote, lookups retried and missed), the session
//! directory, every cache, cluster membership and each peer link, store
//! latency, the HTTP side's own logins, and the Bayeux clients.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use starling_core::cluster::{PeerState, StanzaKind};

use super::HttpState;
use super::prometheus::{Exposition, Kind, count};
use crate::metrics::Outcome;
use crate::storage::BUCKETS_US;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn render(State(state): State<HttpState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], exposition(&state))
}

fn load(counter: &AtomicU64) -> f64 {
    count(counter.load(Ordering::Relaxed))
}

pub(crate) fn exposition(state: &HttpState) -> String {
    let server = &state.server;
    let metrics = &server.metrics;
    let status = server.cluster.status();
    let mut out = Exposition::default();

    out.single(
        "starling_uptime_seconds",
        Kind::Gauge,
        "Seconds since this node started.",
        server.started.elapsed().as_secs_f64(),
    );

    out.single(
        "starling_connections_accepted_total",
        Kind::Counter,
        "Client connections accepted.",
        load(&metrics.connections_accepted),
    );
    out.single(
        "starling_connections_refused_total",
        Kind::Counter,
        "Client connections refused (rate limit, or this node full).",
        load(&metrics.connections_refused),
    );
    out.single(
        "starling_connections_open",
        Kind::Gauge,
        "Client connections open now.",
        load(&metrics.connections_open),
    );
    out.single(
        "starling_tls_handshakes_total",
        Kind::Counter,
        "STARTTLS handshakes completed.",
        load(&metrics.tls_handshakes),
    );
    out.single(
        "starling_stream_errors_total",
        Kind::Counter,
        "Streams ended with a stream error.",
        load(&metrics.stream_errors),
    );

    let local = server.sessions.count();
    out.family(
        "starling_sessions",
        Kind::Gauge,
        "Bound sessions: on this node, and in the whole cluster.",
    )
    .sample(
        "starling_sessions",
        &[("scope", "local")],
        count(local as u64),
    )
    .sample(
        "starling_sessions",
        &[("scope", "cluster")],
        count((local + status.remote_sessions) as u64),
    );

    out.single(
        "starling_logins_total",
        Kind::Counter,
        "Successful client authentications.",
        load(&metrics.logins),
    );
    out.single(
        "starling_auth_failures_total",
        Kind::Counter,
        "Failed client authentications.",
        load(&metrics.auth_failures),
    );

    let kinds = [
        (StanzaKind::Message, "message"),
        (StanzaKind::Presence, "presence"),
        (StanzaKind::Iq, "iq"),
    ];
    out.family(
        "starling_stanzas_in_total",
        Kind::Counter,
        "Stanzas received, from clients and from other members.",
    );
    for (kind, name) in kinds {
        out.sample(
            "starling_stanzas_in_total",
            &[("kind", name)],
            count(metrics.stanzas_in(kind)),
        );
    }
    out.family(
        "starling_stanzas_out_total",
        Kind::Counter,
        "Stanzas written to clients.",
    );
    for (kind, name) in kinds {
        out.sample(
            "starling_stanzas_out_total",
            &[("kind", name)],
            count(metrics.stanzas_out(kind)),
        );
    }

    out.family(
        "starling_routing_outcomes_total",
        Kind::Counter,
        "How the routing of each stanza ended.",
    );
    for outcome in Outcome::ALL {
        out.sample(
            "starling_routing_outcomes_total",
            &[("outcome", outcome.name())],
            count(metrics.outcomes(outcome)),
        );
    }
    out.family(
        "starling_routing_tasks_total",
        Kind::Counter,
        "Stanzas handed to a session on this node (local) or to another member (remote).",
    )
    .sample(
        "starling_routing_tasks_total",
        &[("target", "local")],
        load(&metrics.routed_local),
    )
    .sample(
        "starling_routing_tasks_total",
        &[("target", "remote")],
        load(&metrics.routed_remote),
    );
    out.single(
        "starling_routing_lookup_retries_total",
        Kind::Counter,
        "Session-directory lookups retried after a miss.",
        load(&metrics.lookup_retries),
    );
    out.single(
        "starling_routing_lookup_misses_total",
        Kind::Counter,
        "Lookups that missed after every retry (handled as for an offline user).",
        load(&metrics.lookup_misses),
    );
    out.single(
        "starling_offline_delivered_total",
        Kind::Counter,
        "Offline messages delivered at login.",
        load(&metrics.offline_delivered),
    );

    out.family(
        "starling_directory_entries",
        Kind::Gauge,
        "Session-directory entries: this node's sessions, and those replicated from other members.",
    )
    .sample(
        "starling_directory_entries",
        &[("owner", "local")],
        count(local as u64),
    )
    .sample(
        "starling_directory_entries",
        &[("owner", "remote")],
        count(status.remote_sessions as u64),
    );

    caches(&mut out, state);
    cluster(&mut out, &status, server.config.cluster.enabled);
    storage(&mut out, state);
    pubsub(&mut out, state);
    for metric in server.modules.metrics() {
        let kind = if metric.counter {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        out.single(metric.name, kind, metric.help, count(metric.value));
    }

    let counters = &state.counters;
    out.single(
        "starling_admin_logins_total",
        Kind::Counter,
        "Admin logins on the HTTP side.",
        load(&counters.admin_logins),
    );
    out.single(
        "starling_admin_login_failures_total",
        Kind::Counter,
        "Refused admin logins (form or HTTP Basic).",
        load(&counters.admin_login_failures),
    );
    out.single(
        "starling_http_messages_total",
        Kind::Counter,
        "Messages sent with POST /api/messages.",
        load(&counters.messages_sent),
    );
    cometd(&mut out, state);
    server.s2s.metrics.expose(&mut out);
    out.finish()
}

fn cometd(out: &mut Exposition, state: &HttpState) {
    let bayeux = &state.cometd;
    let counters = &bayeux.counters;
    out.single(
        "starling_cometd_clients",
        Kind::Gauge,
        "Bayeux clients on this node.",
        count(bayeux.client_count() as u64),
    );
    out.single(
        "starling_cometd_channels",
        Kind::Gauge,
        "Channels with a Bayeux subscriber on this node.",
        count(bayeux.channel_count() as u64),
    );
    for (name, help, counter) in [
        (
            "handshakes",
            "Bayeux handshakes accepted.",
            &counters.handshakes,
        ),
        (
            "handshake_failures",
            "Bayeux handshakes refused (bad input, credentials, or a limit).",
            &counters.handshake_failures,
        ),
        (
            "expired",
            "Bayeux clients removed after maxInterval without a connect.",
            &counters.expired,
        ),
        (
            "write_timeouts",
            "Bayeux WebSockets closed because the client read nothing for write_timeout_ms.",
            &counters.write_timeouts,
        ),
        (
            "dropped_slow",
            "Bayeux clients removed because their queue was full.",
            &counters.dropped_slow,
        ),
        (
            "events_queued",
            "Events queued for Bayeux clients.",
            &counters.events_queued,
        ),
        (
            "publishes",
            "Bayeux publishes turned into pub/sub items.",
            &counters.publishes,
        ),
    ] {
        out.single(
            &format!("starling_cometd_{name}_total"),
            Kind::Counter,
            help,
            load(counter),
        );
    }
    out.family(
        "starling_cometd_handshakes_refused_total",
        Kind::Counter,
        "Bayeux handshakes refused by a limit: this node full (max_clients), the address full (max_clients_per_ip), or its handshake rate.",
    );
    for (reason, counter) in [
        ("node_full", &counters.refused_node_full),
        ("address_full", &counters.refused_address_full),
        ("rate", &counters.refused_rate),
    ] {
        out.sample(
            "starling_cometd_handshakes_refused_total",
            &[("reason", reason)],
            load(counter),
        );
    }
}

fn caches(out: &mut Exposition, state: &HttpState) {
    let snapshot = super::api::cache_snapshot(&state.server);
    out.family(
        "starling_cache_entries",
        Kind::Gauge,
        "Entries held by each cache.",
    );
    for cache in &snapshot {
        let kind = match cache.kind {
            starling_core::cache::CacheKind::Replicated => "replicated",
            starling_core::cache::CacheKind::Invalidated => "invalidated",
            starling_core::cache::CacheKind::Local => "local",
        };
        out.sample(
            "starling_cache_entries",
            &[("cache", &cache.name), ("kind", kind)],
            count(cache.size),
        );
    }
    out.family(
        "starling_cache_limit",
        Kind::Gauge,
        "Entry limit of each cache (0: never evicted).",
    );
    for cache in &snapshot {
        out.sample(
            "starling_cache_limit",
            &[("cache", &cache.name)],
            count(cache.limit),
        );
    }
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
        out.family(name, Kind::Counter, help);
        for cache in &snapshot {
            out.sample(name, &[("cache", &cache.name)], count(value(cache)));
        }
    }
}

fn cluster(out: &mut Exposition, status: &starling_core::cluster::ClusterStatus, enabled: bool) {
    let states = [
        (PeerState::Up, "up"),
        (PeerState::Suspect, "suspect"),
        (PeerState::Down, "down"),
        (PeerState::Leaving, "leaving"),
    ];
    out.family(
        "starling_cluster_members",
        Kind::Gauge,
        "Members by state, as this node sees them.",
    );
    for (state, name) in states {
        let members = status.members.iter().filter(|m| m.state == state).count();
        out.sample(
            "starling_cluster_members",
            &[("state", name)],
            count(members as u64),
        );
    }
    let quorum = !enabled || super::api::cluster::has_quorum(status);
    out.single(
        "starling_cluster_quorum",
        Kind::Gauge,
        "1 while a senior member is known and a majority of the members is up.",
        if quorum { 1.0 } else { 0.0 },
    );
    out.single(
        "starling_cluster_ready",
        Kind::Gauge,
        "1 once this node holds the session directory and accepts logins.",
        if status.ready { 1.0 } else { 0.0 },
    );
    out.single(
        "starling_cluster_term",
        Kind::Gauge,
        "The Raft term this node knows.",
        count(status.term),
    );
    let peers: Vec<_> = status
        .members
        .iter()
        .filter(|member| member.id != status.this_node)
        .collect();
    out.family(
        "starling_cluster_peer_up",
        Kind::Gauge,
        "1 when the peer is up and its link established.",
    );
    for peer in &peers {
        let up = peer.state == PeerState::Up && peer.link.is_some();
        out.sample(
            "starling_cluster_peer_up",
            &[("peer", &peer.name)],
            if up { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "starling_cluster_peer_queue_depth",
        Kind::Gauge,
        "Frames waiting in the send queue to each peer.",
    );
    for peer in &peers {
        let depth = peer.link.as_ref().map_or(0, |link| link.queue_depth);
        out.sample(
            "starling_cluster_peer_queue_depth",
            &[("peer", &peer.name)],
            count(depth as u64),
        );
    }
    out.family(
        "starling_cluster_peer_heard_seconds",
        Kind::Gauge,
        "Seconds since anything arrived from each linked peer.",
    );
    for peer in &peers {
        if let Some(link) = &peer.link {
            out.sample(
                "starling_cluster_peer_heard_seconds",
                &[("peer", &peer.name)],
                link.heard_ms_ago as f64 / 1000.0,
            );
        }
    }
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
    ] {
        out.single(name, Kind::Counter, help, count(value));
    }
}

fn pubsub(out: &mut Exposition, state: &HttpState) {
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
        out.single(name, Kind::Counter, help, load(value));
    }
    out.single(
        "starling_pubsub_notify_waiting_subscribers",
        Kind::Gauge,
        "Subscribers (per pub/sub node) whose notifications wait for a repeated directory lookup.",
        count(pubsub.waiting_subscribers() as u64),
    );
    out.single(
        "starling_pubsub_watched_nodes",
        Kind::Gauge,
        "Pub/sub nodes with local watchers.",
        count(pubsub.watched_nodes() as u64),
    );
}

fn storage(out: &mut Exposition, state: &HttpState) {
    const NAME: &str = "starling_storage_seconds";
    out.family(
        NAME,
        Kind::Histogram,
        "Latency of store calls on users' paths, by operation.",
    );
    let bounds: Vec<String> = BUCKETS_US
        .iter()
        .map(|us| (*us as f64 / 1_000_000.0).to_string())
        .collect();
    for histogram in state.server.store.timings().snapshot() {
        let op = histogram.op.name();
        for (bound, cumulative) in bounds.iter().zip(histogram.cumulative) {
            out.sample(
                "starling_storage_seconds_bucket",
                &[("op", op), ("le", bound)],
                count(cumulative),
            );
        }
        out.sample(
            "starling_storage_seconds_bucket",
            &[("op", op), ("le", "+Inf")],
            count(histogram.count),
        );
        out.sample(
            "starling_storage_seconds_sum",
            &[("op", op)],
            histogram.sum_us as f64 / 1_000_000.0,
        );
        out.sample(
            "starling_storage_seconds_count",
            &[("op", op)],
            count(histogram.count),
        );
    }
}
