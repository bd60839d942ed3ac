//! The Kafka-protocol driver (`--protocol kafka`): drives any Kafka-compatible broker with
//! the same workload and report as the native driver, on the Kafka client of the `client`
//! crate (`client::kafka`: cluster metadata, producer, static-assignment consumer).
//!
//! acks: `--acks none` → Kafka acks=0, `leader` → 1, `durable` → -1. `--durability` becomes
//! topic configs (`cluster::durability_configs`): `sync` → `flush.messages=1`, `none` and
//! `interval:MS` → `flush.ms`, which shardlog maps back onto its durability. The end-to-end
//! timestamp travels in the same `lg-t` header as with the native driver, so either driver's
//! consumer reads either driver's records.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use client::kafka::{
    durability_configs, Assignment, Cluster, KafkaAck, KafkaConsumer, KafkaError, KafkaProducer, NewRecord,
    ProducerOptions,
};

use super::driver::{
    connect_first, ConsumerDriver, ConsumerSettings, Driver, Outgoing, ProducerDriver, ProducerSettings, Received,
};
use super::native::{sent_at_us, TIMESTAMP_HEADER};
use crate::config::AckMode;
use crate::error::LoadgenError;

pub struct KafkaDriver {
    cluster: Rc<Cluster>,
}

impl KafkaDriver {
    pub async fn connect_to(bootstrap: &str) -> Result<KafkaDriver, KafkaError> {
        Ok(KafkaDriver { cluster: Rc::new(Cluster::connect(bootstrap).await?) })
    }
}

/// Kafka's `acks` for the load generator's ack mode.
pub fn kafka_acks(acks: AckMode) -> i16 {
    match acks {
        AckMode::None => 0,
        AckMode::Leader => 1,
        AckMode::Durable => -1,
    }
}

impl Driver for KafkaDriver {
    type Producer = KafkaProducerDriver;
    type Consumer = KafkaConsumerDriver;

    async fn connect(bootstrap: &str) -> Result<Self, LoadgenError> {
        connect_first(bootstrap, "Kafka broker", |a| async move { KafkaDriver::connect_to(&a).await }).await
    }

    /// CreateTopics with the broker's default replication factor (`client::kafka` takes no
    /// factor): asking for another one is an error, not a silent default.
    async fn create_topics(
        &self,
        topics: &[String],
        partitions: u32,
        durability: &str,
        replication_factor: Option<u32>,
    ) -> Result<(), LoadgenError> {
        if let Some(factor) = replication_factor {
            return Err(LoadgenError::Config(format!(
                "the Kafka driver cannot ask for replication factor {factor} (the broker's default applies)"
            )));
        }
        self.cluster
            .create_topics(topics, partitions, durability)
            .await
            .map_err(|e| LoadgenError::Client(format!("creating topics over Kafka: {e}")))
    }

    async fn delete_topics(&self, topics: &[String]) -> Result<(), LoadgenError> {
        self.cluster
            .delete_topics(topics)
            .await
            .map_err(|e| LoadgenError::Client(format!("deleting topics over Kafka: {e}")))
    }

    fn producer(&self, settings: &ProducerSettings) -> KafkaProducerDriver {
        let options = ProducerOptions {
            acks: kafka_acks(settings.acks),
            linger: Duration::from_millis(settings.linger_ms),
            batch_bytes: settings.batch_bytes,
            buffer_bytes: settings.buffer_bytes,
        };
        KafkaProducerDriver(KafkaProducer::new(self.cluster.clone(), options))
    }

    fn consumer(&self, settings: &ConsumerSettings) -> KafkaConsumerDriver {
        let assignment = Assignment {
            topics: settings.topics.clone(),
            member: settings.member,
            members: settings.members,
            from_beginning: settings.from_beginning,
        };
        let received = |record: &engine::batch::Record| Received {
            value_bytes: record.value.as_ref().map_or(0, |v| v.len()),
            sent_at_us: sent_at_us(&record.headers),
        };
        KafkaConsumerDriver(KafkaConsumer::new(self.cluster.clone(), assignment, Rc::new(received)))
    }
}

pub struct KafkaProducerDriver(KafkaProducer);

/// A record's ack with the instant its batch was resolved.
pub struct KafkaDriverAck(KafkaAck);

impl std::future::Future for KafkaDriverAck {
    type Output = Result<Instant, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(Pin::new(&mut self.0).poll(cx));
        // Resolved, so the instant is set; `now` is the latest it could be.
        let at = self.0.resolved_at().unwrap_or_else(Instant::now);
        Poll::Ready(result.map(|()| at))
    }
}

impl ProducerDriver for KafkaProducerDriver {
    type Ack = KafkaDriverAck;

    async fn send(&self, record: Outgoing<'_>) -> Result<KafkaDriverAck, String> {
        let stamp = record.sent_at_us.to_be_bytes();
        let headers: [(&[u8], Option<&[u8]>); 1] = [(TIMESTAMP_HEADER, Some(&stamp))];
        let new = NewRecord {
            topic: record.topic,
            partition: record.partition,
            key: record.key,
            value: record.value,
            headers: &headers,
            timestamp_ms: i64::try_from(record.sent_at_us / 1000).unwrap_or(i64::MAX),
        };
        self.0.send(new).await.map(KafkaDriverAck).map_err(|e| e.to_string())
    }

    async fn flush(&self) {
        self.0.flush().await;
    }
}

pub struct KafkaConsumerDriver(KafkaConsumer<Received>);

impl ConsumerDriver for KafkaConsumerDriver {
    async fn poll(&self, out: &mut Vec<Received>) -> Result<(), String> {
        self.0.poll(out).await.map_err(|e| e.to_string())
    }

    async fn close(&self) {
        self.0.close();
    }
}
