//! The setup phase of a login storm: every user logs in (no presence, so nobody is
//! notified), publishes its avatar metadata and its device list, and logs out.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::items::{avatar_publish, device_id, device_list_publish};
use crate::client::Client;
use crate::load::login::{collect_logins, login_user, spawn_on_schedule};
use crate::load::worker::{Gate, ReadyInfo, WorkerError};
use crate::load::{Connection, ErrorCounts, Users, WorkerReport, count_error, merge_errors};

/// One worker's publishers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishJob {
    pub connection: Connection,
    pub users: Users,
    /// Index in the run of this worker's first user, for spreading users over servers.
    pub first_index: u64,
    /// Logins per second for this worker.
    pub rate: f64,
}

/// Items the service confirmed, and the publishes it refused or never answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PublishStats {
    pub published: u64,
    pub failed: u64,
    pub errors: ErrorCounts,
}

impl PublishStats {
    pub fn merge(&mut self, other: &PublishStats) {
        self.published += other.published;
        self.failed += other.failed;
        merge_errors(&mut self.errors, &other.errors);
    }
}

pub async fn run(job: PublishJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    // Nothing to measure before the go: publishing is the whole job.
    gate.ready(ReadyInfo::default()).await?;
    let (report, mut outcomes) = mpsc::unbounded_channel();
    let start = Instant::now();
    let connection = Arc::new(job.connection);
    let users = Arc::new(job.users);
    let count = users.count;
    let first_index = job.first_index;
    let logins = tokio::spawn(async move { collect_logins(&mut outcomes, count, start).await });
    let mut tasks = spawn_on_schedule(count, job.rate, start, |index, scheduled| {
        let connection = connection.clone();
        let users = users.clone();
        let report = report.clone();
        async move {
            let server = connection.servers.for_user(first_index + index);
            let (outcome, client) = login_user(&connection, server, &users, index, scheduled).await;
            report.send(outcome).ok();
            drop(report);
            let client = client?;
            let number = users.first + index;
            Some(publish_both(client, &users.username(index), number, &connection).await)
        }
    })
    .await;
    drop(report);
    let mut stats = PublishStats::default();
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Some(one)) => stats.merge(&one),
            Ok(None) => {}
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    let login = logins.await.unwrap_or_default();
    Ok(WorkerReport {
        login,
        pep_publish: Some(stats),
        ..WorkerReport::default()
    })
}

/// Publishes user `number`'s two items, then closes the session.
async fn publish_both(
    mut client: Client,
    username: &str,
    number: u64,
    connection: &Connection,
) -> PublishStats {
    let timeout = Duration::from_secs_f64(connection.timeout_s.max(0.001));
    let mut stats = PublishStats::default();
    for iq in [
        avatar_publish(username),
        device_list_publish(device_id(number)),
    ] {
        match client.iq(iq, timeout).await {
            Ok(_) => stats.published += 1,
            Err(error) => {
                stats.failed += 1;
                count_error(&mut stats.errors, format!("publish:{}", error.kind()));
            }
        }
    }
    if let Err(error) = client.close().await {
        count_error(&mut stats.errors, format!("close:{}", error.kind()));
    }
    stats
}
