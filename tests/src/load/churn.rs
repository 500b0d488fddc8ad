//! Receivers that lose their socket while a chat runs and resume their
//! session (XEP-0198) on a server picked at random, as phones do many times
//! a day.
//!
//! With churn fraction `f` and period `P`, the receivers are dealt into
//! `n = round(1/f)` groups; in period `k`, the receivers of group `k mod n`
//! drop their socket once each, at times spread over the period, and resume
//! at once. So a fraction `f` of the receivers drop in every period and each
//! receiver drops once every `n` periods. Messages keep arriving for a
//! receiver while it is detached: the server must deliver every one of them
//! exactly once after the resumption, whichever server it resumes on.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::Connection;
use crate::LoginOptions;
use crate::client::Client;
use crate::error::ClientError;

/// How receivers churn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    /// The share of receivers that drop in each period (0 to 1).
    pub fraction: f64,
    /// The period, in seconds.
    pub every_s: f64,
}

impl Churn {
    fn groups(&self) -> u64 {
        (1.0 / self.fraction.clamp(1e-6, 1.0)).round().max(1.0) as u64
    }

    /// When receiver `pair` drops next: the first of its periods from
    /// `period` on, as (period, time since the epoch).
    pub fn next_drop(&self, pair: u64, period: u64) -> (u64, Duration) {
        let groups = self.groups();
        let wait = (groups - (pair + period) % groups) % groups;
        let period = period + wait;
        // The golden ratio spreads one group's receivers evenly over the period.
        let phase = ((pair / groups) as f64 * 0.618_033_988_749_895).fract();
        let every = self.every_s.max(0.001);
        (
            period,
            Duration::from_secs_f64((period as f64 + phase) * every),
        )
    }
}

/// One receiver's resumable session: what it needs to resume.
#[derive(Debug)]
pub struct Resumable {
    pub pair: u64,
    pub previd: String,
    pub options: LoginOptions,
    /// The next period in which this receiver may drop.
    pub period: u64,
}

impl Resumable {
    /// The moment of the next drop, given the chat's epoch.
    pub fn next_drop(&self, churn: &Churn, epoch: Instant) -> Instant {
        epoch + churn.next_drop(self.pair, self.period).1
    }

    /// Drops `client`'s socket without closing its stream, and resumes the
    /// session on a server picked at random. Returns the new client; the
    /// stanzas the server resends follow in its stream.
    pub async fn drop_and_resume(
        &mut self,
        churn: &Churn,
        connection: &Connection,
        client: Client,
    ) -> Result<Client, ClientError> {
        let (period, _) = churn.next_drop(self.pair, self.period);
        self.period = period + 1;
        let handled = client.sm_handled().unwrap_or(0);
        client.drop_connection();
        let server = mix(self.pair, period) as usize % connection.servers.len();
        let (mut client, _server_h) = Client::resume(
            connection.server(server),
            &self.options,
            &self.previd,
            handled,
        )
        .await?;
        // Acks are answered by the chat loop, outside a cancellable read.
        client.set_auto_ack(false);
        Ok(client)
    }
}

/// A well-spread hash of two numbers (splitmix64's finaliser), so the
/// server picked for each resumption looks random but every run is alike.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_add(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_the_receivers_drop_in_each_period_each_once() {
        let churn = Churn {
            fraction: 0.1,
            every_s: 60.0,
        };
        for period in 0..20 {
            let dropping: Vec<u64> = (0..1000)
                .filter(|&pair| churn.next_drop(pair, period).0 == period)
                .collect();
            assert_eq!(dropping.len(), 100, "period {period}");
            for pair in dropping {
                let (_, at) = churn.next_drop(pair, period);
                let start = Duration::from_secs(60 * period);
                assert!(
                    at >= start && at < start + Duration::from_secs(60),
                    "{at:?}"
                );
            }
        }
        // Each receiver drops once every ten periods.
        let (first, _) = churn.next_drop(7, 0);
        let (second, _) = churn.next_drop(7, first + 1);
        assert_eq!(second - first, 10);
    }

    #[test]
    fn resumptions_spread_over_the_servers() {
        let mut per_server = [0u32; 3];
        for pair in 0..3000 {
            per_server[mix(pair, pair % 7) as usize % 3] += 1;
        }
        assert!(per_server.iter().all(|&n| n > 800), "{per_server:?}");
    }
}
