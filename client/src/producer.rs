//! [`Producer`]: batches records per partition and sends them, like Kafka's producer.
//!
//! Each partition has a queue of batches; records go into the newest one. A batch is ready when
//! it reaches `batch_bytes` (a newer batch was started), `linger_ms` after its first record, or
//! when [`Producer::flush`] runs. A sender task drains ready batches, one Produce request per
//! owning shard (several partitions and batches per request), and resolves each record's
//! [`Delivery`] with its partition and offset (the batch's base offset + its index in the
//! batch).
//!
//! Bounds: buffered records hold units of a `buffer_bytes` semaphore until their request
//! completes, so `enqueue` waits when the buffer is full; a partition has at most
//! `in_flight_per_partition_max` requests in flight (default 1, so its records are appended in
//! the order they were sent).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use format::limits::{BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX};
use glommio::Task;

use super::accumulator::{record_bytes_estimate, Accumulator, AccumulatorOptions, Drained};
use super::cluster::{Client, Route};
use super::delivery::BatchAcks;
pub use super::delivery::Delivery;
use super::error::ClientError;
use protocol::messages::{Acks, ErrorCode, ProducePartition, ProducePartitionResult, Request, Response};

#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub acks: Acks,
    /// How long a batch waits for more records after its first one (Kafka's `linger.ms`).
    pub linger_ms: u64,
    /// A batch is sent once it holds this many bytes (Kafka's `batch.size`).
    pub batch_bytes: usize,
    /// Record bytes buffered or in flight before `enqueue` waits (Kafka's `buffer.memory`).
    pub buffer_bytes: usize,
    /// Produce requests in flight per partition. 1 keeps a partition's records in send order.
    pub in_flight_per_partition_max: usize,
    /// Largest Produce request (all its batches); a single larger batch still goes alone.
    pub request_bytes_max: usize,
    /// Times a batch is sent again after a retriable failure (a cluster's leader moved, too
    /// few in-sync replicas, a lost connection), each after a metadata refresh (Kafka's
    /// `retries`). A retried batch may be appended twice.
    pub retries: u32,
    /// Wait before the first retry, doubling up to `RETRY_BACKOFF_MS_MAX` (Kafka's
    /// `retry.backoff.ms`).
    pub retry_backoff_ms: u64,
}

/// The longest wait between two retries of a batch.
pub const RETRY_BACKOFF_MS_MAX: u64 = 1_000;

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            acks: Acks::Leader,
            linger_ms: 5,
            batch_bytes: 256 << 10,
            buffer_bytes: 32 << 20,
            in_flight_per_partition_max: 1,
            request_bytes_max: 16 << 20,
            retries: 10,
            retry_backoff_ms: 100,
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAck {
    pub partition: u32,
    /// `None` with `Acks::None` (the broker does not answer).
    pub offset: Option<u64>,
}

type PartitionKey = (Rc<str>, u32);

struct Inner {
    client: Rc<Client>,
    options: ProducerOptions,
    accumulator: Accumulator<Rc<str>, BatchAcks>,
    closed: Cell<bool>,
    /// The topic of the last record pushed, shared by the keys of its partitions' queues: a
    /// producer sending to one topic (the common case) does not allocate its name per record.
    last_topic: RefCell<Option<Rc<str>>>,
}

/// A batching producer. `!Send`; lives on one executor.
pub struct Producer {
    inner: Rc<Inner>,
    _sender: Task<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

impl Producer {
    /// Starts the producer's sender task on the current executor.
    pub fn new(client: Rc<Client>, options: ProducerOptions) -> Producer {
        let options = ProducerOptions {
            batch_bytes: options.batch_bytes.clamp(BATCH_HEADER_BYTES + 1, BATCH_SIZE_BYTES_MAX as usize),
            buffer_bytes: options.buffer_bytes.max(1),
            in_flight_per_partition_max: options.in_flight_per_partition_max.max(1),
            request_bytes_max: options.request_bytes_max.max(1),
            ..options
        };
        let inner = Rc::new(Inner {
            client,
            accumulator: Accumulator::new(accumulator_options(&options)),
            options,
            closed: Cell::new(false),
            last_topic: RefCell::new(None),
        });
        let sender = glommio::spawn_local({
            let inner = inner.clone();
            async move { inner.accumulator.run(|ready| dispatch(&inner, ready)).await }
        });
        Producer { inner, _sender: sender }
    }

    pub fn options(&self) -> &ProducerOptions {
        &self.inner.options
    }

    pub fn client(&self) -> &Rc<Client> {
        &self.inner.client
    }

    /// Sends one record and waits for its acknowledgement. The partition comes from the key
    /// (murmur2, as Kafka), or the sticky partitioner without a key. `timestamp_ms`
    /// defaults to now.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp_ms: Option<i64>,
    ) -> Result<RecordAck, ClientError> {
        self.enqueue(topic, None, key, value, headers, timestamp_ms).await?.await
    }

    /// Like [`Producer::send`], to an explicit partition.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp_ms: Option<i64>,
    ) -> Result<RecordAck, ClientError> {
        self.enqueue(topic, Some(partition), key, value, headers, timestamp_ms).await?.await
    }

    /// Adds a record to its partition's batch and returns at once (after waiting for buffer
    /// space) with a [`Delivery`] that resolves when the record is acknowledged: call this in
    /// a loop to pipeline many records. `partition: None` picks one as [`Producer::send`].
    pub async fn enqueue(
        &self,
        topic: &str,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp_ms: Option<i64>,
    ) -> Result<Delivery, ClientError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(ClientError::Closed);
        }
        let estimate = record_bytes_estimate(key, value, headers);
        if estimate + BATCH_HEADER_BYTES > BATCH_SIZE_BYTES_MAX as usize {
            return Err(ClientError::InvalidArgument(format!(
                "record of about {estimate} bytes exceeds the batch limit of {BATCH_SIZE_BYTES_MAX} bytes"
            )));
        }
        let partitions = inner.client.partition_count(topic).await?;
        if let Some(p) = partition {
            if p >= partitions {
                return Err(ClientError::broker(ErrorCode::UnknownTopicOrPartition, format!("{topic}-{p}")));
            }
        }
        let units = (estimate as u64).min(inner.options.buffer_bytes as u64);
        if !inner.accumulator.acquire(units).await {
            return Err(ClientError::Closed);
        }
        if inner.closed.get() {
            inner.accumulator.release(units);
            return Err(ClientError::Closed);
        }
        // No `.await` from here on: the choice of batch and the push are one step.
        let record = NewRecord { topic, partition, key, value, headers, timestamp_ms };
        Ok(inner.push(record, partitions, units))
    }

    /// Sends every buffered record now and waits until all records enqueued so far (and any
    /// enqueued meanwhile) are acknowledged or failed.
    pub async fn flush(&self) {
        self.inner.accumulator.flush().await;
    }

    /// Flushes, then refuses further records.
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.set(true);
    }

    /// Records enqueued and not yet acknowledged or failed.
    pub fn outstanding(&self) -> usize {
        self.inner.accumulator.outstanding()
    }
}

/// The accumulator's bounds from the producer's options.
fn accumulator_options(options: &ProducerOptions) -> AccumulatorOptions {
    AccumulatorOptions {
        linger: Duration::from_millis(options.linger_ms),
        batch_bytes: options.batch_bytes,
        buffer_bytes: options.buffer_bytes,
        in_flight_per_partition_max: options.in_flight_per_partition_max,
        batches_per_request_max: usize::MAX,
        request_bytes_max: options.request_bytes_max,
    }
}

/// A record on its way into a batch.
struct NewRecord<'a> {
    topic: &'a str,
    partition: Option<u32>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [(&'a [u8], Option<&'a [u8]>)],
    timestamp_ms: Option<i64>,
}

impl Inner {
    /// Adds a record (its `units` of buffer memory already taken) to its partition's open
    /// batch, starting a new batch when the open one cannot take it.
    fn push(&self, record: NewRecord<'_>, partitions: u32, units: u64) -> Delivery {
        let NewRecord { topic, partition, key, value, headers, timestamp_ms } = record;
        let estimate = record_bytes_estimate(key, value, headers);
        let partition = self.accumulator.partition_for(topic, partition, key, partitions);
        let timestamp = timestamp_ms.unwrap_or_else(super::now_ms);
        let capacity = self.options.batch_bytes.min(estimate + BATCH_HEADER_BYTES).max(4096);
        let topic = self.topic_name(topic);
        self.accumulator.push((topic, partition), partitions, units, estimate, capacity, |builder, acks| {
            builder.push(key, value, timestamp, headers);
            acks.next_delivery()
        })
    }

    /// `topic` as a shared name, allocated only when it differs from the last record's.
    fn topic_name(&self, topic: &str) -> Rc<str> {
        let mut last = self.last_topic.borrow_mut();
        match last.as_ref() {
            Some(name) if **name == *topic => name.clone(),
            _ => last.insert(Rc::from(topic)).clone(),
        }
    }

    fn request_done(&self, key: &PartitionKey, records: usize, memory: u64) {
        self.accumulator.request_done(key, records, memory);
    }
}

/// One partition's part of a request: what to send and whom to tell.
struct Outgoing {
    key: PartitionKey,
    /// Per batch: its record acks.
    acks: Vec<BatchAcks>,
    memory: u64,
    /// Records of this partition already failed (their batch could not be built).
    failed_records: usize,
    /// Sends so far that failed with a retriable error.
    retried: u32,
}

impl Outgoing {
    fn records(&self) -> usize {
        self.failed_records + self.acks.iter().map(BatchAcks::len).sum::<usize>()
    }
}

/// Builds the drained batches and sends them, one request per route (split at
/// `request_bytes_max`), each in its own task.
fn dispatch(inner: &Rc<Inner>, ready: Vec<Drained<Rc<str>, BatchAcks>>) {
    let mut parts: Vec<(ProducePartition, Outgoing)> = Vec::with_capacity(ready.len());
    for drained in ready {
        let mut batches = Vec::with_capacity(drained.batches.len());
        let mut acks = Vec::with_capacity(drained.batches.len());
        let mut memory = 0;
        let mut records = 0;
        for batch in drained.batches {
            memory += batch.memory;
            records += batch.records;
            match batch.builder.build() {
                Ok(bytes) => {
                    batches.push(bytes);
                    acks.push(batch.acks);
                }
                Err(e) => {
                    let error = ClientError::InvalidArgument(format!("cannot build a batch: {e}"));
                    batch.acks.resolve(Err(error));
                }
            }
        }
        if batches.is_empty() {
            inner.request_done(&drained.key, records, memory);
            continue;
        }
        let failed_records = records - acks.iter().map(BatchAcks::len).sum::<usize>();
        let partition = ProducePartition { topic: drained.key.0.to_string(), partition: drained.key.1, batches };
        parts.push((partition, Outgoing { key: drained.key, acks, memory, failed_records, retried: 0 }));
    }
    send_grouped(inner, parts);
}

/// Sends `parts` in one request per route (split at `request_bytes_max`), each in its own
/// task.
fn send_grouped(inner: &Rc<Inner>, parts: Vec<(ProducePartition, Outgoing)>) {
    for (route, _, group) in inner.client.group_by_route(parts, |(p, _)| (&p.topic, p.partition)) {
        let mut request: Vec<(ProducePartition, Outgoing)> = Vec::new();
        let mut request_bytes = 0usize;
        for part in group {
            let size: usize = part.0.batches.iter().map(Bytes::len).sum();
            if !request.is_empty() && request_bytes + size > inner.options.request_bytes_max {
                glommio::spawn_local(send_request(inner.clone(), route, std::mem::take(&mut request))).detach();
                request_bytes = 0;
            }
            request_bytes += size;
            request.push(part);
        }
        if !request.is_empty() {
            glommio::spawn_local(send_request(inner.clone(), route, request)).detach();
        }
    }
}

async fn send_request(inner: Rc<Inner>, route: Route, parts: Vec<(ProducePartition, Outgoing)>) {
    let acks = inner.options.acks;
    let (partitions, outgoing): (Vec<ProducePartition>, Vec<Outgoing>) = parts.into_iter().unzip();
    // Kept for a retry (the batches are `Bytes`: no copy).
    let sent = partitions.clone();
    let timeout_ms = inner.client.options().request_timeout_ms.min(u64::from(u32::MAX)) as u32;
    let request = Request::Produce { acks, timeout_ms, partitions };
    let result: Result<Option<Vec<ProducePartitionResult>>, ClientError> = async {
        let connection = inner.client.connection(route).await?;
        if acks == Acks::None {
            connection.send_no_response(request).await.map(|()| None)
        } else {
            match connection.call(request).await? {
                Response::Produce { partitions } if partitions.len() == outgoing.len() => Ok(Some(partitions)),
                Response::Status { error, message } if !error.is_ok() => Err(ClientError::broker(error, message)),
                other => {
                    Err(ClientError::protocol(connection.addr(), format!("unexpected Produce response {other:?}")))
                }
            }
        }
    }
    .await;
    let mut retry = Vec::new();
    match result {
        Ok(results) => {
            let mut results = results.map(Vec::into_iter);
            for (out, partition) in outgoing.into_iter().zip(sent) {
                let result = results.as_mut().and_then(Iterator::next);
                let retriable = result
                    .as_ref()
                    .is_some_and(|r| !r.error.is_ok() && ClientError::broker(r.error, "").is_retriable());
                if retriable && out.retried < inner.options.retries {
                    retry.push((partition, out));
                    continue;
                }
                complete(&inner, out, result.as_ref());
            }
        }
        Err(error) => {
            for (out, partition) in outgoing.into_iter().zip(sent) {
                if error.is_retriable() && out.retried < inner.options.retries {
                    retry.push((partition, out));
                    continue;
                }
                fail(&inner, out, &error);
            }
        }
    }
    if !retry.is_empty() {
        resend(inner, retry).await;
    }
}

/// Sends batches again after a retriable failure: waits (backing off), refreshes the metadata
/// (the partition's leader may have moved), and routes them anew. Their partitions' next
/// batches wait meanwhile (`request_done` is not called), so order is kept.
async fn resend(inner: Rc<Inner>, mut parts: Vec<(ProducePartition, Outgoing)>) {
    let retried = parts.iter().map(|(_, out)| out.retried).max().unwrap_or(0);
    let backoff = inner.options.retry_backoff_ms.saturating_mul(1 << retried.min(16)).min(RETRY_BACKOFF_MS_MAX);
    glommio::timer::sleep(Duration::from_millis(backoff)).await;
    if let Err(e) = inner.client.refresh_metadata().await {
        tracing::debug!(error = %e, "metadata refresh before a retry failed");
    }
    for (_, out) in &mut parts {
        out.retried += 1;
    }
    send_grouped(&inner, parts);
}

/// Resolves one partition's records from its result (`None`: acks=none, no offsets).
fn complete(inner: &Inner, out: Outgoing, result: Option<&ProducePartitionResult>) {
    let partition = out.key.1;
    let records = out.records();
    let Some(result) = result else {
        for acks in out.acks {
            acks.resolve(Ok((partition, None)));
        }
        inner.request_done(&out.key, records, out.memory);
        return;
    };
    if !result.error.is_ok() {
        let message =
            if result.message.is_empty() { format!("{}-{}", out.key.0, partition) } else { result.message.clone() };
        return fail(inner, out, &ClientError::broker(result.error, message));
    }
    if result.base_offsets.len() != out.acks.len() {
        let reason = format!(
            "{}-{partition}: {} base offsets for {} batches",
            out.key.0,
            result.base_offsets.len(),
            out.acks.len()
        );
        return fail(inner, out, &ClientError::protocol(inner.client.bootstrap(), reason));
    }
    for (base, acks) in result.base_offsets.iter().zip(out.acks) {
        acks.resolve(Ok((partition, Some(*base))));
    }
    inner.request_done(&out.key, records, out.memory);
}

fn fail(inner: &Inner, out: Outgoing, error: &ClientError) {
    let records = out.records();
    for acks in out.acks {
        acks.resolve(Err(error.clone()));
    }
    inner.request_done(&out.key, records, out.memory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClientOptions;
    use crate::partitioner::partition_for_key;
    use format::batch::Batch;
    use protocol::messages::{PartitionMetadata, ShardInfo, TopicMetadata};
    use std::time::Instant;

    fn inner(options: ProducerOptions) -> Inner {
        let topic = TopicMetadata {
            name: "t".to_owned(),
            error: ErrorCode::None,
            id: 1,
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 1 << 20,
            durability: "sync".to_owned(),
            partitions: (0..4).map(PartitionMetadata::single).collect(),
        };
        let shards = [ShardInfo { shard: 0, address: "127.0.0.1:1".to_owned() }];
        let client = Client::offline("127.0.0.1:1", ClientOptions::default(), &shards, &[topic]);
        Inner {
            client: Rc::new(client),
            accumulator: Accumulator::new(accumulator_options(&options)),
            options,
            closed: Cell::new(false),
            last_topic: RefCell::new(None),
        }
    }

    fn push(inner: &Inner, partition: Option<u32>, key: Option<&[u8]>, value: &[u8]) -> Delivery {
        let record = NewRecord { topic: "t", partition, key, value: Some(value), headers: &[], timestamp_ms: Some(5) };
        inner.push(record, 4, record_bytes_estimate(key, Some(value), &[]) as u64)
    }

    fn batch_sizes(inner: &Inner, partition: u32) -> Vec<(usize, bool)> {
        inner.accumulator.batch_shapes(&("t".into(), partition))
    }

    #[test]
    fn records_of_a_partition_share_a_batch_until_it_is_full() {
        let inner = inner(ProducerOptions { batch_bytes: 300, ..ProducerOptions::default() });
        let value = [7u8; 50];
        let _d: Vec<Delivery> = (0..3).map(|_| push(&inner, Some(1), None, &value)).collect();
        assert_eq!(batch_sizes(&inner, 1), vec![(3, false)]);
        // The fourth does not fit: the first batch is closed, a second one opened.
        let _d4 = push(&inner, Some(1), None, &value);
        assert_eq!(batch_sizes(&inner, 1), vec![(3, true), (1, false)]);
        assert_eq!(inner.accumulator.outstanding(), 4);
        // Keyed records go where murmur2 says.
        let _k = push(&inner, None, Some(b"21"), &value);
        // toPositive(murmur2("21")) = 1173551340, and 1173551340 % 4 = 0.
        assert_eq!(partition_for_key(b"21", 4), 0);
        assert_eq!(batch_sizes(&inner, 0), vec![(1, false)]);
    }

    #[test]
    fn drain_takes_full_or_lingered_batches_one_request_per_partition() {
        let inner = inner(ProducerOptions { batch_bytes: 300, linger_ms: 1_000, ..ProducerOptions::default() });
        let value = [7u8; 50];
        let _d: Vec<Delivery> = (0..4).map(|_| push(&inner, Some(1), None, &value)).collect();
        let _e = push(&inner, Some(2), None, &value);
        let now = Instant::now();
        // Partition 1's first batch is full; its second and partition 2's linger.
        let (ready, deadline) = inner.accumulator.drain_ready(now);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].key, ("t".into(), 1));
        assert_eq!(ready[0].batches.len(), 1);
        assert!(deadline.is_some_and(|d| d > now));
        // One request in flight per partition: nothing more from partition 1, even when due.
        let later = now + Duration::from_secs(2);
        let (ready2, _) = inner.accumulator.drain_ready(later);
        assert_eq!(ready2.iter().map(|d| d.key.1).collect::<Vec<_>>(), vec![2]);
        // Flushing makes everything ready at once (once the partition may send again).
        inner.request_done(&("t".into(), 1), 0, 0);
        inner.accumulator.flush_begin();
        let (ready3, _) = inner.accumulator.drain_ready(now);
        assert_eq!(ready3.iter().map(|d| (d.key.1, d.batches.len())).collect::<Vec<_>>(), vec![(1, 1)]);
    }

    #[test]
    fn acks_carry_base_offset_plus_index_and_free_memory() {
        let inner = inner(ProducerOptions { buffer_bytes: 10_000, ..ProducerOptions::default() });
        let deliveries: Vec<Delivery> = (0..3).map(|i| push(&inner, Some(0), None, &[i; 10])).collect();
        inner.accumulator.flush_begin();
        let (mut ready, _) = inner.accumulator.drain_ready(Instant::now());
        let drained = ready.pop().unwrap();
        let memory: u64 = drained.batches.iter().map(|b| b.memory).sum();
        assert!(memory > 0);
        let available = inner.accumulator.memory_available();
        let batch = drained.batches.into_iter().next().unwrap();
        let acks = batch.acks;
        let bytes = batch.builder.build().unwrap();
        assert_eq!(Batch::validate(bytes).unwrap().record_count(), 3);
        let out = Outgoing { key: drained.key, acks: vec![acks], memory, failed_records: 0, retried: 0 };
        let result = ProducePartitionResult {
            topic: "t".to_owned(),
            partition: 0,
            error: ErrorCode::None,
            message: String::new(),
            base_offsets: vec![40],
            log_end_offset: 43,
        };
        complete(&inner, out, Some(&result));
        let offsets: Vec<Option<u64>> =
            deliveries.into_iter().map(|d| futures_lite::future::block_on(d).unwrap().offset).collect();
        assert_eq!(offsets, vec![Some(40), Some(41), Some(42)]);
        assert_eq!(inner.accumulator.outstanding(), 0);
        assert_eq!(inner.accumulator.memory_available(), available + memory);
        assert!(inner.accumulator.is_empty());
    }

    #[test]
    fn a_failed_partition_fails_each_of_its_records() {
        let inner = inner(ProducerOptions::default());
        let d = push(&inner, Some(3), None, b"x");
        inner.accumulator.flush_begin();
        let (mut ready, _) = inner.accumulator.drain_ready(Instant::now());
        let drained = ready.pop().unwrap();
        let acks = drained.batches.into_iter().map(|b| b.acks).collect();
        let out = Outgoing { key: drained.key, acks, memory: 0, failed_records: 0, retried: 0 };
        let result = ProducePartitionResult {
            topic: "t".to_owned(),
            partition: 3,
            error: ErrorCode::DiskFull,
            message: String::new(),
            base_offsets: Vec::new(),
            log_end_offset: 0,
        };
        complete(&inner, out, Some(&result));
        let error = futures_lite::future::block_on(d).unwrap_err();
        assert_eq!(error.to_string(), "broker disk full: t-3");
    }
}
