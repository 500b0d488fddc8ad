//! Bulk account creation for load tests: Tsung's numbering (users P1..PN,
//! passwords W1..WN) and symmetric rosters with subscription both.
//!
//! The cost is the PBKDF2 of two SCRAM credentials per user, so credentials
//! are derived on every core while the previous batch is being written.

use std::fmt;
use std::time::Instant;

use anyhow::{Context, bail};
use starling_core::jid::NodePart;

use crate::auth::Credentials;
use crate::storage::{NewUser, Store, StoredRosterItem};

/// Users derived and written per batch.
const BATCH: u64 = 2_000;

#[derive(Debug, Clone)]
pub struct Plan {
    pub prefix: String,
    pub count: u64,
    pub password_prefix: String,
    pub roster_size: u64,
    pub iterations: u32,
    pub domain: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub users: u64,
    pub roster_items: u64,
    pub seconds: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provisioned {} users and {} roster items in {:.1} s",
            self.users, self.roster_items, self.seconds
        )
    }
}

/// The contacts of user `index` (0-based) among `count` users: the
/// `size / 2` neighbours on each side, wrapping around, plus the opposite
/// user when `size` is odd and `count` even. The relation is symmetric, so
/// every "both" subscription has its other half.
pub fn roster_neighbours(index: u64, count: u64, size: u64) -> Vec<u64> {
    if count <= 1 || size == 0 {
        return Vec::new();
    }
    if size >= count - 1 {
        return (0..count).filter(|&other| other != index).collect();
    }
    let half = size / 2;
    let mut contacts = Vec::with_capacity(size as usize);
    for distance in 1..=half {
        contacts.push((index + distance) % count);
        contacts.push((index + count - distance) % count);
    }
    if size % 2 == 1 && count % 2 == 0 {
        contacts.push((index + count / 2) % count);
    }
    contacts
}

pub async fn run(store: &Store, plan: &Plan) -> anyhow::Result<Report> {
    let started = Instant::now();
    let name = |number: u64| format!("{}{number}", plan.prefix);
    let first_name = name(1);
    let first = NodePart::new(&first_name)
        .with_context(|| format!("{:?} is not a valid username prefix", plan.prefix))?;
    if first.as_str() != first_name {
        bail!(
            "use a lowercase prefix ({:?} would be stored as {first:?})",
            plan.prefix
        );
    }
    if plan.iterations < 4096 {
        tracing::warn!(
            iterations = plan.iterations,
            "fewer PBKDF2 iterations than RFC 7677 recommends"
        );
    }
    let mut pending: Option<tokio::task::JoinHandle<Vec<NewUser>>> = None;
    let mut start = 1;
    let mut users = 0;
    while start <= plan.count || pending.is_some() {
        let next = (start <= plan.count).then(|| {
            let end = (start + BATCH - 1).min(plan.count);
            let batch = derive_batch(plan.clone(), start, end);
            start = end + 1;
            batch
        });
        if let Some(ready) = pending.take() {
            let batch = ready.await.context("deriving credentials")?;
            store.insert_users(&batch).await.context("writing users")?;
            users += batch.len() as u64;
        }
        pending = next;
    }
    let mut roster_items = 0;
    if plan.roster_size > 0 {
        let mut rows = Vec::with_capacity(100_000);
        for index in 0..plan.count {
            let owner = name(index + 1);
            for contact in roster_neighbours(index, plan.count, plan.roster_size) {
                rows.push((
                    owner.clone(),
                    StoredRosterItem::mutual(format!("{}@{}", name(contact + 1), plan.domain)),
                ));
            }
            if rows.len() >= 100_000 {
                store
                    .insert_roster_items(&rows)
                    .await
                    .context("writing rosters")?;
                roster_items += rows.len() as u64;
                rows.clear();
            }
        }
        store
            .insert_roster_items(&rows)
            .await
            .context("writing rosters")?;
        roster_items += rows.len() as u64;
    }
    Ok(Report {
        users,
        roster_items,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Derives users `start..=end` on all cores, off the async threads.
fn derive_batch(plan: Plan, start: u64, end: u64) -> tokio::task::JoinHandle<Vec<NewUser>> {
    tokio::task::spawn_blocking(move || {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let per_thread = (end - start + 1).div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|thread| {
                    let plan = &plan;
                    scope.spawn(move || {
                        let from = start + thread * per_thread;
                        let to = (from + per_thread - 1).min(end);
                        (from..=to)
                            .map(|number| {
                                let password = format!("{}{number}", plan.password_prefix);
                                let credentials =
                                    Credentials::with_iterations(&password, plan.iterations);
                                NewUser {
                                    username: format!("{}{number}", plan.prefix),
                                    scram_sha1: credentials.sha1.encode(),
                                    scram_sha256: credentials.sha256.encode(),
                                    admin: false,
                                }
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| {
                    worker
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_are_symmetric_and_sized() {
        for (count, size) in [(100, 30), (10, 3), (11, 3), (5, 10), (2, 1), (1000, 31)] {
            for index in 0..count {
                let contacts = roster_neighbours(index, count, size);
                let mut unique = contacts.clone();
                unique.sort_unstable();
                unique.dedup();
                assert_eq!(unique.len(), contacts.len(), "no duplicates");
                assert!(!contacts.contains(&index), "nobody is their own contact");
                for contact in contacts {
                    assert!(
                        roster_neighbours(contact, count, size).contains(&index),
                        "{index} -> {contact} has no way back (count {count}, size {size})"
                    );
                }
            }
        }
        assert_eq!(roster_neighbours(0, 100, 30).len(), 30);
        assert_eq!(roster_neighbours(0, 5, 10).len(), 4);
    }
}
