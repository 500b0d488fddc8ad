//! `converge`: how soon a session that just bound on one node can be reached from another.
//!
//! Round `k` logs a fresh session of a target user in on server `(k+1) mod n` and, the
//! moment its bind result arrives, has the sender already connected on server `k mod n`
//! send a message to the new full JID. The time from the bind result to the message's
//! arrival is what a client sees of the session directory converging: the sender's node
//! must know the session before it can route to it. A node that misses looks again for a
//! while (500 ms by default) and then treats the user as offline, so every message that
//! does not arrive live within the wait is a failure: `late` (live, after the wait),
//! `offline` (stored, handed over with a delay stamp once the session sends presence) or
//! `lost`.
//!
//! Users: the first `n` are the senders (sender `j` on server `j`), the next `targets` are
//! logged in again and again with a resource per round, round `k` using target `k mod
//! targets`. Rounds start at a fixed rate (open loop) and may overlap.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, escape, ns};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::hold::answer_ping;
use super::login::{LoginOutcome, login_user, login_with, record, spawn_on_schedule};
use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, ErrorCounts, LoginStats, Users, WorkerReport, count_error, merge_errors};
use crate::client::Client;
use crate::error::ClientError;
use crate::stats::{Histogram, Summary};

/// How long a round that missed its message waits, after sending presence, for the
/// message to come out of offline storage.
const OFFLINE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergeJob {
    pub connection: Connection,
    /// The senders (one per server), then the targets.
    pub users: Users,
    pub targets: u64,
    pub rounds: u64,
    /// Rounds started per second.
    pub rate: f64,
    /// How long a round waits for its message before counting it as not delivered live.
    pub wait_s: f64,
}

impl ConvergeJob {
    fn senders(&self) -> u64 {
        self.connection.servers.len() as u64
    }

    /// Who takes part in round `round`: `(sender's server, target's server, target user)`,
    /// the user as an index into [`ConvergeJob::users`]. Sender `j` is user `j` on server `j`.
    pub fn round_plan(&self, round: u64) -> (usize, usize, u64) {
        let (sender, receiver) = self.connection.servers.for_pair(round, true);
        let target = self.senders() + round % self.targets.max(1);
        (sender, receiver, target)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergeStats {
    pub rounds: u64,
    /// Arrived live within the wait.
    pub delivered: u64,
    /// Arrived live, but after the wait.
    pub late: u64,
    /// Stored as for an offline user.
    pub offline: u64,
    /// Never arrived.
    pub lost: u64,
    /// Rounds without a message: the target's login failed or its sender was gone.
    pub unsent: u64,
    pub errors: ErrorCounts,
    /// Bind result to arrival of the messages delivered within the wait, microseconds.
    pub latency: Histogram,
}

impl ConvergeStats {
    pub fn merge(&mut self, other: &ConvergeStats) {
        self.rounds += other.rounds;
        self.delivered += other.delivered;
        self.late += other.late;
        self.offline += other.offline;
        self.lost += other.lost;
        self.unsent += other.unsent;
        merge_errors(&mut self.errors, &other.errors);
        self.latency.merge(&other.latency);
    }

    fn add(&mut self, round: Round) {
        self.rounds += 1;
        match round {
            Round::Delivered(latency) => {
                self.delivered += 1;
                self.latency.record_duration(latency);
            }
            Round::Late => self.late += 1,
            Round::Offline => self.offline += 1,
            Round::Lost(error) => {
                self.lost += 1;
                if let Some(kind) = error {
                    count_error(&mut self.errors, kind);
                }
            }
            Round::Unsent(kind) => {
                self.unsent += 1;
                count_error(&mut self.errors, kind);
            }
        }
    }
}

/// The report's view of the rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergeSummary {
    pub rounds: u64,
    /// Rounds per second asked for.
    pub offered_rate: f64,
    pub wait_s: f64,
    pub delivered: u64,
    pub late: u64,
    pub offline: u64,
    pub lost: u64,
    pub unsent: u64,
    /// Bind result to arrival.
    pub latency: Summary,
    pub errors: ErrorCounts,
}

pub fn summary(stats: &ConvergeStats, offered_rate: f64, wait_s: f64) -> ConvergeSummary {
    ConvergeSummary {
        rounds: stats.rounds,
        offered_rate,
        wait_s,
        delivered: stats.delivered,
        late: stats.late,
        offline: stats.offline,
        lost: stats.lost,
        unsent: stats.unsent,
        latency: stats.latency.summary(),
        errors: stats.errors.clone(),
    }
}

/// How one round ended.
#[derive(Debug, Clone, PartialEq)]
enum Round {
    /// Bind result to arrival.
    Delivered(Duration),
    Late,
    Offline,
    /// With the error that ended the wait, if it was not the wait running out.
    Lost(Option<String>),
    /// Why no message was sent.
    Unsent(String),
}

/// A sender's work: send round `round`'s message to `to`.
struct SendRequest {
    to: String,
    round: u64,
}

pub async fn run(job: ConvergeJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let job = Arc::new(job);
    let mut login = LoginStats::default();
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut sender_tasks = JoinSet::new();
    for index in 0..job.senders() {
        let server = usize::try_from(index).unwrap_or(usize::MAX);
        let (outcome, client) = login_user(&job.connection, server, &job.users, index, start).await;
        record(&mut login, &outcome);
        senders.push(client.map(|client| {
            let (requests, inbox) = mpsc::unbounded_channel();
            sender_tasks.spawn(sender_loop(client, inbox));
            requests
        }));
    }
    gate.ready(ReadyInfo::of(&login)).await?;

    let senders = Arc::new(senders);
    let (report, mut outcomes) = mpsc::unbounded_channel::<LoginOutcome>();
    let mut rounds = spawn_on_schedule(job.rounds, job.rate, Instant::now(), |round, scheduled| {
        let job = job.clone();
        let senders = senders.clone();
        let report = report.clone();
        async move { run_round(&job, round, scheduled, &senders, report).await }
    })
    .await;
    drop(report);
    let mut stats = ConvergeStats::default();
    while let Some(result) = rounds.join_next().await {
        match result {
            Ok(round) => stats.add(round),
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    while let Ok(outcome) = outcomes.try_recv() {
        record(&mut login, &outcome);
    }
    login.elapsed_s = start.elapsed().as_secs_f64();
    // The senders stop once nobody can ask them for anything more.
    drop(senders);
    while let Some(result) = sender_tasks.join_next().await {
        match result {
            Ok(errors) => merge_errors(&mut stats.errors, &errors),
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    Ok(WorkerReport {
        login,
        converge: Some(stats),
        ..WorkerReport::default()
    })
}

async fn run_round(
    job: &ConvergeJob,
    round: u64,
    scheduled: Instant,
    senders: &[Option<mpsc::UnboundedSender<SendRequest>>],
    report: mpsc::UnboundedSender<LoginOutcome>,
) -> Round {
    let (sender, server, target) = job.round_plan(round);
    let connection = &job.connection;
    let mut options =
        connection.login_options(job.users.username(target), job.users.password(target));
    options.resource = Some(format!("{}-{round}", connection.resource));
    // The bind result is the last step, so the clock starts the moment it arrives.
    options.legacy_session = false;
    let (outcome, client) = login_with(connection, server, &options, scheduled).await;
    let bound = outcome.finished;
    report.send(outcome).ok();
    let Some(mut client) = client else {
        return Round::Unsent("target-login".to_owned());
    };
    let result = deliver(job, round, sender, bound, &mut client, senders).await;
    // The round is decided; a slow close is not part of it.
    if let Err(error) = client.close().await {
        eprintln!("starling-load: close after converge round: {error}");
    }
    result
}

/// Asks the sender for the message and waits for it on `client`.
async fn deliver(
    job: &ConvergeJob,
    round: u64,
    sender: usize,
    bound: Instant,
    client: &mut Client,
    senders: &[Option<mpsc::UnboundedSender<SendRequest>>],
) -> Round {
    let Some(to) = client.jid().map(ToString::to_string) else {
        return Round::Unsent("no-bound-jid".to_owned());
    };
    let Some(Some(requests)) = senders.get(sender) else {
        return Round::Unsent("sender-login".to_owned());
    };
    if requests.send(SendRequest { to, round }).is_err() {
        return Round::Unsent("sender-gone".to_owned());
    }
    let ours = |stanza: &Element| parse_round(stanza) == Some(round);
    let wait = Duration::from_secs_f64(job.wait_s.max(0.0));
    match client.expect(ours, wait).await {
        Ok(message) if is_delayed(&message) => return Round::Offline,
        Ok(_) => return Round::Delivered(bound.elapsed()),
        Err(ClientError::Timeout { .. }) => {}
        Err(error) => return Round::Lost(Some(format!("target:{}", error.kind()))),
    }
    // Not live: initial presence makes the server hand over what it stored meanwhile.
    if let Err(error) = client.send("<presence/>").await {
        return Round::Lost(Some(format!("target:{}", error.kind())));
    }
    match client.expect(ours, OFFLINE_WAIT).await {
        Ok(message) if is_delayed(&message) => Round::Offline,
        Ok(_) => Round::Late,
        Err(ClientError::Timeout { .. }) => Round::Lost(None),
        Err(error) => Round::Lost(Some(format!("target:{}", error.kind()))),
    }
}

/// Sends each requested message; answers pings and counts bounced messages meanwhile.
async fn sender_loop(
    mut client: Client,
    mut requests: mpsc::UnboundedReceiver<SendRequest>,
) -> ErrorCounts {
    let mut errors = ErrorCounts::new();
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(SendRequest { to, round }) = request else { break };
                if let Err(error) = client.send(&round_message(&to, round)).await {
                    count_error(&mut errors, format!("send:{}", error.kind()));
                    break;
                }
            }
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    if stanza.is("message", ns::CLIENT) && stanza.attr("type") == Some("error") {
                        count_error(&mut errors, "message-error".to_owned());
                    } else if let Err(error) = answer_ping(&mut client, &stanza).await {
                        count_error(&mut errors, format!("sender:{}", error.kind()));
                        break;
                    }
                }
                Err(error) => {
                    count_error(&mut errors, format!("sender:{}", error.kind()));
                    break;
                }
            },
        }
    }
    if let Err(error) = client.close().await {
        eprintln!("starling-load: close after converge: {error}");
    }
    errors
}

/// Round `round`'s message to `to`.
pub fn round_message(to: &str, round: u64) -> String {
    format!(
        "<message to='{}' type='chat' id='cv{round}'><body>cv {round}</body></message>",
        escape(to)
    )
}

/// The round number of one of our messages (not of an error about one).
pub fn parse_round(stanza: &Element) -> Option<u64> {
    if !stanza.is("message", ns::CLIENT) || stanza.attr("type") == Some("error") {
        return None;
    }
    stanza
        .child("body", ns::CLIENT)?
        .text()
        .strip_prefix("cv ")?
        .parse()
        .ok()
}

/// Whether a message carries a XEP-0203 delay stamp: it was stored, not delivered live.
fn is_delayed(stanza: &Element) -> bool {
    stanza.has_child("delay", ns::DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::servers::Servers;
    use crate::sasl::Mechanism;

    fn job(servers: &str, targets: u64) -> ConvergeJob {
        ConvergeJob {
            connection: Connection {
                servers: servers.parse::<Servers>().unwrap(),
                domain: "localhost".to_owned(),
                server_domains: Vec::new(),
                tls: false,
                mechanism: Mechanism::Plain,
                resource: "load".to_owned(),
                timeout_s: 5.0,
                source: None,
                transport: Default::default(),
            },
            users: Users {
                prefix: "u".to_owned(),
                password_prefix: "p".to_owned(),
                first: 1,
                count: 0,
            },
            targets,
            rounds: 10,
            rate: 10.0,
            wait_s: 1.0,
        }
    }

    #[test]
    fn rounds_cross_nodes_and_cycle_through_the_targets() {
        let two = job("127.0.0.1:1,127.0.0.1:2", 3);
        // Users 0 and 1 are the senders; targets are users 2, 3 and 4.
        let plans: Vec<_> = (0..4).map(|round| two.round_plan(round)).collect();
        assert_eq!(plans, vec![(0, 1, 2), (1, 0, 3), (0, 1, 4), (1, 0, 2)]);
        // Three senders: targets start at user 3.
        let three = job("127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", 2);
        assert_eq!(three.round_plan(2), (2, 0, 3));
        assert_eq!(three.round_plan(3), (0, 1, 4));
        // One server: the baseline where sender and target share the node.
        let one = job("127.0.0.1:1", 2);
        assert_eq!(one.round_plan(5), (0, 0, 2));
    }

    #[test]
    fn round_messages_round_trip() {
        let xml = round_message("u3@localhost/load-7", 7);
        assert_eq!(
            xml,
            "<message to='u3@localhost/load-7' type='chat' id='cv7'><body>cv 7</body></message>"
        );
        let message = Element::new("message", ns::CLIENT)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text("cv 7"));
        assert_eq!(parse_round(&message), Some(7));
        assert!(!is_delayed(&message));
        let stored = message.clone().with_child(
            Element::new("delay", ns::DELAY).with_attr("stamp", "2025-01-01T00:00:00Z"),
        );
        assert!(is_delayed(&stored));
        let bounced = message.clone().with_attr("type", "error");
        assert_eq!(parse_round(&bounced), None);
        let chat = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text("7 123"));
        assert_eq!(parse_round(&chat), None);
    }

    #[test]
    fn stats_sort_rounds_by_outcome() {
        let mut stats = ConvergeStats::default();
        stats.add(Round::Delivered(Duration::from_millis(3)));
        stats.add(Round::Delivered(Duration::from_millis(5)));
        stats.add(Round::Late);
        stats.add(Round::Offline);
        stats.add(Round::Lost(None));
        stats.add(Round::Lost(Some("target:closed".to_owned())));
        stats.add(Round::Unsent("target-login".to_owned()));
        assert_eq!(stats.rounds, 7);
        assert_eq!(
            (
                stats.delivered,
                stats.late,
                stats.offline,
                stats.lost,
                stats.unsent
            ),
            (2, 1, 1, 2, 1)
        );
        assert_eq!(stats.latency.count(), 2);
        assert_eq!(stats.errors["target:closed"], 1);
        let mut total = ConvergeStats::default();
        total.merge(&stats);
        total.merge(&stats);
        assert_eq!(
            (total.rounds, total.lost, total.latency.count()),
            (14, 4, 4)
        );
        let summary = summary(&total, 20.0, 1.0);
        assert_eq!(summary.latency.max_ms, 5.0);
    }
}
