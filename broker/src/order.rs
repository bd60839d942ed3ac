//! The order of appends to a partition from one source.
//!
//! Kafka's first guarantee: the batches a producer sends to one partition on one connection
//! are appended in the order it sent them, however many requests it has in flight. A
//! connection serves its requests concurrently (so that requests for other partitions, and
//! the durability waits of requests for the same one, overlap), and concurrent tasks reach a
//! log's append lock in no particular order: glommio's semaphore lets a newcomer take a lock
//! that a woken waiter has not yet picked up, and a request can wait for request memory, a
//! cross-shard channel or an idempotence check on its way. So the order is fixed where it is
//! known — when the connection reads the request — and enforced where it matters: just
//! before the append.
//!
//! Each source keeps an `AppendOrder`: a client connection, and on the owning shard, each
//! peer shard whose forwarded produces it serves (the forwarding shard sends them in order,
//! and the channel between two shards keeps it). When a produce request is read, it takes a
//! `Turn` for each partition it names. A turn waits until the previous turn for that
//! partition from the same source is passed, the append then takes its offsets, and the turn
//! is passed — before the durability wait, so pipelined requests still share one fdatasync.
//! A turn that is dropped (its request failed, or was forwarded and sent on) is passed too —
//! once its own predecessor has passed, so a failed request never lets a later one overtake
//! an earlier one — and nothing waits for a request that will never append.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use futures_channel::oneshot;

/// The number of partitions an `AppendOrder` remembers before it forgets those whose last
/// turn has been passed. Bounds its memory for a source that writes to many partitions; the
/// turns still waiting are bounded by the requests in flight.
pub const APPEND_ORDER_PARTITIONS_KEPT: usize = 1024;

/// The turns of one source, per partition.
#[derive(Debug, Default)]
pub struct AppendOrder {
    /// For each partition, the signal that the source's latest turn for it was passed.
    last: RefCell<HashMap<(String, u32), oneshot::Receiver<()>>>,
    /// Size at which the next clean-up runs: `APPEND_ORDER_PARTITIONS_KEPT`, or twice what the
    /// last one kept (0: not yet set). A source with more partitions waiting than the bound
    /// would otherwise scan them all on every turn it takes (at 10 000 partitions, the map's
    /// `retain` was a visible share of the broker's CPU); doubling keeps the scans amortised
    /// O(1) per turn and the map within twice the partitions that hold a turn.
    forget_at: Cell<usize>,
    #[cfg(test)]
    cleanups: Cell<u32>,
}

impl AppendOrder {
    /// The next turn for `topic`-`partition`: it goes after every turn taken before for the
    /// same partition. Call it in the order the requests arrived.
    pub fn take(&self, topic: &str, partition: u32) -> Turn {
        let mut last = self.last.borrow_mut();
        if last.len() >= self.forget_at.get().max(APPEND_ORDER_PARTITIONS_KEPT) {
            // Forget partitions with nothing waiting: their next turn need not wait at all.
            last.retain(|_, passed| matches!(passed.try_recv(), Ok(None)));
            self.forget_at.set(APPEND_ORDER_PARTITIONS_KEPT.max(last.len().saturating_mul(2)));
            #[cfg(test)]
            self.cleanups.set(self.cleanups.get() + 1);
        }
        let (pass, passed) = oneshot::channel();
        let predecessor = last.insert((topic.to_owned(), partition), passed);
        Turn { predecessor, pass: Some(pass) }
    }
}

/// One request's place in the order of appends to one partition from its source.
#[derive(Debug)]
pub struct Turn {
    /// Resolves when the previous turn is passed (or dropped).
    predecessor: Option<oneshot::Receiver<()>>,
    /// Dropped to pass the turn to the next one.
    pass: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// A turn that waits for nothing and nobody waits for: for appends with no source order
    /// to keep (tools, tests).
    pub fn unordered() -> Turn {
        Turn { predecessor: None, pass: None }
    }

    /// Resolves once every earlier turn of the source for this partition was passed. Waiting
    /// again resolves at once.
    pub async fn wait(&mut self) {
        if let Some(predecessor) = self.predecessor.take() {
            // Passed or dropped: either way the predecessor is done with its append.
            let _ = predecessor.await;
        }
    }

    /// Lets the next turn go: this request's batches have their offsets (or never will).
    pub fn pass(self) {}
}

impl Drop for Turn {
    /// Passes the turn — at once if the predecessor has passed, otherwise as soon as it does
    /// (a request that fails before its turn came must not let the next one overtake the
    /// previous one). Turns live on shard executors, where the hand-over task runs.
    fn drop(&mut self) {
        let (Some(mut predecessor), Some(pass)) = (self.predecessor.take(), self.pass.take()) else {
            return; // Waited for (or unordered): dropping `pass` lets the next one go.
        };
        if !matches!(predecessor.try_recv(), Ok(None)) {
            return; // The predecessor has passed already.
        }
        glommio::spawn_local(async move {
            let _ = predecessor.await;
            drop(pass);
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Tasks started in reverse order of their turns still run their critical part in turn order.
    #[test]
    fn turns_run_in_the_order_taken_whatever_order_the_tasks_run() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let order = AppendOrder::default();
                let log = Rc::new(RefCell::new(Vec::new()));
                let mut turns: Vec<Turn> = (0..10).map(|_| order.take("t", 0)).collect();
                let other = order.take("t", 1); // another partition: never waits for partition 0
                let mut tasks = Vec::new();
                for i in (0..10).rev() {
                    let mut turn = turns.pop().unwrap();
                    let log = log.clone();
                    tasks.push(glommio::spawn_local(async move {
                        turn.wait().await;
                        futures_lite::future::yield_now().await;
                        log.borrow_mut().push(i);
                        turn.pass();
                    }));
                }
                let mut other = other;
                other.wait().await; // resolves at once: the first turn of its partition
                for task in tasks {
                    task.await;
                }
                assert_eq!(*log.borrow(), (0..10).collect::<Vec<_>>());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A dropped turn (a failed request) lets its successor go.
    #[test]
    fn a_dropped_turn_passes() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let order = AppendOrder::default();
                let first = order.take("t", 0);
                let mut second = order.take("t", 0);
                drop(first);
                second.wait().await;
                let mut unordered = Turn::unordered();
                unordered.wait().await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A turn dropped before its predecessor passed hands on only when the predecessor does.
    #[test]
    fn a_turn_dropped_early_does_not_let_the_next_overtake_the_previous() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let order = AppendOrder::default();
                let first = order.take("t", 0);
                let second = order.take("t", 0);
                let mut third = order.take("t", 0);
                drop(second); // failed before its turn came
                let log = Rc::new(RefCell::new(Vec::new()));
                let third_log = log.clone();
                let task = glommio::spawn_local(async move {
                    third.wait().await;
                    third_log.borrow_mut().push(3);
                });
                for _ in 0..10 {
                    futures_lite::future::yield_now().await;
                }
                log.borrow_mut().push(1);
                first.pass();
                task.await;
                assert_eq!(*log.borrow(), vec![1, 3]);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// Partitions whose turns were all passed are forgotten once the order holds many.
    #[test]
    fn passed_partitions_are_forgotten() {
        let order = AppendOrder::default();
        let waiting = order.take("t", 0);
        for p in 1..=APPEND_ORDER_PARTITIONS_KEPT as u32 {
            order.take("t", p).pass();
        }
        // Kept: partition 0 (its turn is held) and the one taken after the last clean-up.
        assert_eq!(order.last.borrow().len(), 2);
        drop(waiting);
    }

    /// With more partitions holding a turn than the bound, a clean-up that frees nothing does
    /// not run again on the next turn: the scans stay amortised, not one per turn.
    #[test]
    fn held_turns_past_the_bound_do_not_make_every_take_scan() {
        let order = AppendOrder::default();
        let held: Vec<Turn> = (0..2 * APPEND_ORDER_PARTITIONS_KEPT as u32).map(|p| order.take("held", p)).collect();
        let cleanups_before = order.cleanups.get();
        for p in 0..APPEND_ORDER_PARTITIONS_KEPT as u32 {
            order.take("more", p).pass();
        }
        let cleanups = order.cleanups.get() - cleanups_before;
        assert!(cleanups <= 1, "{cleanups} clean-ups for {APPEND_ORDER_PARTITIONS_KEPT} turns");
        // Still bounded: passed partitions go at the next clean-up.
        assert!(order.last.borrow().len() <= 2 * order.forget_at.get());
        drop(held);
    }
}
