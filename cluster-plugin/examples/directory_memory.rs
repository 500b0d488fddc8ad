//! Memory per replicated session-directory entry.
//!
//! Run with `cargo run --release -p starling-cluster --example directory_memory [ENTRIES]`.
//! Fills a directory replica with ENTRIES remote sessions (one per user, as
//! snapshots from 3 owner nodes) and prints the resident-memory growth per
//! entry, read from /proc/self/status.

use starling_cluster::replication::Directory;
use starling_cluster::transport::frame::{DirectoryMessage, WireSession};
use starling_core::cluster::NodeId;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let entries: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let owners = 3;
    // Build the messages first so their memory is not counted.
    let snapshots: Vec<(NodeId, Vec<DirectoryMessage>)> = (0..owners)
        .map(|owner| {
            let sessions: Vec<WireSession> = (0..entries / owners)
                .map(|i| WireSession {
                    jid: format!("user{}@example.com/resource-{owner}", i * owners + owner),
                    priority: 0,
                    available: true,
                })
                .collect();
            let chunks: Vec<&[WireSession]> = sessions.chunks(2000).collect();
            let count = chunks.len();
            let messages = chunks
                .into_iter()
                .enumerate()
                .map(|(index, chunk)| DirectoryMessage::Snapshot {
                    incarnation: 1,
                    seq: 0,
                    sessions: chunk.to_vec(),
                    first: index == 0,
                    last: index + 1 == count,
                })
                .collect();
            (NodeId(owner as u64 + 1), messages)
        })
        .collect();
    let before = rss_kib();
    let mut directory = Directory::new(99);
    for (owner, messages) in snapshots {
        for message in messages {
            directory.apply(owner, message);
        }
    }
    let after = rss_kib();
    let stored = directory.remote_sessions();
    println!(
        "{stored} directory entries: RSS {before} -> {after} KiB, {:.0} bytes per entry",
        (after.saturating_sub(before) * 1024) as f64 / stored as f64
    );
}
