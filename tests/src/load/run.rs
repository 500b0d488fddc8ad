//! Runs a whole load test from the parent process: splits users over workers, starts them,
//! samples the server's memory when asked, and merges what they report.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::chat::ChatJob;
use super::hold::HoldJob;
use super::login::LoginJob;
use super::report::{self, MemoryReport, RunInfo, RunReport};
use super::rss::{self, MemorySample};
use super::worker::{Fleet, WorkerError, source_address};
use super::{Connection, Job, SOCKETS_PER_WORKER, Users};
use crate::sasl::Mechanism;

/// Where and as whom every run connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub domain: String,
    /// Prefixes and first index; the count comes from the plan.
    pub users: Users,
    pub tls: bool,
    pub mechanism: Mechanism,
    pub resource: String,
    pub timeout_s: f64,
    /// `None`: as many as the sockets need.
    pub workers: Option<usize>,
    /// Worker `k` connects from `source_base + k`; `None`: the system's choice.
    pub source_base: Option<IpAddr>,
}

/// What to run.
#[derive(Debug, Clone)]
pub enum Plan {
    Login {
        count: u64,
        rate: f64,
    },
    Hold {
        count: u64,
        rate: f64,
        duration_s: f64,
        presence: bool,
        server_pid: Option<u32>,
        /// Pause between the last login and the memory sample.
        settle_s: f64,
    },
    Chat {
        pairs: u64,
        rate: f64,
        duration_s: f64,
        drain_s: f64,
        login_rate: f64,
        body_size: usize,
        presence: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Worker(#[from] WorkerError),
    #[error("reading the memory of server pid {pid}: {source}")]
    Memory {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Plan(String),
}

impl Plan {
    fn name(&self) -> &'static str {
        match self {
            Plan::Login { .. } => "login",
            Plan::Hold { .. } => "hold",
            Plan::Chat { .. } => "chat",
        }
    }

    fn sockets(&self) -> u64 {
        match self {
            Plan::Login { count, .. } | Plan::Hold { count, .. } => *count,
            Plan::Chat { pairs, .. } => pairs * 2,
        }
    }

    /// Units the plan splits over workers: users, or pairs for chat.
    fn units(&self) -> u64 {
        match self {
            Plan::Login { count, .. } | Plan::Hold { count, .. } => *count,
            Plan::Chat { pairs, .. } => *pairs,
        }
    }
}

/// How many workers a plan needs (or was given), never more than it has units.
pub fn worker_count(plan: &Plan, requested: Option<usize>) -> usize {
    let needed = plan.sockets().div_ceil(SOCKETS_PER_WORKER).max(1);
    let wanted = requested.map_or(needed, |requested| requested as u64);
    usize::try_from(wanted.clamp(1, plan.units().max(1))).unwrap_or(1)
}

/// Splits `total` into `parts` contiguous ranges `(start, count)` differing by at most one.
pub fn split(total: u64, parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u64;
    let (base, extra) = (total / parts, total % parts);
    let mut start = 0;
    (0..parts)
        .map(|part| {
            let count = base + u64::from(part < extra);
            let range = (start, count);
            start += count;
            range
        })
        .collect()
}

fn jobs(target: &Target, plan: &Plan, workers: usize) -> Result<Vec<Job>, RunError> {
    let total = plan.units().max(1) as f64;
    let mut jobs = Vec::with_capacity(workers);
    for (index, (start, count)) in split(plan.units(), workers).into_iter().enumerate() {
        let source = match target.source_base {
            Some(base) => Some(source_address(base, index).ok_or_else(|| {
                RunError::Plan(format!("no source address for worker {index} from {base}"))
            })?),
            None => None,
        };
        let connection = Connection {
            server: target.server,
            domain: target.domain.clone(),
            tls: target.tls,
            mechanism: target.mechanism,
            resource: target.resource.clone(),
            timeout_s: target.timeout_s,
            source,
        };
        let share = count as f64 / total;
        let job = match plan {
            Plan::Login { rate, .. } => Job::Login(LoginJob {
                connection,
                users: target.users.slice(start, count),
                rate: rate * share,
            }),
            Plan::Hold {
                rate,
                duration_s,
                presence,
                ..
            } => Job::Hold(HoldJob {
                connection,
                users: target.users.slice(start, count),
                rate: rate * share,
                duration_s: *duration_s,
                presence: *presence,
            }),
            Plan::Chat {
                pairs,
                rate,
                duration_s,
                drain_s,
                login_rate,
                body_size,
                presence,
            } => Job::Chat(ChatJob {
                connection,
                users: target.users.slice(start * 2, count * 2),
                first_pair: start,
                total_pairs: *pairs,
                rate: *rate,
                duration_s: *duration_s,
                drain_s: *drain_s,
                login_rate: login_rate * share,
                body_size: *body_size,
                presence: *presence,
            }),
        };
        jobs.push(job);
    }
    Ok(jobs)
}

fn sample(pid: u32) -> Result<MemorySample, RunError> {
    rss::sample(pid).map_err(|source| RunError::Memory { pid, source })
}

/// Runs the plan over worker processes and returns the merged report.
pub async fn run(target: &Target, plan: &Plan) -> Result<RunReport, RunError> {
    if plan.units() == 0 {
        return Err(RunError::Plan("nothing to do: the count is 0".to_owned()));
    }
    let workers = worker_count(plan, target.workers);
    let server_pid = match plan {
        Plan::Hold { server_pid, .. } => *server_pid,
        _ => None,
    };
    let before = server_pid.map(sample).transpose()?;

    let mut fleet = Fleet::spawn(jobs(target, plan, workers)?).await?;
    eprintln!(
        "starling-load: {} on {workers} worker(s), logging in",
        plan.name()
    );
    let ready = fleet.ready().await?;
    let logged_in: u64 = ready.iter().map(|info| info.logged_in).sum();
    let failed: u64 = ready.iter().map(|info| info.failed).sum();
    if !matches!(plan, Plan::Login { .. }) {
        eprintln!("starling-load: {logged_in} logged in, {failed} failed; running");
    }
    let mut after = None;
    if let (Plan::Hold { settle_s, .. }, Some(pid)) = (plan, server_pid) {
        tokio::time::sleep(Duration::from_secs_f64(settle_s.max(0.0))).await;
        after = Some(sample(pid)?);
    }
    fleet.go().await?;
    let reports = fleet.reports().await?;
    let total = report::merge(&reports);

    let info = RunInfo {
        command: plan.name().to_owned(),
        server: target.server.to_string(),
        domain: target.domain.clone(),
        tls: target.tls,
        mechanism: target.mechanism.name().to_owned(),
        workers,
    };
    let (login_rate, chat_rate) = match plan {
        Plan::Login { rate, .. } | Plan::Hold { rate, .. } => (*rate, 0.0),
        Plan::Chat {
            login_rate, rate, ..
        } => (*login_rate, *rate),
    };
    let memory = match (server_pid, before, after) {
        (Some(pid), Some(before), Some(after)) => {
            Some(MemoryReport::new(pid, before, after, total.login.succeeded))
        }
        _ => None,
    };
    Ok(RunReport {
        info,
        login: report::login_summary(&total.login, login_rate),
        hold: total
            .hold
            .as_ref()
            .map(|hold| report::hold_summary(hold, memory)),
        chat: total
            .chat
            .as_ref()
            .map(|chat| report::chat_summary(chat, chat_rate)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            server: "127.0.0.1:5222".parse().unwrap(),
            domain: "localhost".to_owned(),
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
        }
    }

    #[test]
    fn split_is_contiguous_and_even() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(2, 1), vec![(0, 2)]);
    }

    #[test]
    fn workers_follow_the_socket_budget() {
        let login = |count| Plan::Login { count, rate: 1.0 };
        assert_eq!(worker_count(&login(19_900), None), 1);
        assert_eq!(worker_count(&login(19_901), None), 2);
        assert_eq!(worker_count(&login(3), Some(8)), 3);
        let chat = Plan::Chat {
            pairs: 10_000,
            rate: 1.0,
            duration_s: 1.0,
            drain_s: 1.0,
            login_rate: 1.0,
            body_size: 0,
            presence: true,
        };
        assert_eq!(worker_count(&chat, None), 2);
    }

    #[test]
    fn chat_jobs_keep_pairs_whole_and_numbered_globally() {
        let plan = Plan::Chat {
            pairs: 5,
            rate: 100.0,
            duration_s: 1.0,
            drain_s: 1.0,
            login_rate: 50.0,
            body_size: 0,
            presence: true,
        };
        let jobs = jobs(&target(), &plan, 2).unwrap();
        let Job::Chat(second) = &jobs[1] else {
            panic!("not a chat job")
        };
        assert_eq!(second.first_pair, 3);
        assert_eq!(second.users.first, 7);
        assert_eq!(second.users.count, 4);
        assert_eq!(second.rate, 100.0);
        assert_eq!(second.login_rate, 20.0);
        assert_eq!(second.connection.source, "127.0.0.3".parse().ok());
    }

    #[test]
    fn login_rates_are_shared_by_size() {
        let jobs = jobs(
            &target(),
            &Plan::Login {
                count: 4,
                rate: 40.0,
            },
            2,
        )
        .unwrap();
        let Job::Login(first) = &jobs[0] else {
            panic!("not a login job")
        };
        assert_eq!(
            (first.users.first, first.users.count, first.rate),
            (1, 2, 20.0)
        );
    }
}
