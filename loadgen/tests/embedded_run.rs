//! One short embedded run end to end: broker in process, producers and a consumer group,
//! report assembled. Asserts what must hold whatever the machine's speed: messages were
//! acknowledged and consumed, no errors, the histograms saw them. No timing assertions.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)

use loadgen::baseline::{BaselineKind, BaselinePlan};
use loadgen::config::KeyMode;
use loadgen::report::{json, Mode};
use loadgen::values::RateSpec;
use loadgen::WorkloadConfig;

#[test]
fn short_embedded_run_acks_and_consumes_without_errors() {
    let config = WorkloadConfig {
        name: Some("test-embedded".to_owned()),
        partitions: 4,
        producers: 2,
        loadgen_cores: Some(1),
        shards: Some(2),
        keys: KeyMode::RoundRobin,
        rate: RateSpec::Fixed { msg_per_s: 2000.0 },
        duration_s: 1.5,
        warmup_s: 0.5,
        ..WorkloadConfig::default()
    };
    let outcome = loadgen::run::run_one(&config, None, &BaselinePlan::new(BaselineKind::None), false).unwrap();
    let r = &outcome.report.results;
    assert_eq!(r.mode, Mode::OpenLoop);
    assert!(r.totals.acked > 0, "{r:?}");
    assert_eq!(r.totals.acked, r.totals.sent);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.publish.messages > 0);
    assert!(r.publish_latency_us.count > 0);
    // Every acknowledged message was read by the group before the run ended.
    assert_eq!(r.totals.consumed, r.totals.acked);
    assert!(r.end_to_end_latency_us.count > 0);
    assert!(outcome.report.baselines.is_none());
    // And the report is valid JSON of the current schema.
    let text = json::to_string(&outcome.report);
    assert_eq!(json::parse(std::path::Path::new("run.json"), &text).unwrap(), outcome.report);
}
