//! Apache Kafka's own tools (4.1, from Maven Central) against the real `shardlog` binary:
//! `scripts/kafka-tools/check.sh` runs the console tutorial verbatim (kafka-topics
//! --create/--list/--describe/--delete, the console producer with parse.key, the console
//! consumer --from-beginning with print.key and print.timestamp), kafka-configs
//! --describe/--alter, kafka-consumer-groups --list/--describe/--reset-offsets/--delete,
//! kafka-verifiable-producer and -consumer, and a Kafka Streams word count into a table topic.
//!
//! The jars come from `scripts/kafka-tools/fetch.sh` (run by `.ci/run`). Without them the test
//! is skipped with a printed reason, unless `CI=true`, where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{run_program, temp_dir, Server, ServerOptions};

/// The whole check takes about 70 s here; the JVM tools start ~15 times.
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn kafkas_own_tools_and_kafka_streams() {
    let libs = repo().join("target/kafka-tools/lib");
    let java = std::process::Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !libs.join("kafka-tools-4.1.0.jar").exists() || !java {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("Kafka's jars or java are missing, and CI=true requires them (scripts/kafka-tools/fetch.sh)");
        }
        let line = "\n!!!!! SKIPPED: Kafka's tools are not fetched (bash scripts/kafka-tools/fetch.sh) !!!!!\n";
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let data = temp_dir("shardlog-kafka-tools-");
    let server = Server::start_with(data.path(), ServerOptions { kafka: true, ..ServerOptions::default() });
    let script = repo().join("scripts/kafka-tools/check.sh");
    let out =
        run_program("bash", &[script.to_str().unwrap(), server.kafka_addr.as_deref().unwrap()], b"", CHECK_TIMEOUT);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("ALL OK"),
        "{out}\n{}",
        server.diagnostics()
    );
}

/// franz-go (kgo and kadm: every admin call above, topic ids, lag, max-timestamp offsets,
/// leader-epoch offsets, producers, log dirs) and Sarama (producer, consumer group, cluster
/// admin), from `cli/tests/go` (built by `.ci/run` into `target/go/kafka-go-check`).
#[test]
fn franz_go_kadm_and_sarama() {
    let check = repo().join("target/go/kafka-go-check");
    if !check.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("target/go/kafka-go-check is missing, and CI=true requires it (.ci/run builds cli/tests/go)");
        }
        let line = "\n!!!!! SKIPPED: the Go clients check is not built (cd cli/tests/go && go build -o ../../../target/go/kafka-go-check .) !!!!!\n";
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let data = temp_dir("shardlog-go-clients-");
    let options = ServerOptions {
        kafka: true,
        extra_args: vec!["--group-initial-rebalance-delay-ms".into(), "300".into()],
        ..ServerOptions::default()
    };
    let server = Server::start_with(data.path(), options);
    let out = run_program(check.to_str().unwrap(), &[server.kafka_addr.as_deref().unwrap()], b"", CHECK_TIMEOUT);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("ALL OK"),
        "{out}\n{}",
        server.diagnostics()
    );
}
