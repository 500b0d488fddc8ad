//! `login`: users log in at a fixed rate, each closing its stream once bound.
//!
//! The rate is open loop: login `i` starts at `start + i / rate` whether or not earlier
//! ones finished, and its latency is measured from that scheduled time, so a server that
//! falls behind shows it in the latency instead of silently slowing the driver down.
//! With several servers, users go to them round-robin by their index in the run.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, LoginStats, Users, WorkerReport, count_error};
use crate::client::{Client, LoginOptions};
use crate::error::ClientError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginJob {
    pub connection: Connection,
    pub users: Users,
    /// Index in the run of this worker's first user, for spreading users over servers.
    pub first_index: u64,
    /// Logins per second for this worker.
    pub rate: f64,
}

/// How one login went, as reported by the task that ran it.
#[derive(Debug)]
pub struct LoginOutcome {
    /// From the scheduled start to the end of the login (success or failure).
    pub latency: Duration,
    pub finished: Instant,
    /// Index of the server in [`Connection::servers`].
    pub server: usize,
    /// The error kind, on failure.
    pub error: Option<String>,
}

/// Logs user `index` in on server `server`, timing from `scheduled`.
pub async fn login_user(
    connection: &Connection,
    server: usize,
    users: &Users,
    index: u64,
    scheduled: Instant,
) -> (LoginOutcome, Option<Client>) {
    let mut options = connection.login_options(users.username(index), users.password(index));
    options.domain = connection.domain_of(server).to_owned();
    login_with(connection, server, &options, scheduled).await
}

/// Logs in with `options` on server `server`, timing from `scheduled`.
pub async fn login_with(
    connection: &Connection,
    server: usize,
    options: &LoginOptions,
    scheduled: Instant,
) -> (LoginOutcome, Option<Client>) {
    let addr = connection.server(server);
    let result = match connection.transport {
        super::ClientTransport::Tcp => Client::login(addr, options).await,
        super::ClientTransport::WebSocket => {
            let websocket = crate::websocket::WsOptions {
                tls: connection.tls,
                local_addr: connection.source,
                ..crate::websocket::WsOptions::default()
            };
            Client::login_websocket(addr, &websocket, options).await
        }
        super::ClientTransport::Bosh => {
            let bosh = crate::bosh::BoshOptions::new(addr, connection.tls);
            Client::login_bosh(&bosh, options).await
        }
    };
    let finished = Instant::now();
    let latency = finished.saturating_duration_since(scheduled);
    match result {
        Ok(client) => (
            LoginOutcome {
                latency,
                finished,
                server,
                error: None,
            },
            Some(client),
        ),
        Err(error) => (
            LoginOutcome {
                latency,
                finished,
                server,
                error: Some(error.kind()),
            },
            None,
        ),
    }
}

/// Adds one outcome to the stats.
pub fn record(stats: &mut LoginStats, outcome: &LoginOutcome) {
    stats.attempted += 1;
    match &outcome.error {
        None => {
            super::progress::logged_in();
            stats.count_success(outcome.server);
            stats.latency.record_duration(outcome.latency);
        }
        Some(kind) => count_error(&mut stats.errors, kind.clone()),
    }
}

/// Spawns `count` tasks, task `i` at `start + i / rate`; `make(i, scheduled)` builds each.
pub async fn spawn_on_schedule<T, F, Fut>(
    count: u64,
    rate: f64,
    start: Instant,
    mut make: F,
) -> JoinSet<T>
where
    T: Send + 'static,
    F: FnMut(u64, Instant) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let scheduled = start + schedule_offset(index, rate);
        sleep_until(scheduled).await;
        tasks.spawn(make(index, scheduled));
    }
    tasks
}

/// When event `index` of a series at `rate` per second happens, from the series' start.
pub fn schedule_offset(index: u64, rate: f64) -> Duration {
    if rate <= 0.0 || !rate.is_finite() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(index as f64 / rate)
}

/// Collects login outcomes from `outcomes` until `expected` have arrived (or every sender
/// is gone), timing the phase from `start`.
pub async fn collect_logins(
    outcomes: &mut mpsc::UnboundedReceiver<LoginOutcome>,
    expected: u64,
    start: Instant,
) -> LoginStats {
    let mut stats = LoginStats::default();
    let mut last = start;
    while stats.attempted < expected {
        let Some(outcome) = outcomes.recv().await else {
            break;
        };
        last = last.max(outcome.finished);
        record(&mut stats, &outcome);
    }
    stats.elapsed_s = last.saturating_duration_since(start).as_secs_f64();
    stats
}

pub async fn run(job: LoginJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    gate.ready(ReadyInfo::default()).await?;
    let (report, mut outcomes) = mpsc::unbounded_channel();
    let start = Instant::now();
    let connection = std::sync::Arc::new(job.connection);
    let users = std::sync::Arc::new(job.users);
    let count = users.count;
    let first_index = job.first_index;
    let collector = tokio::spawn(async move { collect_logins(&mut outcomes, count, start).await });
    let mut tasks = spawn_on_schedule(count, job.rate, start, |index, scheduled| {
        let connection = connection.clone();
        let users = users.clone();
        let report = report.clone();
        async move {
            let server = connection.servers.for_user(first_index + index);
            let (outcome, client) = login_user(&connection, server, &users, index, scheduled).await;
            // The collector lives until every outcome is in; a closed channel means the
            // run is being torn down and there is nobody left to tell.
            report.send(outcome).ok();
            if let Some(client) = client {
                // Closing is not part of the login; its errors are not login errors.
                if let Err(error) = client.close().await {
                    close_error(&error);
                }
            }
        }
    })
    .await;
    drop(report);
    while tasks.join_next().await.is_some() {}
    let login = collector.await.unwrap_or_default();
    Ok(WorkerReport {
        login,
        ..WorkerReport::default()
    })
}

fn close_error(error: &ClientError) {
    eprintln!("starling-load: close after login: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_spaced() {
        assert_eq!(schedule_offset(0, 100.0), Duration::ZERO);
        assert_eq!(schedule_offset(50, 100.0), Duration::from_millis(500));
        assert_eq!(schedule_offset(3, 0.0), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_start_on_schedule() {
        let start = Instant::now();
        let mut tasks = spawn_on_schedule(5, 10.0, start, |_, scheduled| async move {
            Instant::now().saturating_duration_since(scheduled)
        })
        .await;
        assert_eq!(Instant::now() - start, Duration::from_millis(400));
        while let Some(lag) = tasks.join_next().await {
            assert!(lag.unwrap() < Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn collect_counts_successes_errors_and_span() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let outcomes = [
            (10, 0, None),
            (30, 1, Some("sasl:not-authorized")),
            (20, 1, None),
        ];
        for (ms, server, error) in outcomes {
            tx.send(LoginOutcome {
                latency: Duration::from_millis(ms),
                finished: start + Duration::from_millis(ms),
                server,
                error: error.map(str::to_owned),
            })
            .unwrap();
        }
        let stats = collect_logins(&mut rx, 3, start).await;
        assert_eq!((stats.attempted, stats.succeeded), (3, 2));
        assert_eq!(stats.errors["sasl:not-authorized"], 1);
        assert_eq!(stats.by_server, vec![1, 1]);
        assert_eq!(stats.latency.count(), 2);
        assert!((stats.elapsed_s - 0.030).abs() < 1e-9);
    }
}
