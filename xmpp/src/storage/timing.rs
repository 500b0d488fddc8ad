//! Storage latency: a fixed-bucket histogram per kind of store call, cheap
//! enough for every call (a clock read and three relaxed atomic adds).
//!
//! The calls measured are those on a user's path: account lookups at login,
//! roster reads and writes, offline store and flush. `/metrics` reads them
//! through [`StoreTimings::expose`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::http::prometheus::{Families, Histogram};

/// Upper bounds of the histogram buckets, in microseconds (Prometheus `le`).
pub const BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

/// A store call whose latency is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    GetUser,
    GetRoster,
    WriteRoster,
    StoreOffline,
    TakeOffline,
    WriteUser,
}

impl StoreOp {
    pub const ALL: [StoreOp; 6] = [
        StoreOp::GetUser,
        StoreOp::GetRoster,
        StoreOp::WriteRoster,
        StoreOp::StoreOffline,
        StoreOp::TakeOffline,
        StoreOp::WriteUser,
    ];

    /// The `op` label on `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::GetUser => "get_user",
            StoreOp::GetRoster => "get_roster",
            StoreOp::WriteRoster => "write_roster",
            StoreOp::StoreOffline => "store_offline",
            StoreOp::TakeOffline => "take_offline",
            StoreOp::WriteUser => "write_user",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct Buckets {
    /// Non-cumulative counts per bucket; the last slot is "above every bound".
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// Latency histograms of the store calls, shared by every clone of a `Store`.
#[derive(Debug, Default)]
pub struct StoreTimings {
    ops: [Buckets; StoreOp::ALL.len()],
}

impl StoreTimings {
    /// Starts timing one call; the time is recorded when the guard drops, so
    /// failed and cancelled calls count too.
    pub fn start(&self, op: StoreOp) -> Timer<'_> {
        Timer {
            timings: self,
            op,
            started: Instant::now(),
        }
    }

    pub fn record(&self, op: StoreOp, micros: u64) {
        let histogram = &self.ops[op.index()];
        let bucket = BUCKETS_US
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKETS_US.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        histogram.sum_us.fetch_add(micros, Ordering::Relaxed);
        histogram.count.fetch_add(1, Ordering::Relaxed);
    }

    /// One operation's histogram as read now: sum in seconds, count, and
    /// each bucket's own count (not cumulative).
    pub(crate) fn read(&self, op: StoreOp) -> Histogram {
        let histogram = &self.ops[op.index()];
        Histogram {
            sum: histogram.sum_us.load(Ordering::Relaxed) as f64 / 1_000_000.0,
            count: histogram.count.load(Ordering::Relaxed),
            buckets: BUCKETS_US
                .iter()
                .zip(&histogram.buckets)
                .map(|(bound, bucket)| {
                    (*bound as f64 / 1_000_000.0, bucket.load(Ordering::Relaxed))
                })
                .collect(),
        }
    }

    /// `starling_storage_seconds{op}` for `/metrics`.
    pub(crate) fn expose(&self, out: &mut Families<'_>) -> std::fmt::Result {
        out.histograms(
            "starling_storage_seconds",
            "Latency of store calls on users' paths, by operation.",
            StoreOp::ALL.map(|op| ([("op", op.name())], self.read(op))),
        )
    }
}

/// Records the elapsed time of one store call when dropped.
pub struct Timer<'a> {
    timings: &'a StoreTimings,
    op: StoreOp,
    started: Instant,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.timings.record(self.op, micros);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_each_call_once_and_the_sum_adds_up() {
        let timings = StoreTimings::default();
        timings.record(StoreOp::GetUser, 100);
        timings.record(StoreOp::GetUser, 3_000);
        timings.record(StoreOp::GetUser, 9_000_000);
        timings.record(StoreOp::TakeOffline, 250);
        let get_user = timings.read(StoreOp::GetUser);
        assert_eq!(get_user.count, 3);
        assert_eq!(get_user.sum, 9.0031);
        assert_eq!(get_user.buckets[0], (0.00025, 1), "100 us <= 250 us");
        assert_eq!(get_user.buckets[3].1, 0, "3 ms is above 2.5 ms");
        assert_eq!(get_user.buckets[4], (0.005, 1), "3 ms <= 5 ms");
        assert_eq!(
            get_user.buckets.iter().map(|(_, n)| n).sum::<u64>(),
            2,
            "9 s is above every bound: only in the count"
        );
        let take = timings.read(StoreOp::TakeOffline);
        assert_eq!(take.buckets[0].1, 1, "a bound is inclusive");
    }

    #[test]
    fn a_timer_records_when_dropped() {
        let timings = StoreTimings::default();
        drop(timings.start(StoreOp::StoreOffline));
        assert_eq!(timings.read(StoreOp::StoreOffline).count, 1);
    }
}
