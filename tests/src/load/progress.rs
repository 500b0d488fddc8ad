//! Live figures of a long run: each worker counts logins, stanzas sent and
//! received, and errors as they happen, and reports them to the parent every
//! few seconds; the parent prints one line for the whole fleet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often workers report and the parent prints.
pub const EVERY: Duration = Duration::from_secs(5);

static LOGGED_IN: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);

pub fn logged_in() {
    LOGGED_IN.fetch_add(1, Ordering::Relaxed);
}

pub fn sent() {
    SENT.fetch_add(1, Ordering::Relaxed);
}

pub fn received() {
    RECEIVED.fetch_add(1, Ordering::Relaxed);
}

pub fn error() {
    ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// One worker's counts so far (totals since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub logged_in: u64,
    pub sent: u64,
    pub received: u64,
    pub errors: u64,
}

impl Counts {
    /// This process's counts now.
    pub fn now() -> Counts {
        Counts {
            logged_in: LOGGED_IN.load(Ordering::Relaxed),
            sent: SENT.load(Ordering::Relaxed),
            received: RECEIVED.load(Ordering::Relaxed),
            errors: ERRORS.load(Ordering::Relaxed),
        }
    }

    fn add(self, other: Counts) -> Counts {
        Counts {
            logged_in: self.logged_in + other.logged_in,
            sent: self.sent + other.sent,
            received: self.received + other.received,
            errors: self.errors + other.errors,
        }
    }
}

/// The parent's view: each worker's latest counts, and what was printed.
#[derive(Debug)]
pub struct Board {
    latest: Vec<Counts>,
    printed: Counts,
    started: std::time::Instant,
}

impl Board {
    pub fn new(workers: usize) -> Board {
        Board {
            latest: vec![Counts::default(); workers],
            printed: Counts::default(),
            started: std::time::Instant::now(),
        }
    }

    pub fn update(&mut self, worker: usize, counts: Counts) {
        if let Some(slot) = self.latest.get_mut(worker) {
            *slot = counts;
        }
    }

    /// The line for the fleet (the workers plus `own`, the parent's counts:
    /// a fan-out's publisher runs in it): totals, and rates since the last
    /// line.
    pub fn line(&mut self, own: Counts, since_last: Duration) -> String {
        let total = self.latest.iter().fold(own, |sum, counts| sum.add(*counts));
        let seconds = since_last.as_secs_f64().max(0.001);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
        let line = format!(
            "starling-load: {:>5.0} s: {} logged in ({:.0}/s), sent {} ({:.0}/s), received {} ({:.0}/s), {} errors",
            self.started.elapsed().as_secs_f64(),
            total.logged_in,
            rate(total.logged_in, self.printed.logged_in),
            total.sent,
            rate(total.sent, self.printed.sent),
            total.received,
            rate(total.received, self.printed.received),
            total.errors,
        );
        self.printed = total;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_sums_workers_and_rates_since_the_last_line() {
        let mut board = Board::new(2);
        let counts = |logged_in, sent, received, errors| Counts {
            logged_in,
            sent,
            received,
            errors,
        };
        board.update(0, counts(10, 100, 90, 1));
        board.update(1, counts(10, 100, 110, 0));
        let first = board.line(Counts::default(), Duration::from_secs(5));
        assert!(first.contains("20 logged in (4/s)"), "{first}");
        assert!(first.contains("sent 200 (40/s)"), "{first}");
        assert!(first.contains("received 200 (40/s)"), "{first}");
        assert!(first.contains("1 errors"), "{first}");
        board.update(1, counts(10, 150, 160, 0));
        let second = board.line(Counts::default(), Duration::from_secs(5));
        assert!(second.contains("sent 250 (10/s)"), "{second}");
        assert!(second.contains("logged in (0/s)"), "{second}");
        // A worker index out of range is ignored, not a panic.
        board.update(7, counts(1, 1, 1, 1));
    }
}
