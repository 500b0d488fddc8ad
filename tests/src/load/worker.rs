//! Parent/worker protocol of the load driver, and the worker processes themselves.
//!
//! ```text
//!  parent                                  worker (`starling-load worker`)
//!    | -- stdin:  {job}                   -> |  log in its users
//!    | <- stdout: {"ready":{...}}          -- |
//!    |    (all workers ready: sample RSS)     |
//!    | -- stdin:  go                      -> |  run the measured phase
//!    | <- stdout: {"report":{...}}         -- |  exit
//! ```
//!
//! Meanwhile every worker sends `{"progress":{...}}` lines (its counts so far,
//! [`progress`]) every few seconds, and the parent prints one line for the
//! fleet at the same pace while it waits for the reports.
//!
//! Workers write only protocol lines on stdout; diagnostics go to stderr, which they share
//! with the parent.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::progress::{self, Board, Counts};
use super::{Job, WorkerReport, chat, converge, failover, fanout, hold, login, muc, pep};

/// What a worker says when its sessions are up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyInfo {
    pub logged_in: u64,
    pub failed: u64,
}

impl ReadyInfo {
    /// What a worker's logins came to.
    pub fn of(login: &super::LoginStats) -> ReadyInfo {
        ReadyInfo {
            logged_in: login.succeeded,
            failed: login.attempted - login.succeeded,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerMessage {
    Ready(ReadyInfo),
    Report(Box<WorkerReport>),
    Progress(Counts),
}

impl WorkerMessage {
    fn name(&self) -> &'static str {
        match self {
            WorkerMessage::Ready(_) => "ready",
            WorkerMessage::Report(_) => "report",
            WorkerMessage::Progress(_) => "progress",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("starting worker {index}: {source}")]
    Spawn {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to worker {index}: {source}")]
    Pipe {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {index} ended without a {wanted} line (exit status: {status})")]
    Ended {
        index: usize,
        wanted: &'static str,
        status: String,
    },
    #[error("worker {index} sent an unreadable line {line:?}: {source}")]
    BadLine {
        index: usize,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("worker {index} sent {got} when {wanted} was expected")]
    OutOfOrder {
        index: usize,
        wanted: &'static str,
        got: &'static str,
    },
    #[error("reading the job: {0}")]
    Job(String),
    #[error("writing to the parent: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("running kill for process {pid}: {source}")]
    KillSpawn {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("kill -KILL {pid} failed ({status})")]
    Kill { pid: u32, status: String },
}

/// The worker's side of the ready/go handshake. [`Gate::open`] does not wait, for running
/// a job in-process.
pub struct Gate {
    stdin: Option<Lines<BufReader<tokio::io::Stdin>>>,
}

impl Gate {
    pub fn open() -> Gate {
        Gate { stdin: None }
    }

    /// Says ready and waits for `go` (or for the parent to go away, which also means go:
    /// the measured phase then runs and its report is simply not read).
    pub async fn ready(&mut self, info: ReadyInfo) -> Result<(), WorkerError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Ok(());
        };
        write_line(&WorkerMessage::Ready(info))?;
        match stdin.next_line().await {
            Ok(Some(line)) if line.trim() == "go" => Ok(()),
            Ok(Some(line)) => Err(WorkerError::Job(format!("expected `go`, got {line:?}"))),
            Ok(None) => Ok(()),
            Err(error) => Err(WorkerError::Job(error.to_string())),
        }
    }
}

fn write_line(message: &WorkerMessage) -> Result<(), WorkerError> {
    let line = serde_json::to_string(message)
        .map_err(|error| WorkerError::Stdout(std::io::Error::other(error)))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(WorkerError::Stdout)?;
    stdout.flush().map_err(WorkerError::Stdout)
}

/// Runs one job to its report.
pub async fn run_job(job: Job, gate: &mut Gate) -> Result<WorkerReport, WorkerError> {
    match job {
        Job::Login(job) => login::run(job, gate).await,
        Job::Hold(job) => hold::run(job, gate).await,
        Job::Chat(job) => chat::run(job, gate).await,
        Job::Converge(job) => converge::run(job, gate).await,
        Job::Failover(job) => failover::run(job, gate).await,
        Job::Fanout(job) => fanout::run(job, gate).await,
        Job::PepPublish(job) => pep::publish::run(job, gate).await,
        Job::PepStorm(job) => pep::storm::run(job, gate).await,
        Job::Muc(job) => muc::run_job(job, gate).await,
    }
}

/// The body of `starling-load worker`: one job from stdin, its report on stdout.
pub async fn worker_main() -> Result<(), WorkerError> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await
        .map_err(|error| WorkerError::Job(error.to_string()))?
        .ok_or_else(|| WorkerError::Job("no job on stdin".to_owned()))?;
    let job: Job =
        serde_json::from_str(&line).map_err(|error| WorkerError::Job(error.to_string()))?;
    let mut gate = Gate { stdin: Some(stdin) };
    let reporting = tokio::spawn(async {
        let mut tick = tokio::time::interval(progress::EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if write_line(&WorkerMessage::Progress(Counts::now())).is_err() {
                return;
            }
        }
    });
    let report = run_job(job, &mut gate).await;
    reporting.abort();
    write_line(&WorkerMessage::Report(Box::new(report?)))
}

/// The source address of worker `index`: `base + index` in the last octets.
pub fn source_address(base: IpAddr, index: usize) -> Option<IpAddr> {
    match base {
        IpAddr::V4(v4) => {
            let next = u32::from(v4).checked_add(u32::try_from(index).ok()?)?;
            Some(IpAddr::V4(Ipv4Addr::from(next)))
        }
        // IPv6 loopback is a single address; spreading needs IPv4's 127/8.
        IpAddr::V6(_) => (index == 0).then_some(base),
    }
}

struct WorkerProcess {
    index: usize,
    child: Child,
    stdin: ChildStdin,
}

/// What a worker's reader task passes on: a message, the end of its
/// output (`None`), or why its output could not be read.
type Received = (usize, Result<Option<WorkerMessage>, WorkerError>);

/// Reads one worker's protocol lines into the fleet's channel.
fn read_lines(index: usize, stdout: ChildStdout, sink: mpsc::UnboundedSender<Received>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let received =
                match lines.next_line().await {
                    Ok(Some(line)) => serde_json::from_str(&line).map(Some).map_err(|source| {
                        WorkerError::BadLine {
                            index,
                            line,
                            source,
                        }
                    }),
                    Ok(None) => Ok(None),
                    Err(source) => Err(WorkerError::Pipe { index, source }),
                };
            let last = !matches!(received, Ok(Some(_)));
            if sink.send((index, received)).is_err() || last {
                return;
            }
        }
    });
}

/// The parent's handle on its worker processes.
pub struct Fleet {
    workers: Vec<WorkerProcess>,
    messages: mpsc::UnboundedReceiver<Received>,
    board: Board,
}

impl Fleet {
    /// Starts one `starling-load worker` per job and hands each its job.
    pub async fn spawn(jobs: Vec<Job>) -> Result<Fleet, WorkerError> {
        let exe =
            std::env::current_exe().map_err(|source| WorkerError::Spawn { index: 0, source })?;
        let (sink, messages) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| WorkerError::Spawn { index, source })?;
            let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(WorkerError::Spawn {
                    index,
                    source: std::io::Error::other("no pipes to the worker"),
                });
            };
            let mut line = serde_json::to_string(&job).map_err(|error| WorkerError::Pipe {
                index,
                source: std::io::Error::other(error),
            })?;
            line.push('\n');
            stdin
                .write_all(line.as_bytes())
                .await
                .map_err(|source| WorkerError::Pipe { index, source })?;
            read_lines(index, stdout, sink.clone());
            workers.push(WorkerProcess {
                index,
                child,
                stdin,
            });
        }
        let board = Board::new(workers.len());
        Ok(Fleet {
            workers,
            messages,
            board,
        })
    }

    /// The next message other than progress (which goes on the board), from
    /// any worker, or `None` when a worker's output ended; `wanted` names
    /// what is expected, for errors.
    async fn next_message(
        &mut self,
        wanted: &'static str,
        print_progress: bool,
    ) -> Result<(usize, Option<WorkerMessage>), WorkerError> {
        let mut tick = tokio::time::interval(progress::EVERY);
        tick.tick().await;
        let mut last_print = tokio::time::Instant::now();
        loop {
            let received = tokio::select! {
                received = self.messages.recv() => received,
                _ = tick.tick(), if print_progress => {
                    let now = tokio::time::Instant::now();
                    eprintln!("{}", self.board.line(Counts::now(), now - last_print));
                    last_print = now;
                    continue;
                }
            };
            let Some((index, received)) = received else {
                return Err(WorkerError::Ended {
                    index: 0,
                    wanted,
                    status: "every worker's output closed".into(),
                });
            };
            match received? {
                Some(WorkerMessage::Progress(counts)) => self.board.update(index, counts),
                message => return Ok((index, message)),
            }
        }
    }

    /// The error for worker `index` whose output ended before `wanted`.
    async fn ended(&mut self, index: usize, wanted: &'static str) -> WorkerError {
        let status = match self.workers[index].child.wait().await {
            Ok(status) => status.to_string(),
            Err(error) => error.to_string(),
        };
        WorkerError::Ended {
            index,
            wanted,
            status,
        }
    }

    /// Waits until every worker is ready.
    pub async fn ready(&mut self) -> Result<Vec<ReadyInfo>, WorkerError> {
        let mut infos: Vec<Option<ReadyInfo>> = vec![None; self.workers.len()];
        while infos.iter().any(Option::is_none) {
            match self.next_message("ready", false).await? {
                (index, Some(WorkerMessage::Ready(info))) => infos[index] = Some(info),
                (index, None) => return Err(self.ended(index, "ready").await),
                (index, Some(other)) => {
                    return Err(WorkerError::OutOfOrder {
                        index,
                        wanted: "ready",
                        got: other.name(),
                    });
                }
            }
        }
        Ok(infos.into_iter().flatten().collect())
    }

    /// Starts the measured phase everywhere, as close together as the pipes allow.
    pub async fn go(&mut self) -> Result<(), WorkerError> {
        for worker in &mut self.workers {
            let index = worker.index;
            worker
                .stdin
                .write_all(b"go\n")
                .await
                .map_err(|source| WorkerError::Pipe { index, source })?;
        }
        Ok(())
    }

    /// Collects every worker's report and waits for the processes to exit,
    /// printing the fleet's progress meanwhile.
    pub async fn reports(mut self) -> Result<Vec<WorkerReport>, WorkerError> {
        let mut reports: Vec<Option<WorkerReport>> = vec![None; self.workers.len()];
        while reports.iter().any(Option::is_none) {
            match self.next_message("report", true).await? {
                (index, Some(WorkerMessage::Report(report))) => reports[index] = Some(*report),
                // Its report came first: the end of its output is expected.
                (index, None) if reports[index].is_some() => {}
                (index, None) => return Err(self.ended(index, "report").await),
                (index, Some(other)) => {
                    return Err(WorkerError::OutOfOrder {
                        index,
                        wanted: "report",
                        got: other.name(),
                    });
                }
            }
        }
        for worker in &mut self.workers {
            let index = worker.index;
            worker
                .child
                .wait()
                .await
                .map_err(|source| WorkerError::Pipe { index, source })?;
        }
        Ok(reports.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_count_up_from_the_base() {
        let base: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(source_address(base, 0), Some(base));
        assert_eq!(source_address(base, 3), "127.0.0.5".parse().ok());
        assert_eq!(
            source_address("127.0.0.255".parse().unwrap(), 1),
            "127.0.1.0".parse().ok()
        );
        assert_eq!(source_address("::1".parse().unwrap(), 1), None);
    }

    #[test]
    fn protocol_lines_round_trip() {
        let line = serde_json::to_string(&WorkerMessage::Ready(ReadyInfo {
            logged_in: 5,
            failed: 1,
        }))
        .unwrap();
        assert_eq!(line, r#"{"ready":{"logged_in":5,"failed":1}}"#);
        let back: WorkerMessage = serde_json::from_str(&line).unwrap();
        assert!(matches!(
            back,
            WorkerMessage::Ready(ReadyInfo {
                logged_in: 5,
                failed: 1
            })
        ));
    }
}
