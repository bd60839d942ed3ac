//! A batching Kafka producer with the native producer's knobs (`server::client::Producer`):
//! records go into their partition's open RecordBatch v2 (`engine::batch::BatchBuilder`); a
//! batch is ready once it reaches `batch_bytes`, `linger_ms` after its first record, or on
//! `flush`. A sender task groups ready batches by partition leader into one Produce request
//! per broker (several partitions, split at `REQUEST_BYTES_MAX`) and resolves each record's
//! ack from its partition's answer.
//!
//! Bounds: buffered and in-flight records hold units of a `buffer_bytes` semaphore, so `send`
//! waits when it is full; a partition has one request in flight (its records are stored in
//! send order); a request carries one batch per partition (Kafka refuses more with v3+).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::batch::BatchBuilder;
use engine::limits::{BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX};
use futures_channel::oneshot;
use glommio::sync::Semaphore;
use glommio::Task;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use server::client::partitioner::{partition_for_key, StickyPartitioner};

use super::cluster::{topic_name, Cluster, REQUEST_TIMEOUT};
use super::error::{codes, KafkaError};

/// Largest Produce request (all its partitions' batches), as the native producer.
pub const REQUEST_BYTES_MAX: usize = 16 << 20;
/// A new batch reserves room for this many records of the first one's size (it grows past
/// that): small enough that lingering one-record batches do not each hold `batch_bytes`.
const BATCH_RECORDS_INITIAL: usize = 4;

#[derive(Debug, Clone, Copy)]
pub struct ProducerOptions {
    /// Kafka acks: 0, 1 or -1.
    pub acks: i16,
    pub linger: Duration,
    pub batch_bytes: usize,
    pub buffer_bytes: usize,
}

type AckSender = oneshot::Sender<Result<(), String>>;

/// Resolves when the record is acknowledged (or failed).
pub struct KafkaAck(oneshot::Receiver<Result<(), String>>);

impl Future for KafkaAck {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or_else(|_| Err(KafkaError::Closed.to_string())))
    }
}

type PartitionKey = (Rc<str>, u32);

struct PendingBatch {
    builder: BatchBuilder,
    acks: Vec<AckSender>,
    memory: u64,
    created: Instant,
    full: bool,
    partitions: u32,
}

#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<PendingBatch>,
    in_flight: bool,
}

struct Inner {
    cluster: Rc<Cluster>,
    options: ProducerOptions,
    queues: RefCell<HashMap<PartitionKey, PartitionQueue>>,
    sticky: RefCell<StickyPartitioner>,
    /// Topic names shared by every batch key (no allocation per record).
    names: RefCell<HashMap<String, Rc<str>>>,
    memory: Semaphore,
    outstanding: Cell<usize>,
    flushing: Cell<usize>,
    wake: event_listener::Event,
    idle: event_listener::Event,
}

pub struct KafkaProducer {
    inner: Rc<Inner>,
    _sender: Task<()>,
}

/// One record to add.
pub struct NewRecord<'a> {
    pub topic: &'a str,
    pub partition: Option<u32>,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    pub timestamp_ms: i64,
}

impl KafkaProducer {
    pub fn new(cluster: Rc<Cluster>, options: ProducerOptions) -> KafkaProducer {
        let options = ProducerOptions {
            batch_bytes: options.batch_bytes.clamp(BATCH_HEADER_BYTES + 1, BATCH_SIZE_BYTES_MAX as usize),
            buffer_bytes: options.buffer_bytes.max(1),
            ..options
        };
        let inner = Rc::new(Inner {
            cluster,
            memory: Semaphore::new(options.buffer_bytes as u64),
            options,
            queues: RefCell::new(HashMap::new()),
            sticky: RefCell::new(StickyPartitioner::new()),
            names: RefCell::new(HashMap::new()),
            outstanding: Cell::new(0),
            flushing: Cell::new(0),
            wake: event_listener::Event::new(),
            idle: event_listener::Event::new(),
        });
        let sender = glommio::spawn_local(run_sender(inner.clone()));
        KafkaProducer { inner, _sender: sender }
    }

    /// Adds a record to its partition's batch (after waiting for buffer space).
    pub async fn send(&self, record: NewRecord<'_>) -> Result<KafkaAck, KafkaError> {
        let inner = &self.inner;
        let estimate = record_bytes_estimate(&record);
        if estimate + BATCH_HEADER_BYTES > BATCH_SIZE_BYTES_MAX as usize {
            return Err(KafkaError::Record(format!("record of about {estimate} bytes exceeds a batch")));
        }
        let partitions = inner.cluster.leaders(record.topic).await?.len() as u32;
        if partitions == 0 || record.partition.is_some_and(|p| p >= partitions) {
            return Err(KafkaError::broker(codes::UNKNOWN_TOPIC_OR_PARTITION, record.topic.to_owned()));
        }
        let units = (estimate as u64).min(inner.options.buffer_bytes as u64);
        inner.memory.acquire(units).await.map_err(|_| KafkaError::Closed)?;
        // No `.await` from here on: choosing the batch and pushing are one step.
        Ok(inner.push(record, partitions, units, estimate))
    }

    /// Sends everything buffered and waits until every record so far is resolved.
    pub async fn flush(&self) {
        let inner = &self.inner;
        inner.flushing.set(inner.flushing.get() + 1);
        inner.wake.notify(usize::MAX);
        loop {
            let idle = inner.idle.listen();
            if inner.outstanding.get() == 0 {
                break;
            }
            idle.await;
        }
        inner.flushing.set(inner.flushing.get() - 1);
    }
}

fn record_bytes_estimate(record: &NewRecord<'_>) -> usize {
    const RECORD_OVERHEAD_BYTES: usize = 32; // length, attributes, deltas, field lengths
    const HEADER_OVERHEAD_BYTES: usize = 10;
    let headers: usize =
        record.headers.iter().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + HEADER_OVERHEAD_BYTES).sum();
    record.key.map_or(0, <[u8]>::len) + record.value.len() + headers + RECORD_OVERHEAD_BYTES
}

/// A partition's batch taken for a request.
struct Drained {
    key: PartitionKey,
    batch: PendingBatch,
}

impl Inner {
    fn push(&self, record: NewRecord<'_>, partitions: u32, units: u64, estimate: usize) -> KafkaAck {
        let partition = match (record.partition, record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => self.sticky.borrow_mut().partition(record.topic, partitions),
        };
        let name = {
            let mut names = self.names.borrow_mut();
            match names.get(record.topic) {
                Some(name) => name.clone(),
                None => names.entry(record.topic.to_owned()).or_insert_with(|| Rc::from(record.topic)).clone(),
            }
        };
        let batch_bytes = self.options.batch_bytes;
        let mut queues = self.queues.borrow_mut();
        let queue = queues.entry((name, partition)).or_default();
        let fits = queue.batches.back().is_some_and(|b| !b.full && b.builder.size_bytes() + estimate <= batch_bytes);
        if !fits {
            if let Some(open) = queue.batches.back_mut() {
                open.full = true;
            }
            queue.batches.push_back(PendingBatch {
                builder: BatchBuilder::with_capacity(
                    batch_bytes.min(BATCH_HEADER_BYTES + BATCH_RECORDS_INITIAL * estimate),
                ),
                acks: Vec::new(),
                memory: 0,
                created: Instant::now(),
                full: false,
                partitions,
            });
        }
        let (tx, rx) = oneshot::channel();
        // An older batch waiting means it is full: the sender may take it now.
        let older_waiting = queue.batches.len() > 1;
        let ready_now = match queue.batches.back_mut() {
            Some(batch) => {
                batch.builder.push(record.key, Some(record.value), record.timestamp_ms, record.headers);
                batch.acks.push(tx);
                batch.memory += units;
                if batch.builder.size_bytes() >= batch_bytes {
                    batch.full = true;
                }
                batch.full || older_waiting
            }
            None => {
                // Not reached: a batch was pushed above when none could take the record.
                self.memory.signal(units);
                let _ = tx.send(Err("no open batch".to_owned()));
                return KafkaAck(rx);
            }
        };
        drop(queues);
        self.outstanding.set(self.outstanding.get() + 1);
        if ready_now {
            self.wake.notify(1);
        }
        KafkaAck(rx)
    }

    /// Takes the first batch of every partition that is ready and has no request in flight.
    /// Also returns when the next lingering batch becomes due.
    fn drain_ready(&self, now: Instant) -> (Vec<Drained>, Option<Instant>) {
        let linger = self.options.linger;
        let flushing = self.flushing.get() > 0;
        let mut ready = Vec::new();
        let mut next_deadline: Option<Instant> = None;
        let mut queues = self.queues.borrow_mut();
        let mut sticky = self.sticky.borrow_mut();
        for (key, queue) in queues.iter_mut() {
            if queue.in_flight {
                continue;
            }
            let Some(front) = queue.batches.front() else {
                continue;
            };
            let due = front.created + linger;
            if !(front.full || flushing || due <= now) {
                next_deadline = Some(next_deadline.map_or(due, |d| d.min(due)));
                continue;
            }
            if let Some(batch) = queue.batches.pop_front() {
                sticky.batch_sent(&key.0, key.1, batch.partitions);
                queue.in_flight = true;
                ready.push(Drained { key: key.clone(), batch });
            }
        }
        (ready, next_deadline)
    }

    /// A partition's request finished and its records are resolved.
    fn request_done(&self, key: &PartitionKey, records: usize, memory: u64) {
        {
            let mut queues = self.queues.borrow_mut();
            if let Some(queue) = queues.get_mut(key) {
                queue.in_flight = false;
                if queue.batches.is_empty() {
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
        self.wake.notify(usize::MAX);
    }
}

async fn run_sender(inner: Rc<Inner>) {
    loop {
        let wake = inner.wake.listen();
        let (ready, next_deadline) = inner.drain_ready(Instant::now());
        if !ready.is_empty() {
            dispatch(&inner, ready);
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

/// One partition's part of a request.
struct Part {
    key: PartitionKey,
    records: Bytes,
    acks: Vec<AckSender>,
    memory: u64,
}

/// Builds the drained batches and starts one request per leader (split at
/// `REQUEST_BYTES_MAX`), each in its own task.
fn dispatch(inner: &Rc<Inner>, ready: Vec<Drained>) {
    let mut by_topic: HashMap<Rc<str>, Vec<Part>> = HashMap::new();
    for Drained { key, batch } in ready {
        let (records, memory) = (batch.acks.len(), batch.memory);
        match batch.builder.build() {
            Ok(bytes) => {
                by_topic.entry(key.0.clone()).or_default().push(Part { key, records: bytes, acks: batch.acks, memory })
            }
            Err(e) => {
                for ack in batch.acks {
                    let _ = ack.send(Err(format!("cannot build a batch: {e}")));
                }
                inner.request_done(&key, records, memory);
            }
        }
    }
    for (topic, parts) in by_topic {
        let inner = inner.clone();
        glommio::spawn_local(async move {
            match inner.cluster.leaders(&topic).await {
                Ok(leaders) => send_by_leader(&inner, &leaders, parts),
                Err(e) => {
                    for part in parts {
                        fail(&inner, part, &e);
                    }
                }
            }
        })
        .detach();
    }
}

fn send_by_leader(inner: &Rc<Inner>, leaders: &[i32], parts: Vec<Part>) {
    let mut by_node: HashMap<i32, Vec<Part>> = HashMap::new();
    for part in parts {
        match leaders.get(part.key.1 as usize) {
            Some(&node) => by_node.entry(node).or_default().push(part),
            None => {
                let error =
                    KafkaError::broker(codes::UNKNOWN_TOPIC_OR_PARTITION, format!("{}-{}", part.key.0, part.key.1));
                fail(inner, part, &error);
            }
        }
    }
    for (node, parts) in by_node {
        let mut request: Vec<Part> = Vec::new();
        let mut request_bytes = 0;
        for part in parts {
            if !request.is_empty() && request_bytes + part.records.len() > REQUEST_BYTES_MAX {
                glommio::spawn_local(send_request(inner.clone(), node, std::mem::take(&mut request))).detach();
                request_bytes = 0;
            }
            request_bytes += part.records.len();
            request.push(part);
        }
        if !request.is_empty() {
            glommio::spawn_local(send_request(inner.clone(), node, request)).detach();
        }
    }
}

async fn send_request(inner: Rc<Inner>, node: i32, parts: Vec<Part>) {
    let acks = inner.options.acks;
    // All parts of a request are of one topic (see `dispatch`).
    let Some(topic) = parts.first().map(|p| p.key.0.clone()) else {
        return;
    };
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(REQUEST_TIMEOUT.as_millis() as i32)
        .with_topic_data(vec![TopicProduceData::default().with_name(topic_name(&topic)).with_partition_data(
            parts
                .iter()
                .map(|p| {
                    PartitionProduceData::default().with_index(p.key.1 as i32).with_records(Some(p.records.clone()))
                })
                .collect(),
        )]);
    let version = inner.cluster.versions.produce;
    let result = async {
        let connection = inner.cluster.connection(node).await?;
        if acks == 0 {
            connection.send_no_response(&request, version).await.map(|()| None)
        } else {
            connection.call(&request, version).await.map(Some)
        }
    }
    .await;
    let answer = match result {
        Ok(answer) => answer,
        Err(error) => {
            if error.is_stale_metadata() {
                inner.cluster.invalidate(&topic);
            }
            for part in parts {
                fail(&inner, part, &error);
            }
            return;
        }
    };
    let Some(answer) = answer else {
        for part in parts {
            complete(&inner, part);
        }
        return;
    };
    // Each partition's error code, by index (the answer may order them differently).
    let codes_by_partition: HashMap<i32, i16> = answer
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == &*topic)
        .flat_map(|t| t.partition_responses.iter().map(|p| (p.index, p.error_code)))
        .collect();
    for part in parts {
        match codes_by_partition.get(&(part.key.1 as i32)) {
            Some(&codes::NONE) => complete(&inner, part),
            Some(&code) => {
                let error = KafkaError::broker(code, format!("produce to {}-{}", part.key.0, part.key.1));
                if error.is_stale_metadata() {
                    inner.cluster.invalidate(&topic);
                }
                fail(&inner, part, &error);
            }
            None => {
                let error = KafkaError::Metadata(format!("no produce answer for {}-{}", part.key.0, part.key.1));
                fail(&inner, part, &error);
            }
        }
    }
}

fn complete(inner: &Inner, part: Part) {
    let records = part.acks.len();
    for ack in part.acks {
        let _ = ack.send(Ok(()));
    }
    inner.request_done(&part.key, records, part.memory);
}

fn fail(inner: &Inner, part: Part, error: &KafkaError) {
    let records = part.acks.len();
    let text = error.to_string();
    for ack in part.acks {
        let _ = ack.send(Err(text.clone()));
    }
    inner.request_done(&part.key, records, part.memory);
}
