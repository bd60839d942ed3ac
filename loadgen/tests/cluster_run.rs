//! A run against a cluster named by a bootstrap list (`--broker A,B,C`), as against a remote
//! cluster: the list's first address is dead, so the drivers must go on to the next. The
//! cluster is an `EmbeddedCluster` started by the test. No timing assertions.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

mod common;

use loadgen::baseline::{BaselineKind, BaselinePlan};
use loadgen::config::{AckMode, Protocol};
use loadgen::embedded::EmbeddedCluster;

/// One cluster at a time: two 3-node clusters at once on two cores would only measure
/// spurious elections (the cluster crate's tests serialize likewise).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn bootstrap_list_with_a_dead_first_address_reaches_the_cluster() {
    let _serial = serial();
    let dir = tempfile::Builder::new().prefix("lg-cluster-").tempdir_in(std::env::temp_dir()).unwrap();
    let cluster = EmbeddedCluster::start(dir.path(), 3, 1, false, 1).unwrap();
    loadgen::run::wait_cluster_ready(&cluster.native_bootstrap(), 3).unwrap();
    // Port 1 on loopback refuses connections.
    let list = format!("127.0.0.1:1,{}", cluster.native_bootstrap());
    let config = loadgen::WorkloadConfig {
        broker: Some(list.clone()),
        replication_factor: Some(3),
        acks: AckMode::Durable,
        ..common::short_run_config("test-cluster-list", Protocol::Native, 1)
    };
    let outcome = loadgen::run::run_one(&config, None, &BaselinePlan::new(BaselineKind::None), false).unwrap();
    common::assert_clean_run(&outcome.report.results);
    assert_eq!(outcome.report.environment.broker, list);
    drop(cluster);
}

#[test]
fn kafka_protocol_on_an_embedded_cluster_with_three_replicas() {
    let _serial = serial();
    // The Kafka driver cannot ask for a factor: the embedded cluster's default is set to it,
    // and the run waits (natively) until each partition's three replicas are in sync.
    let config = loadgen::WorkloadConfig {
        embedded_cluster: Some(3),
        replication_factor: Some(3),
        acks: AckMode::Durable,
        shards: None,
        ..common::short_run_config("test-cluster-kafka", Protocol::Kafka, 1)
    };
    let outcome = loadgen::run::run_one(&config, None, &BaselinePlan::new(BaselineKind::None), false).unwrap();
    common::assert_clean_run(&outcome.report.results);
    assert_eq!(outcome.report.environment.broker, "embedded-cluster:3");
}
