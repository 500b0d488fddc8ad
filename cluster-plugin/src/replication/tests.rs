//! The directory as a state machine: owners' messages in, lookups out.

use starling_core::cluster::{NodeId, SessionChange};
use starling_core::jid::{BareJid, FullJid};

use super::Directory;
use crate::transport::frame::DirectoryMessage;

const A: NodeId = NodeId(1);

fn jid(text: &str) -> FullJid {
    FullJid::new(text).unwrap()
}

/// An owner directory that produced `changes`, and the messages it sent.
fn owner_with(incarnation: u64, changes: &[SessionChange]) -> (Directory, Vec<DirectoryMessage>) {
    let mut owner = Directory::new(incarnation);
    let mut sent = Vec::new();
    for change in changes {
        owner.record(change);
        sent.extend(owner.take_delta());
    }
    (owner, sent)
}

fn bound(text: &str) -> SessionChange {
    SessionChange::Bound { jid: jid(text) }
}

fn available(text: &str, priority: i8) -> SessionChange {
    SessionChange::Presence {
        jid: jid(text),
        priority,
        available: true,
    }
}

fn unbound(text: &str) -> SessionChange {
    SessionChange::Unbound { jid: jid(text) }
}

#[test]
fn snapshot_then_deltas_replicate_the_owner() {
    let (mut owner, _) = owner_with(10, &[bound("a@x/1")]);
    let mut replica = Directory::new(99);
    for message in owner.snapshot() {
        assert_eq!(replica.apply(A, message).resync, false);
    }
    assert_eq!(replica.locate(&jid("a@x/1")), Some(A));
    owner.record(&available("a@x/1", 5));
    owner.record(&bound("a@x/2"));
    let delta = owner.take_delta().unwrap();
    assert_eq!(replica.apply(A, delta), Default::default());
    let resources = replica.resources(&BareJid::new("a@x").unwrap());
    assert_eq!(resources.len(), 2);
    assert!(
        resources
            .iter()
            .any(|r| r.jid == jid("a@x/1") && r.available && r.priority == 5)
    );
    owner.record(&unbound("a@x/1"));
    replica.apply(A, owner.take_delta().unwrap());
    assert_eq!(replica.locate(&jid("a@x/1")), None);
    assert_eq!(replica.remote_sessions(), 1);
}

#[test]
fn a_gap_in_sequence_numbers_asks_for_a_snapshot() {
    let (owner, _) = owner_with(10, &[]);
    let mut replica = Directory::new(99);
    for message in owner.snapshot() {
        replica.apply(A, message);
    }
    let (_, sent) = owner_with(10, &[bound("a@x/1"), bound("a@x/2")]);
    // seq 1 lost, seq 2 arrives.
    let applied = replica.apply(A, sent[1].clone());
    assert!(applied.resync);
    assert_eq!(replica.locate(&jid("a@x/2")), None);
}

#[test]
fn a_delta_before_any_snapshot_asks_for_one() {
    let (_, sent) = owner_with(10, &[bound("a@x/1")]);
    let mut replica = Directory::new(99);
    assert!(replica.apply(A, sent[0].clone()).resync);
}

#[test]
fn duplicates_are_ignored() {
    let (owner, sent) = owner_with(10, &[bound("a@x/1")]);
    let mut replica = Directory::new(99);
    for message in owner.snapshot() {
        replica.apply(A, message);
    }
    // The snapshot already covers seq 1; the delta arrives late.
    assert_eq!(replica.apply(A, sent[0].clone()), Default::default());
    assert_eq!(replica.remote_sessions(), 1);
}

#[test]
fn a_late_change_from_an_old_incarnation_never_removes_a_newer_binding() {
    let mut replica = Directory::new(99);
    let (old, _) = owner_with(10, &[bound("a@x/1")]);
    for message in old.snapshot() {
        replica.apply(A, message);
    }
    // The owner restarts (incarnation 20) and the user logs in again there.
    let (new, _) = owner_with(20, &[bound("a@x/1")]);
    for message in new.snapshot() {
        replica.apply(A, message);
    }
    // The old incarnation's 'left' arrives late.
    let late = DirectoryMessage::Delta {
        incarnation: 10,
        seq: 2,
        changes: vec![crate::transport::frame::WireChange::Unbound("a@x/1".into())],
    };
    assert_eq!(replica.apply(A, late), Default::default());
    assert_eq!(replica.locate(&jid("a@x/1")), Some(A));
}

#[test]
fn a_restarted_owner_replaces_its_entries_and_reports_the_lost_ones() {
    let mut replica = Directory::new(99);
    let (old, _) = owner_with(10, &[bound("a@x/1"), bound("b@x/1")]);
    for message in old.snapshot() {
        replica.apply(A, message);
    }
    let (new, _) = owner_with(20, &[bound("b@x/1")]);
    let mut lost = Vec::new();
    for message in new.snapshot() {
        lost.extend(replica.apply(A, message).lost);
    }
    assert_eq!(lost, vec![jid("a@x/1")]);
    assert_eq!(replica.locate(&jid("a@x/1")), None);
    assert_eq!(replica.locate(&jid("b@x/1")), Some(A));
    assert_eq!(replica.remote_sessions(), 1);
}

#[test]
fn a_session_a_snapshot_no_longer_has_is_reported_lost_though_the_owner_did_not_restart() {
    let (mut owner, _) = owner_with(10, &[bound("a@x/1"), bound("b@x/1")]);
    let mut replica = Directory::new(99);
    for message in owner.snapshot() {
        replica.apply(A, message);
    }
    // The delta carrying b's logout never arrives (its link was cut).
    owner.record(&unbound("b@x/1"));
    let _ = owner.take_delta();
    let mut lost = Vec::new();
    for message in owner.snapshot() {
        lost.extend(replica.apply(A, message).lost);
    }
    assert_eq!(lost, vec![jid("b@x/1")]);
    assert_eq!(replica.locate(&jid("b@x/1")), None);
    assert_eq!(replica.locate(&jid("a@x/1")), Some(A));
    // Nothing more to report from the same state.
    for message in owner.snapshot() {
        assert!(replica.apply(A, message).lost.is_empty());
    }
}

#[test]
fn snapshots_arrive_in_chunks() {
    let changes: Vec<SessionChange> = (0..5000).map(|i| bound(&format!("u{i}@x/r"))).collect();
    let (owner, _) = owner_with(10, &changes);
    let chunks = owner.snapshot();
    assert_eq!(chunks.len(), 3);
    let mut replica = Directory::new(99);
    for (index, message) in chunks.into_iter().enumerate() {
        replica.apply(A, message);
        assert_eq!(
            replica.has_replica(A),
            index == 2,
            "complete only after the last chunk"
        );
    }
    assert_eq!(replica.remote_sessions(), 5000);
    assert_eq!(replica.sessions_of(A), 5000);
}

#[test]
fn purge_forgets_a_down_member() {
    let mut replica = Directory::new(99);
    let (owner, _) = owner_with(10, &[bound("a@x/1"), bound("a@x/2")]);
    for message in owner.snapshot() {
        replica.apply(A, message);
    }
    let mut lost = replica.purge(A);
    lost.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(lost, vec![jid("a@x/1"), jid("a@x/2")]);
    assert_eq!(replica.remote_sessions(), 0);
    assert!(!replica.has_replica(A));
    assert!(replica.resources(&BareJid::new("a@x").unwrap()).is_empty());
}

#[test]
fn sessions_back_after_a_purge_are_regained_and_those_begun_meanwhile_met() {
    let (mut owner, _) = owner_with(10, &[bound("a@x/1"), bound("a@x/2")]);
    let mut replica = Directory::new(99);
    for message in owner.snapshot() {
        replica.apply(A, message);
    }
    // Cut off: declared down, then back with one session closed meanwhile.
    replica.purge(A);
    owner.record(&unbound("a@x/2"));
    owner.record(&bound("a@x/3"));
    let _ = owner.take_delta();
    let (mut regained, mut met) = (Vec::new(), Vec::new());
    for message in owner.snapshot() {
        let applied = replica.apply(A, message);
        regained.extend(applied.regained);
        met.extend(applied.met);
    }
    assert_eq!(regained, vec![jid("a@x/1")]);
    // Bound while this node had given the owner up.
    assert_eq!(met, vec![jid("a@x/3")]);
    // Reported once: a later snapshot brings nothing back.
    for message in owner.snapshot() {
        let applied = replica.apply(A, message);
        assert!(applied.regained.is_empty());
        assert!(applied.met.is_empty());
    }
    // A restarted owner's sessions are all new ones: met, not regained.
    replica.purge(A);
    let (restarted, _) = owner_with(11, &[bound("a@x/1")]);
    let mut met = Vec::new();
    for message in restarted.snapshot() {
        let applied = replica.apply(A, message);
        assert!(applied.regained.is_empty());
        met.extend(applied.met);
    }
    assert_eq!(met, vec![jid("a@x/1")]);
}

#[test]
fn an_owner_first_met_with_sessions_reports_them_met_once() {
    // Clusters formed apart: the owner's users logged in before this node
    // ever held its directory.
    let (owner, _) = owner_with(10, &[bound("a@x/1"), bound("b@x/1")]);
    let mut replica = Directory::new(99);
    let mut met = Vec::new();
    for message in owner.snapshot() {
        let applied = replica.apply(A, message);
        assert!(applied.regained.is_empty());
        met.extend(applied.met);
    }
    met.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(met, vec![jid("a@x/1"), jid("b@x/1")]);
    // A link that comes back with the same owner brings nothing new.
    for message in owner.snapshot() {
        assert!(replica.apply(A, message).met.is_empty());
    }
    // Back after a purge, its sessions are regained, not met.
    replica.purge(A);
    for message in owner.snapshot() {
        let applied = replica.apply(A, message);
        assert!(applied.met.is_empty());
        assert_eq!(applied.regained.len(), 2);
    }
}
