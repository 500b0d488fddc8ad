//! `pep-storm`: the modern login storm. Users with large rosters, every one of whom
//! publishes an avatar (XEP-0084 metadata) and an OMEMO device list, log in at a fixed
//! rate with capabilities that want both nodes; each login is sent the newest item of
//! both nodes of every contact (XEP-0163 4.3.2).
//!
//! Two phases, each its own fleet of worker processes:
//!
//! 1. setup ([`publish`]): every user publishes its two items, with no presence, so
//!    nobody is notified. `--no-publish` skips it when the items are already stored.
//! 2. the storm ([`storm`]): logins at `--rate`, TLS + SASL, roster get, presence with
//!    XEP-0115 caps ([`caps`]), disco#info answered when asked; every session is held
//!    once settled.
//!
//! The parent samples the server processes around the storm: CPU time (`/proc/PID/stat`)
//! before the first login and once every session has settled, so the CPU per login
//! covers authentication, roster, presence broadcast and the PEP items, and not the
//! setup or the logouts; resident memory at the same two moments, for memory per held
//! session as `hold` reports it. That figure also carries what the first logins warm up
//! once for all (store page caches, the allocator's arenas), so memory is also sampled
//! every second during the storm, and the marginal cost of a session is taken between
//! the moment half the logins were scheduled and the end ([`marginal`]). A login whose
//! contacts published but that got none of their items fails the run.

pub mod caps;
pub mod items;
pub mod publish;
pub mod storm;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use self::publish::{PublishJob, PublishStats};
use self::storm::{StormJob, StormStats};
use super::report::{self, MemoryReport, RunInfo, RunReport};
use super::rss::{self, MemorySample};
use super::run::{RunError, Target, connection, split};
use super::worker::{Fleet, source_address};
use super::{ErrorCounts, Job, LoginStats, SOCKETS_PER_WORKER, WorkerReport, cpu};
use crate::stats::Summary;

/// The whole run, as the parent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PepStormPlan {
    /// Users `PREFIX<first>..`: every one publishes, then every one logs in.
    pub count: u64,
    /// Logins per second during the storm.
    pub rate: f64,
    /// Run the setup phase (publish both items for every user).
    pub publish: bool,
    /// Logins per second during the setup.
    pub publish_rate: f64,
    /// Longest wait for a session's notifications after its presence, seconds.
    pub wait_s: f64,
    /// A session that got nothing new for this long has all it will get, seconds.
    pub quiet_s: f64,
    /// Pause between the last session settling and the samples.
    pub settle_s: f64,
    /// Server processes to sample (CPU and memory); one per server, in order.
    pub server_pids: Vec<u32>,
}

/// The report's view of the storm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PepStormSummary {
    pub users: u64,
    pub offered_rate: f64,
    /// The setup phase, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupSummary>,
    /// Sessions that sent their presence.
    pub sessions: u64,
    pub contacts_per_session: f64,
    /// Contact items expected (two per contact) and received, over all sessions.
    pub expected: u64,
    pub received: u64,
    pub received_per_session: f64,
    pub min_received: u64,
    pub max_received: u64,
    /// Notifications of a session's own items.
    pub own: u64,
    pub duplicates: u64,
    pub complete: u64,
    /// Sessions with contacts that got none of their items: any fails the run.
    pub empty: u64,
    pub disco_questions: u64,
    pub presences: u64,
    /// Scheduled login to the last expected item, complete sessions only.
    pub to_complete: Summary,
    /// Scheduled login to the last item before the session settled.
    pub to_last: Summary,
    /// CPU of the sampled servers from the first login until every session settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuReport>,
    /// Memory of the second half of the sessions only (all sampled servers together);
    /// only when every login succeeded at about the offered rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marginal_memory: Option<MarginalMemory>,
    pub errors: ErrorCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetupSummary {
    pub logins: u64,
    pub login_failures: u64,
    pub published: u64,
    pub publish_failed: u64,
    pub elapsed_s: f64,
    /// Server CPU over the whole setup, per item published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms_per_item: Option<f64>,
    pub errors: ErrorCounts,
}

/// Resident memory when about half the sessions were up and when all were, and the
/// difference per session between the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginalMemory {
    /// Sessions scheduled by the middle sample (those logins are up, give or take the
    /// few still in flight).
    pub from_sessions: u64,
    pub from_rss_kib: u64,
    pub to_sessions: u64,
    pub to_rss_kib: u64,
    pub per_session_kib: f64,
}

/// The marginal memory of a session: from the sample of `series` (seconds since the first
/// scheduled login, total KiB) at which about half of `count` logins at `rate` were
/// scheduled, to `end_kib` with `sessions` up. `None` without such a sample. Only
/// meaningful when the server kept up with the schedule (the caller checks).
pub fn marginal(
    series: &[(f64, u64)],
    rate: f64,
    count: u64,
    sessions: u64,
    end_kib: u64,
) -> Option<MarginalMemory> {
    let scheduled = |t: f64| ((t * rate).floor().max(0.0) as u64).min(count);
    let half = count / 2;
    let &(t, from_rss_kib) = series
        .iter()
        .filter(|(t, _)| scheduled(*t) > 0 && scheduled(*t) < sessions)
        .min_by_key(|(t, _)| scheduled(*t).abs_diff(half))?;
    let from_sessions = scheduled(t);
    Some(MarginalMemory {
        from_sessions,
        from_rss_kib,
        to_sessions: sessions,
        to_rss_kib: end_kib,
        per_session_kib: (end_kib as f64 - from_rss_kib as f64) / (sessions - from_sessions) as f64,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    pub pids: Vec<u32>,
    /// User plus system seconds over the storm, all sampled servers together.
    pub seconds: f64,
    /// From the first scheduled login until the samples.
    pub wall_s: f64,
    pub ms_per_login: f64,
}

impl PepStormPlan {
    fn check(&self, target: &Target) -> Result<(), RunError> {
        if self.count == 0 {
            return Err(RunError::Plan("nothing to do: the count is 0".to_owned()));
        }
        if !self.server_pids.is_empty() && self.server_pids.len() != target.servers.len() {
            return Err(RunError::Plan(format!(
                "{} server pid(s) for {} server(s): give one pid per server, in the same order",
                self.server_pids.len(),
                target.servers.len()
            )));
        }
        Ok(())
    }

    fn workers(&self, requested: Option<usize>) -> usize {
        let needed = self.count.div_ceil(SOCKETS_PER_WORKER).max(1);
        let wanted = requested.map_or(needed, |requested| requested as u64);
        usize::try_from(wanted.clamp(1, self.count)).unwrap_or(1)
    }
}

/// The jobs of one phase: `make(connection, users, first_index, share)` for each worker.
fn jobs(
    target: &Target,
    plan: &PepStormPlan,
    workers: usize,
    make: impl Fn(super::Connection, super::Users, u64, f64) -> Job,
) -> Result<Vec<Job>, RunError> {
    split(plan.count, workers)
        .into_iter()
        .enumerate()
        .map(|(index, (start, count))| {
            let source = match target.source_base {
                Some(base) => Some(source_address(base, index).ok_or_else(|| {
                    RunError::Plan(format!("no source address for worker {index} from {base}"))
                })?),
                None => None,
            };
            let share = count as f64 / plan.count as f64;
            Ok(make(
                connection(target, source),
                target.users.slice(start, count),
                start,
                share,
            ))
        })
        .collect()
}

/// Runs one phase's fleet to its reports.
async fn phase(jobs: Vec<Job>) -> Result<Vec<WorkerReport>, RunError> {
    let mut fleet = Fleet::spawn(jobs).await?;
    fleet.ready().await?;
    fleet.go().await?;
    Ok(fleet.reports().await?)
}

struct Samples {
    cpu_s: f64,
    memory: Vec<MemorySample>,
}

fn sample(pids: &[u32]) -> Result<Samples, RunError> {
    let cpu_s = cpu::total_seconds(pids).map_err(|(pid, source)| RunError::Cpu { pid, source })?;
    let memory = pids
        .iter()
        .map(|&pid| rss::sample(pid).map_err(|source| RunError::Memory { pid, source }))
        .collect::<Result<_, _>>()?;
    Ok(Samples { cpu_s, memory })
}

/// Runs the setup (if asked) and the storm; returns the merged report.
pub async fn run(target: &Target, plan: &PepStormPlan) -> Result<RunReport, RunError> {
    plan.check(target)?;
    let workers = plan.workers(target.workers);
    let pids = &plan.server_pids;

    let setup = if plan.publish {
        eprintln!(
            "starling-load: pep-storm setup: {} users publish on {workers} worker(s)",
            plan.count
        );
        let before = sample(pids)?;
        let publish_jobs = jobs(target, plan, workers, |connection, users, first, share| {
            Job::PepPublish(PublishJob {
                connection,
                users,
                first_index: first,
                rate: plan.publish_rate * share,
            })
        })?;
        let reports = phase(publish_jobs).await?;
        let after = sample(pids)?;
        Some(setup_summary(
            &reports,
            (!pids.is_empty()).then_some(after.cpu_s - before.cpu_s),
        ))
    } else {
        None
    };

    let before = sample(pids)?;
    let storm_jobs = jobs(target, plan, workers, |connection, users, first, share| {
        Job::PepStorm(StormJob {
            connection,
            users,
            first_index: first,
            rate: plan.rate * share,
            wait_s: plan.wait_s,
            quiet_s: plan.quiet_s,
        })
    })?;
    eprintln!(
        "starling-load: pep-storm: {} logins at {}/s on {workers} worker(s)",
        plan.count, plan.rate
    );
    let started = Instant::now();
    let (stop_sampling, sampler) = memory_sampler(pids.clone(), started);
    let mut fleet = Fleet::spawn(storm_jobs).await?;
    let ready = fleet.ready().await?;
    let settled: u64 = ready.iter().map(|info| info.logged_in).sum();
    eprintln!("starling-load: {settled} sessions settled; sampling and logging out");
    tokio::time::sleep(Duration::from_secs_f64(plan.settle_s.max(0.0))).await;
    let after = sample(pids)?;
    let wall_s = started.elapsed().as_secs_f64();
    drop(stop_sampling);
    let series = sampler.await.unwrap_or_default();
    fleet.go().await?;
    let total = report::merge(&fleet.reports().await?);
    // Sessions up at a sample are told from the schedule, which holds only while the
    // server keeps up with it.
    let kept_up = total.login.succeeded == plan.count
        && report::login_summary(&total.login, plan.rate).achieved_rate >= 0.95 * plan.rate;
    let marginal_memory = (!pids.is_empty() && kept_up)
        .then(|| {
            let end_kib = after.memory.iter().map(|sample| sample.rss_kib).sum();
            marginal(
                &series,
                plan.rate,
                plan.count,
                total.login.succeeded,
                end_kib,
            )
        })
        .flatten();

    let memory: Vec<MemoryReport> = pids
        .iter()
        .zip(before.memory.iter().zip(&after.memory))
        .enumerate()
        .map(|(server, (&pid, (&before, &after)))| {
            let sessions = total.login.by_server.get(server).copied().unwrap_or(0);
            MemoryReport::new(pid, before, after, sessions)
        })
        .collect();
    let cpu = (!pids.is_empty()).then(|| CpuReport {
        pids: pids.clone(),
        seconds: after.cpu_s - before.cpu_s,
        wall_s,
        ms_per_login: per_login_ms(after.cpu_s - before.cpu_s, &total.login),
    });
    let storm = total.pep_storm.clone().unwrap_or_default();
    Ok(RunReport {
        info: RunInfo {
            command: "pep-storm".to_owned(),
            server: target.servers.to_string(),
            domain: target.domain.clone(),
            tls: target.tls,
            mechanism: target.mechanism.name().to_owned(),
            workers,
        },
        login: report::login_summary(&total.login, plan.rate),
        hold: total
            .hold
            .as_ref()
            .map(|hold| report::hold_summary(hold, memory)),
        chat: None,
        converge: None,
        failover: None,
        fanout: None,
        pep_storm: Some(PepStormSummary {
            marginal_memory,
            ..summary(plan, setup, &storm, cpu)
        }),
        muc: None,
    })
}

/// Samples the total resident memory of `pids` every second until the returned sender is
/// dropped; the task then returns `(seconds since start, KiB)` pairs.
fn memory_sampler(
    pids: Vec<u32>,
    start: Instant,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<(f64, u64)>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut series = Vec::new();
        if pids.is_empty() {
            return series;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // A failed sample is left out; the end sample reports the error.
                    let total: Result<u64, _> =
                        pids.iter().map(|&pid| rss::sample(pid).map(|s| s.rss_kib)).sum();
                    if let Ok(total) = total {
                        series.push((start.elapsed().as_secs_f64(), total));
                    }
                }
                _ = &mut stopped => break,
            }
        }
        series
    });
    (stop, task)
}

fn per_login_ms(cpu_s: f64, login: &LoginStats) -> f64 {
    if login.succeeded == 0 {
        return 0.0;
    }
    1000.0 * cpu_s / login.succeeded as f64
}

fn setup_summary(reports: &[WorkerReport], cpu_s: Option<f64>) -> SetupSummary {
    let total = report::merge(reports);
    let publish = total.pep_publish.unwrap_or_default();
    SetupSummary {
        logins: total.login.succeeded,
        login_failures: total.login.attempted - total.login.succeeded,
        published: publish.published,
        publish_failed: publish.failed,
        elapsed_s: total.login.elapsed_s,
        cpu_ms_per_item: cpu_s
            .filter(|_| publish.published > 0)
            .map(|cpu_s| 1000.0 * cpu_s / publish.published as f64),
        errors: {
            let mut errors = publish.errors.clone();
            super::merge_errors(&mut errors, &total.login.errors);
            errors
        },
    }
}

fn summary(
    plan: &PepStormPlan,
    setup: Option<SetupSummary>,
    storm: &StormStats,
    cpu: Option<CpuReport>,
) -> PepStormSummary {
    let per_session = |value: u64| {
        if storm.sessions == 0 {
            0.0
        } else {
            value as f64 / storm.sessions as f64
        }
    };
    PepStormSummary {
        users: plan.count,
        offered_rate: plan.rate,
        setup,
        sessions: storm.sessions,
        contacts_per_session: per_session(storm.contacts),
        expected: storm.expected,
        received: storm.received,
        received_per_session: per_session(storm.received),
        min_received: storm.min_received.unwrap_or(0),
        max_received: storm.max_received,
        own: storm.own,
        duplicates: storm.duplicates,
        complete: storm.complete,
        empty: storm.empty,
        disco_questions: storm.disco_questions,
        presences: storm.presences,
        to_complete: storm.to_complete.summary(),
        to_last: storm.to_last.summary(),
        cpu,
        marginal_memory: None,
        errors: storm.errors.clone(),
    }
}

/// Publish stats of a worker report, for merging.
pub(super) fn merge_publish(into: &mut Option<PublishStats>, from: &Option<PublishStats>) {
    if let Some(from) = from {
        into.get_or_insert_with(PublishStats::default).merge(from);
    }
}

/// Storm stats of a worker report, for merging.
pub(super) fn merge_storm(into: &mut Option<StormStats>, from: &Option<StormStats>) {
    if let Some(from) = from {
        into.get_or_insert_with(StormStats::default).merge(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Users;
    use crate::sasl::Mechanism;

    fn target() -> Target {
        Target {
            servers: "127.0.0.1:5222".parse().unwrap(),
            domain: "localhost".to_owned(),
            server_domains: Vec::new(),
            users: Users {
                prefix: "u".to_owned(),
                password_prefix: "p".to_owned(),
                first: 1,
                count: 0,
            },
            tls: true,
            mechanism: Mechanism::ScramSha256,
            resource: "load".to_owned(),
            timeout_s: 10.0,
            workers: None,
            source_base: "127.0.0.2".parse().ok(),
            transport: Default::default(),
        }
    }

    fn plan() -> PepStormPlan {
        PepStormPlan {
            count: 10,
            rate: 5.0,
            publish: true,
            publish_rate: 20.0,
            wait_s: 10.0,
            quiet_s: 2.0,
            settle_s: 1.0,
            server_pids: Vec::new(),
        }
    }

    #[test]
    fn jobs_split_users_and_rates_over_workers() {
        let plan = plan();
        let jobs = jobs(&target(), &plan, 2, |connection, users, first, share| {
            Job::PepStorm(StormJob {
                connection,
                users,
                first_index: first,
                rate: plan.rate * share,
                wait_s: plan.wait_s,
                quiet_s: plan.quiet_s,
            })
        })
        .unwrap();
        let Job::PepStorm(second) = &jobs[1] else {
            panic!("not a storm job")
        };
        assert_eq!((second.users.first, second.users.count), (6, 5));
        assert_eq!((second.first_index, second.rate), (5, 2.5));
        assert_eq!(second.connection.source, "127.0.0.3".parse().ok());
    }

    #[test]
    fn pids_must_match_the_servers() {
        let mut plan = plan();
        assert!(plan.check(&target()).is_ok());
        plan.server_pids = vec![1, 2];
        assert!(plan.check(&target()).is_err());
        plan.server_pids = vec![1];
        assert!(plan.check(&target()).is_ok());
        plan.count = 0;
        assert!(plan.check(&target()).is_err());
        assert_eq!(self::plan().workers(Some(50)), 10);
        assert_eq!(self::plan().workers(None), 1);
    }

    #[test]
    fn marginal_memory_starts_when_half_the_logins_were_scheduled() {
        // 10 logins/s, 100 users: half are scheduled at 5 s.
        let series: Vec<(f64, u64)> = (0..12)
            .map(|second| (second as f64 + 0.01, 1_000 + 20 * second))
            .collect();
        let memory = marginal(&series, 10.0, 100, 100, 3_000).unwrap();
        assert_eq!((memory.from_sessions, memory.from_rss_kib), (50, 1_100));
        assert_eq!(memory.per_session_kib, 38.0);
        // No sample inside the storm: nothing to say.
        assert!(marginal(&[(0.0, 5)], 10.0, 100, 100, 10).is_none());
        assert!(marginal(&series, 10.0, 100, 0, 10).is_none());
    }

    #[test]
    fn cpu_is_shared_over_successful_logins() {
        let login = LoginStats {
            attempted: 5,
            succeeded: 4,
            ..LoginStats::default()
        };
        assert_eq!(per_login_ms(2.0, &login), 500.0);
        assert_eq!(per_login_ms(2.0, &LoginStats::default()), 0.0);
    }
}
