//! Latency histograms for load runs: fixed memory, mergeable across worker processes,
//! percentiles within about 1.6 % of the true value.
//!
//! Values (microseconds) below 128 get a bucket each; above, every power of two is split
//! into 64 buckets. Count, sum, min and max are kept exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

const EXACT: u64 = 128;
const SUB_BUCKETS: u64 = 64;
/// `log2(SUB_BUCKETS)`.
const SUB_BITS: u32 = 6;

/// A histogram of microsecond values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Non-zero buckets only, as `(index, count)` sorted by index, once serialised; in
    /// memory a dense vector indexed by bucket.
    #[serde(with = "sparse")]
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

/// Percentiles and totals of a histogram, in milliseconds, for reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

fn bucket_of(value: u64) -> usize {
    let index = if value < EXACT {
        value
    } else {
        let exponent = 63 - value.leading_zeros();
        let sub = (value >> (exponent - SUB_BITS)) - SUB_BUCKETS;
        EXACT + u64::from(exponent - 7) * SUB_BUCKETS + sub
    };
    // At most 128 + 57 * 64 buckets: always fits.
    usize::try_from(index).unwrap_or(usize::MAX)
}

/// The smallest value in a bucket.
fn bucket_low(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let exponent = (index - EXACT) / SUB_BUCKETS + 7;
    let sub = (index - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
    // The bucket after the last one starts at 2^64.
    let low = u128::from(sub) << (exponent - u64::from(SUB_BITS));
    u64::try_from(low).unwrap_or(u64::MAX)
}

/// The middle of a bucket, used as its representative value.
fn bucket_mid(index: usize) -> u64 {
    let low = bucket_low(index);
    let next = bucket_low(index + 1);
    low + (next - low) / 2
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, micros: u64) {
        let index = bucket_of(micros);
        if self.counts.len() <= index {
            self.counts.resize(index + 1, 0);
        }
        self.counts[index] += 1;
        if self.count == 0 || micros < self.min {
            self.min = micros;
        }
        self.max = self.max.max(micros);
        self.count += 1;
        self.sum += u128::from(micros);
    }

    pub fn record_duration(&mut self, duration: Duration) {
        self.record(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn min(&self) -> u64 {
        self.min
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum as f64 / self.count as f64
    }

    /// The value at quantile `q` (0..=1), in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_mid(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            count: self.count,
            mean_ms: self.mean() / 1000.0,
            p50_ms: ms(self.quantile(0.50)),
            p90_ms: ms(self.quantile(0.90)),
            p99_ms: ms(self.quantile(0.99)),
            p999_ms: ms(self.quantile(0.999)),
            max_ms: ms(self.max),
        }
    }
}

/// Serialises the dense bucket vector as `[[index, count], ...]` of non-zero buckets.
mod sparse {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        counts: &[u64],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (index, *count))
            .collect();
        pairs.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u64>, D::Error> {
        let pairs = Vec::<(usize, u64)>::deserialize(deserializer)?;
        // Indexes come from another process of ours; a bound keeps a corrupt line from
        // allocating without limit.
        const MAX_BUCKETS: usize = 128 + 57 * 64 + 1;
        let mut counts = Vec::new();
        for (index, count) in pairs {
            if index >= MAX_BUCKETS {
                return Err(serde::de::Error::custom(format!(
                    "bucket {index} out of range"
                )));
            }
            if counts.len() <= index {
                counts.resize(index + 1, 0);
            }
            counts[index] += count;
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut histogram = Histogram::new();
        for value in 1..=100 {
            histogram.record(value);
        }
        assert_eq!(histogram.quantile(0.5), 50);
        assert_eq!(histogram.quantile(0.99), 99);
        assert_eq!(histogram.quantile(1.0), 100);
        assert_eq!(histogram.min(), 1);
        assert_eq!(histogram.mean(), 50.5);
    }

    #[test]
    fn large_values_are_within_two_percent() {
        for value in [128u64, 1000, 12_345, 999_999, 3_600_000_000] {
            let mut histogram = Histogram::new();
            histogram.record(1);
            histogram.record(value);
            histogram.record(u64::MAX / 2);
            let got = histogram.quantile(0.5) as f64;
            let error = (got - value as f64).abs() / value as f64;
            assert!(error < 0.02, "{value}: got {got}");
        }
    }

    #[test]
    fn buckets_are_contiguous() {
        for index in 0..(128 + 57 * 64) {
            assert_eq!(bucket_of(bucket_low(index)), index);
            assert_eq!(bucket_of(bucket_low(index + 1) - 1), index);
        }
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for value in 0..5000u64 {
            let value = value * value % 100_003;
            if value % 3 == 0 { &mut a } else { &mut b }.record(value);
            all.record(value);
        }
        let mut merged = Histogram::new();
        merged.merge(&a);
        merged.merge(&b);
        assert_eq!(merged, all);
    }

    #[test]
    fn json_round_trip_is_sparse() {
        let mut histogram = Histogram::new();
        histogram.record(5);
        histogram.record(1_000_000);
        let json = serde_json::to_string(&histogram).unwrap();
        assert!(json.contains("[[5,1],"), "{json}");
        let back: Histogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, histogram);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = Histogram::new();
        assert_eq!(histogram.quantile(0.99), 0);
        assert_eq!(histogram.summary().count, 0);
    }
}
