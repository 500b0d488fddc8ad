//! An occupant's message allowance (the service's rate limit).

use super::Limits;

/// Tokens for an occupant's messages: refilled at the configured rate.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    last_ms: i64,
}

impl Bucket {
    pub(super) fn full(limits: &Limits, now_ms: i64) -> Bucket {
        Bucket {
            tokens: limits.message_burst,
            last_ms: now_ms,
        }
    }

    pub(super) fn take(&mut self, limits: &Limits, now_ms: i64) -> bool {
        let elapsed = (now_ms - self.last_ms).max(0) as f64 / 1000.0;
        self.tokens =
            (self.tokens + elapsed * limits.messages_per_second).min(limits.message_burst);
        self.last_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
