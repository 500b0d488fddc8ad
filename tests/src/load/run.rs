//! Runs a whole load test from the parent process: splits users over workers, starts them,
//! samples the servers' memory when asked, and merges what they report.

use std::net::IpAddr;
use std::time::Duration;

use super::chat::ChatJob;
use super::converge::{self, ConvergeJob};
use super::failover::{self, FailoverJob};
use super::fanout::{self, FanoutJob, FanoutMemory, FanoutPlan, Publisher};
use super::hold::HoldJob;
use super::login::LoginJob;
use super::report::{self, MemoryReport, RunInfo, RunReport};
use super::rss::{self, MemorySample};
use super::servers::Servers;
use super::worker::{Fleet, WorkerError, source_address};
use super::{Connection, Job, SOCKETS_PER_WORKER, Users};
use crate::error::ClientError;
use crate::sasl::Mechanism;

/// Where and as whom every run connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub servers: Servers,
    pub domain: String,
    /// The domain of each server when they serve different ones (see
    /// [`Connection::server_domains`]); empty: all serve `domain`.
    pub server_domains: Vec<String>,
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
    /// TCP, WebSocket or BOSH (`servers` are then HTTP addresses).
    pub transport: super::ClientTransport,
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
        /// Enable resumable stream management (XEP-0198) after login.
        stream_management: bool,
        /// Server processes to sample, one per server in order; empty: none.
        server_pids: Vec<u32>,
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
        /// Each pair's receiver on the server after its sender's.
        cross: bool,
        /// Server processes whose CPU time is counted from the start of
        /// sending to the end of the drain, one per server in order; empty:
        /// none.
        server_pids: Vec<u32>,
        /// Resumable stream management on every session.
        stream_management: bool,
        /// Receivers that drop their socket and resume.
        churn: Option<super::churn::Churn>,
    },
    Converge {
        rounds: u64,
        rate: f64,
        targets: u64,
        wait_s: f64,
    },
    Failover {
        pairs: u64,
        kill_pid: u32,
        login_rate: f64,
        settle_s: f64,
        wait_s: f64,
    },
    Fanout(FanoutPlan),
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
    #[error("reading the CPU time of server pid {pid}: {source}")]
    Cpu {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Plan(String),
    #[error("the publisher: {0}")]
    Publisher(#[source] ClientError),
}

impl Plan {
    fn name(&self) -> &'static str {
        match self {
            Plan::Login { .. } => "login",
            Plan::Hold { .. } => "hold",
            Plan::Chat { .. } => "chat",
            Plan::Converge { .. } => "converge",
            Plan::Failover { .. } => "failover",
            Plan::Fanout(_) => "fanout",
        }
    }

    fn sockets(&self) -> u64 {
        match self {
            Plan::Login { count, .. } | Plan::Hold { count, .. } => *count,
            Plan::Chat { pairs, .. } | Plan::Failover { pairs, .. } => pairs * 2,
            Plan::Converge { targets, .. } => *targets,
            Plan::Fanout(fan) => fan.subscribers,
        }
    }

    /// Units the plan splits over workers: users, or pairs for chat.
    fn units(&self) -> u64 {
        match self {
            Plan::Login { count, .. } | Plan::Hold { count, .. } => *count,
            Plan::Chat { pairs, .. } | Plan::Failover { pairs, .. } => *pairs,
            Plan::Converge { rounds, .. } => *rounds,
            Plan::Fanout(fan) => fan.subscribers,
        }
    }

    /// Plans whose measurement needs every client in one process (one clock, one kill).
    fn single_worker(&self) -> bool {
        matches!(self, Plan::Converge { .. } | Plan::Failover { .. })
    }

    /// Checks what only the whole target and plan together can say.
    fn check(&self, target: &Target) -> Result<(), RunError> {
        if self.units() == 0 {
            return Err(RunError::Plan("nothing to do: the count is 0".to_owned()));
        }
        let servers = target.servers.len();
        match self {
            Plan::Hold { server_pids, .. } | Plan::Chat { server_pids, .. }
                if !server_pids.is_empty() && server_pids.len() != servers =>
            {
                Err(RunError::Plan(format!(
                    "{} server pid(s) for {servers} server(s): give one pid per server, in \
                     the same order",
                    server_pids.len()
                )))
            }
            Plan::Chat {
                stream_management: false,
                churn: Some(_),
                ..
            } => Err(RunError::Plan(
                "churn resumes sessions: it needs stream management (--sm)".to_owned(),
            )),
            Plan::Converge { targets: 0, .. } => Err(RunError::Plan(
                "converge needs at least one target user".to_owned(),
            )),
            Plan::Failover { .. } if servers < 2 => Err(RunError::Plan(
                "failover needs two servers: the watchers' and the one to kill".to_owned(),
            )),
            Plan::Fanout(fan) => fan_check(fan, &target.servers),
            _ => Ok(()),
        }
    }
}

fn fan_check(fan: &FanoutPlan, c2s: &Servers) -> Result<(), RunError> {
    let Some(servers) = fan.subscriber_servers(c2s) else {
        return Err(RunError::Plan(
            "Bayeux subscribers need the nodes' HTTP listeners: give --http IP:PORT[,...]"
                .to_owned(),
        ));
    };
    if !fan.server_pids.is_empty() && fan.server_pids.len() != servers.len() {
        return Err(RunError::Plan(format!(
            "{} server pid(s) for {} subscriber server(s): give one pid per server, in the \
             same order",
            fan.server_pids.len(),
            servers.len()
        )));
    }
    if fan.publishes() == 0 {
        return Err(RunError::Plan(
            "nothing to publish: --rate and --duration must be above 0".to_owned(),
        ));
    }
    Ok(())
}

/// How many workers a plan needs (or was given), never more than it has units.
pub fn worker_count(plan: &Plan, requested: Option<usize>) -> usize {
    if plan.single_worker() {
        return 1;
    }
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
        let connection = connection(target, source);
        let share = count as f64 / total;
        let job = match plan {
            Plan::Login { rate, .. } => Job::Login(LoginJob {
                connection,
                users: target.users.slice(start, count),
                first_index: start,
                rate: rate * share,
            }),
            Plan::Hold {
                rate,
                duration_s,
                presence,
                stream_management,
                ..
            } => Job::Hold(HoldJob {
                connection,
                users: target.users.slice(start, count),
                first_index: start,
                rate: rate * share,
                duration_s: *duration_s,
                presence: *presence,
                stream_management: *stream_management,
            }),
            Plan::Chat {
                pairs,
                rate,
                duration_s,
                drain_s,
                login_rate,
                body_size,
                presence,
                cross,
                server_pids: _,
                stream_management,
                churn,
            } => Job::Chat(ChatJob {
                connection,
                users: target.users.slice(start * 2, count * 2),
                first_pair: start,
                cross: *cross,
                total_pairs: *pairs,
                rate: *rate,
                duration_s: *duration_s,
                drain_s: *drain_s,
                login_rate: login_rate * share,
                body_size: *body_size,
                presence: *presence,
                stream_management: *stream_management,
                churn: *churn,
            }),
            Plan::Converge {
                rounds,
                rate,
                targets,
                wait_s,
            } => Job::Converge(ConvergeJob {
                users: target
                    .users
                    .slice(0, connection.servers.len() as u64 + targets),
                connection,
                targets: *targets,
                rounds: *rounds,
                rate: *rate,
                wait_s: *wait_s,
            }),
            Plan::Failover {
                pairs,
                kill_pid,
                login_rate,
                settle_s,
                wait_s,
            } => Job::Failover(FailoverJob {
                connection,
                users: target.users.slice(0, pairs * 2),
                kill_pid: *kill_pid,
                login_rate: *login_rate,
                settle_s: *settle_s,
                wait_s: *wait_s,
            }),
            Plan::Fanout(fan) => Job::Fanout(FanoutJob {
                connection,
                transport: fan.transport,
                http: fan.http.clone(),
                // User 0 publishes.
                users: target.users.slice(1 + start, count),
                first_index: start,
                node: fan.node.clone(),
                run: fan.run,
                expected: fan.publishes(),
                connect_rate: fan.connect_rate * share,
                duration_s: fan.duration_s,
                drain_s: fan.drain_s,
            }),
        };
        jobs.push(job);
    }
    Ok(jobs)
}

/// How every connection of a worker whose sockets come from `source` logs in.
pub fn connection(target: &Target, source: Option<IpAddr>) -> Connection {
    Connection {
        servers: target.servers.clone(),
        domain: target.domain.clone(),
        server_domains: target.server_domains.clone(),
        tls: target.tls,
        mechanism: target.mechanism,
        resource: target.resource.clone(),
        timeout_s: target.timeout_s,
        source,
        transport: target.transport,
    }
}

/// CPU seconds each of `pids` has used so far.
fn cpu_times(pids: &[u32]) -> Result<Vec<f64>, RunError> {
    pids.iter()
        .map(|&pid| super::cpu::seconds(pid).map_err(|source| RunError::Cpu { pid, source }))
        .collect()
}

fn sample(pids: &[u32]) -> Result<Vec<MemorySample>, RunError> {
    pids.iter()
        .map(|&pid| rss::sample(pid).map_err(|source| RunError::Memory { pid, source }))
        .collect()
}

/// Runs the plan over worker processes and returns the merged report.
pub async fn run(target: &Target, plan: &Plan) -> Result<RunReport, RunError> {
    plan.check(target)?;
    let workers = worker_count(plan, target.workers);
    let server_pids: &[u32] = match plan {
        Plan::Hold { server_pids, .. } | Plan::Chat { server_pids, .. } => server_pids,
        Plan::Fanout(fan) => &fan.server_pids,
        _ => &[],
    };
    let before = sample(server_pids)?;
    // The fan-out's node exists before anyone subscribes to it.
    let mut publisher = match plan {
        Plan::Fanout(fan) => Some(
            Publisher::prepare(&connection(target, None), &target.users, &fan.node)
                .await
                .map_err(RunError::Publisher)?,
        ),
        _ => None,
    };

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
    let mut after = Vec::new();
    let settle = match plan {
        Plan::Hold { settle_s, .. } => Some(*settle_s),
        Plan::Fanout(fan) => Some(fan.settle_s),
        // Memory per session: everyone logged in, before the first message.
        Plan::Chat { .. } => Some(1.0),
        _ => None,
    };
    if let Some(settle_s) = settle
        && !server_pids.is_empty()
    {
        tokio::time::sleep(Duration::from_secs_f64(settle_s.max(0.0))).await;
        after = sample(server_pids)?;
    }
    let cpu_pids: &[u32] = match plan {
        Plan::Chat { .. } => server_pids,
        _ => &[],
    };
    let cpu_at_start = cpu_times(cpu_pids)?;
    fleet.go().await?;
    let (reports, published) = match (&mut publisher, plan) {
        (Some(publisher), Plan::Fanout(fan)) => {
            // The workers' reports come once the run is over; meanwhile, publish.
            let publishing = async {
                let wait = Duration::from_secs_f64(fan.drain_s.max(0.0));
                let stats = publisher
                    .publish(fan.run, fan.publishes(), fan.rate, wait)
                    .await;
                (stats, sample(server_pids))
            };
            let (reports, (stats, end)) = tokio::join!(fleet.reports(), publishing);
            (reports?, Some((stats, end?)))
        }
        _ => (fleet.reports().await?, None),
    };
    if let Some(publisher) = publisher
        && let Err(error) = publisher.finish().await
    {
        eprintln!("starling-load: removing the fan-out node: {error}");
    }
    let server_cpu_s: Vec<f64> = cpu_times(cpu_pids)?
        .iter()
        .zip(&cpu_at_start)
        .map(|(end, start)| end - start)
        .collect();
    let total = report::merge(&reports);

    let info = RunInfo {
        command: plan.name().to_owned(),
        server: target.servers.to_string(),
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
        Plan::Converge { rate, .. } => (*rate, 0.0),
        Plan::Failover { login_rate, .. } => (*login_rate, 0.0),
        Plan::Fanout(fan) => (fan.connect_rate, 0.0),
    };
    let memory = memory_reports(server_pids, &before, &after, &total.login.by_server);
    let cross = matches!(plan, Plan::Chat { cross: true, .. });
    Ok(RunReport {
        info,
        login: report::login_summary(&total.login, login_rate),
        hold: total
            .hold
            .as_ref()
            .map(|hold| report::hold_summary(hold, memory.clone())),
        chat: total
            .chat
            .as_ref()
            .map(|chat| report::chat_summary(chat, chat_rate, cross, server_cpu_s, memory.clone())),
        converge: match (plan, &total.converge) {
            (Plan::Converge { rate, wait_s, .. }, Some(stats)) => {
                Some(converge::summary(stats, *rate, *wait_s))
            }
            _ => None,
        },
        failover: match (plan, &total.failover) {
            (Plan::Failover { wait_s, .. }, Some(stats)) => Some(failover::summary(stats, *wait_s)),
            _ => None,
        },
        fanout: match (plan, &total.fanout, published) {
            (Plan::Fanout(fan), Some(stats), Some((publish, end))) => {
                let memory = memory
                    .into_iter()
                    .zip(end)
                    .map(|(idle, end)| FanoutMemory { idle, end });
                let servers = fan
                    .subscriber_servers(&target.servers)
                    .unwrap_or(&target.servers);
                Some(fanout::summary(
                    fan,
                    servers,
                    stats,
                    &publish,
                    memory.collect(),
                ))
            }
            _ => None,
        },
        pep_storm: None,
        muc: None,
    })
}

/// One memory report per sampled server, each over the sessions logged in to that server.
fn memory_reports(
    pids: &[u32],
    before: &[MemorySample],
    after: &[MemorySample],
    sessions_by_server: &[u64],
) -> Vec<MemoryReport> {
    pids.iter()
        .zip(before.iter().zip(after))
        .enumerate()
        .map(|(server, (&pid, (&before, &after)))| {
            let sessions = sessions_by_server.get(server).copied().unwrap_or(0);
            MemoryReport::new(pid, before, after, sessions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::fanout::FanoutTransport;

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
            cross: false,
            server_pids: Vec::new(),
            stream_management: false,
            churn: None,
        };
        assert_eq!(worker_count(&chat, None), 2);
        let converge = Plan::Converge {
            rounds: 100,
            rate: 10.0,
            targets: 50,
            wait_s: 1.0,
        };
        assert_eq!(worker_count(&converge, Some(4)), 1);
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
            cross: true,
            server_pids: Vec::new(),
            stream_management: false,
            churn: None,
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
        assert!(second.cross);
    }

    #[test]
    fn every_job_knows_all_servers_and_where_its_users_start() {
        let mut target = target();
        target.servers = "127.0.0.1:5222,127.0.0.1:5223,127.0.0.1:5224"
            .parse()
            .unwrap();
        let plan = Plan::Hold {
            count: 10,
            rate: 10.0,
            duration_s: 1.0,
            presence: true,
            stream_management: false,
            server_pids: Vec::new(),
            settle_s: 0.0,
        };
        let jobs = jobs(&target, &plan, 3).unwrap();
        let Job::Hold(last) = &jobs[2] else {
            panic!("not a hold job")
        };
        assert_eq!(last.connection.servers, target.servers);
        // Users 7..9 of the run: round-robin continues across the worker split.
        assert_eq!(last.first_index, 7);
        assert_eq!(last.connection.servers.for_user(last.first_index), 1);
    }

    #[test]
    fn converge_and_failover_take_their_users_from_the_start() {
        let mut target = target();
        target.servers = "127.0.0.1:5222,127.0.0.1:5223".parse().unwrap();
        let converge = Plan::Converge {
            rounds: 100,
            rate: 10.0,
            targets: 5,
            wait_s: 1.0,
        };
        let Job::Converge(job) = &jobs(&target, &converge, 1).unwrap()[0] else {
            panic!("not a converge job")
        };
        // Two senders, then five targets.
        assert_eq!((job.users.first, job.users.count, job.rounds), (1, 7, 100));
        let failover = Plan::Failover {
            pairs: 4,
            kill_pid: 99,
            login_rate: 10.0,
            settle_s: 1.0,
            wait_s: 5.0,
        };
        let Job::Failover(job) = &jobs(&target, &failover, 1).unwrap()[0] else {
            panic!("not a failover job")
        };
        assert_eq!((job.users.first, job.users.count, job.kill_pid), (1, 8, 99));
    }

    #[test]
    fn plans_that_do_not_fit_the_servers_are_refused() {
        let mut target = target();
        target.servers = "127.0.0.1:5222,127.0.0.1:5223".parse().unwrap();
        let hold = |server_pids: Vec<u32>| Plan::Hold {
            count: 10,
            rate: 10.0,
            duration_s: 1.0,
            presence: true,
            stream_management: false,
            server_pids,
            settle_s: 0.0,
        };
        assert!(hold(vec![1]).check(&target).is_err());
        assert!(hold(vec![1, 2]).check(&target).is_ok());
        assert!(hold(Vec::new()).check(&target).is_ok());
        let failover = Plan::Failover {
            pairs: 4,
            kill_pid: 99,
            login_rate: 10.0,
            settle_s: 1.0,
            wait_s: 5.0,
        };
        assert!(failover.check(&target).is_ok());
        assert!(failover.check(&super::tests::target()).is_err());
        let no_targets = Plan::Converge {
            rounds: 1,
            rate: 1.0,
            targets: 0,
            wait_s: 1.0,
        };
        assert!(no_targets.check(&target).is_err());
    }

    #[test]
    fn fanout_leaves_user_0_to_the_publisher_and_checks_its_servers() {
        let mut target = target();
        target.servers = "127.0.0.1:5222,127.0.0.1:5223".parse().unwrap();
        let mut fan = FanoutPlan {
            transport: FanoutTransport::Bayeux,
            subscribers: 5,
            http: None,
            node: "n".to_owned(),
            run: 3,
            rate: 10.0,
            duration_s: 2.0,
            drain_s: 1.0,
            connect_rate: 100.0,
            server_pids: Vec::new(),
            settle_s: 0.0,
        };
        let error = Plan::Fanout(fan.clone()).check(&target).unwrap_err();
        assert!(error.to_string().contains("--http"), "{error}");
        fan.http = "127.0.0.1:5280,127.0.0.1:5281,127.0.0.1:5282".parse().ok();
        fan.server_pids = vec![1, 2];
        assert!(
            Plan::Fanout(fan.clone()).check(&target).is_err(),
            "3 HTTP servers, 2 pids"
        );
        fan.server_pids = vec![1, 2, 3];
        assert!(Plan::Fanout(fan.clone()).check(&target).is_ok());
        fan.transport = FanoutTransport::Xmpp;
        assert!(
            Plan::Fanout(fan.clone()).check(&target).is_err(),
            "2 c2s servers, 3 pids"
        );
        fan.server_pids.clear();
        let jobs = jobs(&target, &Plan::Fanout(fan), 2).unwrap();
        let Job::Fanout(second) = &jobs[1] else {
            panic!("not a fanout job")
        };
        // Users 1..=5 of the run subscribe (u2..u6); the second worker has the last two.
        assert_eq!((second.users.first, second.users.count), (5, 2));
        assert_eq!((second.first_index, second.expected), (3, 20));
        assert_eq!(second.connect_rate, 40.0);
    }

    #[test]
    fn memory_is_reported_per_server_over_its_own_sessions() {
        let sample = |rss_kib| MemorySample {
            rss_kib,
            peak_kib: rss_kib,
        };
        let reports = memory_reports(
            &[10, 20],
            &[sample(1_000), sample(2_000)],
            &[sample(3_000), sample(2_500)],
            &[100, 50],
        );
        assert_eq!(reports.len(), 2);
        assert_eq!((reports[0].pid, reports[0].per_session_kib), (10, 20.0));
        assert_eq!(
            (reports[1].sessions, reports[1].per_session_kib),
            (50, 10.0)
        );
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
