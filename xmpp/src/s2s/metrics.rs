//! Federation counters, per direction, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::connect::Method;
use crate::http::prometheus::{Exposition, Kind, count};

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
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Streams authenticated, by direction and method.
    external_in: AtomicU64,
    dialback_in: AtomicU64,
    external_out: AtomicU64,
    dialback_out: AtomicU64,
    /// Incoming streams ended with a stream error we sent.
    pub stream_errors_in: AtomicU64,
    /// Outgoing streams that could not be set up.
    pub connect_failures: AtomicU64,
    /// Stanzas bounced because no outgoing stream took them.
    pub bounced: AtomicU64,
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

    pub(crate) fn expose(&self, out: &mut Exposition) {
        let load = |counter: &AtomicU64| count(counter.load(Ordering::Relaxed));
        let name = "starling_s2s_streams";
        out.family(name, Kind::Gauge, "Server-to-server streams open now.")
            .sample(name, &[("direction", "in")], load(&self.streams_in))
            .sample(name, &[("direction", "out")], load(&self.streams_out));
        let name = "starling_s2s_stanzas_total";
        out.family(
            name,
            Kind::Counter,
            "Stanzas received from and sent to other servers.",
        )
        .sample(name, &[("direction", "in")], load(&self.stanzas_in))
        .sample(name, &[("direction", "out")], load(&self.stanzas_out));
        let name = "starling_s2s_authentications_total";
        out.family(
            name,
            Kind::Counter,
            "Server-to-server streams authenticated, by method (SASL EXTERNAL or dialback).",
        )
        .sample(
            name,
            &[("direction", "in"), ("method", "external")],
            load(&self.external_in),
        )
        .sample(
            name,
            &[("direction", "in"), ("method", "dialback")],
            load(&self.dialback_in),
        )
        .sample(
            name,
            &[("direction", "out"), ("method", "external")],
            load(&self.external_out),
        )
        .sample(
            name,
            &[("direction", "out"), ("method", "dialback")],
            load(&self.dialback_out),
        );
        out.single(
            "starling_s2s_stream_errors_total",
            Kind::Counter,
            "Incoming server-to-server streams ended with a stream error.",
            load(&self.stream_errors_in),
        );
        out.single(
            "starling_s2s_connect_failures_total",
            Kind::Counter,
            "Outgoing server-to-server streams that could not be set up.",
            load(&self.connect_failures),
        );
        out.single(
            "starling_s2s_bounced_total",
            Kind::Counter,
            "Stanzas to other servers bounced because no stream took them.",
            load(&self.bounced),
        );
    }
}
