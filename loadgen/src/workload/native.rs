//! The native-protocol driver: shardlog's Rust client (`client`).
//!
//! End-to-end timestamp: each record carries a header `lg-t` whose value is the producer's
//! intended send time as 8 big-endian bytes of microseconds since the Unix epoch. (The
//! RecordBatch timestamp would do, but it is in milliseconds, too coarse for loopback
//! latencies.) The header adds 13 bytes per record on the wire; message sizes count the value
//! only.

use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use client::{
    Acks, Client, ClientOptions, Consumer, ConsumerOptions, Delivery, Producer, ProducerOptions, TopicSettings,
};

use super::driver::{
    connect_first, ConsumerDriver, ConsumerSettings, Driver, Outgoing, ProducerDriver, ProducerSettings, Received,
};
use crate::config::AckMode;
use crate::error::LoadgenError;

/// Header key of the end-to-end timestamp.
pub const TIMESTAMP_HEADER: &[u8] = b"lg-t";

/// The producer's intended send time (µs since the epoch) from a record's `lg-t` header, if
/// it has one of the right size. Both drivers read it this way.
pub fn sent_at_us(headers: &[engine::batch::Header]) -> Option<u64> {
    headers
        .iter()
        .find(|h| h.key.as_ref() == TIMESTAMP_HEADER)
        .and_then(|h| h.value.as_ref())
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
}
/// How long a consumer's fetch waits on the broker: short, so it notices the end of a run.
const FETCH_WAIT_MS_MAX: u32 = 100;

pub struct NativeDriver {
    client: Rc<Client>,
}

impl NativeDriver {
    /// The client, for what the workload does not cover (a cluster's readiness).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Driver for NativeDriver {
    type Producer = NativeProducer;
    type Consumer = NativeConsumer;

    async fn connect(bootstrap: &str) -> Result<Self, LoadgenError> {
        let client =
            connect_first(bootstrap, "broker", |a| async move { Client::connect(&a, ClientOptions::default()).await })
                .await?;
        Ok(NativeDriver { client: Rc::new(client) })
    }

    /// In a cluster, also waits until every partition has a leader and all its replicas in
    /// sync (`cluster::wait_in_sync`), so the warm-up does not measure leader elections.
    async fn create_topics(
        &self,
        topics: &[String],
        partitions: u32,
        durability: &str,
        replication_factor: Option<u32>,
    ) -> Result<(), LoadgenError> {
        for topic in topics {
            let settings = TopicSettings {
                durability: Some(durability.to_owned()),
                replication_factor,
                ..TopicSettings::default()
            };
            self.client
                .create_topic(topic, partitions, settings)
                .await
                .map_err(|e| LoadgenError::Client(format!("creating topic {topic}: {e}")))?;
        }
        crate::cluster::wait_in_sync(&self.client, topics, replication_factor, crate::cluster::IN_SYNC_TIMEOUT).await
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<(), LoadgenError> {
        for topic in topics {
            self.client
                .delete_topic(topic)
                .await
                .map_err(|e| LoadgenError::Client(format!("deleting topic {topic}: {e}")))?;
        }
        Ok(())
    }

    fn producer(&self, settings: &ProducerSettings) -> NativeProducer {
        let options = ProducerOptions {
            acks: match settings.acks {
                AckMode::None => Acks::None,
                AckMode::Leader => Acks::Leader,
                AckMode::Durable => Acks::Durable,
            },
            linger_ms: settings.linger_ms,
            batch_bytes: settings.batch_bytes,
            buffer_bytes: settings.buffer_bytes,
            ..ProducerOptions::default()
        };
        NativeProducer { producer: Producer::new(self.client.clone(), options) }
    }

    fn consumer(&self, settings: &ConsumerSettings) -> NativeConsumer {
        let options = ConsumerOptions {
            group: Some(settings.group.clone()),
            topics: settings.topics.clone(),
            from_beginning: settings.from_beginning,
            fetch_wait_ms_max: FETCH_WAIT_MS_MAX,
            // Commits are not what is measured; positions live in the consumer.
            auto_commit: false,
            ..ConsumerOptions::default()
        };
        NativeConsumer { consumer: Consumer::new(self.client.clone(), options) }
    }
}

pub struct NativeProducer {
    producer: Producer,
}

/// A [`Delivery`] with the client's error turned into text and the instant it was resolved.
pub struct NativeAck(Delivery);

impl std::future::Future for NativeAck {
    type Output = Result<Instant, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let result = std::task::ready!(Pin::new(&mut self.0).poll(cx));
        // Resolved, so the instant is set; `now` is the latest it could be.
        let at = self.0.resolved_at().unwrap_or_else(Instant::now);
        std::task::Poll::Ready(result.map(|_| at).map_err(|e| e.to_string()))
    }
}

impl ProducerDriver for NativeProducer {
    type Ack = NativeAck;

    async fn send(&self, record: Outgoing<'_>) -> Result<NativeAck, String> {
        let stamp = record.sent_at_us.to_be_bytes();
        let headers: [(&[u8], Option<&[u8]>); 1] = [(TIMESTAMP_HEADER, Some(&stamp))];
        let timestamp_ms = i64::try_from(record.sent_at_us / 1000).ok();
        self.producer
            .enqueue(record.topic, record.partition, record.key, Some(record.value), &headers, timestamp_ms)
            .await
            .map(NativeAck)
            .map_err(|e| e.to_string())
    }

    async fn flush(&self) {
        self.producer.flush().await;
    }
}

pub struct NativeConsumer {
    consumer: Consumer,
}

impl ConsumerDriver for NativeConsumer {
    async fn poll(&self, out: &mut Vec<Received>) -> Result<(), String> {
        let records = self.consumer.poll().await.map_err(|e| e.to_string())?;
        out.extend(records.iter().map(|r| Received {
            value_bytes: r.value.as_ref().map_or(0, |v| v.len()),
            sent_at_us: sent_at_us(&r.headers),
        }));
        Ok(())
    }

    async fn close(&self) {
        let _ = self.consumer.close().await;
    }
}
