//! Federation counters, per direction, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::connect::Method;
use crate::http::prometheus::Families;

#[derive(Debug, Clone, Copy)]
pub(super) enum Direction {
    In,
    Out,
}

#[derive(Debug, Default)]
pub struct S2sMetrics {
    /// Streams open now.
    pub streams_in: AtomicU64,
    pub streams_out: AtomicU64,
    /// Of those, XEP-0288 bidirectional ones: incoming streams that carry
    /// our stanzas, outgoing streams that carry the peer's.
    pub bidi_in: AtomicU64,
    pub bidi_out: AtomicU64,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Streams authenticated, by direction and method.
    external_in: AtomicU64,
    dialback_in: AtomicU64,
    external_out: AtomicU64,
    dialback_out: AtomicU64,
    /// Incoming connections refused before their stream: over the per-IP
    /// rate or `max_inbound_streams`.
    pub refused_in: AtomicU64,
    /// Incoming streams ended with a stream error we sent.
    pub stream_errors_in: AtomicU64,
    /// Outgoing streams that could not be set up.
    pub connect_failures: AtomicU64,
    /// Stanzas bounced because no outgoing stream took them.
    pub bounced: AtomicU64,
    /// Barriers (pings answered in order) sent on outgoing streams.
    pub barriers: AtomicU64,
    /// Stanzas written to a peer that its answer to a barrier confirmed.
    pub confirmed: AtomicU64,
    /// Stanzas written to a peer and awaiting its confirmation now.
    pub unconfirmed: AtomicU64,
}

/// A figure's two series by `direction`.
fn in_out(
    inbound: &AtomicU64,
    outbound: &AtomicU64,
) -> [([(&'static str, &'static str); 1], u64); 2] {
    [
        ([("direction", "in")], inbound.load(Ordering::Relaxed)),
        ([("direction", "out")], outbound.load(Ordering::Relaxed)),
    ]
}

impl S2sMetrics {
    pub(super) fn authenticated(&self, direction: Direction, method: Method) {
        let counter = match (direction, method) {
            (Direction::In, Method::External) => &self.external_in,
            (Direction::In, Method::Dialback) => &self.dialback_in,
            (Direction::Out, Method::External) => &self.external_out,
            (Direction::Out, Method::Dialback) => &self.dialback_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn expose(&self, out: &mut Families<'_>) -> std::fmt::Result {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        out.gauges(
            "starling_s2s_streams",
            "Server-to-server streams open now.",
            in_out(&self.streams_in, &self.streams_out),
        )?;
        out.gauges(
            "starling_s2s_bidi_streams",
            "Server-to-server streams open now that carry stanzas both ways (XEP-0288).",
            in_out(&self.bidi_in, &self.bidi_out),
        )?;
        out.counters(
            "starling_s2s_stanzas_total",
            "Stanzas received from and sent to other servers.",
            in_out(&self.stanzas_in, &self.stanzas_out),
        )?;
        out.counters(
            "starling_s2s_authentications_total",
            "Server-to-server streams authenticated, by method (SASL EXTERNAL or dialback).",
            [
                (
                    [("direction", "in"), ("method", "external")],
                    load(&self.external_in),
                ),
                (
                    [("direction", "in"), ("method", "dialback")],
                    load(&self.dialback_in),
                ),
                (
                    [("direction", "out"), ("method", "external")],
                    load(&self.external_out),
                ),
                (
                    [("direction", "out"), ("method", "dialback")],
                    load(&self.dialback_out),
                ),
            ],
        )?;
        out.counter(
            "starling_s2s_stream_errors_total",
            "Incoming server-to-server streams ended with a stream error.",
            load(&self.stream_errors_in),
        )?;
        out.counter(
            "starling_s2s_refused_total",
            "Incoming server connections refused: over the per-IP rate or max_inbound_streams.",
            load(&self.refused_in),
        )?;
        out.counter(
            "starling_s2s_connect_failures_total",
            "Outgoing server-to-server streams that could not be set up.",
            load(&self.connect_failures),
        )?;
        out.counter(
            "starling_s2s_bounced_total",
            "Stanzas to other servers bounced because no stream took them.",
            load(&self.bounced),
        )?;
        out.counter(
            "starling_s2s_barriers_total",
            "Barriers (pings the peer answers in order) sent to confirm stanzas.",
            load(&self.barriers),
        )?;
        out.counter(
            "starling_s2s_confirmed_total",
            "Stanzas sent to other servers that the peer confirmed.",
            load(&self.confirmed),
        )?;
        out.gauge(
            "starling_s2s_unconfirmed",
            "Stanzas written to other servers and awaiting their confirmation.",
            load(&self.unconfirmed),
        )
    }
}
