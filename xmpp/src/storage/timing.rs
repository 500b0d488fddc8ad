//! Storage latency: a fixed-bucket histogram per kind of store call, cheap
//! enough for every call (a clock read and three relaxed atomic adds).
//!
//! The calls measured are those on a user's path: account lookups at login,
//! roster reads and writes, offline store and flush. `/metrics` reads them
//! through [`StoreTimings::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is "above every bound".
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

/// One histogram as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub op: StoreOp,
    /// Cumulative counts for each bound of [`BUCKETS_US`] (Prometheus style).
    pub cumulative: [u64; BUCKETS_US.len()],
    pub sum_us: u64,
    pub count: u64,
}

/// Latency histograms of the store calls, shared by every clone of a `Store`.
#[derive(Debug, Default)]
pub struct StoreTimings {
    ops: [Histogram; StoreOp::ALL.len()],
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

    pub fn snapshot(&self) -> Vec<HistogramSnapshot> {
        StoreOp::ALL
            .iter()
            .map(|op| {
                let histogram = &self.ops[op.index()];
                let mut cumulative = [0; BUCKETS_US.len()];
                let mut running = 0;
                for (slot, bucket) in cumulative.iter_mut().zip(&histogram.buckets) {
                    running += bucket.load(Ordering::Relaxed);
                    *slot = running;
                }
                HistogramSnapshot {
                    op: *op,
                    cumulative,
                    sum_us: histogram.sum_us.load(Ordering::Relaxed),
                    count: histogram.count.load(Ordering::Relaxed),
                }
            })
            .collect()
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
    fn buckets_are_cumulative_and_the_sum_adds_up() {
        let timings = StoreTimings::default();
        timings.record(StoreOp::GetUser, 100);
        timings.record(StoreOp::GetUser, 3_000);
        timings.record(StoreOp::GetUser, 9_000_000);
        timings.record(StoreOp::TakeOffline, 250);
        let snapshot = timings.snapshot();
        let get_user = snapshot.iter().find(|h| h.op == StoreOp::GetUser).unwrap();
        assert_eq!(get_user.count, 3);
        assert_eq!(get_user.sum_us, 9_003_100);
        assert_eq!(get_user.cumulative[0], 1, "100 us <= 250 us");
        assert_eq!(get_user.cumulative[3], 1, "3 ms is above 2.5 ms");
        assert_eq!(get_user.cumulative[4], 2, "3 ms <= 5 ms");
        assert_eq!(
            *get_user.cumulative.last().unwrap(),
            2,
            "9 s is above every bound: only in the count"
        );
        let take = snapshot
            .iter()
            .find(|h| h.op == StoreOp::TakeOffline)
            .unwrap();
        assert_eq!(take.cumulative[0], 1, "a bound is inclusive");
    }

    #[test]
    fn a_timer_records_when_dropped() {
        let timings = StoreTimings::default();
        drop(timings.start(StoreOp::StoreOffline));
        let snapshot = timings.snapshot();
        let stored = snapshot
            .iter()
            .find(|h| h.op == StoreOp::StoreOffline)
            .unwrap();
        assert_eq!(stored.count, 1);
    }
}
