//! The Kafka-protocol driver end to end against the embedded broker's Kafka listener:
//! - a short `--protocol kafka` run acknowledges and consumes everything without errors;
//! - the driver's own produce / fetch round trip, its durability mapping (checked through
//!   the native Metadata), and interop: records produced over Kafka are read by the native
//!   driver's consumer with the same end-to-end timestamps.
//!
//! No timing assertions.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use loadgen::baseline::{BaselineKind, BaselinePlan};
use loadgen::config::{AckMode, Protocol};
use loadgen::embedded::Embedded;
use loadgen::workload::driver::{
    ConsumerDriver, ConsumerSettings, Driver, Outgoing, ProducerDriver, ProducerSettings, Received,
};
use loadgen::workload::kafka::KafkaDriver;
use loadgen::workload::native::NativeDriver;

fn test_dir() -> tempfile::TempDir {
    let parent = std::env::var_os("SHARDLOG_TEST_DIR").map_or_else(std::env::temp_dir, Into::into);
    tempfile::Builder::new().prefix("lg-kafka-").tempdir_in(parent).unwrap()
}

#[test]
fn short_kafka_run_acks_and_consumes_without_errors() {
    // Two members per group: the static assignment must cover every partition once.
    let config = common::short_run_config("test-kafka", Protocol::Kafka, 2);
    let outcome = loadgen::run::run_one(&config, None, &BaselinePlan::new(BaselineKind::None), false).unwrap();
    common::assert_clean_run(&outcome.report.results);
    assert_eq!(outcome.report.config.protocol, Protocol::Kafka);
}

const RECORDS: u64 = 300;

/// Polls every consumer in turn until `want` records arrived in all (or 10 s passed), then
/// closes them.
async fn consume<C: ConsumerDriver>(consumers: &[C], want: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    let mut batch = Vec::new();
    while all.len() < want && Instant::now() < deadline {
        for consumer in consumers {
            batch.clear();
            consumer.poll(&mut batch).await.unwrap();
            all.extend(batch.iter().copied());
        }
    }
    for consumer in consumers {
        consumer.close().await;
    }
    all
}

fn sorted_stamps(records: &[Received]) -> Vec<u64> {
    let mut stamps: Vec<u64> = records.iter().map(|r| r.sent_at_us.unwrap()).collect();
    stamps.sort_unstable();
    stamps
}

#[test]
fn kafka_round_trip_durability_and_native_interop() {
    let dir = test_dir();
    let embedded = Embedded::start_with(&dir.path().join("broker"), 2, true).unwrap();
    let (kafka_bootstrap, native_bootstrap) = (embedded.bootstrap(), embedded.native_bootstrap());
    assert_ne!(kafka_bootstrap, native_bootstrap);
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let kafka = KafkaDriver::connect(&kafka_bootstrap).await.unwrap();
            let topics = ["k-sync".to_owned(), "k-none".to_owned(), "k-interval".to_owned()];
            kafka.create_topics(&topics[..1], 3, "sync", None).await.unwrap();
            kafka.create_topics(&topics[1..2], 3, "none", None).await.unwrap();
            kafka.create_topics(&topics[2..], 1, "interval:50", None).await.unwrap();

            // acks=-1, explicit partitions and the sticky partitioner mixed.
            let settings =
                ProducerSettings { acks: AckMode::Durable, linger_ms: 1, batch_bytes: 4096, buffer_bytes: 1 << 20 };
            let producer = kafka.producer(&settings);
            let mut acks = Vec::new();
            for i in 0..RECORDS {
                let value = vec![(i % 251) as u8; 100 + (i as usize % 7)];
                let record = Outgoing {
                    topic: &topics[0],
                    partition: (i % 2 == 0).then_some((i % 3) as u32),
                    key: None,
                    value: &value,
                    sent_at_us: 1_000_000 + i,
                };
                acks.push(producer.send(record).await.unwrap());
            }
            producer.flush().await;
            for ack in acks {
                ack.await.unwrap();
            }
            let expected: Vec<u64> = (0..RECORDS).map(|i| 1_000_000 + i).collect();
            let value_bytes: u64 = (0..RECORDS).map(|i| 100 + i % 7).sum();

            // Two static members of one group read every record exactly once between them.
            let member = |m| ConsumerSettings {
                group: "g".to_owned(),
                topics: vec![topics[0].clone()],
                from_beginning: true,
                member: m,
                members: 2,
            };
            let read = consume(&[kafka.consumer(&member(0)), kafka.consumer(&member(1))], RECORDS as usize).await;
            assert_eq!(sorted_stamps(&read), expected);
            assert_eq!(read.iter().map(|r| r.value_bytes as u64).sum::<u64>(), value_bytes);

            // The durability asked over Kafka (flush.* configs) is the topic's durability.
            let client = client::Client::connect(&native_bootstrap, Default::default()).await.unwrap();
            let metadata = client.metadata(Some(topics.to_vec()), false).await.unwrap();
            let durability: Vec<&str> = metadata.topics.iter().map(|t| t.durability.as_str()).collect();
            assert_eq!(durability, ["sync", "none", "interval:50"]);

            // Interop: the native driver's consumer reads what Kafka produced, timestamps included.
            let native = NativeDriver::connect(&native_bootstrap).await.unwrap();
            let settings = ConsumerSettings { group: "native".to_owned(), members: 1, ..member(0) };
            let read = consume(&[native.consumer(&settings)], RECORDS as usize).await;
            assert_eq!(sorted_stamps(&read), expected);
        })
        .unwrap()
        .join()
        .unwrap();
    drop(embedded);
}
