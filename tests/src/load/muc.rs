//! `muc`: N rooms of M occupants each, occupants spread over the servers (user `i` on
//! server `i mod n`), groupchat messages at a fixed total rate; every occupant counts
//! what it receives. Reports deliveries/s, loss, duplicates and latency.
//!
//! Room `r`'s messages are sent every N/R seconds, room `r` offset by r/R, so sends are
//! spread evenly; message `j` of a room is sent by its occupant `j mod M`, which keeps
//! each occupant far below the service's rate limit. A body carries the room, the
//! message's number and its *scheduled* send time, so latency runs from the schedule to
//! the arrival and a driver or server that falls behind cannot hide it. Every occupant
//! should get every message of its room (its own included, as the reflection), so the
//! expected deliveries are `sent × joined occupants` per room.
//!
//! The rooms are split over worker processes (as many as the sockets need,
//! each holding up to [`super::SOCKETS_PER_WORKER`]), whole rooms each: a
//! room's senders and receivers share their worker's clock, which starts
//! when the parent says go.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use starling_core::xml::{Element, ns};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use super::chat::SequenceTracker;
use super::hold::answer_ping;
use super::login::{login_user, record};
use super::report::{self, RunInfo, RunReport};
use super::run::{RunError, Target, split};
use super::worker::{Fleet, Gate, ReadyInfo, WorkerError, source_address};
use super::{
    Connection, ErrorCounts, Job, LoginStats, SOCKETS_PER_WORKER, Users, WorkerReport, count_error,
};
use crate::client::Client;
use crate::stats::{Histogram, Summary};

const MUC: &str = "http://jabber.org/protocol/muc";
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// Logins and joins in flight at once.
const PARALLEL: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct MucPlan {
    pub rooms: u64,
    pub occupants: u64,
    /// The chat service, e.g. `conference.localhost`.
    pub service: String,
    /// Messages per second over all rooms.
    pub rate: f64,
    pub duration_s: f64,
    /// How long to wait for messages in flight once sending stops.
    pub drain_s: f64,
    /// Server processes whose CPU time (`/proc/PID/stat`) is read when sending starts
    /// and after the drain: every node of the cluster, for CPU per delivery.
    pub server_pids: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MucSummary {
    pub rooms: u64,
    pub occupants_per_room: u64,
    /// Occupants that joined (of rooms × occupants).
    pub joined: u64,
    pub offered_rate: f64,
    pub sent: u64,
    /// Sum over rooms of messages sent × occupants joined.
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Deliveries per second over the sending window.
    pub deliveries_per_s: f64,
    /// Scheduled send to arrival.
    pub latency: Summary,
    pub errors: ErrorCounts,
    pub duration_s: f64,
    /// CPU seconds the server processes used from the start of sending to the end of
    /// the drain (all of `--server-pid` added up); `None` without `--server-pid`.
    #[serde(default)]
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` per delivery, in microseconds.
    #[serde(default)]
    pub cpu_us_per_delivery: Option<f64>,
}

/// Microseconds of server CPU per delivery; `None` when nothing was delivered.
pub fn cpu_us_per_delivery(cpu_s: f64, delivered: u64) -> Option<f64> {
    (delivered > 0).then(|| cpu_s * 1e6 / delivered as f64)
}

/// What one occupant saw and sent.
#[derive(Debug, Default)]
struct OccupantStats {
    sent: u64,
    tracker: SequenceTracker,
    latency: Histogram,
    errors: ErrorCounts,
}

/// The shared clock, fixed when sending starts.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
    end: Instant,
    deadline: Instant,
}

/// One worker's share of the rooms: whole rooms, so the senders and the
/// receivers of a room share one clock and latencies need no clock shared
/// between processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MucJob {
    pub connection: Connection,
    /// The occupants of this worker's rooms, in room order.
    pub users: Users,
    pub first_room: u64,
    pub rooms: u64,
    /// Rooms of the whole run: each room sends every `total_rooms / rate`
    /// seconds, whichever worker holds it.
    pub total_rooms: u64,
    pub occupants: u64,
    pub service: String,
    /// Names this run's rooms apart from earlier runs'.
    pub run_id: String,
    /// Messages per second over all rooms (of every worker).
    pub rate: f64,
    pub duration_s: f64,
    pub drain_s: f64,
}

/// What one worker's rooms saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MucStats {
    pub joined: u64,
    pub sent: u64,
    /// Sum over rooms of messages sent × occupants joined.
    pub expected: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub latency: Histogram,
    pub errors: ErrorCounts,
}

impl MucStats {
    pub fn merge(&mut self, other: &MucStats) {
        self.joined += other.joined;
        self.sent += other.sent;
        self.expected += other.expected;
        self.delivered += other.delivered;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.latency.merge(&other.latency);
        super::merge_errors(&mut self.errors, &other.errors);
    }
}

/// Runs the rooms over as many worker processes as their occupants' sockets
/// need (or `--workers`), each with whole rooms.
pub async fn run(target: &Target, plan: &MucPlan) -> Result<RunReport, RunError> {
    let total = plan.rooms * plan.occupants;
    if plan.rooms == 0 || plan.occupants == 0 {
        return Err(RunError::Plan(
            "--rooms and --occupants must be above 0".into(),
        ));
    }
    if plan.occupants > SOCKETS_PER_WORKER {
        return Err(RunError::Plan(format!(
            "a room of {} occupants needs more than the {SOCKETS_PER_WORKER} sockets of one \
             process",
            plan.occupants
        )));
    }
    let rooms_per_worker = SOCKETS_PER_WORKER / plan.occupants;
    let needed = plan.rooms.div_ceil(rooms_per_worker);
    let workers = target
        .workers
        .map_or(needed, |wanted| (wanted as u64).max(needed))
        .clamp(1, plan.rooms);
    // A fresh set of room names per run.
    let run_id = format!("{:x}", rand::random::<u32>());
    let mut jobs = Vec::new();
    for (index, (first_room, rooms)) in split(plan.rooms, workers as usize).into_iter().enumerate()
    {
        let source = match target.source_base {
            Some(base) => Some(source_address(base, index).ok_or_else(|| {
                RunError::Plan(format!("no source address for worker {index} from {base}"))
            })?),
            None => None,
        };
        jobs.push(Job::Muc(MucJob {
            connection: super::run::connection(target, source),
            users: target
                .users
                .slice(first_room * plan.occupants, rooms * plan.occupants),
            first_room,
            rooms,
            total_rooms: plan.rooms,
            occupants: plan.occupants,
            service: plan.service.clone(),
            run_id: run_id.clone(),
            rate: plan.rate,
            duration_s: plan.duration_s,
            drain_s: plan.drain_s,
        }));
    }
    let mut fleet = Fleet::spawn(jobs).await?;
    eprintln!("starling-load: muc on {workers} worker(s), logging in and joining");
    let ready = fleet.ready().await?;
    let joined: u64 = ready.iter().map(|info| info.logged_in).sum();
    let cpu_before = if plan.server_pids.is_empty() {
        None
    } else {
        Some(
            super::cpu::total_seconds(&plan.server_pids).map_err(|(pid, error)| {
                RunError::Plan(format!("reading the CPU time of process {pid}: {error}"))
            })?,
        )
    };
    // A harness reading the servers' counters takes its "before" here: from now on
    // the rooms carry only this run's messages (every join is done).
    eprintln!("starling-load: {joined} of {total} occupants joined; running");
    fleet.go().await?;
    let reports = fleet.reports().await?;
    let cpu_after = cpu_before.map(|before| (before, super::cpu::total_seconds(&plan.server_pids)));
    let merged = report::merge(&reports);
    let stats = merged.muc.clone().unwrap_or_default();
    let mut summary = MucSummary {
        rooms: plan.rooms,
        occupants_per_room: plan.occupants,
        joined: stats.joined,
        offered_rate: plan.rate,
        duration_s: plan.duration_s,
        sent: stats.sent,
        expected: stats.expected,
        delivered: stats.delivered,
        lost: stats.expected.saturating_sub(stats.delivered),
        duplicates: stats.duplicates,
        out_of_order: stats.out_of_order,
        deliveries_per_s: stats.delivered as f64 / plan.duration_s.max(f64::MIN_POSITIVE),
        latency: stats.latency.summary(),
        errors: stats.errors.clone(),
        ..MucSummary::default()
    };
    if let Some((before, after)) = cpu_after {
        match after {
            Ok(after) => {
                let used = (after - before).max(0.0);
                summary.server_cpu_s = Some(used);
                summary.cpu_us_per_delivery = cpu_us_per_delivery(used, summary.delivered);
            }
            // A server that died during the run: the report says so.
            Err((pid, _)) => count_error(&mut summary.errors, format!("cpu:process-{pid}-gone")),
        }
    }
    Ok(RunReport {
        info: RunInfo {
            command: "muc".to_owned(),
            server: target.servers.to_string(),
            domain: target.domain.clone(),
            tls: target.tls,
            mechanism: target.mechanism.name().to_owned(),
            workers: workers as usize,
        },
        login: report::login_summary(&merged.login, 0.0),
        hold: None,
        chat: None,
        converge: None,
        failover: None,
        fanout: None,
        pep_storm: None,
        muc: Some(summary),
    })
}

/// A worker's rooms: log the occupants in, open and join the rooms, say
/// ready, then send and count until the drain ends.
pub async fn run_job(job: MucJob, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    let total = job.rooms * job.occupants;
    let connection = Arc::new(job.connection.clone());
    let first_index = job.first_room * job.occupants;
    let room_jid = |room: u64| format!("load{}r{room}@{}", job.run_id, job.service);

    // Log everyone in; occupant `i` of the run is on server `i mod n`.
    let start = Instant::now();
    let servers = connection.servers.len() as u64;
    let mut logins: Vec<_> = futures_util::stream::iter(0..total)
        .map(|index| {
            let connection = connection.clone();
            let users = job.users.clone();
            async move {
                let server = ((first_index + index) % servers) as usize;
                let (outcome, client) =
                    login_user(&connection, server, &users, index, Instant::now()).await;
                (index, outcome, client)
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    logins.sort_by_key(|(index, _, _)| *index);
    let mut login = LoginStats::default();
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(total as usize);
    for (_, outcome, client) in logins {
        record(&mut login, &outcome);
        clients.push(client);
    }
    login.elapsed_s = start.elapsed().as_secs_f64();

    // Owners create their rooms, then everyone else joins.
    let mut stats = MucStats::default();
    let wait = Duration::from_secs_f64(connection.timeout_s.max(1.0));
    let mut joined: Vec<Option<Client>> = (0..total).map(|_| None).collect();
    for pass in [true, false] {
        let entering: Vec<(u64, Client)> = (0..total)
            .filter(|index| (index % job.occupants == 0) == pass)
            .filter_map(|index| Some((index, clients[index as usize].take()?)))
            .collect();
        let results: Vec<_> = futures_util::stream::iter(entering)
            .map(|(index, mut client)| {
                let room = room_jid(job.first_room + index / job.occupants);
                let nick = format!("o{}", index % job.occupants);
                async move {
                    let result = timeout(wait, enter(&mut client, &room, &nick)).await;
                    (index, client, result)
                }
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for (index, client, result) in results {
            match result {
                Ok(Ok(())) => joined[index as usize] = Some(client),
                Ok(Err(kind)) => count_error(&mut stats.errors, format!("join:{kind}")),
                Err(_) => count_error(&mut stats.errors, "join:timeout".to_owned()),
            }
        }
    }
    let mut per_room: BTreeMap<u64, u64> = BTreeMap::new();
    for index in (0..total).filter(|i| joined[*i as usize].is_some()) {
        *per_room
            .entry(job.first_room + index / job.occupants)
            .or_default() += 1;
    }
    stats.joined = per_room.values().sum();

    // Send and receive.
    let (clock_tx, clock_rx) = watch::channel::<Option<Clock>>(None);
    let rate = job.rate.max(f64::MIN_POSITIVE);
    let interval = Duration::from_secs_f64(job.total_rooms as f64 / rate);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in joined.into_iter().enumerate() {
        let Some(client) = client else { continue };
        let index = index as u64;
        let room = job.first_room + index / job.occupants;
        let occupant = Occupant {
            room_jid: room_jid(room),
            room,
            member: index % job.occupants,
            members: job.occupants,
            offset: Duration::from_secs_f64(room as f64 / rate),
            interval,
        };
        let clock = clock_rx.clone();
        tasks.spawn(async move { (room, occupant.run(client, clock).await) });
    }
    gate.ready(ReadyInfo {
        logged_in: stats.joined,
        failed: total - stats.joined,
    })
    .await?;
    let epoch = Instant::now();
    let end = epoch + Duration::from_secs_f64(job.duration_s.max(0.0));
    clock_tx.send_replace(Some(Clock {
        epoch,
        end,
        deadline: end + Duration::from_secs_f64(job.drain_s.max(0.0)),
    }));
    let mut sent_per_room: BTreeMap<u64, u64> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let Ok((room, occupant)) = done else {
            count_error(&mut stats.errors, "task:panicked".to_owned());
            continue;
        };
        *sent_per_room.entry(room).or_default() += occupant.sent;
        stats.sent += occupant.sent;
        stats.delivered += occupant.tracker.unique;
        stats.duplicates += occupant.tracker.duplicates;
        stats.out_of_order += occupant.tracker.out_of_order;
        stats.latency.merge(&occupant.latency);
        super::merge_errors(&mut stats.errors, &occupant.errors);
    }
    stats.expected = sent_per_room
        .iter()
        .map(|(room, sent)| sent * per_room.get(room).copied().unwrap_or(0))
        .sum();
    Ok(WorkerReport {
        login,
        muc: Some(stats),
        ..WorkerReport::default()
    })
}

/// Joins `room` as `nick`; a new room is opened as an instant room with no occupant
/// limit but the service's. The error is a short kind for the report.
async fn enter(client: &mut Client, room: &str, nick: &str) -> Result<(), String> {
    let me = format!("{room}/{nick}");
    client
        .send(&format!(
            "<presence to='{me}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>"
        ))
        .await
        .map_err(|error| error.kind())?;
    let created = loop {
        let stanza = client.recv().await.map_err(|error| error.kind())?;
        if stanza.name() == "presence" && stanza.attr("from") == Some(me.as_str()) {
            if stanza.attr("type") == Some("error") {
                return Err(error_condition(&stanza));
            }
            let codes = status_codes(&stanza);
            if codes.contains(&"110".to_owned()) {
                break codes.contains(&"201".to_owned());
            }
        }
    };
    if created {
        let id = client.next_id();
        client
            .send(&format!(
                "<iq type='set' id='{id}' to='{room}'><query xmlns='{MUC_OWNER}'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_maxusers'><value>none</value></field>\
                 </x></query></iq>"
            ))
            .await
            .map_err(|error| error.kind())?;
        loop {
            let stanza = client.recv().await.map_err(|error| error.kind())?;
            if stanza.name() == "iq" && stanza.attr("id") == Some(id.as_str()) {
                if stanza.attr("type") == Some("result") {
                    break;
                }
                return Err(format!("configure:{}", error_condition(&stanza)));
            }
        }
    }
    Ok(())
}

fn status_codes(presence: &Element) -> Vec<String> {
    presence
        .child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn error_condition(stanza: &Element) -> String {
    stanza
        .child("error", ns::CLIENT)
        .and_then(|error| error.children().find(|c| c.ns() == ns::STANZAS))
        .map_or_else(|| "error".to_owned(), |c| c.name().to_owned())
}

/// One occupant: sends its share of its room's messages and counts what arrives.
struct Occupant {
    room_jid: String,
    room: u64,
    member: u64,
    members: u64,
    offset: Duration,
    interval: Duration,
}

impl Occupant {
    async fn run(
        self,
        mut client: Client,
        mut clock: watch::Receiver<Option<Clock>>,
    ) -> OccupantStats {
        let mut stats = OccupantStats::default();
        let Some(clock) = clock.wait_for(Option::is_some).await.ok().and_then(|c| *c) else {
            return stats;
        };
        let prefix = format!("<message to='{}' type='groupchat'><body>", self.room_jid);
        // This occupant's messages: numbers member, member + M, ...
        let mut number = self.member;
        loop {
            let scheduled = clock.epoch
                + self.offset
                + self
                    .interval
                    .saturating_mul(u32::try_from(number).unwrap_or(u32::MAX));
            let sending = scheduled < clock.end && !self.interval.is_zero();
            let wake = if sending { scheduled } else { clock.deadline };
            tokio::select! {
                biased;
                () = sleep_until(wake) => {
                    if !sending {
                        break;
                    }
                    let stamp = scheduled.saturating_duration_since(clock.epoch).as_micros();
                    let xml = format!("{prefix}{} {number} {stamp}</body></message>", self.room);
                    if let Err(error) = client.send(&xml).await {
                        count_error(&mut stats.errors, format!("send:{}", error.kind()));
                        break;
                    }
                    super::progress::sent();
                    stats.sent += 1;
                    number += self.members;
                }
                stanza = client.recv() => match stanza {
                    Ok(stanza) => self.received(&mut client, &mut stats, clock, &stanza).await,
                    Err(error) => {
                        count_error(&mut stats.errors, format!("receive:{}", error.kind()));
                        break;
                    }
                },
            }
        }
        if let Err(error) = client.close().await {
            count_error(&mut stats.errors, format!("close:{}", error.kind()));
        }
        stats
    }

    async fn received(
        &self,
        client: &mut Client,
        stats: &mut OccupantStats,
        clock: Clock,
        stanza: &Element,
    ) {
        if let Some((room, number, stamp)) = parse_room_message(stanza) {
            if room != self.room {
                count_error(&mut stats.errors, "other-room".to_owned());
                return;
            }
            let arrived = Instant::now().saturating_duration_since(clock.epoch);
            let micros = u64::try_from(arrived.as_micros()).unwrap_or(u64::MAX);
            stats.latency.record(micros.saturating_sub(stamp));
            stats.tracker.see(number);
            super::progress::received();
            return;
        }
        match (stanza.name(), stanza.attr("type")) {
            ("message", Some("error")) => {
                count_error(
                    &mut stats.errors,
                    format!("message-error:{}", error_condition(stanza)),
                );
            }
            ("iq", Some("get")) => {
                if let Err(error) = answer_ping(client, stanza).await {
                    count_error(&mut stats.errors, format!("ping:{}", error.kind()));
                }
            }
            // Presence of others joining or leaving, the subject.
            _ => {}
        }
    }
}

/// `ROOM NUMBER STAMP` from a groupchat message of this run.
fn parse_room_message(stanza: &Element) -> Option<(u64, u64, u64)> {
    if !stanza.is("message", ns::CLIENT) || stanza.attr("type") != Some("groupchat") {
        return None;
    }
    let body = stanza.child("body", ns::CLIENT)?.text();
    let mut fields = body.split(' ');
    let room = fields.next()?.parse().ok()?;
    let number = fields.next()?.parse().ok()?;
    let stamp = fields.next()?.parse().ok()?;
    Some((room, number, stamp))
}

/// Report lines for a run.
pub fn lines(out: &mut String, muc: &MucSummary, latency_line: impl Fn(&Summary) -> String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "rooms: {} of {} occupants, {} joined; {:.1} msg/s offered for {:.1} s",
        muc.rooms, muc.occupants_per_room, muc.joined, muc.offered_rate, muc.duration_s
    );
    let _ = writeln!(
        out,
        "deliveries: {}/{} ({} lost, {} duplicate, {} out of order) of {} sent: {:.1}/s",
        muc.delivered,
        muc.expected,
        muc.lost,
        muc.duplicates,
        muc.out_of_order,
        muc.sent,
        muc.deliveries_per_s
    );
    let _ = writeln!(out, "  latency {}", latency_line(&muc.latency));
    if let Some(cpu) = muc.server_cpu_s {
        let per = muc
            .cpu_us_per_delivery
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.2}"));
        let _ = writeln!(
            out,
            "server CPU: {cpu:.2} s while sending and draining, {per} µs per delivery"
        );
    }
    for (kind, count) in &muc.errors {
        let _ = writeln!(out, "  error {kind}: {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_delivery_and_its_report_line() {
        assert_eq!(cpu_us_per_delivery(1.5, 0), None);
        let per = cpu_us_per_delivery(1.5, 300_000).unwrap();
        assert!((per - 5.0).abs() < 1e-9, "{per}");
        let summary = MucSummary {
            delivered: 300_000,
            server_cpu_s: Some(1.5),
            cpu_us_per_delivery: Some(per),
            ..MucSummary::default()
        };
        let mut out = String::new();
        lines(&mut out, &summary, |_| String::new());
        assert!(
            out.contains("server CPU: 1.50 s while sending and draining, 5.00 µs per delivery"),
            "{out}"
        );
        let mut out = String::new();
        lines(&mut out, &MucSummary::default(), |_| String::new());
        assert!(!out.contains("server CPU"), "{out}");
    }

    #[test]
    fn room_messages_are_read_and_others_ignored() {
        let message = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text("3 12 4500"));
        assert_eq!(parse_room_message(&message), Some((3, 12, 4500)));
        let chat = message.clone().with_attr("type", "chat");
        assert_eq!(parse_room_message(&chat), None);
        let subject = Element::new("message", ns::CLIENT).with_attr("type", "groupchat");
        assert_eq!(parse_room_message(&subject), None);
    }
}
