//! Archive writes, batched by group commit. Each message is handed to this
//! member's writer task and its router waits until it is written, so a
//! message is in the archive before anyone receives it (a device querying
//! from any member finds what its owner was sent). While one batch is being
//! written the next messages gather, and the writer takes all of them at
//! once into one statement (`Store::archive_messages`). Alone, a message is
//! written at once; under load the database round trip (the hand-offs to
//! and from the driver's thread and the commit, most of what archiving a
//! message cost when each was written by itself) is shared by the batch.
//!
//! A failed write is counted and logged for every message of the batch;
//! the messages are delivered all the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::storage::{NewArchived, StorageError, Store};

/// Messages waiting for the writer; one more waits for room (the sender is
/// slowed down, nothing is dropped).
const QUEUE: usize = 10_000;
/// Most messages in one batch.
const BATCH: usize = 500;
/// On SQLite batches are staged (`Store::archive_messages`); once this many
/// rows are staged the writer moves them into the archive proper, right
/// after answering the batch that reached it (the messages queued
/// meanwhile make the next batch). About half a second at 5,000 chats a
/// second (two rows each): rows of the same owner then share the index
/// leaves a move writes.
const MOVE_ROWS: usize = 4096;
/// Under load (the last batch had at least [`LINGER_FROM`] messages) the
/// writer waits this long before taking the next batch, so that a commit
/// carries more messages: each commit's fixed cost (the hand-offs to and
/// from the driver's thread, the WAL frames' header, the write calls) is
/// shared by more of them. A lone message is still written at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
const LINGER_FROM: usize = 8;
/// Staged rows are moved too once no message has come for this long.
const MOVE_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

enum Job {
    /// Answered once the message is written (or its failure counted).
    Write(NewArchived, oneshot::Sender<()>),
    /// Answered once everything handed over before it is written.
    Flush(oneshot::Sender<()>),
}

pub(super) struct ArchiveWriter {
    queue: mpsc::Sender<Job>,
    /// The queue's other end until the writer task starts.
    unstarted: Mutex<Option<mpsc::Receiver<Job>>>,
    pub(super) archived: Arc<AtomicU64>,
    pub(super) failures: Arc<AtomicU64>,
}

impl ArchiveWriter {
    pub(super) fn new() -> ArchiveWriter {
        let (queue, receiver) = mpsc::channel(QUEUE);
        ArchiveWriter {
            queue,
            unstarted: Mutex::new(Some(receiver)),
            archived: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the writer task on `store`; later calls do nothing.
    pub(super) fn start(&self, store: Store) {
        let receiver = self
            .unstarted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(jobs) = receiver {
            let (archived, failures) = (self.archived.clone(), self.failures.clone());
            tokio::spawn(write_batches(store, jobs, archived, failures));
        }
    }

    /// Archives a message; returns once it is written, or its failure
    /// counted and logged. Before the writer task starts (a stanza routed
    /// here while the node is still starting) it is written directly.
    pub(super) async fn write(&self, store: &Store, message: NewArchived) {
        if !self.started() {
            let written = store.archive_messages(std::slice::from_ref(&message)).await;
            return self.count(written, 1);
        }
        let owner = message.owner.clone();
        let (done, written) = oneshot::channel();
        if self.queue.send(Job::Write(message, done)).await.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%owner, "the archive writer has stopped; a message was delivered unarchived");
            return;
        }
        let _ = written.await;
    }

    /// Waits until every message handed over before this call is written
    /// (or its failure counted). Returns at once if the writer never started
    /// or has stopped: then nothing will be written.
    pub(super) async fn flush(&self) {
        if !self.started() {
            return;
        }
        let (done, written) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

impl ArchiveWriter {
    fn started(&self) -> bool {
        self.unstarted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none()
    }

    fn count(&self, written: Result<(), StorageError>, messages: u64) {
        count(&self.archived, &self.failures, written, messages);
    }
}

/// Counts a write of `messages` messages, logging a failure.
fn count(
    archived: &AtomicU64,
    failures: &AtomicU64,
    written: Result<(), StorageError>,
    messages: u64,
) {
    match written {
        Ok(()) => {
            archived.fetch_add(messages, Ordering::Relaxed);
        }
        Err(error) => {
            failures.fetch_add(messages, Ordering::Relaxed);
            tracing::error!(
                messages,
                %error,
                "archiving messages failed; they were delivered unarchived"
            );
        }
    }
}

impl Default for ArchiveWriter {
    fn default() -> Self {
        ArchiveWriter::new()
    }
}

/// The writer task: takes everything queued (up to a batch), writes it in
/// one go, then answers everyone who waited on it. Moves staged rows (see
/// [`MOVE_ROWS`]): first those a previous run left, then whenever enough
/// are staged or the queue stays empty.
async fn write_batches(
    store: Store,
    mut jobs: mpsc::Receiver<Job>,
    archived: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
) {
    let mut taken = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::with_capacity(BATCH);
    move_staged(&store).await;
    let mut last_batch = 0;
    loop {
        if last_batch >= LINGER_FROM {
            tokio::time::sleep(LINGER).await;
        }
        let received = if store.staged_archive_rows() > 0 {
            match tokio::time::timeout(MOVE_IDLE, jobs.recv_many(&mut taken, BATCH)).await {
                Ok(received) => received,
                Err(_idle) => {
                    move_staged(&store).await;
                    continue;
                }
            }
        } else {
            jobs.recv_many(&mut taken, BATCH).await
        };
        if received == 0 {
            break;
        }
        for job in taken.drain(..) {
            match job {
                Job::Write(message, done) => {
                    batch.push(message);
                    waiting.push(done);
                }
                Job::Flush(done) => waiting.push(done),
            }
        }
        last_batch = batch.len();
        if !batch.is_empty() {
            let written = store.archive_messages(&batch).await;
            count(&archived, &failures, written, batch.len() as u64);
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if store.staged_archive_rows() >= MOVE_ROWS {
            move_staged(&store).await;
        }
    }
    move_staged(&store).await;
}

/// Moves the staged rows into the archive; a failure is logged (the rows
/// stay staged, still found by every query, and are moved on the next try).
async fn move_staged(store: &Store) {
    if let Err(error) = store.move_staged_archive().await {
        tracing::error!(%error, "moving staged archive rows failed; they stay staged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_a_stopped_node_left_staged_are_moved_at_start() {
        crate::storage::testing::on_sqlite(|db| async move {
            let store = db.store().await;
            let messages: Vec<NewArchived> = (0..3)
                .map(|n| NewArchived {
                    owner: "alice".to_owned(),
                    stanza_id: format!("m{n}"),
                    with: "bob@x".to_owned(),
                    stamp_ms: n,
                    stanza: "<message/>".to_owned(),
                })
                .collect();
            store.archive_messages(&messages).await.unwrap();
            store.close().await;
            let restarted = db.store().await;
            assert_eq!(restarted.rows_in("mam_staged").await, 3);
            let writer = ArchiveWriter::new();
            writer.start(restarted.clone());
            // Answered after the writer's first step, the move.
            writer.flush().await;
            assert_eq!(restarted.rows_in("mam_staged").await, 0);
            assert_eq!(restarted.rows_in("mam_messages").await, 3);
            // Written through the writer: staged, then moved once idle or
            // read; flushed means durable and readable.
            writer
                .write(
                    &restarted,
                    NewArchived {
                        owner: "alice".to_owned(),
                        stanza_id: "m3".to_owned(),
                        with: "bob@x".to_owned(),
                        stamp_ms: 3,
                        stanza: "<message/>".to_owned(),
                    },
                )
                .await;
            let ends = restarted.archive_ends("alice").await.unwrap().unwrap();
            assert_eq!(ends.last.stanza_id, "m3");
        })
        .await;
    }
}
