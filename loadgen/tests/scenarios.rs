//! Scenario files parse into the same config the command line builds, with its defaults.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

use std::path::{Path, PathBuf};

use loadgen::config::{AckMode, KeyMode};
use loadgen::values::{ByteSize, RateSpec, SizeSpec};
use loadgen::{scenario, WorkloadConfig};

#[test]
fn a_scenario_fills_the_rest_from_the_command_line_defaults() {
    let text = r#"
        description = "test"
        partitions = 100
        message_size = "uniform:100-2KiB"
        keys = "round-robin"
        acks = "durable"
        rate = "50%-of-max"
        backlog_bytes = "1MiB"
        targets = ["publish_to_disk_write>=0.9"]
    "#;
    let config = scenario::parse(Path::new("dir/my-scenario.toml"), text).unwrap();
    let expected = WorkloadConfig {
        name: Some("my-scenario".to_owned()),
        description: Some("test".to_owned()),
        partitions: 100,
        message_size: SizeSpec::Uniform { min_bytes: 100, max_bytes: 2048 },
        keys: KeyMode::RoundRobin,
        acks: AckMode::Durable,
        rate: RateSpec::PercentOfMax { percent: 50.0 },
        backlog_bytes: ByteSize(1 << 20),
        targets: vec!["publish_to_disk_write>=0.9".to_owned()],
        ..WorkloadConfig::default()
    };
    assert_eq!(config, expected);
    // A number works where a rate is expected.
    let config = scenario::parse(Path::new("r.toml"), "rate = 5000").unwrap();
    assert_eq!(config.rate, RateSpec::Fixed { msg_per_s: 5000.0 });
}

#[test]
fn unknown_keys_and_bad_values_are_errors_naming_the_file() {
    for text in
        ["partitons = 3", "rate = \"fast\"", "partitions = 0", "durability = \"sometimes\"", "protocol = \"amqp\""]
    {
        let err = scenario::parse(Path::new("bad.toml"), text).unwrap_err().to_string();
        assert!(err.starts_with("bad.toml: "), "{text}: {err}");
    }
    let kafka = scenario::parse(Path::new("k.toml"), "protocol = \"kafka\"").unwrap();
    assert_eq!(kafka.protocol, loadgen::config::Protocol::Kafka);
}

#[test]
fn every_shipped_scenario_parses() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches/scenarios");
    let mut count = 0;
    for dir in ["targets", "smoke", "kafka-vs-native"] {
        for path in scenario::list(&root.join(dir)).unwrap() {
            scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    assert!(count >= 8);
}
