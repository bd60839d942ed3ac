//! Adapters from shardlog's clients to the workload's traits.
//!
//! - [`NativeProducer`]: `client::Producer` with `Acks::Durable`, one record per send, to an
//!   explicit partition; the acknowledgement carries the offset.
//! - [`NativeReader`]: a native Fetch of one partition at an offset.
//! - [`NativeOffsets`]: native OffsetCommit (outside a generation) and OffsetFetch.
//! - [`KafkaProducerAdapter`]: `client::kafka::KafkaProducer` with acks=all (-1). That
//!   producer is NOT idempotent (no InitProducerId, no producer id or sequence in its batches)
//!   and does not retry, and its acknowledgement carries no offset: acknowledged values are
//!   checked by presence, not position.
//! - [`KafkaReader`]: a Kafka Fetch (v4..=12) of one partition at an offset, sent to the
//!   partition's leader from Metadata.
//!
//! Errors: only what certainly did not reach a broker (no connection, a record refused before
//! sending, a broker's refusal of an offset commit) is `Fail`; everything else is `Unknown`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use client::kafka::{
    Cluster as KafkaCluster, KafkaError, KafkaProducer, NewRecord, ProducerOptions as KafkaProducerOptions,
};
use client::{
    Acks, Client, ClientError, ClientOptions, CommitOffset, ErrorCode, FetchPartition, Producer, ProducerOptions,
    TopicPartition,
};
use engine::batch::split_batches;
use kafka_protocol::messages::fetch_request::{FetchPartition as KafkaFetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::within;
use super::workload::{Answer, Fetched, GroupOffsets, ProduceOne, ReadFrom};

/// How long a read waits on the broker for new records.
pub const READ_WAIT_MS: u32 = 100;
/// Bytes per read.
pub const READ_BYTES_MAX: u32 = 1 << 20;

/// Pause between rounds of connection attempts.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Tries each address of a comma-separated bootstrap list in turn, round after round until
/// one answers or `timeout` passes (a node may be down or cut off when a client starts).
pub async fn connect_any<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    bootstrap: &str,
    timeout: Duration,
    connect: impl Fn(String) -> F,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<&str> = bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    assert!(!addrs.is_empty(), "empty bootstrap list");
    loop {
        let mut errors = Vec::new();
        for addr in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            match within(left, connect((*addr).to_owned())).await {
                Some(Ok(connected)) => return Ok(connected),
                Some(Err(e)) => errors.push(format!("{addr}: {e}")),
                None => errors.push(format!("{addr}: no answer")),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no bootstrap address answered within {timeout:?}: {}", errors.join("; ")));
        }
        glommio::timer::sleep(CONNECT_RETRY_PAUSE).await;
    }
}

/// A native client on the first address of `bootstrap` that answers within `timeout`.
pub async fn native_client(bootstrap: &str, options: ClientOptions, timeout: Duration) -> Result<Rc<Client>, String> {
    connect_any(bootstrap, timeout, |addr| {
        let options = options.clone();
        async move { Client::connect(&addr, options).await }
    })
    .await
    .map(Rc::new)
}

/// Values from fetched batch bytes, at or after `from`.
fn records_of(chunks: impl IntoIterator<Item = Bytes>, from: u64) -> Result<Vec<(u64, String)>, String> {
    let mut bytes = BytesMut::new();
    for chunk in chunks {
        bytes.extend_from_slice(&chunk);
    }
    let mut records = Vec::new();
    for batch in split_batches(bytes.freeze()) {
        let batch = batch.map_err(|e| format!("corrupt batch: {e}"))?;
        for record in batch.records() {
            let record = record.map_err(|e| format!("bad record: {e}"))?;
            let offset = u64::try_from(record.offset).map_err(|_| format!("negative offset {}", record.offset))?;
            if offset >= from {
                let value = record.value.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                records.push((offset, value.into_owned()));
            }
        }
    }
    Ok(records)
}

/// Whether a native client error certainly means the request was not applied.
fn native_answer<T>(error: &ClientError) -> Answer<T> {
    match error {
        ClientError::Connect { .. } | ClientError::InvalidArgument(_) => Answer::Fail(error.to_string()),
        _ => Answer::Unknown(error.to_string()),
    }
}

pub struct NativeProducer {
    producer: Producer,
}

impl NativeProducer {
    /// A durable-acks producer with a 1 ms linger and no retries on `client`.
    pub fn new(client: Rc<Client>) -> NativeProducer {
        // No retries inside the client: each send is one attempt the history records, so a value
        // twice in a log is the broker's doing (the checker allows a non-idempotent duplicate
        // only when the value was sent more than once).
        let options = ProducerOptions { acks: Acks::Durable, linger_ms: 1, retries: 0, ..ProducerOptions::default() };
        NativeProducer { producer: Producer::new(client, options) }
    }

    pub fn with_producer(producer: Producer) -> NativeProducer {
        NativeProducer { producer }
    }
}

impl ProduceOne for NativeProducer {
    async fn produce(&self, topic: &str, partition: u32, value: &str) -> Answer<Option<u64>> {
        match self.producer.send_to(topic, partition, None, Some(value.as_bytes()), &[], None).await {
            Ok(ack) => Answer::Ok(ack.offset),
            Err(e) => native_answer(&e),
        }
    }
}

pub struct NativeReader {
    client: Rc<Client>,
}

impl NativeReader {
    pub fn new(client: Rc<Client>) -> NativeReader {
        NativeReader { client }
    }
}

impl ReadFrom for NativeReader {
    async fn read(&self, topic: &str, partition: u32, offset: u64) -> Result<Fetched, String> {
        let fetch = FetchPartition { topic: topic.to_owned(), partition, offset, bytes_max: READ_BYTES_MAX };
        let mut results =
            self.client.fetch(READ_WAIT_MS, 1, READ_BYTES_MAX, vec![fetch]).await.map_err(|e| e.to_string())?;
        let result = results.pop().ok_or("empty Fetch answer")?;
        if result.error != ErrorCode::None {
            return Err(format!("fetch {topic}-{partition}@{offset}: {:?} {}", result.error, result.log_end_offset));
        }
        Ok(Fetched { records: records_of(result.records, offset)?, high_watermark: result.log_end_offset })
    }
}

pub struct NativeOffsets {
    client: Rc<Client>,
}

impl NativeOffsets {
    pub fn new(client: Rc<Client>) -> NativeOffsets {
        NativeOffsets { client }
    }
}

impl GroupOffsets for NativeOffsets {
    async fn commit(&self, group: &str, topic: &str, partition: u32, offset: u64) -> Answer<()> {
        let commit = CommitOffset { topic: topic.to_owned(), partition, offset, metadata: String::new() };
        match self.client.commit_offsets(group, -1, "", vec![commit]).await {
            Ok(errors) => match errors.iter().find(|e| e.error != ErrorCode::None) {
                None => Answer::Ok(()),
                Some(refused) => Answer::Fail(format!("commit refused: {:?}", refused.error)),
            },
            Err(e) => native_answer(&e),
        }
    }

    async fn fetch(&self, group: &str, topic: &str, partition: u32) -> Answer<Option<u64>> {
        let partitions = vec![TopicPartition { topic: topic.to_owned(), partition }];
        match self.client.fetch_offsets(group, Some(partitions)).await {
            Ok(offsets) => match offsets.iter().find(|o| o.topic == topic && o.partition == partition) {
                Some(o) if o.error != ErrorCode::None => Answer::Fail(format!("offset fetch: {:?}", o.error)),
                Some(o) => Answer::Ok(u64::try_from(o.offset).ok()),
                None => Answer::Fail(format!("no offset of {topic}-{partition} in the answer")),
            },
            Err(e) => native_answer(&e),
        }
    }
}

/// A Kafka cluster view on the first address of `bootstrap` that answers within `timeout`.
pub async fn kafka_cluster(bootstrap: &str, timeout: Duration) -> Result<Rc<KafkaCluster>, String> {
    connect_any(bootstrap, timeout, |addr| async move { KafkaCluster::connect(&addr).await }).await.map(Rc::new)
}

pub struct KafkaProducerAdapter {
    producer: KafkaProducer,
}

impl KafkaProducerAdapter {
    /// An acks=all producer with a 1 ms linger.
    pub fn new(cluster: Rc<KafkaCluster>) -> KafkaProducerAdapter {
        let options = KafkaProducerOptions {
            acks: -1,
            linger: Duration::from_millis(1),
            batch_bytes: 64 << 10,
            buffer_bytes: 8 << 20,
        };
        KafkaProducerAdapter { producer: KafkaProducer::new(cluster, options) }
    }
}

impl ProduceOne for KafkaProducerAdapter {
    async fn produce(&self, topic: &str, partition: u32, value: &str) -> Answer<Option<u64>> {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let record = NewRecord {
            topic,
            partition: Some(partition),
            key: None,
            value: value.as_bytes(),
            headers: &[],
            timestamp_ms,
        };
        match self.producer.send(record).await {
            // Refused before it was batched.
            Err(e) => Answer::Fail(e.to_string()),
            Ok(ack) => match ack.await {
                Ok(()) => Answer::Ok(None),
                Err(e) => Answer::Unknown(e),
            },
        }
    }
}

pub struct KafkaReader {
    cluster: Rc<KafkaCluster>,
}

impl KafkaReader {
    pub fn new(cluster: Rc<KafkaCluster>) -> KafkaReader {
        KafkaReader { cluster }
    }

    async fn try_read(&self, topic: &str, partition: u32, offset: u64) -> Result<Fetched, KafkaError> {
        let leaders = self.cluster.leaders(topic).await?;
        let Some(&leader) = leaders.get(partition as usize) else {
            return Err(KafkaError::Metadata(format!("no leader for {topic}-{partition}")));
        };
        let request = FetchRequest::default()
            .with_max_wait_ms(READ_WAIT_MS as i32)
            .with_min_bytes(1)
            .with_max_bytes(READ_BYTES_MAX as i32)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![KafkaFetchPartition::default()
                    .with_partition(partition as i32)
                    .with_fetch_offset(offset as i64)
                    .with_partition_max_bytes(READ_BYTES_MAX as i32)])]);
        let connection = self.cluster.connection(leader).await?;
        let answer = connection.call(&request, self.cluster.versions.fetch).await?;
        if answer.error_code != 0 {
            return Err(KafkaError::broker(answer.error_code, format!("fetch from broker {leader}")));
        }
        let data = answer
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition as i32)
            .ok_or_else(|| KafkaError::Metadata(format!("no fetch answer for {topic}-{partition}")))?;
        if data.error_code != 0 {
            return Err(KafkaError::broker(data.error_code, format!("fetch {topic}-{partition}@{offset}")));
        }
        let records = records_of(data.records, offset).map_err(KafkaError::Record)?;
        Ok(Fetched { records, high_watermark: u64::try_from(data.high_watermark).unwrap_or(0) })
    }
}

impl ReadFrom for KafkaReader {
    async fn read(&self, topic: &str, partition: u32, offset: u64) -> Result<Fetched, String> {
        self.try_read(topic, partition, offset).await.map_err(|e| {
            if e.is_stale_metadata() {
                self.cluster.invalidate(topic);
            }
            e.to_string()
        })
    }
}
