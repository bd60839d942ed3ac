//! [`Delivery`]: a record's acknowledgement, resolved once for its whole batch.
//!
//! Every record of a batch shares one outcome (the batch's partition and base offset, or an
//! error): the sender resolves the batch once and each record's [`Delivery`] reads its offset
//! as base + its index. This replaced a oneshot channel per record, whose allocation, atomic
//! handshake and drop were a visible share of the client's CPU per message at hundreds of
//! thousands of records a second (see docs/benchmarks.md "Where the time goes").
//!
//! Single-executor (`Rc`, `RefCell`), like the producer. If the batch's [`BatchAcks`] is
//! dropped unresolved (the producer went away), its deliveries resolve to
//! [`ClientError::Closed`], as a dropped channel sender did: a `Delivery` never hangs.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::error::ClientError;
use super::producer::RecordAck;

/// What a batch's records learn: its partition and base offset (`None` with acks=none).
type BatchResult = Result<(u32, Option<u64>), ClientError>;

#[derive(Debug, Default)]
struct Outcome {
    result: RefCell<Option<BatchResult>>,
    /// When the result was set: the moment the client learned it. A caller awaiting many
    /// records can take them in any order and still time each one exactly (one clock read per
    /// batch, not per record or per wake-up).
    resolved_at: Cell<Option<Instant>>,
    /// Tasks waiting on records of this batch.
    wakers: RefCell<Vec<Waker>>,
}

/// The sender's side: one per batch, handing out one [`Delivery`] per record.
#[derive(Debug, Default)]
pub(super) struct BatchAcks {
    outcome: Rc<Outcome>,
    records: u32,
}

impl BatchAcks {
    #[cfg(test)]
    pub(super) fn new() -> BatchAcks {
        BatchAcks::default()
    }

    /// The delivery of the next record added to the batch.
    pub(super) fn next_delivery(&mut self) -> Delivery {
        let index = self.records;
        self.records += 1;
        Delivery { outcome: self.outcome.clone(), index, registered: None }
    }

    /// Records in the batch.
    pub(super) fn len(&self) -> usize {
        self.records as usize
    }

    /// Resolves every record of the batch at once.
    pub(super) fn resolve(self, result: BatchResult) {
        self.set(result);
    }

    fn set(&self, result: BatchResult) {
        {
            let mut slot = self.outcome.result.borrow_mut();
            if slot.is_some() {
                return;
            }
            *slot = Some(result);
        }
        self.outcome.resolved_at.set(Some(Instant::now()));
        let wakers = std::mem::take(&mut *self.outcome.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Drop for BatchAcks {
    fn drop(&mut self) {
        // Unresolved (the batch was dropped with its producer): nobody will answer.
        self.set(Err(ClientError::Closed));
    }
}

/// Resolves when the record is acknowledged (or failed).
#[must_use = "a Delivery reports whether the record was stored"]
#[derive(Debug)]
pub struct Delivery {
    outcome: Rc<Outcome>,
    /// The record's index in its batch.
    index: u32,
    /// The waker this delivery last registered with its batch: polling again from the same
    /// task adds nothing. A task awaiting many records of different batches (the load
    /// generator's ack groups) polls each of them on every wake-up; registering again on each
    /// poll made the batches' waker lists grow with the number of polls and woke the task once
    /// per copy (`Delivery::poll` and waker clones were a tenth of the load generator's CPU at
    /// 1 000 partitions).
    registered: Option<Waker>,
}

impl Delivery {
    /// When the record's batch was resolved (acknowledged or failed); `None` before.
    pub fn resolved_at(&self) -> Option<Instant> {
        self.outcome.resolved_at.get()
    }
}

impl Future for Delivery {
    type Output = Result<RecordAck, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.outcome.result.borrow().as_ref() {
            let index = u64::from(self.index);
            return Poll::Ready(match result {
                Ok((partition, base)) => Ok(RecordAck { partition: *partition, offset: base.map(|b| b + index) }),
                Err(error) => Err(error.clone()),
            });
        }
        if self.registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending; // Already in the batch's list: its resolution wakes this task.
        }
        let waker = cx.waker().clone();
        {
            let mut wakers = self.outcome.wakers.borrow_mut();
            // One task awaiting many records of the batch in a row registers once (comparing
            // with the last waker only keeps this O(1); a rare duplicate just wakes a task
            // twice).
            if !wakers.last().is_some_and(|w| w.will_wake(&waker)) {
                wakers.push(waker.clone());
            }
        }
        self.registered = Some(waker);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn each_record_gets_base_plus_its_index() {
        let mut acks = BatchAcks::new();
        let deliveries: Vec<Delivery> = (0..3).map(|_| acks.next_delivery()).collect();
        assert_eq!(acks.len(), 3);
        let mut first = deliveries.into_iter();
        let mut d0 = first.next().unwrap();
        assert!(block_on(poll_once(&mut d0)).is_none(), "pending before the batch resolves");
        assert!(d0.resolved_at().is_none());
        let before = Instant::now();
        acks.resolve(Ok((7, Some(100))));
        assert!(d0.resolved_at().is_some_and(|at| at >= before && at <= Instant::now()));
        assert_eq!(block_on(d0).unwrap(), RecordAck { partition: 7, offset: Some(100) });
        let rest: Vec<_> = first.map(|d| block_on(d).unwrap().offset).collect();
        assert_eq!(rest, vec![Some(101), Some(102)]);
    }

    struct CountingWake(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWake {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn a_task_polling_again_registers_once_and_is_woken_once() {
        // Two tasks awaiting records of one batch, each polling its record again and again in
        // turn (as the load generator's ack groups do): each is registered once.
        let mut acks = BatchAcks::new();
        let (mut a, mut b) = (acks.next_delivery(), acks.next_delivery());
        let (wa, wb) = (std::sync::Arc::new(CountingWake(0.into())), std::sync::Arc::new(CountingWake(0.into())));
        let (waker_a, waker_b) = (Waker::from(wa.clone()), Waker::from(wb.clone()));
        for _ in 0..10 {
            assert!(Pin::new(&mut a).poll(&mut Context::from_waker(&waker_a)).is_pending());
            assert!(Pin::new(&mut b).poll(&mut Context::from_waker(&waker_b)).is_pending());
        }
        assert_eq!(acks.outcome.wakers.borrow().len(), 2);
        acks.resolve(Ok((0, Some(5))));
        assert_eq!(wa.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(wb.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        let ready = Pin::new(&mut b).poll(&mut Context::from_waker(&waker_b));
        assert!(matches!(ready, Poll::Ready(Ok(RecordAck { offset: Some(6), .. }))));
        // Moved to another task: the new waker is registered.
        let mut acks = BatchAcks::new();
        let mut c = acks.next_delivery();
        assert!(Pin::new(&mut c).poll(&mut Context::from_waker(&waker_a)).is_pending());
        assert!(Pin::new(&mut c).poll(&mut Context::from_waker(&waker_b)).is_pending());
        assert_eq!(acks.outcome.wakers.borrow().len(), 2);
    }

    #[test]
    fn errors_reach_every_record_and_a_dropped_batch_closes() {
        let mut acks = BatchAcks::new();
        let (a, b) = (acks.next_delivery(), acks.next_delivery());
        acks.resolve(Err(ClientError::InvalidArgument("bad".into())));
        assert!(matches!(block_on(a), Err(ClientError::InvalidArgument(_))));
        assert!(matches!(block_on(b), Err(ClientError::InvalidArgument(_))));
        let mut dropped = BatchAcks::new();
        let c = dropped.next_delivery();
        drop(dropped);
        assert!(matches!(block_on(c), Err(ClientError::Closed)));
    }
}
