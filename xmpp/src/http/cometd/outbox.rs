//! One client's queue of messages to deliver, with the CometD message
//! acknowledgement extension.
//!
//! Without acks a message leaves the queue when it is written. With acks
//! every message written is kept, tagged with the batch it went out in;
//! each `/meta/connect` reply closes a batch (its `ext.ack`) and the
//! client's next connect names the last batch it received, which frees
//! everything up to it. Whatever is still queued then went out in a
//! response that never arrived, and is written again: a long-poll
//! reconnect loses nothing.

use std::collections::VecDeque;
use std::sync::Arc;

/// A queued message, already serialised (one event is shared by every
/// subscriber's queue).
pub(crate) type Event = Arc<str>;

#[derive(Debug)]
pub(crate) struct Outbox {
    entries: VecDeque<Entry>,
    /// The batch the next connect reply closes; batches start at 1 (a
    /// client that has seen none acks 0).
    batch: u64,
    acks: bool,
    limit: usize,
}

#[derive(Debug)]
struct Entry {
    event: Event,
    /// The batch it was last written in; `None` while unwritten.
    sent_in: Option<u64>,
}

/// The queue is over its limit: the client is too slow to keep.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow;

impl Outbox {
    pub(crate) fn new(acks: bool, limit: usize) -> Outbox {
        Outbox {
            entries: VecDeque::new(),
            batch: 1,
            acks,
            limit,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Messages not yet written.
    pub(crate) fn has_unsent(&self) -> bool {
        self.entries.iter().any(|entry| entry.sent_in.is_none())
    }

    pub(crate) fn push(&mut self, event: Event) -> Result<(), Overflow> {
        if self.entries.len() >= self.limit {
            return Err(Overflow);
        }
        self.entries.push_back(Entry {
            event,
            sent_in: None,
        });
        Ok(())
    }

    /// The client received every batch up to `batch`.
    pub(crate) fn ack(&mut self, batch: u64) {
        if self.acks {
            self.entries
                .retain(|entry| entry.sent_in.is_none_or(|sent| sent > batch));
        }
    }

    /// Everything still queued goes out again (the client came back on
    /// another connection, so what was written on the old one is in doubt).
    pub(crate) fn resend(&mut self) {
        for entry in &mut self.entries {
            entry.sent_in = None;
        }
    }

    /// A long-poll connect reply: every queued message, and the batch the
    /// reply closes (`None` without acks).
    pub(crate) fn take_for_reply(&mut self) -> (Vec<Event>, Option<u64>) {
        if !self.acks {
            return (self.entries.drain(..).map(|e| e.event).collect(), None);
        }
        let batch = self.close_batch();
        let events = self
            .entries
            .iter_mut()
            .map(|entry| {
                entry.sent_in = Some(batch);
                entry.event.clone()
            })
            .collect();
        (events, Some(batch))
    }

    /// Messages to push now on a connection that writes as they come
    /// (WebSocket): the unwritten ones, in the batch still open.
    pub(crate) fn take_unsent(&mut self) -> Vec<Event> {
        if !self.acks {
            return self.entries.drain(..).map(|e| e.event).collect();
        }
        let batch = self.batch;
        self.entries
            .iter_mut()
            .filter(|entry| entry.sent_in.is_none())
            .map(|entry| {
                entry.sent_in = Some(batch);
                entry.event.clone()
            })
            .collect()
    }

    /// Closes the open batch (a connect reply is written) and returns its
    /// number, `None` without acks.
    pub(crate) fn close_batch_for_reply(&mut self) -> Option<u64> {
        self.acks.then(|| self.close_batch())
    }

    fn close_batch(&mut self) -> u64 {
        let batch = self.batch;
        self.batch += 1;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> Event {
        Arc::from(text)
    }

    fn texts(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| &**e).collect()
    }

    #[test]
    fn without_acks_messages_leave_when_written() {
        let mut outbox = Outbox::new(false, 10);
        outbox.push(event("a")).unwrap();
        outbox.push(event("b")).unwrap();
        let (events, batch) = outbox.take_for_reply();
        assert_eq!(texts(&events), ["a", "b"]);
        assert_eq!(batch, None);
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn a_lost_long_poll_reply_is_written_again() {
        let mut outbox = Outbox::new(true, 10);
        outbox.push(event("a")).unwrap();
        let (events, batch) = outbox.take_for_reply();
        assert_eq!((texts(&events), batch), (vec!["a"], Some(1)));
        // The reply with batch 1 never arrived: the client acks 0.
        outbox.ack(0);
        outbox.push(event("b")).unwrap();
        let (events, batch) = outbox.take_for_reply();
        assert_eq!((texts(&events), batch), (vec!["a", "b"], Some(2)));
        outbox.ack(2);
        assert_eq!(outbox.len(), 0);
        let (events, batch) = outbox.take_for_reply();
        assert!(events.is_empty());
        assert_eq!(batch, Some(3));
    }

    #[test]
    fn pushed_messages_belong_to_the_batch_the_next_reply_closes() {
        let mut outbox = Outbox::new(true, 10);
        outbox.push(event("a")).unwrap();
        assert_eq!(texts(&outbox.take_unsent()), ["a"]);
        assert!(outbox.take_unsent().is_empty(), "written once");
        assert_eq!(outbox.close_batch_for_reply(), Some(1));
        outbox.push(event("b")).unwrap();
        assert_eq!(texts(&outbox.take_unsent()), ["b"]);
        // The client acks batch 1: "a" is done, "b" (batch 2) is not.
        outbox.ack(1);
        assert_eq!(outbox.len(), 1);
        // It reconnects elsewhere: "b" goes out again.
        outbox.resend();
        assert!(outbox.has_unsent());
        assert_eq!(texts(&outbox.take_unsent()), ["b"]);
    }

    #[test]
    fn a_full_queue_refuses_more() {
        let mut outbox = Outbox::new(false, 2);
        outbox.push(event("a")).unwrap();
        outbox.push(event("b")).unwrap();
        assert_eq!(outbox.push(event("c")), Err(Overflow));
    }
}
