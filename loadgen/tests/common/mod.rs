//! A report with known figures, for tests that need one without running a workload.
#![allow(dead_code)]

use loadgen::baseline::Baselines;
use loadgen::env_info::Environment;
use loadgen::histogram::Percentiles;
use loadgen::report::{Errors, Mode, Results, RunReport, Throughput, Totals, SCHEMA_VERSION, TOOL};
use loadgen::WorkloadConfig;

pub fn percentiles(p50_us: u64) -> Percentiles {
    Percentiles {
        count: 1000,
        min_us: p50_us / 2,
        mean_us: p50_us as f64 * 1.1,
        p50_us,
        p90_us: p50_us * 2,
        p99_us: p50_us * 3,
        p999_us: p50_us * 4,
        p9999_us: p50_us * 5,
        max_us: p50_us * 6,
    }
}

pub fn sample_report(publish_mb_per_s: f64, p50_us: u64) -> RunReport {
    let publish = Throughput {
        messages: 123_457,
        bytes: 126_419_968,
        seconds: 10.000_3,
        msg_per_s: publish_mb_per_s * 1e6 / 1024.0,
        mb_per_s: publish_mb_per_s,
    };
    let mut results = Results {
        mode: Mode::ClosedLoop,
        rate_target_msg_per_s: None,
        rate_max_probe_msg_per_s: Some(12_345.678_9),
        publish,
        consume: publish,
        publish_latency_us: percentiles(p50_us),
        send_delay_us: percentiles(1),
        end_to_end_latency_us: percentiles(p50_us * 2),
        backlog_messages_window_start: 17,
        backlog_messages_end: 0,
        totals: Totals { sent: 130_000, acked: 130_000, consumed: 130_000 },
        errors: Errors::default(),
        ratios: Default::default(),
        notes: vec!["a note".to_owned()],
        platform: None,
        probe: None,
    };
    let baselines = Baselines {
        disk_write_mb_per_s: Some(1_612.345_678_9),
        disk_read_mb_per_s: Some(2034.1),
        fsync_latency_us: Some(percentiles(3500)),
        loopback_mb_per_s: Some(2500.0),
        loopback_rtt_us: Some(percentiles(60)),
        disk_bytes: 512 << 20,
    };
    results.ratios = loadgen::report::ratios::compute(&results, &baselines);
    RunReport {
        schema_version: SCHEMA_VERSION,
        tool: TOOL.to_owned(),
        scenario: "sample".to_owned(),
        config: WorkloadConfig { targets: vec!["publish_to_disk_write>=0.9".to_owned()], ..WorkloadConfig::default() },
        environment: Environment::probe(None),
        baselines: Some(baselines),
        results,
    }
}

/// A 2 s open-loop run (0.5 s warm-up) at 2000 msg/s on an embedded 2-shard broker: short
/// enough for every test run, long enough that producers, consumers and the report all work.
pub fn short_run_config(name: &str, protocol: loadgen::config::Protocol, consumers: usize) -> WorkloadConfig {
    WorkloadConfig {
        name: Some(name.to_owned()),
        protocol,
        partitions: 4,
        producers: 2,
        consumers,
        loadgen_cores: Some(1),
        shards: Some(2),
        keys: loadgen::config::KeyMode::RoundRobin,
        rate: loadgen::values::RateSpec::Fixed { msg_per_s: 2000.0 },
        duration_s: 1.5,
        warmup_s: 0.5,
        ..WorkloadConfig::default()
    }
}

/// What must hold after a short run whatever the machine's speed: open loop, messages
/// acknowledged (all that were sent) and each consumed once, no errors, histograms filled.
pub fn assert_clean_run(r: &Results) {
    assert_eq!(r.mode, Mode::OpenLoop);
    assert!(r.totals.acked > 0, "{r:?}");
    assert_eq!(r.totals.acked, r.totals.sent);
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert!(r.publish.messages > 0);
    assert!(r.publish_latency_us.count > 0);
    // Every acknowledged message was read by the group before the run ended.
    assert_eq!(r.totals.consumed, r.totals.acked, "every acknowledged record read exactly once");
    assert!(r.end_to_end_latency_us.count > 0);
}
