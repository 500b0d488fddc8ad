//! `chat`: pairs of sessions exchange messages on a fixed schedule.
//!
//! Pair `g` (numbered across all workers) is user `2g` sending to user `2g+1`'s full JID.
//! With P pairs at R messages/s in total, each pair sends every P/R seconds, pair `g`
//! offset by g/R, so sends are spread evenly over time. A message's body carries its
//! sequence number and its *scheduled* send time; latency is measured from that time to
//! its arrival, so a driver or server that falls behind cannot hide it (no coordinated
//! omission). Both ends of a pair live in the same worker and share its clock.
//!
//! With several servers, pair `g`'s sender is on server `g mod n`; its receiver is on the
//! same server, or with `cross` on server `(g+1) mod n`, so every message crosses nodes
//! and the two layouts can be compared at equal rates.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, escape, ns};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use super::churn::{Churn, Resumable};
use super::hold::answer_ping;
use super::login::{LoginOutcome, login_user, record, schedule_offset, spawn_on_schedule};
use super::worker::{Gate, ReadyInfo, WorkerError};
use super::{Connection, ErrorCounts, LoginStats, Users, WorkerReport, count_error, merge_errors};
use crate::client::{Client, SM};
use crate::error::ClientError;
use crate::stats::Histogram;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatJob {
    pub connection: Connection,
    /// This worker's users: two per pair.
    pub users: Users,
    /// Global number of this worker's first pair.
    pub first_pair: u64,
    /// Put each pair's receiver on the server after its sender's.
    pub cross: bool,
    /// Pairs across all workers.
    pub total_pairs: u64,
    /// Messages per second across all workers.
    pub rate: f64,
    pub duration_s: f64,
    /// How long to wait for messages still in flight once sending stops.
    pub drain_s: f64,
    /// Logins per second for this worker.
    pub login_rate: f64,
    /// Pad bodies to at least this many bytes.
    pub body_size: usize,
    pub presence: bool,
    /// Resumable stream management (XEP-0198) on every session.
    #[serde(default)]
    pub stream_management: bool,
    /// Receivers that drop their socket and resume (needs stream management).
    #[serde(default)]
    pub churn: Option<Churn>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatStats {
    /// Pairs whose two sessions logged in.
    pub pairs: u64,
    pub sent: u64,
    pub received: u64,
    /// Sent but never received (within the drain time).
    pub lost: u64,
    /// Received after a message with a higher sequence number.
    pub out_of_order: u64,
    pub duplicates: u64,
    pub errors: ErrorCounts,
    /// Scheduled send to arrival, microseconds.
    pub latency: Histogram,
    /// Scheduled send to actual send, microseconds: how far the driver fell behind.
    pub send_lag: Histogram,
    /// The sending window, seconds.
    pub duration_s: f64,
    /// From the start of sending to the last arrival, seconds: longer than the window
    /// when the server queues.
    pub last_arrival_s: f64,
    /// Receivers' sessions resumed after a dropped socket, and those that could not be.
    #[serde(default)]
    pub resumed: u64,
    #[serde(default)]
    pub resume_failed: u64,
    /// From dropping the socket to `<resumed/>`, microseconds.
    #[serde(default)]
    pub resume_latency: Histogram,
}

impl ChatStats {
    pub fn merge(&mut self, other: &ChatStats) {
        self.pairs += other.pairs;
        self.sent += other.sent;
        self.received += other.received;
        self.lost += other.lost;
        self.out_of_order += other.out_of_order;
        self.duplicates += other.duplicates;
        merge_errors(&mut self.errors, &other.errors);
        self.latency.merge(&other.latency);
        self.send_lag.merge(&other.send_lag);
        self.duration_s = self.duration_s.max(other.duration_s);
        self.last_arrival_s = self.last_arrival_s.max(other.last_arrival_s);
        self.resumed += other.resumed;
        self.resume_failed += other.resume_failed;
        self.resume_latency.merge(&other.resume_latency);
    }
}

/// Timing shared by every pair of a worker, fixed at `go`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Zero of the timestamps in message bodies.
    epoch: Instant,
    /// Sending stops here.
    end: Instant,
}

pub async fn run(job: ChatJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let job = Arc::new(job);
    let pairs = job.users.count / 2;
    let (report, mut outcomes) = mpsc::unbounded_channel::<LoginOutcome>();
    let (clock_tx, clock_rx) = watch::channel::<Option<Clock>>(None);
    let start = Instant::now();
    // Two logins per pair, one pair task at a time on the schedule.
    let pair_rate = job.login_rate / 2.0;
    let mut tasks = spawn_on_schedule(pairs, pair_rate, start, |pair, scheduled| {
        let job = job.clone();
        let report = report.clone();
        let clock = clock_rx.clone();
        async move { run_pair(&job, pair, scheduled, report, clock).await }
    })
    .await;
    drop(report);
    let mut login = LoginStats::default();
    let mut last = start;
    while login.attempted < pairs * 2 {
        let Some(outcome) = outcomes.recv().await else {
            break;
        };
        last = last.max(outcome.finished);
        record(&mut login, &outcome);
    }
    login.elapsed_s = last.saturating_duration_since(start).as_secs_f64();
    gate.ready(ReadyInfo::of(&login)).await?;

    let epoch = Instant::now();
    let duration = Duration::from_secs_f64(job.duration_s.max(0.0));
    clock_tx.send_replace(Some(Clock {
        epoch,
        end: epoch + duration,
    }));
    let mut stats = ChatStats {
        duration_s: duration.as_secs_f64(),
        ..ChatStats::default()
    };
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Some(pair)) => stats.merge(&pair),
            Ok(None) => {}
            Err(error) => count_error(&mut stats.errors, format!("task:{error}")),
        }
    }
    Ok(WorkerReport {
        login,
        chat: Some(stats),
        ..WorkerReport::default()
    })
}

/// One pair from login to the end of the drain; `None` if either login failed.
async fn run_pair(
    job: &ChatJob,
    pair: u64,
    scheduled: Instant,
    report: mpsc::UnboundedSender<LoginOutcome>,
    mut clock: watch::Receiver<Option<Clock>>,
) -> Option<ChatStats> {
    let global = job.first_pair + pair;
    let (sender_server, receiver_server) = job.connection.servers.for_pair(global, job.cross);
    let connection = &job.connection;
    let (outcome, receiver) = login_user(
        connection,
        receiver_server,
        &job.users,
        pair * 2 + 1,
        scheduled,
    )
    .await;
    report.send(outcome).ok();
    let (outcome, sender) = match receiver {
        Some(_) => {
            login_user(
                connection,
                sender_server,
                &job.users,
                pair * 2,
                Instant::now(),
            )
            .await
        }
        // Keep the count of attempts right: the sender is not tried without a receiver.
        None => (
            LoginOutcome {
                latency: Duration::ZERO,
                finished: Instant::now(),
                server: sender_server,
                error: Some("skipped:receiver-failed".to_owned()),
            },
            None,
        ),
    };
    report.send(outcome).ok();
    drop(report);
    let (mut receiver, mut sender) = (receiver?, sender?);
    let mut resumable = None;
    if job.stream_management {
        let enabled = sender.enable_sm(true).await;
        let resumption = receiver.enable_sm(true).await.ok()?.id;
        enabled.ok()?;
        // Acks are answered by the chat loops, outside a cancellable read.
        sender.set_auto_ack(false);
        receiver.set_auto_ack(false);
        let username = job.users.username(pair * 2 + 1);
        let mut options = connection.login_options(username, job.users.password(pair * 2 + 1));
        options.domain = connection.domain_of(receiver_server).to_owned();
        resumable = resumption.map(|previd| Resumable {
            pair: global,
            previd,
            options,
            period: 0,
        });
    }
    if job.presence {
        let sent = sender.send("<presence/>").await;
        let received = receiver.send("<presence/>").await;
        if sent.is_err() || received.is_err() {
            return None;
        }
    }
    let clock = (*clock.wait_for(Option::is_some).await.ok()?)?;
    let to = receiver.jid()?.to_string();

    let interval = schedule_offset(job.total_pairs, job.rate);
    let offset = schedule_offset(global, job.rate);
    let (final_tx, final_rx) = watch::channel(None);
    let sending = send_loop(
        &mut sender,
        &to,
        job.body_size,
        clock,
        offset,
        interval,
        final_tx,
    );
    let drain = Duration::from_secs_f64(job.drain_s.max(0.0));
    let churn = job.churn.zip(resumable).map(|(churn, resumable)| Churning {
        churn,
        resumable,
        connection,
    });
    let receiving = receive_loop(receiver, churn, clock, drain, final_rx);
    let (mut stats, (received, receiver)) = tokio::join!(sending, receiving);
    stats.pairs = 1;
    stats.merge(&received);
    if let Err(error) = sender.close().await {
        count_error(&mut stats.errors, format!("close:{}", error.kind()));
    }
    if let Some(receiver) = receiver
        && let Err(error) = receiver.close().await
    {
        count_error(&mut stats.errors, format!("close:{}", error.kind()));
    }
    Some(stats)
}

/// Sends on the pair's schedule until the clock's end; reports the count through `done`.
async fn send_loop(
    client: &mut Client,
    to: &str,
    body_size: usize,
    clock: Clock,
    offset: Duration,
    interval: Duration,
    done: watch::Sender<Option<u64>>,
) -> ChatStats {
    let mut stats = ChatStats::default();
    let prefix = format!("<message to='{}' type='chat' id='", escape(to));
    let mut sequence = 0u64;
    loop {
        let scheduled = clock.epoch + offset + interval.saturating_mul(sequence_u32(sequence));
        if scheduled >= clock.end || (interval.is_zero() && sequence > 0) {
            break;
        }
        tokio::select! {
            biased;
            () = sleep_until(scheduled) => {
                let stamp = scheduled.saturating_duration_since(clock.epoch).as_micros();
                let body = message_body(sequence, stamp, body_size);
                let xml = format!("{prefix}{sequence}'><body>{body}</body></message>");
                stats.send_lag.record_duration(Instant::now().saturating_duration_since(scheduled));
                if let Err(error) = client.send(&xml).await {
                    count_error(&mut stats.errors, format!("send:{}", error.kind()));
                    break;
                }
                super::progress::sent();
                sequence += 1;
            }
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    note_stray(&mut stats, &stanza);
                    if let Err(error) = answer(client, &stanza).await {
                        count_error(&mut stats.errors, format!("sender:{}", error.kind()));
                        break;
                    }
                }
                Err(error) => {
                    count_error(&mut stats.errors, format!("sender:{}", error.kind()));
                    break;
                }
            },
        }
    }
    stats.sent = sequence;
    done.send_replace(Some(sequence));
    stats
}

/// A receiver that drops its socket and resumes on the churn's schedule.
struct Churning<'a> {
    churn: Churn,
    resumable: Resumable,
    connection: &'a Connection,
}

/// Receives until every sent message is in, or the drain time after sending stopped ends;
/// returns the client unless it was lost (a resumption that failed).
async fn receive_loop(
    mut client: Client,
    mut churning: Option<Churning<'_>>,
    clock: Clock,
    drain: Duration,
    mut sent: watch::Receiver<Option<u64>>,
) -> (ChatStats, Option<Client>) {
    let mut stats = ChatStats::default();
    let mut tracker = SequenceTracker::default();
    // Until the sender is done, the drain deadline is the end of sending plus the drain.
    let mut deadline = clock.end + drain;
    let mut total: Option<u64> = None;
    loop {
        if total.is_some_and(|total| tracker.unique >= total) {
            break;
        }
        // Drops happen while messages are being sent; none after.
        let next_drop = churning
            .as_ref()
            .map(|c| c.resumable.next_drop(&c.churn, clock.epoch))
            .filter(|&at| at < clock.end);
        tokio::select! {
            stanza = client.recv() => match stanza {
                Ok(stanza) => {
                    if let Some((sequence, stamp)) = parse_chat_message(&stanza) {
                        let arrived = Instant::now().saturating_duration_since(clock.epoch);
                        let micros = u64::try_from(arrived.as_micros()).unwrap_or(u64::MAX);
                        stats.latency.record(micros.saturating_sub(stamp));
                        stats.last_arrival_s = arrived.as_secs_f64();
                        tracker.see(sequence);
                        super::progress::received();
                    } else {
                        note_stray(&mut stats, &stanza);
                        if let Err(error) = answer(&mut client, &stanza).await {
                            count_error(&mut stats.errors, format!("receiver:{}", error.kind()));
                            break;
                        }
                    }
                }
                Err(error) => {
                    count_error(&mut stats.errors, format!("receiver:{}", error.kind()));
                    break;
                }
            },
            () = sleep_until(next_drop.unwrap_or(deadline)), if next_drop.is_some() => {
                let Some(churning) = churning.as_mut() else { continue };
                let dropped = Instant::now();
                match churning
                    .resumable
                    .drop_and_resume(&churning.churn, churning.connection, client)
                    .await
                {
                    Ok(resumed) => {
                        client = resumed;
                        stats.resumed += 1;
                        stats.resume_latency.record_duration(dropped.elapsed());
                    }
                    Err(error) => {
                        stats.resume_failed += 1;
                        count_error(&mut stats.errors, format!("resume:{}", error.kind()));
                        return (tally(stats, &tracker, total.or(*sent.borrow())), None);
                    }
                }
            }
            changed = sent.changed(), if total.is_none() => {
                // The sender always reports its count before it goes; a closed channel
                // without one means it never started.
                total = Some(sent.borrow().unwrap_or(0));
                if changed.is_err() {
                    break;
                }
                deadline = Instant::now() + drain;
            }
            () = sleep_until(deadline) => break,
        }
    }
    (
        tally(stats, &tracker, total.or(*sent.borrow())),
        Some(client),
    )
}

/// The receiver's counts, given how many messages were sent (if known).
fn tally(mut stats: ChatStats, tracker: &SequenceTracker, total: Option<u64>) -> ChatStats {
    stats.received = tracker.unique;
    stats.out_of_order = tracker.out_of_order;
    stats.duplicates = tracker.duplicates;
    stats.lost = total.unwrap_or(0).saturating_sub(tracker.unique);
    stats
}

/// Answers what the server asks of a chat session: pings, and with stream
/// management its ack requests.
async fn answer(client: &mut Client, stanza: &Element) -> Result<(), ClientError> {
    if stanza.is("r", SM) {
        return client.send_ack().await;
    }
    answer_ping(client, stanza).await
}

fn sequence_u32(sequence: u64) -> u32 {
    u32::try_from(sequence).unwrap_or(u32::MAX)
}

/// Counts stanzas that are not part of the exchange: message errors and the unexpected.
fn note_stray(stats: &mut ChatStats, stanza: &Element) {
    let kind = match (stanza.name(), stanza.attr("type")) {
        ("message", Some("error")) => "message-error",
        ("iq", Some("get")) if stanza.has_child("ping", ns::PING) => return,
        ("presence", _) | ("r", _) => return,
        _ => "unexpected-stanza",
    };
    count_error(&mut stats.errors, kind.to_owned());
}

/// `SEQ STAMP` and padding up to `size` bytes.
pub fn message_body(sequence: u64, stamp_micros: u128, size: usize) -> String {
    let mut body = format!("{sequence} {stamp_micros}");
    if body.len() < size {
        body.push(' ');
        body.extend(std::iter::repeat_n('x', size - body.len()));
    }
    body
}

/// The sequence number and stamp of one of our chat messages.
pub fn parse_chat_message(stanza: &Element) -> Option<(u64, u64)> {
    if !stanza.is("message", ns::CLIENT) || stanza.attr("type") == Some("error") {
        return None;
    }
    let body = stanza.child("body", ns::CLIENT)?.text();
    let mut fields = body.split(' ');
    let sequence = fields.next()?.parse().ok()?;
    let stamp = fields.next()?.parse().ok()?;
    Some((sequence, stamp))
}

/// Which sequence numbers arrived, how many were new, late or repeated.
#[derive(Debug, Default)]
pub(super) struct SequenceTracker {
    seen: Vec<u64>,
    highest: Option<u64>,
    pub(super) unique: u64,
    pub(super) out_of_order: u64,
    pub(super) duplicates: u64,
}

impl SequenceTracker {
    pub(super) fn see(&mut self, sequence: u64) {
        let (word, bit) = ((sequence / 64) as usize, sequence % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        match self.highest {
            Some(highest) if sequence < highest => self.out_of_order += 1,
            _ => self.highest = Some(sequence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_pad() {
        let body = message_body(42, 1_234_567, 0);
        assert_eq!(body, "42 1234567");
        let padded = message_body(1, 2, 100);
        assert_eq!(padded.len(), 100);
        let message = Element::new("message", ns::CLIENT)
            .with_attr("type", "chat")
            .with_child(Element::new("body", ns::CLIENT).with_text(padded));
        assert_eq!(parse_chat_message(&message), Some((1, 2)));
        let error = message.clone().with_attr("type", "error");
        assert_eq!(parse_chat_message(&error), None);
    }

    #[test]
    fn tracker_counts_late_and_repeated_messages() {
        let mut tracker = SequenceTracker::default();
        for sequence in [0, 1, 3, 2, 3, 200, 4] {
            tracker.see(sequence);
        }
        assert_eq!(tracker.unique, 6);
        assert_eq!(tracker.duplicates, 1);
        // 2 arrived after 3, and 4 after 200.
        assert_eq!(tracker.out_of_order, 2);
    }
}
