//! Native vs Kafka listener: reports whose workloads are identical except for `protocol`
//! (a suite such as `benches/scenarios/kafka-vs-native/` runs both) are paired, and each pair
//! becomes a row of Kafka ÷ native ratios. `report DIR --markdown` appends the table.

use std::fmt::Write;

use super::RunReport;
use crate::config::{Protocol, WorkloadConfig};
use crate::histogram::format_us;

/// The workload without what may differ between the two runs of a pair.
fn workload(config: &WorkloadConfig) -> WorkloadConfig {
    WorkloadConfig { name: None, description: None, protocol: Protocol::Native, targets: Vec::new(), ..config.clone() }
}

/// (native, kafka) pairs, in the order the native reports come.
pub fn pairs(reports: &[RunReport]) -> Vec<(&RunReport, &RunReport)> {
    reports
        .iter()
        .filter(|n| n.config.protocol == Protocol::Native)
        .filter_map(|native| {
            let same = workload(&native.config);
            reports
                .iter()
                .find(|k| k.config.protocol == Protocol::Kafka && workload(&k.config) == same)
                .map(|kafka| (native, kafka))
        })
        .collect()
}

fn ratio(kafka: f64, native: f64) -> String {
    if native > 0.0 {
        format!("{:.2}", kafka / native)
    } else {
        "-".to_owned()
    }
}

/// The comparison table, or nothing when no pair is found.
pub fn render(reports: &[RunReport]) -> String {
    let pairs = pairs(reports);
    let mut out = String::new();
    if pairs.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\nNative vs Kafka listener (same workload; ratio = Kafka ÷ native):\n");
    let _ = writeln!(
        out,
        "| workload | native publish msg/s | Kafka publish msg/s | publish ratio | consume ratio | native p99 | Kafka p99 | errors (native / Kafka) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
    for (native, kafka) in pairs {
        let (n, k) = (&native.results, &kafka.results);
        let _ = writeln!(
            out,
            "| {} / {} | {:.0} | {:.0} | {} | {} | {} | {} | {} / {} |",
            native.scenario,
            kafka.scenario,
            n.publish.msg_per_s,
            k.publish.msg_per_s,
            ratio(k.publish.msg_per_s, n.publish.msg_per_s),
            ratio(k.consume.msg_per_s, n.consume.msg_per_s),
            format_us(n.publish_latency_us.p99_us as f64),
            format_us(k.publish_latency_us.p99_us as f64),
            n.errors.total(),
            k.errors.total(),
        );
    }
    out
}
