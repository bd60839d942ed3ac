//! The replication comparison, briefly, against an embedded 3-node cluster: both factors ran
//! both phases, each acknowledged records without errors, and the report puts them side by
//! side. No timing assertions (the machine is shared; the figures are whatever they are).

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

use loadgen::baseline::{BaselineKind, BaselinePlan};
use loadgen::config::{AckMode, KeyMode};
use loadgen::replication::{self, Phase, ReplicationPlan};
use loadgen::values::RateSpec;
use loadgen::WorkloadConfig;

#[test]
fn rf1_and_rf3_side_by_side_on_an_embedded_cluster() {
    let config = WorkloadConfig {
        name: Some("test-replication".to_owned()),
        embedded_cluster: Some(3),
        acks: AckMode::Durable,
        partitions: 3,
        producers: 2,
        consumers: 1,
        groups: 1,
        loadgen_cores: Some(1),
        keys: KeyMode::RoundRobin,
        duration_s: 1.0,
        warmup_s: 0.5,
        ..WorkloadConfig::default()
    };
    let plan = ReplicationPlan { factors: vec![1, 3], rounds: 1, latency_rate: RateSpec::Fixed { msg_per_s: 1000.0 } };
    let report = replication::run(&config, &plan, &BaselinePlan::new(BaselineKind::None), false).unwrap();

    assert_eq!(report.environment.broker, "embedded-cluster:3");
    assert_eq!(report.runs.len(), 4, "two phases × two factors × one round");
    for phase in [Phase::Throughput, Phase::Latency] {
        for factor in [1, 3] {
            let run = report.runs.iter().find(|r| r.phase == phase && r.replication_factor == factor).unwrap();
            let results = &run.report.results;
            assert_eq!(run.report.config.replication_factor, Some(factor));
            assert!(results.publish.messages > 0, "{phase:?} RF {factor}: {results:?}");
            assert_eq!(results.errors.total(), 0, "{phase:?} RF {factor}: {:?}", results.errors);
            assert_eq!(results.totals.acked, results.totals.sent);
        }
    }
    let factors: Vec<u32> = report.summary.iter().map(|s| s.replication_factor).collect();
    assert_eq!(factors, [1, 3]);
    for s in &report.summary {
        assert!(s.acked > 0 && s.publish_msg_per_s > 0.0, "{s:?}");
        assert!(s.publish_latency_us.is_some_and(|p| p.count > 0), "{s:?}");
        assert_eq!(s.errors, 0);
    }
    assert!(report.summary[1].ratios_to_first.contains_key("publish_msg_per_s"));
    assert_eq!(report.latency_rate_msg_per_s, Some(1000.0));

    let text = loadgen::report::replication::render(&report);
    assert!(text.contains("RF=1") && text.contains("RF=3") && text.contains("RF3/RF1"), "{text}");
    // And the JSON holds every run's report.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replication.json");
    replication::write_json(&path, &report).unwrap();
    let back: replication::ReplicationReport = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back.runs.len(), 4);
    assert_eq!(back.summary.len(), 2);
}
