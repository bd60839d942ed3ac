//! The replication comparison side by side (`shardlog-loadgen replication`): one column per
//! replication factor, a column of ratios to the first factor for each other one, and the
//! same-run baselines every figure is also divided by. Printed as text, or as a markdown table
//! (`--markdown`, for docs/benchmarks.md).

use std::fmt::Write;

use crate::config::AckMode;
use crate::histogram::{format_us, Percentiles};
use crate::replication::{FactorSummary, ReplicationReport};

/// One table row: a label, one cell per factor, one ratio cell per factor after the first.
struct Row {
    label: String,
    cells: Vec<String>,
    ratios: Vec<String>,
}

fn ratio_cell(s: &FactorSummary, key: &str) -> String {
    s.ratios_to_first.get(key).map_or("-".to_owned(), |r| format!("{r:.2}"))
}

fn rows(r: &ReplicationReport) -> Vec<Row> {
    let summary = &r.summary;
    let others = summary.iter().skip(1);
    let mut rows = Vec::new();
    let with_baselines = r.baselines.as_ref().is_some_and(|b| !b.is_empty());
    let mut figure = |label: &str, cell: &dyn Fn(&FactorSummary) -> String, key: Option<&str>| {
        // A ratio row ("  ÷ …") only when baselines were measured.
        if label.starts_with("  ÷") && !with_baselines {
            return;
        }
        rows.push(Row {
            label: label.to_owned(),
            cells: summary.iter().map(cell).collect(),
            ratios: others.clone().map(|s| key.map_or(String::new(), |k| ratio_cell(s, k))).collect(),
        });
    };
    let baseline_ratio =
        |key: &'static str| move |s: &FactorSummary| s.ratios.get(key).map_or("-".into(), |v| format!("{v:.2}"));
    let latency = |pick: fn(&Percentiles) -> u64| {
        move |s: &FactorSummary| {
            s.publish_latency_us.filter(|p| p.count > 0).map_or("-".into(), |p| format_us(pick(&p) as f64))
        }
    };
    let e2e = |pick: fn(&Percentiles) -> u64| {
        move |s: &FactorSummary| {
            s.end_to_end_latency_us.filter(|p| p.count > 0).map_or("-".into(), |p| format_us(pick(&p) as f64))
        }
    };
    figure(
        "throughput: publish msg/s (closed loop)",
        &|s| format!("{:.0}", s.publish_msg_per_s),
        Some("publish_msg_per_s"),
    );
    figure("throughput: publish MB/s", &|s| format!("{:.1}", s.publish_mb_per_s), Some("publish_mb_per_s"));
    figure("  ÷ raw disk write", &baseline_ratio("publish_to_disk_write"), None);
    if r.config.groups > 0 {
        figure("throughput: consume MB/s", &|s| format!("{:.1}", s.consume_mb_per_s), None);
    }
    if let Some(rate) = r.latency_rate_msg_per_s {
        figure(
            &format!("latency phase: acked msg/s (target {rate:.0})"),
            &|s| s.latency_phase_msg_per_s.map_or("-".into(), |v| format!("{v:.0}")),
            None,
        );
        figure("publish p50 (from intended send)", &latency(|p| p.p50_us), Some("publish_p50_us"));
        figure("  ÷ fdatasync p50", &baseline_ratio("publish_p50_to_fsync_p50"), None);
        figure("  ÷ loopback round trip p50", &baseline_ratio("publish_p50_to_rtt_p50"), None);
        figure("publish p99", &latency(|p| p.p99_us), Some("publish_p99_us"));
        figure("  ÷ fdatasync p99", &baseline_ratio("publish_p99_to_fsync_p99"), None);
        figure("publish p99.9", &latency(|p| p.p999_us), Some("publish_p999_us"));
        figure("  ÷ fdatasync p99.9", &baseline_ratio("publish_p999_to_fsync_p999"), None);
        figure("  ÷ loopback round trip p99.9", &baseline_ratio("publish_p999_to_rtt_p999"), None);
        if r.config.groups > 0 {
            figure("end to end p50", &e2e(|p| p.p50_us), Some("e2e_p50_us"));
            figure("end to end p99", &e2e(|p| p.p99_us), Some("e2e_p99_us"));
        }
    }
    figure("records acked (every run)", &|s| s.acked.to_string(), None);
    figure("errors", &|s| s.errors.to_string(), None);
    rows
}

fn headers(r: &ReplicationReport) -> (Vec<String>, Vec<String>) {
    let first = r.factors.first().copied().unwrap_or(1);
    let factors = r.factors.iter().map(|f| format!("RF={f}")).collect();
    let ratios = r.factors.iter().skip(1).map(|f| format!("RF{f}/RF{first}")).collect();
    (factors, ratios)
}

/// What the runs were, in a few lines.
fn preamble(r: &ReplicationReport) -> String {
    let c = &r.config;
    let e = &r.environment;
    let mut out = String::new();
    let factors: Vec<String> = r.factors.iter().map(u32::to_string).collect();
    let _ = writeln!(
        out,
        "acks {}, replication factor {} side by side, native protocol, {} round(s) per phase",
        match c.acks {
            AckMode::Durable => "all (durable)",
            AckMode::Leader => "leader",
            AckMode::None => "none",
        },
        factors.join(" vs "),
        r.rounds
    );
    let _ = writeln!(
        out,
        "workload per run: {} topic(s) × {} partitions, {} messages, {} producer(s), {} group(s) × {} consumer(s), \
         durability {}, batch {}, linger {} ms; {} s measured after {} s warm-up",
        c.topics,
        c.partitions,
        c.message_size,
        c.producers,
        c.groups,
        c.consumers,
        c.durability,
        c.batch_bytes,
        c.linger_ms,
        c.duration_s,
        c.warmup_s
    );
    let _ = writeln!(
        out,
        "broker: {} {}; load generator: {} {}; {} CPUs, data dir {}",
        e.broker,
        e.broker_placement.as_deref().unwrap_or(""),
        e.loadgen_executors,
        e.loadgen_placement,
        e.cpus,
        e.data_dir_fs.as_deref().unwrap_or("?")
    );
    if let Some(b) = &r.baselines {
        let mb = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} MB/s"));
        let lat = |p: Option<Percentiles>| {
            p.map_or("-".to_owned(), |p| {
                format!(
                    "{} / {} / {}",
                    format_us(p.p50_us as f64),
                    format_us(p.p99_us as f64),
                    format_us(p.p999_us as f64)
                )
            })
        };
        let _ = writeln!(
            out,
            "baselines (same run): raw disk write {}, loopback TCP {}, 4 KiB write + fdatasync p50 / p99 / p99.9 {}, \
             loopback 128 B round trip p50 / p99 / p99.9 {}",
            mb(b.disk_write_mb_per_s),
            mb(b.loopback_mb_per_s),
            lat(b.fsync_latency_us),
            lat(b.loopback_rtt_us)
        );
    }
    out
}

pub fn render(r: &ReplicationReport) -> String {
    let mut out = format!("\n== shardlog-loadgen replication: {}\n", r.name);
    out.push_str(&preamble(r));
    let (factors, ratios) = headers(r);
    let rows = rows(r);
    let label_width = rows.iter().map(|row| row.label.chars().count()).max().unwrap_or(0);
    let _ = write!(out, "\n{:<label_width$}", "");
    for h in factors.iter().chain(&ratios) {
        let _ = write!(out, " {h:>12}");
    }
    out.push('\n');
    for row in &rows {
        let _ = write!(out, "{:<label_width$}", row.label);
        for cell in row.cells.iter().chain(&row.ratios) {
            let _ = write!(out, " {cell:>12}");
        }
        out.push('\n');
    }
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

pub fn markdown(r: &ReplicationReport) -> String {
    let mut out = String::new();
    for line in preamble(r).lines() {
        let _ = writeln!(out, "{line}  ");
    }
    let (factors, ratios) = headers(r);
    let _ = writeln!(out, "\n| figure | {} | {} |", factors.join(" | "), ratios.join(" | "));
    let _ = writeln!(out, "|---|{}{}", "---:|".repeat(factors.len()), "---:|".repeat(ratios.len()));
    for row in rows(r) {
        let _ = writeln!(out, "| {} | {} | {} |", row.label.trim(), row.cells.join(" | "), row.ratios.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WorkloadConfig;
    use crate::env_info::Environment;
    use crate::replication::{REPLICATION_KIND, REPLICATION_SCHEMA_VERSION};

    #[test]
    fn both_factors_side_by_side_with_their_ratio() {
        let p = Percentiles { count: 10, p50_us: 1000, p99_us: 2000, p999_us: 3000, ..Percentiles::default() };
        let rf1 = FactorSummary {
            replication_factor: 1,
            publish_msg_per_s: 1000.0,
            publish_mb_per_s: 1.0,
            latency_phase_msg_per_s: Some(500.0),
            publish_latency_us: Some(p),
            acked: 7,
            ..FactorSummary::default()
        };
        let mut rf3 = FactorSummary { replication_factor: 3, publish_msg_per_s: 400.0, ..rf1.clone() };
        rf3.ratios_to_first.insert("publish_msg_per_s".into(), 0.4);
        let report = ReplicationReport {
            schema_version: REPLICATION_SCHEMA_VERSION,
            tool: crate::report::TOOL.into(),
            kind: REPLICATION_KIND.into(),
            name: "t".into(),
            factors: vec![1, 3],
            rounds: 1,
            config: WorkloadConfig { groups: 0, ..WorkloadConfig::default() },
            latency_rate_msg_per_s: Some(500.0),
            environment: Environment::default(),
            baselines: None,
            runs: Vec::new(),
            summary: vec![rf1, rf3],
            notes: Vec::new(),
        };
        let text = render(&report);
        assert!(text.contains("RF=1") && text.contains("RF=3") && text.contains("RF3/RF1"), "{text}");
        let throughput = text.lines().find(|l| l.starts_with("throughput: publish msg/s")).unwrap();
        assert!(
            throughput.contains("1000") && throughput.contains("400") && throughput.contains("0.40"),
            "{throughput}"
        );
        let md = markdown(&report);
        assert!(md.contains("| figure | RF=1 | RF=3 | RF3/RF1 |"), "{md}");
        assert!(md.contains("| publish p99 | 2.00 ms | 2.00 ms |"), "{md}");
    }
}
