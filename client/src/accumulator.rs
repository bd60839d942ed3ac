//! [`Accumulator`]: the protocol-independent half of a batching producer, shared by the native
//! [`super::Producer`] and the load generator's Kafka producer.
//!
//! Each partition has a queue of batches being filled; records go into the newest one. A batch
//! is ready when it reaches `batch_bytes` (or a newer batch was started), `linger` after it was
//! started, or while a flush runs. [`Accumulator::run`] is the sender loop: it drains ready
//! batches and hands them to the producer's dispatch closure, which builds and sends the
//! protocol's requests and calls [`Accumulator::request_done`] once a partition's records are
//! resolved.
//!
//! Bounds: buffered records hold units of a `buffer_bytes` semaphore until their request
//! completes; a partition has at most `in_flight_per_partition_max` requests in flight; a
//! request takes at most `batches_per_request_max` batches of a partition and (past its first
//! batch) at most `request_bytes_max` bytes.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::hash::Hash;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use format::batch::BatchBuilder;
use format::limits::{BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX};
use glommio::sync::Semaphore;
use rustc_hash::FxHashMap;

use super::partitioner::{partition_for_key, StickyPartitioner};

/// Bounds of an [`Accumulator`].
#[derive(Debug, Clone, Copy)]
pub struct AccumulatorOptions {
    /// How long a batch waits for more records after its first one (Kafka's `linger.ms`).
    pub linger: Duration,
    /// A batch takes no more records once it holds this many bytes (Kafka's `batch.size`).
    pub batch_bytes: usize,
    /// Record bytes buffered or in flight before `acquire` waits (Kafka's `buffer.memory`).
    pub buffer_bytes: usize,
    /// Requests in flight per partition. 1 keeps a partition's records in send order.
    pub in_flight_per_partition_max: usize,
    /// Batches of one partition drained for one request (Kafka's Produce v3+ takes one).
    pub batches_per_request_max: usize,
    /// Bytes of one partition's batches drained for one request (its first batch always goes).
    pub request_bytes_max: usize,
}

/// A batch being filled or waiting to be sent. `A` is what resolves its records.
pub struct PendingBatch<A> {
    pub builder: BatchBuilder,
    pub acks: A,
    /// Records pushed into this batch.
    pub records: usize,
    /// Units of the buffer-memory semaphore this batch holds.
    pub memory: u64,
    pub created: Instant,
    /// No more records go in (a newer batch exists, or it reached `batch_bytes`).
    pub full: bool,
    /// The topic's partition count when the batch was created (for the sticky partitioner).
    pub partitions: u32,
}

/// Batches taken from one partition's queue for one request. `T` names the topic.
pub struct Drained<T, A> {
    pub key: (T, u32),
    pub batches: Vec<PendingBatch<A>>,
}

struct PartitionQueue<A> {
    batches: VecDeque<PendingBatch<A>>,
    in_flight: usize,
    /// Bytes of this partition's last batch closed or sent: a new batch starts with room for
    /// about as much, so it does not grow by doubling (a reallocation and a copy of all it
    /// holds each time; 2-3 % of the load generator's CPU at 1 000 partitions, more with
    /// large batches).
    last_batch_bytes: usize,
}

impl<A> Default for PartitionQueue<A> {
    fn default() -> Self {
        PartitionQueue { batches: VecDeque::new(), in_flight: 0, last_batch_bytes: 0 }
    }
}

/// Per-partition batch queues, buffer memory, outstanding records and the sender's wake-ups.
/// `!Send`; lives on one executor.
pub struct Accumulator<T, A> {
    options: AccumulatorOptions,
    /// Looked up per record: a faster hasher than SipHash (keys are the application's topics).
    queues: RefCell<FxHashMap<(T, u32), PartitionQueue<A>>>,
    sticky: RefCell<StickyPartitioner>,
    memory: Semaphore,
    /// Records pushed and not yet resolved.
    outstanding: Cell<usize>,
    /// `flush` calls running: while > 0 every batch is ready at once.
    flushing: Cell<usize>,
    /// Wakes the sender loop: a batch became ready, or a request completed.
    wake: Doorbell,
    /// Notified whenever `outstanding` drops to 0.
    idle: event_listener::Event,
}

impl<T: AsRef<str> + Clone + Eq + Hash, A: Default> Accumulator<T, A> {
    pub fn new(options: AccumulatorOptions) -> Self {
        let options = AccumulatorOptions {
            batch_bytes: options.batch_bytes.clamp(BATCH_HEADER_BYTES + 1, BATCH_SIZE_BYTES_MAX as usize),
            buffer_bytes: options.buffer_bytes.max(1),
            in_flight_per_partition_max: options.in_flight_per_partition_max.max(1),
            batches_per_request_max: options.batches_per_request_max.max(1),
            request_bytes_max: options.request_bytes_max.max(1),
            ..options
        };
        Accumulator {
            memory: Semaphore::new(options.buffer_bytes as u64),
            options,
            queues: RefCell::new(FxHashMap::default()),
            sticky: RefCell::new(StickyPartitioner::new()),
            outstanding: Cell::new(0),
            flushing: Cell::new(0),
            wake: Doorbell::default(),
            idle: event_listener::Event::new(),
        }
    }

    pub fn options(&self) -> &AccumulatorOptions {
        &self.options
    }

    /// The partition for a record: the explicit one, else murmur2 of the key (as Kafka), else
    /// the sticky partitioner's.
    pub fn partition_for(&self, topic: &str, partition: Option<u32>, key: Option<&[u8]>, partitions: u32) -> u32 {
        match (partition, key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => self.sticky.borrow_mut().partition(topic, partitions),
        }
    }

    /// Waits for `units` of buffer memory. `false`: the semaphore was closed.
    pub async fn acquire(&self, units: u64) -> bool {
        self.memory.acquire(units).await.is_ok()
    }

    /// Gives back `units` taken by [`Accumulator::acquire`] for a record that was not pushed.
    pub fn release(&self, units: u64) {
        self.memory.signal(units);
    }

    /// Adds a record (its `units` of buffer memory already taken) to `key`'s open batch,
    /// starting one of `capacity_bytes` when the open one cannot take `estimate_bytes` more.
    /// `add` writes the record into the batch and returns its ack. Does not wait.
    pub fn push<D>(
        &self,
        key: (T, u32),
        partitions: u32,
        units: u64,
        estimate_bytes: usize,
        capacity_bytes: usize,
        add: impl FnOnce(&mut BatchBuilder, &mut A) -> D,
    ) -> D {
        let batch_bytes = self.options.batch_bytes;
        let (became_ready, delivery) = {
            let mut queues = self.queues.borrow_mut();
            let queue = queues.entry(key).or_default();
            let fits =
                queue.batches.back().is_some_and(|b| !b.full && b.builder.size_bytes() + estimate_bytes <= batch_bytes);
            if !fits {
                if let Some(last) = queue.batches.back_mut() {
                    last.full = true;
                    queue.last_batch_bytes = last.builder.size_bytes();
                }
                let capacity_bytes =
                    capacity_bytes.max((queue.last_batch_bytes + estimate_bytes).min(batch_bytes + estimate_bytes));
                queue.batches.push_back(PendingBatch {
                    builder: BatchBuilder::with_capacity(capacity_bytes),
                    acks: A::default(),
                    records: 0,
                    memory: 0,
                    created: Instant::now(),
                    full: false,
                    partitions,
                });
            }
            let len = queue.batches.len();
            let batch = &mut queue.batches[len - 1];
            let delivery = add(&mut batch.builder, &mut batch.acks);
            batch.records += 1;
            batch.memory += units;
            if batch.builder.size_bytes() >= batch_bytes {
                batch.full = true;
            }
            // A new batch (linger timer) or a full one: the sender must look.
            (batch.full || batch.records == 1, delivery)
        };
        self.outstanding.set(self.outstanding.get() + 1);
        if became_ready {
            self.wake.ring();
        }
        delivery
    }

    /// Takes the ready batches of every partition that may send now. Also returns when the
    /// next lingering batch becomes ready.
    pub fn drain_ready(&self, now: Instant) -> (Vec<Drained<T, A>>, Option<Instant>) {
        let options = &self.options;
        let flushing = self.flushing.get() > 0;
        let mut ready = Vec::new();
        let mut next_deadline: Option<Instant> = None;
        let mut queues = self.queues.borrow_mut();
        let mut sticky = self.sticky.borrow_mut();
        for (key, queue) in queues.iter_mut() {
            if queue.in_flight >= options.in_flight_per_partition_max {
                continue; // A completion wakes the sender.
            }
            let mut batches = Vec::new();
            let mut request_bytes = 0usize;
            while let Some(front) = queue.batches.front() {
                let deadline = front.created + options.linger;
                if !(front.full || flushing || deadline <= now) {
                    next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                    break;
                }
                let size = front.builder.size_bytes();
                if !batches.is_empty()
                    && (batches.len() >= options.batches_per_request_max
                        || request_bytes + size > options.request_bytes_max)
                {
                    break;
                }
                request_bytes += size;
                queue.last_batch_bytes = size;
                if let Some(batch) = queue.batches.pop_front() {
                    sticky.batch_sent(key.0.as_ref(), key.1, batch.partitions);
                    batches.push(batch);
                }
            }
            if !batches.is_empty() {
                queue.in_flight += 1;
                debug_assert!(queue.in_flight <= options.in_flight_per_partition_max);
                ready.push(Drained { key: key.clone(), batches });
            }
        }
        (ready, next_deadline)
    }

    /// A request for `key` finished and its `records` are resolved: free its in-flight slot
    /// and its `memory`, and wake the sender (and flushers once nothing is outstanding).
    pub fn request_done(&self, key: &(T, u32), records: usize, memory: u64) {
        {
            let mut queues = self.queues.borrow_mut();
            if let Some(queue) = queues.get_mut(key) {
                queue.in_flight = queue.in_flight.saturating_sub(1);
                if queue.in_flight == 0 && queue.batches.is_empty() {
                    queues.remove(key);
                }
            }
        }
        self.memory.signal(memory);
        let outstanding = self.outstanding.get().saturating_sub(records);
        self.outstanding.set(outstanding);
        if outstanding == 0 {
            self.idle.notify(usize::MAX);
        }
        self.wake.ring();
    }

    /// Makes every batch ready until [`Accumulator::flush_end`]; wakes the sender.
    pub fn flush_begin(&self) {
        self.flushing.set(self.flushing.get() + 1);
        self.wake.ring();
    }

    pub fn flush_end(&self) {
        debug_assert!(self.flushing.get() > 0);
        self.flushing.set(self.flushing.get().saturating_sub(1));
    }

    /// Sends every buffered record now and waits until all records pushed so far (and any
    /// pushed meanwhile) are resolved.
    pub async fn flush(&self) {
        self.flush_begin();
        loop {
            let idle = self.idle.listen();
            if self.outstanding.get() == 0 {
                break;
            }
            idle.await;
        }
        self.flush_end();
    }

    /// Records pushed and not yet resolved.
    pub fn outstanding(&self) -> usize {
        self.outstanding.get()
    }

    /// Units of buffer memory free now.
    pub fn memory_available(&self) -> u64 {
        self.memory.available()
    }

    /// No partition has a batch queued or a request in flight.
    pub fn is_empty(&self) -> bool {
        self.queues.borrow().is_empty()
    }

    /// Per queued batch of `key`: its record count and whether it is full.
    pub fn batch_shapes(&self, key: &(T, u32)) -> Vec<(usize, bool)> {
        self.queues.borrow().get(key).map_or_else(Vec::new, |q| q.batches.iter().map(|b| (b.records, b.full)).collect())
    }

    /// The sender loop: hands ready batches to `dispatch`, else sleeps until woken or until
    /// the next lingering batch is due. Never returns; run it in a task the producer owns.
    pub async fn run(&self, mut dispatch: impl FnMut(Vec<Drained<T, A>>)) {
        loop {
            // Rings from here on (a batch or a completion while draining) end the next wait.
            self.wake.reset();
            let wake = self.wake.wait();
            let (ready, next_deadline) = self.drain_ready(Instant::now());
            if !ready.is_empty() {
                dispatch(ready);
                futures_lite::future::yield_now().await;
                continue;
            }
            match next_deadline {
                Some(deadline) => {
                    let sleep = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
                    futures_lite::future::or(wake, sleep).await;
                }
                None => wake.await,
            }
        }
    }
}

/// Wakes the one sender task of an accumulator (one executor, so no atomics): a flag and the
/// sender's waker. An `event_listener::Event` cost a listener allocation per wait and atomic
/// operations per notify — rung on every new batch, ~2 % of the load generator's CPU at 1 000
/// partitions.
#[derive(Default)]
struct Doorbell {
    rung: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Doorbell {
    fn ring(&self) {
        self.rung.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn reset(&self) {
        self.rung.set(false);
    }

    /// Resolves once the bell has rung since the last `reset` (at once if it already has).
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        futures_lite::future::poll_fn(move |cx| {
            if self.rung.get() {
                return Poll::Ready(());
            }
            let mut waker = self.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// Upper bound on a record's encoded size: its fields plus the varints around them.
pub fn record_bytes_estimate(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&[u8], Option<&[u8]>)]) -> usize {
    const RECORD_OVERHEAD_BYTES: usize = 32; // length, attributes, deltas, field lengths
    const HEADER_OVERHEAD_BYTES: usize = 10;
    let fields = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
    let headers: usize = headers.iter().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + HEADER_OVERHEAD_BYTES).sum();
    fields + headers + RECORD_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accumulator(in_flight_per_partition_max: usize, batches_per_request_max: usize) -> Accumulator<String, Vec<u8>> {
        Accumulator::new(AccumulatorOptions {
            linger: Duration::from_secs(1_000),
            batch_bytes: 300,
            buffer_bytes: 1 << 20,
            in_flight_per_partition_max,
            batches_per_request_max,
            request_bytes_max: 1 << 20,
        })
    }

    /// Pushes `records` 50-byte records into partition 0 of "t".
    fn push_many(acc: &Accumulator<String, Vec<u8>>, records: u8) {
        let value = [7u8; 50];
        for i in 0..records {
            let estimate = record_bytes_estimate(None, Some(&value), &[]);
            acc.push(("t".to_owned(), 0), 1, estimate as u64, estimate, 512, |builder, acks| {
                builder.push(None, Some(&value), 5, &[]);
                acks.push(i);
            });
        }
    }

    fn drained_batches(acc: &Accumulator<String, Vec<u8>>) -> Vec<usize> {
        acc.drain_ready(Instant::now()).0.iter().map(|d| d.batches.len()).collect()
    }

    #[test]
    fn batches_per_request_and_in_flight_bounds_are_parameters() {
        // Three batches of three records (the last one lingering), flushed.
        let acc = accumulator(2, 1);
        push_many(&acc, 9);
        assert_eq!(acc.batch_shapes(&("t".to_owned(), 0)), vec![(3, true), (3, true), (3, false)]);
        acc.flush_begin();
        // One batch per request, two requests in flight, then nothing until one completes.
        assert_eq!(drained_batches(&acc), vec![1]);
        assert_eq!(drained_batches(&acc), vec![1]);
        assert_eq!(drained_batches(&acc), Vec::<usize>::new());
        acc.request_done(&("t".to_owned(), 0), 3, 0);
        assert_eq!(drained_batches(&acc), vec![1]);
        assert_eq!(acc.outstanding(), 6);

        // Unbounded batches per request: one request takes every ready batch.
        let acc = accumulator(1, usize::MAX);
        push_many(&acc, 9);
        acc.flush_begin();
        assert_eq!(drained_batches(&acc), vec![3]);
        assert!(!acc.is_empty());
        acc.request_done(&("t".to_owned(), 0), 9, 0);
        assert_eq!(acc.outstanding(), 0);
        assert!(acc.is_empty());
    }
}
