//! The failure detector: a peer silent for `suspect_after` is suspect, for
//! `down_after` down. Any frame from the peer (heartbeats flow both ways
//! on every link) counts as hearing from it, so a half-open link shows as
//! silence and ends in "down" like a crash does.
//!
//! Plain state: `node` calls [`FailureDetector::tick`] periodically and acts
//! on the transitions it returns.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use starling_core::cluster::NodeId;

pub use starling_core::cluster::PeerState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub node: NodeId,
    pub from: PeerState,
    pub to: PeerState,
    /// When the peer entered `to`.
    pub at: Instant,
}

#[derive(Debug)]
struct Health {
    last_heard: Instant,
    state: PeerState,
    since: Instant,
}

impl Health {
    /// Puts the peer in state `to` as of `now`; the transition, unless it
    /// was in that state already.
    fn enter(&mut self, node: NodeId, to: PeerState, now: Instant) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let from = std::mem::replace(&mut self.state, to);
        self.since = now;
        Some(Transition {
            node,
            from,
            to,
            at: now,
        })
    }
}

pub struct FailureDetector {
    suspect_after: Duration,
    down_after: Duration,
    peers: HashMap<NodeId, Health>,
}

impl FailureDetector {
    pub fn new(suspect_after: Duration, down_after: Duration) -> FailureDetector {
        FailureDetector {
            suspect_after,
            down_after,
            peers: HashMap::new(),
        }
    }

    /// The peer showed a sign of life at `now`; returns a transition if it
    /// was not up. A sign no newer than the last one changes nothing: the
    /// same silent link reported again must not bring a suspect peer back.
    pub fn heard(&mut self, node: NodeId, now: Instant) -> Option<Transition> {
        let health = match self.peers.get_mut(&node) {
            Some(health) if now <= health.last_heard => return None,
            Some(health) => health,
            None => self.peers.entry(node).or_insert(Health {
                last_heard: now,
                state: PeerState::Down,
                since: now,
            }),
        };
        health.last_heard = now;
        health.enter(node, PeerState::Up, now)
    }

    /// Starts watching a member not heard from yet, as if last heard at
    /// `since` (no transition: it is presumed up until it stays silent).
    pub fn track(&mut self, node: NodeId, since: Instant) {
        self.peers.entry(node).or_insert(Health {
            last_heard: since,
            state: PeerState::Up,
            since,
        });
    }

    /// The peer announced a clean leave.
    pub fn leaving(&mut self, node: NodeId, now: Instant) -> Option<Transition> {
        self.peers
            .get_mut(&node)?
            .enter(node, PeerState::Leaving, now)
    }

    /// Moves silent peers along Up -> Suspect -> Down.
    pub fn tick(&mut self, now: Instant) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for (&node, health) in &mut self.peers {
            let silent = now.saturating_duration_since(health.last_heard);
            let next = match health.state {
                PeerState::Up if silent >= self.down_after => PeerState::Down,
                PeerState::Up if silent >= self.suspect_after => PeerState::Suspect,
                PeerState::Suspect if silent >= self.down_after => PeerState::Down,
                _ => continue,
            };
            transitions.extend(health.enter(node, next, now));
        }
        transitions
    }

    pub fn state(&self, node: NodeId) -> Option<PeerState> {
        self.peers.get(&node).map(|health| health.state)
    }

    /// Whether `transition` is still the peer's last one. The caller acts
    /// on a tick's transitions one after another, awaiting each: meanwhile
    /// a new link may have brought the peer back, and a stale "down" must
    /// not then close that link or purge the sessions it just sent.
    pub fn is_current(&self, transition: &Transition) -> bool {
        self.peers
            .get(&transition.node)
            .is_some_and(|health| health.state == transition.to && health.since == transition.at)
    }

    /// When the peer entered its current state.
    pub fn since(&self, node: NodeId) -> Option<Instant> {
        self.peers.get(&node).map(|health| health.since)
    }

    /// Forgets a peer that is no longer a member.
    pub fn forget(&mut self, node: NodeId) {
        self.peers.remove(&node);
    }

    pub fn down(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, health)| matches!(health.state, PeerState::Down | PeerState::Leaving))
            .map(|(node, _)| *node)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: NodeId = NodeId(7);

    #[test]
    fn silence_leads_to_suspect_then_down_and_a_frame_brings_it_back() {
        let start = Instant::now();
        let mut detector =
            FailureDetector::new(Duration::from_millis(1500), Duration::from_millis(3000));
        let up = detector.heard(P, start).unwrap();
        assert_eq!((up.from, up.to), (PeerState::Down, PeerState::Up));
        assert!(
            detector
                .tick(start + Duration::from_millis(1000))
                .is_empty()
        );
        let suspect = detector.tick(start + Duration::from_millis(1600));
        assert_eq!(suspect[0].to, PeerState::Suspect);
        let down = detector.tick(start + Duration::from_millis(3100));
        assert_eq!(
            (down[0].from, down[0].to),
            (PeerState::Suspect, PeerState::Down)
        );
        assert!(
            detector.tick(start + Duration::from_secs(10)).is_empty(),
            "down stays down"
        );
        let back = detector.heard(P, start + Duration::from_secs(11)).unwrap();
        assert_eq!((back.from, back.to), (PeerState::Down, PeerState::Up));
    }

    #[test]
    fn the_same_old_sign_of_life_does_not_revive_a_suspect() {
        let start = Instant::now();
        let mut detector =
            FailureDetector::new(Duration::from_millis(1500), Duration::from_millis(3000));
        detector.heard(P, start);
        let suspect = detector.tick(start + Duration::from_millis(1600));
        assert_eq!(suspect[0].to, PeerState::Suspect);
        // The tick reports the link's last frame again: still suspect.
        assert_eq!(detector.heard(P, start), None);
        assert!(
            detector
                .tick(start + Duration::from_millis(1700))
                .is_empty()
        );
        assert_eq!(detector.state(P), Some(PeerState::Suspect));
        let back = detector.heard(P, start + Duration::from_millis(1800));
        assert_eq!(back.map(|t| t.to), Some(PeerState::Up));
    }

    #[test]
    fn a_long_pause_goes_straight_to_down() {
        let start = Instant::now();
        let mut detector =
            FailureDetector::new(Duration::from_millis(1500), Duration::from_millis(3000));
        detector.heard(P, start);
        let transitions = detector.tick(start + Duration::from_secs(5));
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].to, PeerState::Down);
    }

    #[test]
    fn a_transition_overtaken_by_a_sign_of_life_is_no_longer_current() {
        let start = Instant::now();
        let mut detector =
            FailureDetector::new(Duration::from_millis(1500), Duration::from_millis(3000));
        detector.heard(P, start);
        let down = detector.tick(start + Duration::from_secs(5));
        assert_eq!(down.len(), 1);
        assert!(detector.is_current(&down[0]));
        let up = detector
            .heard(P, start + Duration::from_millis(5001))
            .unwrap();
        assert!(!detector.is_current(&down[0]));
        assert!(detector.is_current(&up));
        // Down again later: the first "down" is still not the current one.
        let again = detector.tick(start + Duration::from_secs(9));
        assert_eq!(again[0].to, PeerState::Down);
        assert!(!detector.is_current(&down[0]));
        assert!(detector.is_current(&again[0]));
    }

    #[test]
    fn leaving_is_reported_once() {
        let start = Instant::now();
        let mut detector = FailureDetector::new(Duration::from_secs(1), Duration::from_secs(2));
        detector.heard(P, start);
        assert!(detector.leaving(P, start).is_some());
        assert!(detector.leaving(P, start).is_none());
        assert!(detector.tick(start + Duration::from_secs(5)).is_empty());
        assert_eq!(detector.down(), vec![P]);
    }
}
