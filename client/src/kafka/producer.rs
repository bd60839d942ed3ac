//! A batching Kafka producer with the native producer's knobs (`server::client::Producer`):
//! records go into their partition's open RecordBatch v2 (`format::batch::BatchBuilder`); a
//! batch is ready once it reaches `batch_bytes`, `linger_ms` after its first record, or on
//! `flush`. A sender task groups ready batches by partition leader into one Produce request
//! per broker (several partitions, split at `REQUEST_BYTES_MAX`) and resolves each record's
//! ack from its partition's answer.
//!
//! Bounds: buffered and in-flight records hold units of a `buffer_bytes` semaphore, so `send`
//! waits when it is full; a partition has one request in flight (its records are stored in
//! send order); a request carries one batch per partition (Kafka refuses more with v3+).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::accumulator::{record_bytes_estimate, Accumulator, AccumulatorOptions, Drained};
use crate::delivery::BatchAcks;
use crate::error::ClientError;
use crate::Delivery;
use bytes::Bytes;
use format::limits::{BATCH_HEADER_BYTES, BATCH_SIZE_BYTES_MAX};
use glommio::Task;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use rustc_hash::FxHashMap;

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

/// Resolves when the record is acknowledged (or failed). A batch's records share one outcome
/// (`crate::delivery`), as the native producer's do: no channel per record.
pub struct KafkaAck(Delivery);

impl KafkaAck {
    /// When the record's batch was resolved (acknowledged or failed); `None` before.
    pub fn resolved_at(&self) -> Option<Instant> {
        self.0.resolved_at()
    }
}

impl Future for KafkaAck {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    }
}

type PartitionKey = (Rc<str>, u32);

struct Inner {
    cluster: Rc<Cluster>,
    options: ProducerOptions,
    accumulator: Accumulator<Rc<str>, BatchAcks>,
    /// Topic names shared by every batch key (no allocation per record).
    names: RefCell<FxHashMap<String, Rc<str>>>,
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
        let accumulator = Accumulator::new(AccumulatorOptions {
            linger: options.linger,
            batch_bytes: options.batch_bytes,
            buffer_bytes: options.buffer_bytes,
            // One request in flight per partition keeps its records in send order.
            in_flight_per_partition_max: 1,
            // Kafka refuses more than one batch per partition in a Produce request (v3+).
            batches_per_request_max: 1,
            request_bytes_max: REQUEST_BYTES_MAX,
        });
        let inner = Rc::new(Inner { cluster, options, accumulator, names: RefCell::new(FxHashMap::default()) });
        let sender = glommio::spawn_local({
            let inner = inner.clone();
            async move { inner.accumulator.run(|ready| dispatch(&inner, ready)).await }
        });
        KafkaProducer { inner, _sender: sender }
    }

    /// Adds a record to its partition's batch (after waiting for buffer space).
    pub async fn send(&self, record: NewRecord<'_>) -> Result<KafkaAck, KafkaError> {
        let inner = &self.inner;
        let estimate = record_bytes_estimate(record.key, Some(record.value), record.headers);
        if estimate + BATCH_HEADER_BYTES > BATCH_SIZE_BYTES_MAX as usize {
            return Err(KafkaError::Record(format!("record of about {estimate} bytes exceeds a batch")));
        }
        let partitions = inner.cluster.leaders(record.topic).await?.len() as u32;
        if partitions == 0 || record.partition.is_some_and(|p| p >= partitions) {
            return Err(KafkaError::broker(codes::UNKNOWN_TOPIC_OR_PARTITION, record.topic.to_owned()));
        }
        let units = (estimate as u64).min(inner.options.buffer_bytes as u64);
        if !inner.accumulator.acquire(units).await {
            return Err(KafkaError::Closed);
        }
        // No `.await` from here on: choosing the batch and pushing are one step.
        Ok(inner.push(record, partitions, units, estimate))
    }

    /// Sends everything buffered and waits until every record so far is resolved.
    pub async fn flush(&self) {
        self.inner.accumulator.flush().await;
    }
}

impl Inner {
    fn push(&self, record: NewRecord<'_>, partitions: u32, units: u64, estimate: usize) -> KafkaAck {
        let partition = self.accumulator.partition_for(record.topic, record.partition, record.key, partitions);
        let name = {
            let mut names = self.names.borrow_mut();
            match names.get(record.topic) {
                Some(name) => name.clone(),
                None => names.entry(record.topic.to_owned()).or_insert_with(|| Rc::from(record.topic)).clone(),
            }
        };
        let capacity = self.options.batch_bytes.min(BATCH_HEADER_BYTES + BATCH_RECORDS_INITIAL * estimate);
        self.accumulator.push((name, partition), partitions, units, estimate, capacity, |builder, acks| {
            builder.push(record.key, Some(record.value), record.timestamp_ms, record.headers);
            KafkaAck(acks.next_delivery())
        })
    }

    fn request_done(&self, key: &PartitionKey, records: usize, memory: u64) {
        self.accumulator.request_done(key, records, memory);
    }
}

/// One partition's part of a request.
struct Part {
    key: PartitionKey,
    records: Bytes,
    acks: BatchAcks,
    memory: u64,
}

/// Builds the drained batches and starts one request per leader (split at
/// `REQUEST_BYTES_MAX`), each in its own task.
fn dispatch(inner: &Rc<Inner>, ready: Vec<Drained<Rc<str>, BatchAcks>>) {
    let mut by_topic: HashMap<Rc<str>, Vec<Part>> = HashMap::new();
    for Drained { key, batches } in ready {
        debug_assert_eq!(batches.len(), 1, "batches_per_request_max is 1");
        for batch in batches {
            let (records, memory) = (batch.records, batch.memory);
            match batch.builder.build() {
                Ok(bytes) => by_topic.entry(key.0.clone()).or_default().push(Part {
                    key: key.clone(),
                    records: bytes,
                    acks: batch.acks,
                    memory,
                }),
                Err(e) => {
                    batch.acks.resolve(Err(ClientError::InvalidArgument(format!("cannot build a batch: {e}"))));
                    inner.request_done(&key, records, memory);
                }
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
    part.acks.resolve(Ok((part.key.1, None)));
    inner.request_done(&part.key, records, part.memory);
}

fn fail(inner: &Inner, part: Part, error: &KafkaError) {
    let records = part.acks.len();
    // The error's text is what the caller sees (`KafkaAck` maps errors to strings).
    part.acks.resolve(Err(ClientError::Kafka(error.to_string())));
    inner.request_done(&part.key, records, part.memory);
}
