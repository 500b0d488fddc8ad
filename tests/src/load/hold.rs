//! `hold`: sessions log in, send initial presence and stay connected for a while.
//!
//! Each session is one small task that answers the server's pings and otherwise waits, so
//! the driver can keep its full share of sockets open. The parent samples the server's
//! memory before the logins and once every session is up.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, ns};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::login::{collect_logins, login_user, spawn_on_schedule};
use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, ErrorCounts, Users, WorkerReport, count_error, merge_errors};
use crate::client::Client;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldJob {
    pub connection: Connection,
    pub users: Users,
    /// Index in the run of this worker's first user, for spreading users over servers.
    pub first_index: u64,
    /// Logins per second for this worker.
    pub rate: f64,
    pub duration_s: f64,
    /// Send initial presence after login.
    pub presence: bool,
    /// Enable resumable stream management (XEP-0198) after login.
    #[serde(default)]
    pub stream_management: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldStats {
    /// Sessions still connected when the hold ended.
    pub held: u64,
    /// Sessions the server ended during the hold.
    pub dropped: u64,
    pub errors: ErrorCounts,
    pub duration_s: f64,
}

impl HoldStats {
    pub fn merge(&mut self, other: &HoldStats) {
        self.held += other.held;
        self.dropped += other.dropped;
        merge_errors(&mut self.errors, &other.errors);
        self.duration_s = self.duration_s.max(other.duration_s);
    }
}

/// How one held session ended.
enum Held {
    Kept,
    Dropped(String),
    NeverLoggedIn,
}

pub async fn run(job: HoldJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let (report, mut outcomes) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connection = Arc::new(job.connection);
    let users = Arc::new(job.users);
    let presence = job.presence;
    let stream_management = job.stream_management;
    let first_index = job.first_index;
    let start = Instant::now();
    let count = users.count;
    let logins = tokio::spawn(async move { collect_logins(&mut outcomes, count, start).await });
    let mut tasks = spawn_on_schedule(count, job.rate, start, |index, scheduled| {
        let connection = connection.clone();
        let users = users.clone();
        let report = report.clone();
        let stop = stop_rx.clone();
        async move {
            let server = connection.servers.for_user(first_index + index);
            let (outcome, client) = login_user(&connection, server, &users, index, scheduled).await;
            report.send(outcome).ok();
            match client {
                Some(client) => hold(client, presence, stream_management, stop).await,
                None => Held::NeverLoggedIn,
            }
        }
    })
    .await;
    drop(report);
    let login = logins.await.unwrap_or_default();
    gate.ready(ReadyInfo::of(&login)).await?;

    let hold_start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(job.duration_s.max(0.0))).await;
    let mut stats = HoldStats {
        duration_s: hold_start.elapsed().as_secs_f64(),
        ..HoldStats::default()
    };
    stop_tx.send_replace(true);
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Held::Kept) => stats.held += 1,
            Ok(Held::Dropped(kind)) => {
                stats.dropped += 1;
                count_error(&mut stats.errors, kind);
            }
            Ok(Held::NeverLoggedIn) => {}
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    Ok(WorkerReport {
        login,
        hold: Some(stats),
        ..WorkerReport::default()
    })
}

/// Keeps a session open until `stop`, answering pings (and, with stream
/// management, the server's ack requests, from the client's read path);
/// then closes it.
async fn hold(
    mut client: Client,
    presence: bool,
    stream_management: bool,
    mut stop: watch::Receiver<bool>,
) -> Held {
    if stream_management {
        if let Err(error) = client.enable_sm(true).await {
            return Held::Dropped(error.kind());
        }
    }
    if presence {
        if let Err(error) = client.send("<presence/>").await {
            return Held::Dropped(error.kind());
        }
    }
    loop {
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    if let Err(error) = answer_ping(&mut client, &stanza).await {
                        return Held::Dropped(error.kind());
                    }
                }
                Err(error) => return Held::Dropped(error.kind()),
            },
            () = stopped(&mut stop) => break,
        }
    }
    // The hold is over; a slow close is not a dropped session.
    if let Err(error) = client.close().await {
        eprintln!("starling-load: close after hold: {error}");
    }
    Held::Kept
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which ends the hold too. Dropping the guard
    // here keeps it out of the caller's future, which must be `Send`.
    drop(stop.wait_for(|stop| *stop).await);
}

/// Answers an XEP-0199 ping from the server so it does not think we are gone.
pub async fn answer_ping(client: &mut Client, stanza: &Element) -> Result<(), crate::ClientError> {
    if !(stanza.is("iq", ns::CLIENT)
        && stanza.attr("type") == Some("get")
        && stanza.has_child("ping", ns::PING))
    {
        return Ok(());
    }
    let mut pong = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = stanza.attr("id") {
        pong.set_attr("id", id);
    }
    if let Some(from) = stanza.attr("from") {
        pong.set_attr("to", from);
    }
    client.send_element(&pong).await
}
