//! A minimal Kafka client on glommio, enough to drive any Kafka-compatible broker with a
//! workload (the load generator's `--protocol kafka`) and to test shardlog's Kafka listener:
//!
//! - `connection.rs`: one pipelined connection per broker (correlation ids, several requests
//!   in flight, bounded), frames encoded and decoded by the `kafka-protocol` crate;
//! - `cluster.rs`: ApiVersions (picks, per API, the newest version both sides speak),
//!   Metadata (brokers, partition leaders), CreateTopics, ListOffsets;
//! - `producer.rs`: per-partition RecordBatch v2 batching on the shared accumulator
//!   (`crate::accumulator`: `batch_bytes`, `linger`, `buffer_bytes`), one Produce per leader;
//! - `consumer.rs`: static partition assignment, long-poll Fetch per leader.
//!
//! `cluster::durability_configs` maps shardlog's durability names onto Kafka topic configs
//! (`sync` → `flush.messages=1`, `none` and `interval:MS` → `flush.ms`), which shardlog maps
//! back onto its durability.

mod cluster;
mod connection;
mod consumer;
mod error;
mod producer;

pub use cluster::{durability_configs, Cluster};
pub use consumer::{Assignment, KafkaConsumer, RecordMap};
pub use error::KafkaError;
pub use producer::{KafkaAck, KafkaProducer, NewRecord, ProducerOptions};
