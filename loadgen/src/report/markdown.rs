//! `shardlog-loadgen report DIR --markdown`: one table row per JSON report in DIR (a suite's
//! output), with the targets and whether each was met: the table in docs/benchmarks.md.

use std::fmt::Write;

use super::targets::evaluate;
use super::RunReport;
use crate::histogram::format_us;

pub fn render(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| scenario | mode | publish msg/s | publish MB/s | publish p50 / p99 / p99.9 | e2e p99 | consume MB/s | errors | target | ratio | met |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---|---:|---:|---:|---|---:|---|");
    for r in reports {
        let res = &r.results;
        let lat = &res.publish_latency_us;
        let e2e = if res.end_to_end_latency_us.count > 0 {
            format_us(res.end_to_end_latency_us.p99_us as f64)
        } else {
            "-".to_owned()
        };
        let first = format!(
            "| {} | {:?} | {:.0} | {:.1} | {} / {} / {} | {} | {:.1} | {} ",
            r.scenario,
            res.mode,
            res.publish.msg_per_s,
            res.publish.mb_per_s,
            format_us(lat.p50_us as f64),
            format_us(lat.p99_us as f64),
            format_us(lat.p999_us as f64),
            e2e,
            res.consume.mb_per_s,
            res.errors.total()
        );
        let targets = evaluate(r);
        if targets.is_empty() {
            let _ = writeln!(out, "{first}| - | - | - |");
        }
        for (target, outcome) in targets {
            let (ratio, met) = match outcome {
                Some((actual, met)) => (format!("{actual:.2}"), if met { "yes" } else { "**no**" }),
                None => ("-".to_owned(), "not measured"),
            };
            let _ = writeln!(out, "{first}| {} | {ratio} | {met} |", target.describe());
        }
    }
    if let Some(b) = reports.iter().find_map(|r| r.baselines.as_ref()) {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} MB/s"));
        let _ = writeln!(
            out,
            "\nBaselines (same run): raw disk write {}, raw disk read {}, loopback TCP {}, fdatasync p99.9 {}, loopback round trip p99.9 {}.",
            opt(b.disk_write_mb_per_s),
            opt(b.disk_read_mb_per_s),
            opt(b.loopback_mb_per_s),
            b.fsync_latency_us.map_or("-".to_owned(), |f| format_us(f.p999_us as f64)),
            b.loopback_rtt_us.map_or("-".to_owned(), |f| format_us(f.p999_us as f64)),
        );
    }
    out.push_str(&super::protocols::render(reports));
    out
}
