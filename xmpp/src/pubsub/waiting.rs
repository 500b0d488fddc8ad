//! Notifications waiting behind a retried directory lookup, one queue
//! ("lane") per pub/sub node and subscriber.
//!
//! A lane opens when a subscriber is found nowhere; while it is open, later
//! events of that node for that subscriber queue behind the first instead
//! of overtaking it, and the lane is closed as a whole (delivered in order,
//! or given up) when the retry resolves. Both sides are bounded: a lane
//! holds at most `per_lane` notifications, and at most `max_lanes` lanes
//! are open at once.

use std::collections::{HashMap, VecDeque};

/// What became of a notification offered to an open lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued behind the notifications already waiting.
    Behind,
    /// The lane is full: the notification is dropped. `first` is true the
    /// first time this lane overflows, so a warning is logged once per lane.
    Overflow { first: bool },
}

/// Lanes of waiting notifications (`T`), keyed by node and subscriber JID.
#[derive(Debug)]
pub(crate) struct Waiting<T> {
    nodes: HashMap<String, HashMap<String, Lane<T>>>,
    per_lane: usize,
}

#[derive(Debug)]
struct Lane<T> {
    queue: VecDeque<T>,
    overflowed: bool,
}

impl<T> Waiting<T> {
    pub(crate) fn new(per_lane: usize) -> Waiting<T> {
        Waiting {
            nodes: HashMap::new(),
            per_lane: per_lane.max(1),
        }
    }

    /// Whether any subscriber of `node` has a lane open.
    pub(crate) fn has_node(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// Whether the subscriber has a lane open on `node`.
    pub(crate) fn is_waiting(&self, node: &str, subscriber: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|lanes| lanes.contains_key(subscriber))
    }

    /// Queues `item` behind the subscriber's open lane; hands it back when
    /// the subscriber has none (it is delivered the usual way).
    pub(crate) fn queue_behind(
        &mut self,
        node: &str,
        subscriber: &str,
        item: T,
    ) -> Result<Queued, T> {
        let Some(lane) = self
            .nodes
            .get_mut(node)
            .and_then(|lanes| lanes.get_mut(subscriber))
        else {
            return Err(item);
        };
        if lane.queue.len() >= self.per_lane {
            let first = !lane.overflowed;
            lane.overflowed = true;
            return Ok(Queued::Overflow { first });
        }
        lane.queue.push_back(item);
        Ok(Queued::Behind)
    }

    /// Opens a lane with `first` at its head (`None`). When the subscriber
    /// already has one, `first` queues behind it as [`Waiting::queue_behind`]
    /// says.
    pub(crate) fn open(&mut self, node: &str, subscriber: &str, first: T) -> Option<Queued> {
        let first = match self.queue_behind(node, subscriber, first) {
            Ok(queued) => return Some(queued),
            Err(first) => first,
        };
        self.nodes.entry(node.to_owned()).or_default().insert(
            subscriber.to_owned(),
            Lane {
                queue: VecDeque::from([first]),
                overflowed: false,
            },
        );
        None
    }

    /// Closes the subscriber's lane and returns what waited in it, oldest
    /// first (empty when no lane was open).
    pub(crate) fn close(&mut self, node: &str, subscriber: &str) -> VecDeque<T> {
        let Some(lanes) = self.nodes.get_mut(node) else {
            return VecDeque::new();
        };
        let Some(lane) = lanes.remove(subscriber) else {
            return VecDeque::new();
        };
        if lanes.is_empty() {
            self.nodes.remove(node);
        }
        lane.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(waiting: &mut Waiting<u32>, node: &str, subscriber: &str) -> Vec<u32> {
        waiting.close(node, subscriber).into_iter().collect()
    }

    #[test]
    fn without_a_lane_the_item_is_handed_back() {
        let mut waiting = Waiting::new(10);
        assert_eq!(waiting.queue_behind("n", "a@x", 1), Err(1));
        assert!(!waiting.has_node("n"));
        assert!(!waiting.is_waiting("n", "a@x"));
    }

    #[test]
    fn later_items_queue_behind_the_first_and_leave_in_order() {
        let mut waiting = Waiting::new(10);
        assert_eq!(waiting.open("n", "a@x", 1), None);
        assert!(waiting.is_waiting("n", "a@x"));
        assert!(!waiting.is_waiting("n", "b@x"));
        assert_eq!(waiting.queue_behind("n", "a@x", 2), Ok(Queued::Behind));
        assert_eq!(waiting.queue_behind("n", "a@x", 3), Ok(Queued::Behind));
        // Opening again (a second subscription of the same JID) queues too.
        assert_eq!(waiting.open("n", "a@x", 4), Some(Queued::Behind));
        assert!(waiting.has_node("n"));
        assert_eq!(drained(&mut waiting, "n", "a@x"), [1, 2, 3, 4]);
        assert!(!waiting.has_node("n"));
        assert_eq!(waiting.queue_behind("n", "a@x", 5), Err(5));
    }

    #[test]
    fn lanes_of_other_subscribers_and_nodes_are_separate() {
        let mut waiting = Waiting::new(10);
        assert_eq!(waiting.open("n", "a@x", 1), None);
        assert_eq!(waiting.open("n", "b@x", 10), None);
        assert_eq!(waiting.open("m", "a@x", 100), None);
        waiting.queue_behind("n", "a@x", 2).unwrap();
        waiting.queue_behind("m", "a@x", 101).unwrap();
        assert_eq!(drained(&mut waiting, "n", "b@x"), [10]);
        assert!(waiting.has_node("n"), "a@x still waits on n");
        assert_eq!(drained(&mut waiting, "n", "a@x"), [1, 2]);
        assert_eq!(drained(&mut waiting, "m", "a@x"), [100, 101]);
        assert!(!waiting.has_node("m"));
        assert!(drained(&mut waiting, "m", "a@x").is_empty());
    }

    #[test]
    fn a_full_lane_drops_new_items_and_says_so_once() {
        let mut waiting = Waiting::new(2);
        assert_eq!(waiting.open("n", "a@x", 1), None);
        waiting.queue_behind("n", "a@x", 2).unwrap();
        assert_eq!(
            waiting.queue_behind("n", "a@x", 3),
            Ok(Queued::Overflow { first: true })
        );
        assert_eq!(
            waiting.queue_behind("n", "a@x", 4),
            Ok(Queued::Overflow { first: false })
        );
        assert_eq!(drained(&mut waiting, "n", "a@x"), [1, 2]);
        // A new lane starts with a clean record.
        assert_eq!(waiting.open("n", "a@x", 5), None);
        waiting.queue_behind("n", "a@x", 6).unwrap();
        assert_eq!(
            waiting.queue_behind("n", "a@x", 7),
            Ok(Queued::Overflow { first: true })
        );
    }
}
