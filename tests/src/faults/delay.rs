//! Latency on a kernel without `sch_netem`: an iptables NFQUEUE rule in a
//! member's namespace hands every packet it sends to a netfilter queue, and
//! a thread here holds each packet for the delay before accepting it.
//!
//! The thread enters the member's network namespace (`setns` acts on the
//! calling thread only) before it opens its netlink socket, so the queue it
//! binds is that namespace's. Packets leave in the order they came: the
//! delay is the same for all of them. The rule has `--queue-bypass` and the
//! queue fails open, so a packet is never lost for want of a reader; it
//! only goes undelayed.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The queue number in every member's namespace (each has its own).
const QUEUE: u16 = 0;
/// Packets the kernel may hold for a reader: 50 ms of a busy link.
const QUEUE_MAX_LEN: u32 = 65_536;
/// How often a holder looks for new packets while it holds some.
const TICK: Duration = Duration::from_millis(1);

/// Holders for some namespaces, with their NFQUEUE rules in place.
pub struct Delay {
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    holders: Vec<JoinHandle<Result<u64, String>>>,
}

/// Whether this machine can delay packets this way, and if not, why.
pub fn available() -> Result<(), String> {
    if crate::tools::on_path("iptables-legacy").is_none() {
        return Err(
            "iptables-legacy is not on PATH (the NFQUEUE target): install the Debian \
             package iptables"
                .into(),
        );
    }
    if !std::path::Path::new("/proc/net/netfilter/nfnetlink_queue").exists() {
        return Err("the kernel has no nfnetlink_queue".into());
    }
    Ok(())
}

impl Delay {
    /// Delays by `delay` everything sent on `eth0` in each of `namespaces`.
    pub fn start(namespaces: &[String], delay: Duration) -> Result<Delay, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut started = Delay {
            namespaces: Vec::new(),
            stop: stop.clone(),
            holders: Vec::new(),
        };
        for namespace in namespaces {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let name = namespace.clone();
            let stop = stop.clone();
            started.holders.push(std::thread::spawn(move || {
                hold(&name, delay, &stop, &ready_tx)
            }));
            ready_rx
                .recv()
                .map_err(|_| format!("the packet holder for {namespace} ended"))??;
            iptables(namespace, "-A")?;
            started.namespaces.push(namespace.clone());
        }
        Ok(started)
    }

    /// Removes the rules, lets the held packets go and reports how many
    /// packets were delayed.
    pub fn stop(mut self) -> Result<u64, String> {
        self.finish()
    }

    fn finish(&mut self) -> Result<u64, String> {
        let mut result = Ok(0);
        for namespace in self.namespaces.drain(..) {
            if let Err(error) = iptables(&namespace, "-D") {
                result = Err(error);
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for holder in self.holders.drain(..) {
            let delayed = holder
                .join()
                .map_err(|_| "a packet holder panicked".to_owned())
                .and_then(|held| held);
            result = match (result, delayed) {
                (Ok(total), Ok(count)) => Ok(total + count),
                (Err(error), _) | (_, Err(error)) => Err(error),
            };
        }
        result
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Adds (`-A`) or deletes (`-D`) the rule that queues what `namespace`
/// sends on `eth0`.
fn iptables(namespace: &str, action: &str) -> Result<(), String> {
    let queue = QUEUE.to_string();
    super::net::run(
        Command::new("ip")
            .args(["netns", "exec", namespace, "iptables-legacy", action])
            .args([
                "OUTPUT",
                "-o",
                "eth0",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
            ])
            .arg("--queue-bypass"),
    )
}

/// One namespace's holder: binds the queue, says so on `ready`, then
/// holds each packet for `delay` until `stop` is set and nothing is held.
fn hold(
    namespace: &str,
    delay: Duration,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<u64, String> {
    let mut queue = match open_queue(namespace) {
        Ok(queue) => {
            let _ = ready.send(Ok(()));
            queue
        }
        Err(error) => {
            let _ = ready.send(Err(error.clone()));
            return Err(error);
        }
    };
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let mut delayed = 0u64;
    loop {
        loop {
            match queue.recv() {
                Ok(mut packet) => {
                    packet.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, packet));
                    delayed += 1;
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(format!("netfilter queue in {namespace}: {error}")),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, packet) = held.pop_front().expect("a held packet");
            queue
                .verdict(packet)
                .map_err(|error| format!("netfilter verdict in {namespace}: {error}"))?;
        }
        if held.is_empty() && stop.load(Ordering::Relaxed) {
            return Ok(delayed);
        }
        let next = held.front().map_or(TICK, |(due, _)| {
            due.saturating_duration_since(now).min(TICK)
        });
        std::thread::sleep(next);
    }
}

fn open_queue(namespace: &str) -> Result<nfq::Queue, String> {
    let path = format!("/run/netns/{namespace}");
    let file = std::fs::File::open(&path).map_err(|error| format!("{path}: {error}"))?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(|error| format!("entering {namespace}: {error}"))?;
    let setup = |queue: &mut nfq::Queue| -> std::io::Result<()> {
        queue.bind(QUEUE)?;
        // Metadata only: the verdict needs no payload.
        queue.set_copy_range(QUEUE, 0)?;
        queue.set_queue_max_len(QUEUE, QUEUE_MAX_LEN)?;
        queue.set_fail_open(QUEUE, true)?;
        queue.set_nonblocking(true);
        Ok(())
    };
    let mut queue =
        nfq::Queue::open().map_err(|error| format!("netfilter queue in {namespace}: {error}"))?;
    setup(&mut queue).map_err(|error| format!("netfilter queue in {namespace}: {error}"))?;
    Ok(queue)
}
