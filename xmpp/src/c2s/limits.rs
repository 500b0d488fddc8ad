//! Per-IP limits: new connections per second (a token bucket) and failed
//! authentications per window.
//!
//! The tables are pruned as they are used, so an address that went quiet
//! costs nothing after its window has passed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use starling_core::config::LimitsConfig;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

struct Failures {
    count: u32,
    window_start: Instant,
}

pub struct IpLimits {
    rate: f64,
    burst: f64,
    auth_failures_allowed: u32,
    auth_window: Duration,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// Tables bigger than this are pruned of idle entries on the next insert.
const PRUNE_AT: usize = 4096;

impl IpLimits {
    pub fn new(config: &LimitsConfig) -> IpLimits {
        IpLimits {
            rate: f64::from(config.connections_per_ip_per_sec),
            burst: f64::from(config.connection_burst_per_ip.max(1)),
            auth_failures_allowed: config.auth_failures_per_ip,
            auth_window: Duration::from_secs(config.auth_failure_window_secs),
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for a new connection from `ip`; false means refuse it.
    pub fn allow_connection(&self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            let full_after = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, bucket| now.duration_since(bucket.refilled) < full_after);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// False while `ip` has used up its failed authentications for the window.
    pub fn may_authenticate(&self, ip: IpAddr, now: Instant) -> bool {
        if self.auth_failures_allowed == 0 {
            return true;
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&ip) {
            Some(entry) if now.duration_since(entry.window_start) < self.auth_window => {
                entry.count < self.auth_failures_allowed
            }
            _ => true,
        }
    }

    pub fn record_auth_failure(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= PRUNE_AT {
            let window = self.auth_window;
            failures.retain(|_, entry| now.duration_since(entry.window_start) < window);
        }
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
        });
        if now.duration_since(entry.window_start) >= self.auth_window {
            entry.count = 0;
            entry.window_start = now;
        }
        entry.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32, failures: u32) -> IpLimits {
        IpLimits::new(&LimitsConfig {
            connections_per_ip_per_sec: rate,
            connection_burst_per_ip: burst,
            auth_failures_per_ip: failures,
            auth_failure_window_secs: 60,
            ..LimitsConfig::default()
        })
    }

    #[test]
    fn connection_bucket_allows_burst_then_rate() {
        let limits = limits(10, 3, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let start = Instant::now();
        assert!((0..3).all(|_| limits.allow_connection(ip, start)));
        assert!(!limits.allow_connection(ip, start));
        assert!(
            limits.allow_connection(other, start),
            "limits are per address"
        );
        assert!(limits.allow_connection(ip, start + Duration::from_millis(100)));
        assert!(!limits.allow_connection(ip, start + Duration::from_millis(100)));
    }

    #[test]
    fn auth_failures_block_until_the_window_passes() {
        let limits = limits(0, 1, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        limits.record_auth_failure(ip, start);
        assert!(limits.may_authenticate(ip, start));
        limits.record_auth_failure(ip, start);
        assert!(!limits.may_authenticate(ip, start + Duration::from_secs(59)));
        assert!(limits.may_authenticate(ip, start + Duration::from_secs(61)));
    }
}
