//! `report --markdown` pairs native and Kafka runs of the same workload and prints Kafka ÷
//! native; runs of different workloads are not paired.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use loadgen::config::Protocol;
use loadgen::report::{markdown, protocols};

#[test]
fn native_and_kafka_runs_of_one_workload_are_paired_with_their_ratio() {
    let native = common::sample_report(100.0, 1000);
    let mut kafka = common::sample_report(45.0, 1000);
    kafka.scenario = "kafka".to_owned();
    kafka.config.protocol = Protocol::Kafka;
    kafka.config.description = Some("over Kafka".to_owned());
    let mut other = common::sample_report(10.0, 1000);
    other.config.protocol = Protocol::Kafka;
    other.config.partitions += 1;
    let reports = vec![native, other, kafka];
    let pairs = protocols::pairs(&reports);
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].1.scenario, "kafka");
    let text = markdown::render(&reports);
    assert!(text.contains("Native vs Kafka listener"), "{text}");
    assert!(text.contains("| 0.45 |"), "{text}");
    // Nothing to pair: no table.
    assert!(protocols::render(&reports[..1]).is_empty());
}
