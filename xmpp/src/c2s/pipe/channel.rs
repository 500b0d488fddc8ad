//! The bounded queue of each direction of a pipe: one sender, one receiver.
//!
//! A tokio `mpsc` channel keeps its first block of 32 slots and its state
//! for as long as it lives, about 1.5 KiB a direction, and a pipe lives as
//! long as its BOSH session. This queue holds its shared state
//! (a lock, two `Notify`s) and, only while something waits in it, the items:
//! an empty queue gives its memory back.
//!
//! Wake-ups use `Notify::notify_one`, which keeps a permit when nobody is
//! waiting yet: each side creates its `Notified` before it looks at the
//! state, so a change between the look and the wait is not missed.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver: an item was queued, or the sender is gone.
    item: Notify,
    /// Wakes the sender: room was made, or the receiver is gone.
    room: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; the receiver sees the end of the queue once it is dropped.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side; sends fail once it is dropped.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing queued now.
    Empty,
    /// Nothing queued, and the sender is gone.
    Disconnected,
}

/// A queue holding at most `capacity` items (at least one).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            sender_gone: false,
            receiver_gone: false,
        }),
        item: Notify::new(),
        room: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Waits for room, then queues `item`; gives it back if the receiver is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        loop {
            let room = self.shared.room.notified();
            {
                let mut state = self.shared.lock();
                if state.receiver_gone {
                    return Err(item);
                }
                if state.queue.len() < state.capacity {
                    state.queue.push_back(item);
                    drop(state);
                    self.shared.item.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

impl<T> Receiver<T> {
    /// The next item; None once the queue is empty and the sender gone. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            let item = self.shared.item.notified();
            match self.take() {
                Ok(next) => return Some(next),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            item.await;
        }
    }

    /// The next item if one is queued now.
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.take()
    }

    fn take(&self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match state.queue.pop_front() {
            Some(next) => {
                if state.queue.is_empty() {
                    // An idle pipe holds no slots.
                    state.queue = VecDeque::new();
                }
                drop(state);
                self.shared.room.notify_one();
                Ok(next)
            }
            None if state.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.item.notify_one();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.queue)
        };
        drop(left);
        self.shared.room.notify_one();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_after_them() {
        let (sender, mut receiver) = channel(2);
        let producer = tokio::spawn(async move {
            for i in 0..100 {
                sender.send(i).await.unwrap();
            }
        });
        for i in 0..100 {
            assert_eq!(receiver.recv().await, Some(i));
        }
        producer.await.unwrap();
        assert_eq!(receiver.recv().await, None);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_sender_wait_until_there_is_room() {
        let (sender, mut receiver) = channel(2);
        sender.send(1).await.unwrap();
        sender.send(2).await.unwrap();
        let mut third = Box::pin(sender.send(3));
        assert!(
            (&mut third).now_or_never().is_none(),
            "sent into a full queue"
        );
        assert_eq!(receiver.try_recv(), Ok(1));
        tokio::time::timeout(Duration::from_secs(10), third)
            .await
            .expect("room was made")
            .unwrap();
        assert_eq!(receiver.try_recv(), Ok(2));
        assert_eq!(receiver.try_recv(), Ok(3));
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_item_and_by_the_end() {
        let (sender, mut receiver) = channel::<u8>(4);
        let waiting = tokio::spawn(async move {
            let first = receiver.recv().await;
            let second = receiver.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        sender.send(5).await.unwrap();
        drop(sender);
        let received = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(received, (Some(5), None));
    }

    #[tokio::test]
    async fn sends_fail_once_the_receiver_is_gone_even_a_waiting_one() {
        let (sender, receiver) = channel(1);
        sender.send(1).await.unwrap();
        let waiting = tokio::spawn(async move { sender.send(2).await });
        tokio::task::yield_now().await;
        drop(receiver);
        let result = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(result, Err(2));
    }

    #[test]
    fn an_emptied_queue_holds_no_slots() {
        let (sender, mut receiver) = channel(8);
        for i in 0..5 {
            sender.send(i).now_or_never().unwrap().unwrap();
        }
        assert!(sender.shared.lock().queue.capacity() >= 5);
        while receiver.try_recv().is_ok() {}
        assert_eq!(sender.shared.lock().queue.capacity(), 0);
    }
}
