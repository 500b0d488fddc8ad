//! What a load run reports: worker results merged into one summary, printed for people or
//! as JSON for scripts and benchmark records.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::chat::ChatStats;
use super::converge::{ConvergeStats, ConvergeSummary};
use super::failover::{FailoverStats, FailoverSummary};
use super::fanout::{FanoutStats, FanoutSummary};
use super::hold::HoldStats;
use super::pep::{self, PepStormSummary};
use super::rss::MemorySample;
use super::{ErrorCounts, LoginStats, WorkerReport};
use crate::stats::Summary;

/// Describes the run, for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub command: String,
    /// The servers, comma-separated, as given.
    pub server: String,
    pub domain: String,
    pub tls: bool,
    pub mechanism: String,
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub info: RunInfo,
    pub login: LoginSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converge: Option<ConvergeSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<FanoutSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pep_storm: Option<PepStormSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muc: Option<super::muc::MucSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginSummary {
    pub attempted: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Logins per second asked for.
    pub offered_rate: f64,
    /// Successful logins per second, over the login phase.
    pub achieved_rate: f64,
    pub elapsed_s: f64,
    pub latency: Summary,
    pub errors: ErrorCounts,
    /// Successful logins per server, in the order given; only with several servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeded_by_server: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldSummary {
    pub held: u64,
    pub dropped: u64,
    pub duration_s: f64,
    pub errors: ErrorCounts,
    /// With one server and its pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryReport>,
    /// With several servers and their pids: one report each, over its own sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_by_server: Vec<MemoryReport>,
}

/// The server's memory before the logins and once every session was up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    pub pid: u32,
    pub before: MemorySample,
    pub after: MemorySample,
    /// Sessions logged in to this server.
    pub sessions: u64,
    /// `(after - before) / sessions`, KiB.
    pub per_session_kib: f64,
}

impl MemoryReport {
    pub fn new(pid: u32, before: MemorySample, after: MemorySample, sessions: u64) -> Self {
        let delta = after.rss_kib as f64 - before.rss_kib as f64;
        MemoryReport {
            pid,
            before,
            after,
            sessions,
            per_session_kib: if sessions == 0 {
                0.0
            } else {
                delta / sessions as f64
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatSummary {
    pub pairs: u64,
    /// Every pair's receiver was on another server than its sender.
    #[serde(default)]
    pub cross: bool,
    /// Messages per second asked for.
    pub offered_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub received: u64,
    pub sent_per_s: f64,
    /// Received over the time from the start of sending to the last arrival.
    pub received_per_s: f64,
    pub last_arrival_s: f64,
    pub lost: u64,
    pub out_of_order: u64,
    pub duplicates: u64,
    /// Scheduled send to arrival.
    pub latency: Summary,
    /// Scheduled send to actual send (the driver's own lateness).
    pub send_lag: Summary,
    pub errors: ErrorCounts,
    /// CPU seconds each `--server-pid` used from the start of sending to the
    /// end of the drain, in --server order; empty without `--server-pid`.
    #[serde(default)]
    pub server_cpu_s: Vec<f64>,
    /// All of `server_cpu_s` per message received, in microseconds.
    #[serde(default)]
    pub cpu_us_per_message: Option<f64>,
    /// Each `--server-pid`'s memory with every session logged in, before the
    /// first message; empty without `--server-pid`.
    #[serde(default)]
    pub memory: Vec<MemoryReport>,
    /// Receivers' sessions resumed after a dropped socket (`--churn-percent`).
    #[serde(default)]
    pub resumed: u64,
    #[serde(default)]
    pub resume_failed: u64,
    /// From dropping the socket to `<resumed/>`.
    #[serde(default)]
    pub resume_latency: Option<Summary>,
}

/// Adds up the workers' reports.
pub fn merge(reports: &[WorkerReport]) -> WorkerReport {
    let mut total = WorkerReport::default();
    for report in reports {
        total.login.merge(&report.login);
        if let Some(hold) = &report.hold {
            total
                .hold
                .get_or_insert_with(HoldStats::default)
                .merge(hold);
        }
        if let Some(chat) = &report.chat {
            total
                .chat
                .get_or_insert_with(ChatStats::default)
                .merge(chat);
        }
        if let Some(converge) = &report.converge {
            total
                .converge
                .get_or_insert_with(ConvergeStats::default)
                .merge(converge);
        }
        if let Some(failover) = &report.failover {
            total
                .failover
                .get_or_insert_with(FailoverStats::default)
                .merge(failover);
        }
        if let Some(fanout) = &report.fanout {
            total
                .fanout
                .get_or_insert_with(FanoutStats::default)
                .merge(fanout);
        }
        pep::merge_publish(&mut total.pep_publish, &report.pep_publish);
        pep::merge_storm(&mut total.pep_storm, &report.pep_storm);
        if let Some(muc) = &report.muc {
            total.muc.get_or_insert_with(Default::default).merge(muc);
        }
    }
    total
}

pub fn login_summary(stats: &LoginStats, offered_rate: f64) -> LoginSummary {
    LoginSummary {
        attempted: stats.attempted,
        succeeded: stats.succeeded,
        failed: stats.attempted - stats.succeeded,
        offered_rate,
        achieved_rate: per_second(stats.succeeded, stats.elapsed_s),
        elapsed_s: stats.elapsed_s,
        latency: stats.latency.summary(),
        errors: stats.errors.clone(),
        succeeded_by_server: if stats.by_server.len() > 1 {
            stats.by_server.clone()
        } else {
            Vec::new()
        },
    }
}

/// `memory` holds one report per sampled server: one keeps the single-server form.
pub fn hold_summary(stats: &HoldStats, mut memory: Vec<MemoryReport>) -> HoldSummary {
    let single = if memory.len() == 1 {
        memory.pop()
    } else {
        None
    };
    HoldSummary {
        held: stats.held,
        dropped: stats.dropped,
        duration_s: stats.duration_s,
        errors: stats.errors.clone(),
        memory: single,
        memory_by_server: memory,
    }
}

pub fn chat_summary(
    stats: &ChatStats,
    offered_rate: f64,
    cross: bool,
    server_cpu_s: Vec<f64>,
    memory: Vec<MemoryReport>,
) -> ChatSummary {
    let cpu_us_per_message = (!server_cpu_s.is_empty() && stats.received > 0)
        .then(|| server_cpu_s.iter().sum::<f64>() * 1e6 / stats.received as f64);
    ChatSummary {
        pairs: stats.pairs,
        cross,
        offered_rate,
        duration_s: stats.duration_s,
        sent: stats.sent,
        received: stats.received,
        sent_per_s: per_second(stats.sent, stats.duration_s),
        received_per_s: per_second(stats.received, stats.duration_s.max(stats.last_arrival_s)),
        last_arrival_s: stats.last_arrival_s,
        lost: stats.lost,
        out_of_order: stats.out_of_order,
        duplicates: stats.duplicates,
        latency: stats.latency.summary(),
        send_lag: stats.send_lag.summary(),
        errors: stats.errors.clone(),
        server_cpu_s,
        cpu_us_per_message,
        memory,
        resumed: stats.resumed,
        resume_failed: stats.resume_failed,
        resume_latency: (stats.resumed > 0).then(|| stats.resume_latency.summary()),
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    count as f64 / seconds
}

impl RunReport {
    /// The summary for a terminal.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let info = &self.info;
        let tls = if info.tls { "STARTTLS" } else { "no TLS" };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{} against {} ({}), {tls}, {}, {} worker(s)",
            info.command, info.server, info.domain, info.mechanism, info.workers
        );
        let login = &self.login;
        let _ = writeln!(
            out,
            "logins: {}/{} ok in {:.2} s: {:.1}/s achieved ({:.1}/s offered)",
            login.succeeded,
            login.attempted,
            login.elapsed_s,
            login.achieved_rate,
            login.offered_rate
        );
        let _ = writeln!(out, "  latency {}", latency_line(&login.latency));
        if login.succeeded_by_server.len() > 1 {
            let counts: Vec<String> = login
                .succeeded_by_server
                .iter()
                .map(u64::to_string)
                .collect();
            let _ = writeln!(out, "  per server: {}", counts.join(", "));
        }
        errors_lines(&mut out, &login.errors);
        if let Some(hold) = &self.hold {
            hold_lines(&mut out, hold);
        }
        if let Some(chat) = &self.chat {
            chat_lines(&mut out, chat);
        }
        if let Some(converge) = &self.converge {
            converge_lines(&mut out, converge);
        }
        if let Some(failover) = &self.failover {
            failover_lines(&mut out, failover);
        }
        if let Some(fanout) = &self.fanout {
            fanout_lines(&mut out, fanout);
        }
        if let Some(storm) = &self.pep_storm {
            pep_storm_lines(&mut out, storm);
        }
        if let Some(muc) = &self.muc {
            super::muc::lines(&mut out, muc, latency_line);
        }
        out
    }
}

fn hold_lines(out: &mut String, hold: &HoldSummary) {
    let _ = writeln!(
        out,
        "hold: {} sessions held {:.1} s, {} dropped",
        hold.held, hold.duration_s, hold.dropped
    );
    errors_lines(out, &hold.errors);
    for memory in hold.memory.iter().chain(&hold.memory_by_server) {
        let _ = writeln!(
            out,
            "  server pid {} RSS {} -> {} KiB (peak {} KiB): {:.1} KiB per session over {} \
             sessions",
            memory.pid,
            memory.before.rss_kib,
            memory.after.rss_kib,
            memory.after.peak_kib,
            memory.per_session_kib,
            memory.sessions
        );
    }
}

fn chat_lines(out: &mut String, chat: &ChatSummary) {
    let layout = if chat.cross { ", cross-node" } else { "" };
    let _ = writeln!(
        out,
        "chat: {} pairs{layout}, {:.1} s at {:.1} msg/s offered: sent {} ({:.1}/s), received \
         {} ({:.1}/s), lost {}, out of order {}, duplicates {}",
        chat.pairs,
        chat.duration_s,
        chat.offered_rate,
        chat.sent,
        chat.sent_per_s,
        chat.received,
        chat.received_per_s,
        chat.lost,
        chat.out_of_order,
        chat.duplicates
    );
    if chat.last_arrival_s > chat.duration_s * 1.01 {
        let _ = writeln!(
            out,
            "  the last message arrived {:.1} s after sending started",
            chat.last_arrival_s
        );
    }
    let _ = writeln!(out, "  latency  {}", latency_line(&chat.latency));
    let _ = writeln!(out, "  send lag {}", latency_line(&chat.send_lag));
    if let Some(per_message) = chat.cpu_us_per_message {
        let each: Vec<String> = chat
            .server_cpu_s
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "  server CPU {} s ({}), {per_message:.1} µs per message received",
            each.join(" + "),
            if chat.server_cpu_s.len() == 1 {
                "one server"
            } else {
                "by server"
            },
        );
    }
    for memory in &chat.memory {
        let _ = writeln!(
            out,
            "  server pid {}: {} sessions, {:.1} KiB per session before the first message",
            memory.pid, memory.sessions, memory.per_session_kib
        );
    }
    if let Some(latency) = &chat.resume_latency {
        let _ = writeln!(
            out,
            "  resumed {} sessions ({} failed), drop to <resumed/> {}",
            chat.resumed,
            chat.resume_failed,
            latency_line(latency)
        );
    }
    errors_lines(out, &chat.errors);
}

fn converge_lines(out: &mut String, converge: &ConvergeSummary) {
    let _ = writeln!(
        out,
        "converge: {} rounds at {:.1}/s: {} delivered within {:.1} s, {} late, {} stored \
         offline, {} lost, {} not sent",
        converge.rounds,
        converge.offered_rate,
        converge.delivered,
        converge.wait_s,
        converge.late,
        converge.offline,
        converge.lost,
        converge.unsent
    );
    let _ = writeln!(out, "  bind to arrival {}", latency_line(&converge.latency));
    errors_lines(out, &converge.errors);
}

fn failover_lines(out: &mut String, failover: &FailoverSummary) {
    let _ = writeln!(
        out,
        "failover: killed pid {} ({} contacts on it); {} watchers saw {} contact sessions \
         available: {} went unavailable within {:.1} s, {} missed",
        failover.killed_pid,
        failover.contacts,
        failover.watchers,
        failover.watched,
        failover.notified,
        failover.wait_s,
        failover.missed
    );
    let _ = writeln!(
        out,
        "  kill to unavailable {}",
        latency_line(&failover.latency)
    );
    errors_lines(out, &failover.errors);
}

fn fanout_lines(out: &mut String, fanout: &FanoutSummary) {
    let _ = writeln!(
        out,
        "fanout ({}): {} of {} subscribers on node {:?} via {}; {:.1} s at {:.1} items/s: {} of \
         {} published ({} failed)",
        fanout.transport.name(),
        fanout.subscribers,
        fanout.subscribers_wanted,
        fanout.node,
        fanout.subscriber_servers,
        fanout.duration_s,
        fanout.offered_rate,
        fanout.published,
        fanout.planned,
        fanout.publish_failed
    );
    let _ = writeln!(
        out,
        "  deliveries: expected {}, received {} ({:.1}/s), lost {}, duplicates {}, out of order \
         {}, stray {}, subscribers dropped {}",
        fanout.expected,
        fanout.received,
        fanout.delivered_per_s,
        fanout.lost,
        fanout.duplicates,
        fanout.out_of_order,
        fanout.stray,
        fanout.dropped
    );
    let _ = writeln!(out, "  latency  {}", latency_line(&fanout.latency));
    let _ = writeln!(out, "  publish  {}", latency_line(&fanout.publish_latency));
    let _ = writeln!(out, "  send lag {}", latency_line(&fanout.publish_send_lag));
    for server in &fanout.by_server {
        let _ = writeln!(
            out,
            "  {}: {} subscribers, {} of {} received, latency {}",
            server.address,
            server.subscribers,
            server.received,
            server.expected,
            latency_line(&server.latency)
        );
        if let Some(memory) = &server.memory {
            let _ = writeln!(
                out,
                "    pid {} RSS {} -> {} KiB idle ({:.1} KiB per subscriber), {} KiB when \
                 publishing ended (peak {} KiB)",
                memory.idle.pid,
                memory.idle.before.rss_kib,
                memory.idle.after.rss_kib,
                memory.idle.per_session_kib,
                memory.end.rss_kib,
                memory.end.peak_kib
            );
        }
    }
    errors_lines(out, &fanout.errors);
}

fn pep_storm_lines(out: &mut String, storm: &PepStormSummary) {
    if let Some(setup) = &storm.setup {
        let _ = writeln!(
            out,
            "pep-storm setup: {} logins ({} failed), {} items published ({} failed) in {:.1} s",
            setup.logins,
            setup.login_failures,
            setup.published,
            setup.publish_failed,
            setup.elapsed_s
        );
        if let Some(cpu) = setup.cpu_ms_per_item {
            let _ = writeln!(out, "  server CPU {cpu:.2} ms per item published");
        }
        errors_lines(out, &setup.errors);
    }
    let _ = writeln!(
        out,
        "pep-storm: {} sessions, {:.1} contacts each: {} of {} contact items received ({:.1} per          session, min {}, max {}), {} own, {} duplicates",
        storm.sessions,
        storm.contacts_per_session,
        storm.received,
        storm.expected,
        storm.received_per_session,
        storm.min_received,
        storm.max_received,
        storm.own,
        storm.duplicates
    );
    let _ = writeln!(
        out,
        "  {} complete, {} with none of their contacts' items; {} disco#info questions answered,          {} presences from contacts",
        storm.complete, storm.empty, storm.disco_questions, storm.presences
    );
    let _ = writeln!(
        out,
        "  login to last item {}",
        latency_line(&storm.to_complete)
    );
    let _ = writeln!(out, "  login to settled   {}", latency_line(&storm.to_last));
    if let Some(cpu) = &storm.cpu {
        let _ = writeln!(
            out,
            "  server CPU {:.2} s over {:.1} s: {:.2} ms per login",
            cpu.seconds, cpu.wall_s, cpu.ms_per_login
        );
    }
    if let Some(memory) = &storm.marginal_memory {
        let _ = writeln!(
            out,
            "  server RSS {} KiB at {} sessions -> {} KiB at {}: {:.1} KiB per session of the \
             second half",
            memory.from_rss_kib,
            memory.from_sessions,
            memory.to_rss_kib,
            memory.to_sessions,
            memory.per_session_kib
        );
    }
    errors_lines(out, &storm.errors);
}

pub fn latency_line(summary: &Summary) -> String {
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        summary.p50_ms, summary.p90_ms, summary.p99_ms, summary.max_ms, summary.count
    )
}

fn errors_lines(out: &mut String, errors: &ErrorCounts) {
    for (kind, count) in errors {
        let _ = writeln!(out, "  error {kind}: {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::count_error;

    #[test]
    fn merged_reports_give_rates_over_the_longest_worker() {
        let mut a = WorkerReport::default();
        a.login.attempted = 100;
        a.login.succeeded = 100;
        a.login.elapsed_s = 1.0;
        let mut b = a.clone();
        b.login.elapsed_s = 2.0;
        count_error(&mut b.login.errors, "connect:ConnectionRefused".to_owned());
        b.chat = Some(ChatStats {
            sent: 10,
            received: 9,
            lost: 1,
            duration_s: 5.0,
            last_arrival_s: 9.0,
            ..ChatStats::default()
        });
        let total = merge(&[a, b]);
        let login = login_summary(&total.login, 200.0);
        assert_eq!(login.succeeded, 200);
        assert_eq!(login.achieved_rate, 100.0);
        let chat = chat_summary(
            total.chat.as_ref().unwrap(),
            2.0,
            false,
            Vec::new(),
            Vec::new(),
        );
        assert_eq!(chat.sent_per_s, 2.0);
        // A queueing server delivers after the window: the rate is over the longer span.
        assert_eq!(chat.received_per_s, 1.0);
        assert_eq!(chat.lost, 1);
    }

    #[test]
    fn memory_per_session_is_the_delta_over_sessions() {
        let before = MemorySample {
            rss_kib: 10_000,
            peak_kib: 10_000,
        };
        let after = MemorySample {
            rss_kib: 60_000,
            peak_kib: 61_000,
        };
        let memory = MemoryReport::new(1, before, after, 1000);
        assert_eq!(memory.per_session_kib, 50.0);
    }
}
