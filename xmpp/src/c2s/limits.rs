//! Per-IP limits: new connections per second (a token bucket) and failed
//! authentications per window.
//!
//! The tables are pruned as they are used, so an address that went quiet
//! costs nothing after its window has passed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
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
    /// Swapped whole on SIGHUP; the tables keep their counts.
    settings: ArcSwap<Settings>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// Tables bigger than this are pruned of idle entries on the next insert.
const PRUNE_AT: usize = 4096;

struct Settings {
    rate: f64,
    burst: f64,
    auth_failures_allowed: u32,
    auth_window: Duration,
}

impl Settings {
    fn of(config: &LimitsConfig) -> Settings {
        Settings {
            rate: f64::from(config.connections_per_ip_per_sec),
            burst: f64::from(config.connection_burst_per_ip.max(1)),
            auth_failures_allowed: config.auth_failures_per_ip,
            auth_window: Duration::from_secs(config.auth_failure_window_secs),
        }
    }
}

impl IpLimits {
    pub fn new(config: &LimitsConfig) -> IpLimits {
        IpLimits {
            settings: ArcSwap::from_pointee(Settings::of(config)),
            buckets: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// New limits, in force from the next connection or failure.
    pub fn reconfigure(&self, config: &LimitsConfig) {
        self.settings
            .store(std::sync::Arc::new(Settings::of(config)));
    }

    /// Takes a token for a new connection from `ip`; false means refuse it.
    pub fn allow_connection(&self, ip: IpAddr, now: Instant) -> bool {
        let settings = self.settings.load();
        if settings.rate == 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            let full_after = Duration::from_secs_f64(settings.burst / settings.rate);
            buckets.retain(|_, bucket| now.duration_since(bucket.refilled) < full_after);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: settings.burst,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * settings.rate).min(settings.burst);
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
        let settings = self.settings.load();
        if settings.auth_failures_allowed == 0 {
            return true;
        }
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&ip) {
            Some(entry) if now.duration_since(entry.window_start) < settings.auth_window => {
                entry.count < settings.auth_failures_allowed
            }
            _ => true,
        }
    }

    pub fn record_auth_failure(&self, ip: IpAddr, now: Instant) {
        let window = self.settings.load().auth_window;
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= PRUNE_AT {
            failures.retain(|_, entry| now.duration_since(entry.window_start) < window);
        }
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
        });
        if now.duration_since(entry.window_start) >= window {
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
