//! In-memory Raft log and state machine for membership (openraft storage-v2:
//! `RaftLogStorage`, `RaftStateMachine`, `RaftSnapshotBuilder`).
//!
//! Nothing here survives a restart, by design: when the whole cluster
//! restarts, membership is rebuilt from the seed addresses; when one member
//! restarts, it comes back empty and the leader catches it up by log or by
//! snapshot. The state machine is only the last applied log id and the last
//! membership config (which carries every member's [`MemberInfo`](super::MemberInfo)); a
//! snapshot is that, encoded with postcard, a few hundred bytes.
//!
//! Both stores sit behind a `std::sync::Mutex` that is never held across an
//! `.await`: openraft calls them from its core task, its replication tasks
//! (log reader) and its state machine worker (snapshot builder).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder, StorageIOError,
};
use serde::{Deserialize, Serialize};

use super::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

/// Locks a store. A poisoned lock only means another task panicked while
/// holding it; every critical section here leaves the data consistent at each
/// step, so the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Raft log, the vote and the committed log id.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// Entries by index; always contiguous, starting after `last_purged`.
    entries: BTreeMap<u64, Entry>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = lock(&self.inner);
        Ok(inner
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = lock(&self.inner);
        let last = inner.entries.values().next_back().map(|entry| entry.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        lock(&self.inner).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = lock(&self.inner);
            for entry in entries {
                inner.entries.insert(entry.log_id.index, entry);
            }
        }
        // Memory is the durable medium here: the entries are "flushed" as soon
        // as they are in the map.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        // `split_off` keeps `[..index)` in place and hands back the rest,
        // which is exactly what goes.
        drop(inner.entries.split_off(&log_id.index));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = lock(&self.inner);
        if inner.last_purged >= Some(log_id) {
            return Ok(());
        }
        inner.last_purged = Some(log_id);
        let kept = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = kept;
        Ok(())
    }
}

/// What the state machine holds, and what a snapshot carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateMachineData {
    pub(crate) last_applied: Option<LogId>,
    /// The last applied membership config, member infos included.
    pub(crate) last_membership: StoredMembership,
}

/// The state machine and its current snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct StateMachineStore {
    inner: Arc<Mutex<StateMachineInner>>,
}

#[derive(Debug, Default)]
struct StateMachineInner {
    data: StateMachineData,
    snapshot: Option<StoredSnapshot>,
    /// Makes snapshot ids unique when two snapshots cover the same log id.
    snapshots_built: u64,
}

#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(self.data.clone())),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut inner = lock(&self.inner);
        let data = postcard::to_stdvec(&inner.data)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        inner.snapshots_built += 1;
        let snapshot_id = match inner.data.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id, log_id.index, inner.snapshots_built
            ),
            None => format!("none-{}", inner.snapshots_built),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: inner.data.last_applied,
                last_membership: inner.data.last_membership.clone(),
                snapshot_id,
            },
            data,
        };
        let snapshot = stored.to_snapshot();
        inner.snapshot = Some(stored);
        Ok(snapshot)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = lock(&self.inner);
        Ok((inner.data.last_applied, inner.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let mut responses = Vec::new();
        for entry in entries {
            inner.data.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(command) => match command {},
                EntryPayload::Membership(membership) => {
                    inner.data.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: StateMachineData = postcard::from_bytes(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The meta and the data describe the same point in the log; a
        // disagreement means the snapshot was not built by this code.
        if data.last_applied != meta.last_log_id || data.last_membership != meta.last_membership {
            let reason = std::io::Error::other("snapshot data disagrees with its meta");
            return Err(StorageIOError::read_snapshot(Some(meta.signature()), &reason).into());
        }
        let mut inner = lock(&self.inner);
        inner.data = data;
        inner.snapshot = Some(StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(lock(&self.inner)
            .snapshot
            .as_ref()
            .map(StoredSnapshot::to_snapshot))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::membership::types::{MemberId, MemberInfo};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn membership_of(ids: &[MemberId]) -> Membership<MemberId, MemberInfo> {
        let voters: BTreeSet<MemberId> = ids.iter().copied().collect();
        let nodes: BTreeMap<MemberId, MemberInfo> = ids
            .iter()
            .map(|&id| {
                let info = MemberInfo {
                    name: format!("n{id}"),
                    ..MemberInfo::default()
                };
                (id, info)
            })
            .collect();
        Membership::new(vec![voters], nodes)
    }

    async fn indexes(store: &mut LogStore) -> Vec<u64> {
        let entries = store.try_get_log_entries(..).await.unwrap();
        entries.iter().map(|e| e.log_id.index).collect()
    }

    #[tokio::test]
    async fn log_truncate_and_purge_keep_the_log_contiguous() {
        let mut store = LogStore::default();
        store
            .blocking_append((1..=5).map(|i| blank(1, i)))
            .await
            .unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3, 4, 5]);

        store.truncate(log_id(1, 4)).await.unwrap();
        assert_eq!(indexes(&mut store).await, vec![1, 2, 3]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(1, 3)));

        store.purge(log_id(1, 2)).await.unwrap();
        assert_eq!(indexes(&mut store).await, vec![3]);
        // Purging an older point again must not move the purge mark back.
        store.purge(log_id(1, 1)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));

        store.purge(log_id(1, 3)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(
            state.last_log_id,
            Some(log_id(1, 3)),
            "all purged: last is the purge mark"
        );
        assert!(indexes(&mut store).await.is_empty());
    }

    #[tokio::test]
    async fn vote_and_committed_are_kept() {
        let mut store = LogStore::default();
        assert_eq!(store.read_vote().await.unwrap(), None);
        let vote = Vote::new(3, 2);
        store.save_vote(&vote).await.unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        store.save_committed(Some(log_id(3, 7))).await.unwrap();
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(3, 7)));
    }

    #[tokio::test]
    async fn apply_tracks_last_applied_and_membership() {
        let mut sm = StateMachineStore::default();
        let entries = vec![
            blank(1, 1),
            Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Membership(membership_of(&[1, 2])),
            },
            blank(2, 3),
        ];
        let responses = sm.apply(entries).await.unwrap();
        assert_eq!(responses.len(), 3);
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2, 3)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 2)));
        assert_eq!(membership.voter_ids().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn snapshot_round_trip_restores_the_state_machine() {
        let mut leader = StateMachineStore::default();
        leader
            .apply(vec![Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(membership_of(&[1, 2, 3])),
            }])
            .await
            .unwrap();
        let snapshot = leader.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1)));
        let bytes = snapshot.snapshot.get_ref().clone();
        assert!(bytes.len() < 256, "snapshot is {} bytes", bytes.len());
        assert_eq!(
            leader.get_current_snapshot().await.unwrap().map(|s| s.meta),
            Some(snapshot.meta.clone())
        );

        let mut follower = StateMachineStore::default();
        let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
        receiving.get_mut().extend_from_slice(&bytes);
        follower
            .install_snapshot(&snapshot.meta, receiving)
            .await
            .unwrap();
        assert_eq!(
            follower.applied_state().await.unwrap(),
            leader.applied_state().await.unwrap()
        );
        let current = follower.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(current.snapshot.into_inner(), bytes);

        // A second snapshot of the same state gets a different id.
        let again = leader.build_snapshot().await.unwrap();
        assert_ne!(again.meta.snapshot_id, snapshot.meta.snapshot_id);
    }

    #[tokio::test]
    async fn snapshot_that_disagrees_with_its_meta_is_refused() {
        let mut sm = StateMachineStore::default();
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 9)),
            last_membership: StoredMembership::default(),
            snapshot_id: "x".into(),
        };
        let data = postcard::to_stdvec(&StateMachineData::default()).unwrap();
        assert!(
            sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
                .await
                .is_err()
        );
        let garbage = Box::new(Cursor::new(vec![0xff; 3]));
        assert!(sm.install_snapshot(&meta, garbage).await.is_err());
        assert_eq!(sm.applied_state().await.unwrap().0, None);
    }
}
