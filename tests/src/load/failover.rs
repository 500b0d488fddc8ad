//! `failover`: how soon users on other nodes see the contacts of a killed node go offline.
//!
//! Contacts (the odd users of the run) log in on the second server and send presence;
//! watchers (the even users) log in on the first server and send presence, which makes
//! them receive their contacts' presence. Once every watcher has had time to hear from its
//! contacts, the driver kills the second server's process with SIGKILL and times, for each
//! contact session a watcher saw available, how long until the watcher gets
//! `<presence type='unavailable'/>` from it. A contact the watcher never hears about
//! within the wait is `missed`.
//!
//! The users must be each other's contacts: with `starling user provision --roster-size 2`
//! user `i`'s contacts are users `i-1` and `i+1`, so with an odd `--first` every watcher's
//! two roster neighbours are contacts of the run.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::hold::{answer_ping, stopped};
use super::login::{LoginOutcome, login_user, record, spawn_on_schedule};
use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, ErrorCounts, LoginStats, Users, WorkerReport, count_error, merge_errors};
use crate::client::Client;
use crate::stats::{Histogram, Summary};

/// The server of the watchers.
const WATCHERS: usize = 0;
/// The server of the contacts, the one that is killed.
const CONTACTS: usize = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverJob {
    pub connection: Connection,
    /// Watchers at even indices, contacts at odd ones.
    pub users: Users,
    /// The process of the contacts' server.
    pub kill_pid: u32,
    /// Logins per second while setting up.
    pub login_rate: f64,
    /// Pause between the last login and the kill, for presence to go round.
    pub settle_s: f64,
    /// How long after the kill to wait for unavailable presence.
    pub wait_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverStats {
    /// The process killed.
    pub killed_pid: u32,
    pub watchers: u64,
    /// Contact sessions logged in on the killed server.
    pub contacts: u64,
    /// (watcher, contact session) pairs where the watcher saw the contact available.
    pub watched: u64,
    /// Of those, pairs where the watcher got unavailable presence within the wait.
    pub notified: u64,
    pub missed: u64,
    pub errors: ErrorCounts,
    /// Kill to unavailable presence, microseconds.
    pub latency: Histogram,
}

impl FailoverStats {
    pub fn merge(&mut self, other: &FailoverStats) {
        if self.killed_pid == 0 {
            self.killed_pid = other.killed_pid;
        }
        self.watchers += other.watchers;
        self.contacts += other.contacts;
        self.watched += other.watched;
        self.notified += other.notified;
        self.missed += other.missed;
        merge_errors(&mut self.errors, &other.errors);
        self.latency.merge(&other.latency);
    }
}

/// The report's view of a failover run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailoverSummary {
    pub killed_pid: u32,
    pub watchers: u64,
    pub contacts: u64,
    pub watched: u64,
    pub notified: u64,
    pub missed: u64,
    pub wait_s: f64,
    /// Kill to unavailable presence.
    pub latency: Summary,
    pub errors: ErrorCounts,
}

pub fn summary(stats: &FailoverStats, wait_s: f64) -> FailoverSummary {
    FailoverSummary {
        killed_pid: stats.killed_pid,
        watchers: stats.watchers,
        contacts: stats.contacts,
        watched: stats.watched,
        notified: stats.notified,
        missed: stats.missed,
        wait_s,
        latency: stats.latency.summary(),
        errors: stats.errors.clone(),
    }
}

/// What a watcher saw.
#[derive(Debug, Default)]
struct Watch {
    /// Contact sessions available when the node was killed.
    watched: u64,
    /// Kill to unavailable presence, for each contact session that went.
    gone: Vec<Duration>,
    error: Option<String>,
}

/// Which contact sessions a watcher has seen available, and when they went.
#[derive(Debug)]
struct ContactView {
    contacts: Arc<HashSet<String>>,
    available: HashSet<String>,
}

impl ContactView {
    /// Applies a presence; returns true when it says an available contact session went.
    fn see(&mut self, stanza: &Element) -> bool {
        if !stanza.is("presence", ns::CLIENT) {
            return false;
        }
        let Some(from) = stanza.attr("from") else {
            return false;
        };
        let Ok(full) = FullJid::new(from) else {
            return false;
        };
        if !self.contacts.contains(&full.to_bare().to_string()) {
            return false;
        }
        match stanza.attr("type") {
            None => {
                self.available.insert(full.to_string());
                false
            }
            Some("unavailable") => self.available.remove(&full.to_string()),
            Some(_) => false,
        }
    }
}

pub async fn run(job: FailoverJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let job = Arc::new(job);
    let pairs = job.users.count / 2;
    let contacts: Arc<HashSet<String>> = Arc::new(
        (0..pairs)
            .map(|pair| {
                format!(
                    "{}@{}",
                    job.users.username(pair * 2 + 1),
                    job.connection.domain
                )
            })
            .collect(),
    );
    let (report, mut outcomes) = mpsc::unbounded_channel::<LoginOutcome>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (kill_tx, kill_rx) = watch::channel::<Option<Instant>>(None);

    // Contacts first, so that the watchers' initial presence finds them online.
    let start = Instant::now();
    let mut contact_tasks = spawn_on_schedule(pairs, job.login_rate, start, |pair, scheduled| {
        let job = job.clone();
        let report = report.clone();
        let stop = stop_rx.clone();
        async move {
            let index = pair * 2 + 1;
            let (outcome, client) =
                login_user(&job.connection, CONTACTS, &job.users, index, scheduled).await;
            report.send(outcome).ok();
            if let Some(client) = client {
                hold_contact(client, stop).await;
            }
        }
    })
    .await;
    let mut login = LoginStats::default();
    collect(&mut outcomes, &mut login, pairs).await;
    let mut watchers =
        spawn_on_schedule(pairs, job.login_rate, Instant::now(), |pair, scheduled| {
            let job = job.clone();
            let report = report.clone();
            let view = ContactView {
                contacts: contacts.clone(),
                available: HashSet::new(),
            };
            let kill = kill_rx.clone();
            async move {
                let (outcome, client) =
                    login_user(&job.connection, WATCHERS, &job.users, pair * 2, scheduled).await;
                report.send(outcome).ok();
                let wait = Duration::from_secs_f64(job.wait_s.max(0.0));
                match client {
                    Some(client) => Some(watch_contacts(client, view, kill, wait).await),
                    None => None,
                }
            }
        })
        .await;
    drop(report);
    collect(&mut outcomes, &mut login, pairs).await;
    login.elapsed_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(job.settle_s.max(0.0))).await;
    gate.ready(ReadyInfo::of(&login)).await?;

    kill(job.kill_pid).await?;
    kill_tx.send_replace(Some(Instant::now()));
    let mut stats = FailoverStats {
        killed_pid: job.kill_pid,
        contacts: login.by_server.get(CONTACTS).copied().unwrap_or(0),
        ..FailoverStats::default()
    };
    while let Some(result) = watchers.join_next().await {
        match result {
            Ok(Some(watch)) => {
                stats.watchers += 1;
                stats.watched += watch.watched;
                stats.notified += watch.gone.len() as u64;
                stats.missed += watch.watched - watch.gone.len() as u64;
                for latency in watch.gone {
                    stats.latency.record_duration(latency);
                }
                if let Some(kind) = watch.error {
                    count_error(&mut stats.errors, kind);
                }
            }
            Ok(None) => {}
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    stop_tx.send_replace(true);
    drain(&mut contact_tasks).await;
    Ok(WorkerReport {
        login,
        failover: Some(stats),
        ..WorkerReport::default()
    })
}

/// Adds `expected` login outcomes to `login`.
async fn collect(
    outcomes: &mut mpsc::UnboundedReceiver<LoginOutcome>,
    login: &mut LoginStats,
    expected: u64,
) {
    for _ in 0..expected {
        let Some(outcome) = outcomes.recv().await else {
            break;
        };
        record(login, &outcome);
    }
}

async fn drain(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// Sends SIGKILL to `pid` and waits until it was delivered.
async fn kill(pid: u32) -> Result<(), WorkerError> {
    let status = tokio::process::Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .await
        .map_err(|source| WorkerError::KillSpawn { pid, source })?;
    if !status.success() {
        return Err(WorkerError::Kill {
            pid,
            status: status.to_string(),
        });
    }
    Ok(())
}

/// Keeps a contact online (presence sent, pings answered) until `stop` or its node dies.
/// A contact that fails here is simply not seen available by its watchers.
async fn hold_contact(mut client: Client, mut stop: watch::Receiver<bool>) {
    if client.send("<presence/>").await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            stanza = client.recv() => match stanza {
                // Once the node is killed, the connection ends: that is the point.
                Ok(stanza) => if answer_ping(&mut client, &stanza).await.is_err() { break },
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        }
    }
    // The node is gone or the run is over; how the close goes says nothing.
    client.close().await.ok();
}

/// Sends presence, tracks the contacts' presence, and after the kill times their
/// unavailable presence until all went or the wait ends.
async fn watch_contacts(
    mut client: Client,
    mut view: ContactView,
    mut kill: watch::Receiver<Option<Instant>>,
    wait: Duration,
) -> Watch {
    let mut watch = Watch::default();
    if let Err(error) = client.send("<presence/>").await {
        watch.error = Some(format!("watcher:{}", error.kind()));
        return watch;
    }
    let mut killed: Option<Instant> = None;
    // Far off until the kill; then the end of the wait.
    let mut deadline = Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        if killed.is_some() && view.available.is_empty() {
            break;
        }
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    let went = view.see(&stanza);
                    if let (true, Some(killed)) = (went, killed) {
                        watch.gone.push(killed.elapsed());
                    }
                    if let Err(error) = answer_ping(&mut client, &stanza).await {
                        watch.error = Some(format!("watcher:{}", error.kind()));
                        break;
                    }
                }
                Err(error) => {
                    watch.error = Some(format!("watcher:{}", error.kind()));
                    break;
                }
            },
            changed = kill.changed(), if killed.is_none() => {
                if changed.is_err() {
                    break;
                }
                killed = *kill.borrow();
                if let Some(at) = killed {
                    watch.watched = view.available.len() as u64;
                    deadline = at + wait;
                }
            }
            () = sleep_until(deadline) => break,
        }
    }
    if killed.is_none() {
        // Ended before the kill (an error): nothing was watched.
        watch.watched = 0;
    }
    if let Err(error) = client.close().await {
        eprintln!("starling-load: close after failover: {error}");
    }
    watch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(from: &str, ty: Option<&str>) -> Element {
        let presence = Element::new("presence", ns::CLIENT).with_attr("from", from);
        match ty {
            Some(ty) => presence.with_attr("type", ty),
            None => presence,
        }
    }

    #[test]
    fn view_tracks_contact_sessions_only() {
        let contacts = Arc::new(HashSet::from(["u2@localhost".to_owned()]));
        let mut view = ContactView {
            contacts,
            available: HashSet::new(),
        };
        assert!(!view.see(&presence("u2@localhost/load", None)));
        assert!(!view.see(&presence("u2@localhost/other", None)));
        // Not a contact of the run, a bare JID, a probe: ignored.
        assert!(!view.see(&presence("u4@localhost/load", None)));
        assert!(!view.see(&presence("u2@localhost", None)));
        assert!(!view.see(&presence("u2@localhost/load", Some("probe"))));
        assert_eq!(view.available.len(), 2);
        assert!(view.see(&presence("u2@localhost/load", Some("unavailable"))));
        // Twice is news only once.
        assert!(!view.see(&presence("u2@localhost/load", Some("unavailable"))));
        assert_eq!(view.available.len(), 1);
        let message = Element::new("message", ns::CLIENT).with_attr("from", "u2@localhost/other");
        assert!(!view.see(&message));
    }

    #[test]
    fn stats_merge_keeps_the_pid_and_adds_counts() {
        let mut one = FailoverStats {
            killed_pid: 42,
            watchers: 2,
            watched: 4,
            notified: 3,
            missed: 1,
            ..FailoverStats::default()
        };
        one.latency.record(3_000_000);
        let mut total = FailoverStats::default();
        total.merge(&one);
        total.merge(&one);
        assert_eq!(total.killed_pid, 42);
        assert_eq!((total.watched, total.notified, total.missed), (8, 6, 2));
        assert_eq!(summary(&total, 30.0).latency.count, 2);
    }
}
