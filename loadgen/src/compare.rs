//! `shardlog-loadgen compare BASELINE.json CURRENT.json`: the regression gate. Each figure is
//! compared as a ratio to its same-run baseline when both reports have that baseline (so a
//! slower disk or a busier machine does not read as a regression), else raw; each row says
//! which. A throughput drop beyond `--max-throughput-drop` or a latency rise beyond
//! `--max-latency-rise` is a regression (exit 1).

use std::fmt::Write;

use crate::baseline::Baselines;
use crate::report::RunReport;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// 0.10 = a 10 % drop is tolerated.
    pub throughput_drop: f64,
    pub latency_rise: f64,
}

/// "10%" or "10" → 0.10.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a percentage (e.g. 10%)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("`{text}`: the percentage must be zero or more"));
    }
    Ok(value / 100.0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// "ratio to raw disk write", or "raw (msg/s)".
    pub basis: String,
    pub baseline: f64,
    pub current: f64,
    pub higher_is_better: bool,
    /// False: shown, never a regression.
    pub gates: bool,
    pub regression: bool,
}

impl Row {
    pub fn change(&self) -> f64 {
        if self.baseline == 0.0 {
            0.0
        } else {
            (self.current - self.baseline) / self.baseline
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub rows: Vec<Row>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.regression)
    }
}

struct Metric {
    name: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    /// Whether a change beyond the threshold fails the gate; CPU per message is shown for
    /// reading only (it moves with the load's shape, and CI's smoke runs are too short for
    /// a steady figure).
    gates: bool,
    value: fn(&RunReport) -> Option<f64>,
    /// (baseline name, its value) this figure is divided by, when normalised.
    baseline: fn(&RunReport, &Baselines) -> Option<(&'static str, f64)>,
}

fn some_positive(v: f64) -> Option<f64> {
    (v > 0.0).then_some(v)
}

fn write_bound(r: &RunReport, b: &Baselines) -> Option<(&'static str, f64)> {
    if r.config.durable_acks() {
        b.disk_write_mb_per_s.map(|v| ("raw disk write", v))
    } else {
        b.loopback_mb_per_s.map(|v| ("loopback TCP", v))
    }
}

fn read_bound(r: &RunReport, b: &Baselines) -> Option<(&'static str, f64)> {
    if r.config.catch_up() {
        b.disk_read_mb_per_s.map(|v| ("raw disk read", v))
    } else {
        b.loopback_mb_per_s.map(|v| ("loopback TCP", v))
    }
}

fn latency_bound(
    r: &RunReport,
    b: &Baselines,
    pick: fn(&crate::histogram::Percentiles) -> u64,
) -> Option<(&'static str, f64)> {
    if r.config.durable_acks() {
        b.fsync_latency_us.as_ref().map(|p| ("fdatasync latency", pick(p) as f64))
    } else {
        b.loopback_rtt_us.as_ref().map(|p| ("loopback round trip", pick(p) as f64))
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "publish MB/s",
        unit: "MB/s",
        higher_is_better: true,
        gates: true,
        value: |r| some_positive(r.results.publish.mb_per_s),
        baseline: write_bound,
    },
    Metric {
        name: "publish msg/s",
        unit: "msg/s",
        higher_is_better: true,
        gates: true,
        value: |r| some_positive(r.results.publish.msg_per_s),
        baseline: write_bound,
    },
    Metric {
        name: "consume MB/s",
        unit: "MB/s",
        higher_is_better: true,
        gates: true,
        value: |r| some_positive(r.results.consume.mb_per_s),
        baseline: read_bound,
    },
    Metric {
        name: "publish p99",
        unit: "µs",
        higher_is_better: false,
        gates: true,
        value: |r| some_positive(r.results.publish_latency_us.p99_us as f64),
        baseline: |r, b| latency_bound(r, b, |p| p.p99_us),
    },
    Metric {
        name: "publish p99.9",
        unit: "µs",
        higher_is_better: false,
        gates: true,
        value: |r| some_positive(r.results.publish_latency_us.p999_us as f64),
        baseline: |r, b| latency_bound(r, b, |p| p.p999_us),
    },
    Metric {
        name: "end-to-end p99",
        unit: "µs",
        higher_is_better: false,
        gates: true,
        value: |r| some_positive(r.results.end_to_end_latency_us.p99_us as f64),
        baseline: |r, b| latency_bound(r, b, |p| p.p99_us),
    },
    Metric {
        name: "broker CPU/msg",
        unit: "µs",
        higher_is_better: false,
        gates: false,
        value: |r| r.results.platform.and_then(|p| p.broker_cpu_us_per_msg).and_then(some_positive),
        baseline: |_, _| None,
    },
    Metric {
        name: "loadgen CPU/msg",
        unit: "µs",
        higher_is_better: false,
        gates: false,
        value: |r| r.results.platform.and_then(|p| p.loadgen_cpu_us_per_msg).and_then(some_positive),
        baseline: |_, _| None,
    },
];

fn normalised(m: &Metric, r: &RunReport) -> Option<(&'static str, f64)> {
    let (name, base) = (m.baseline)(r, r.baselines.as_ref()?)?;
    let value = (m.value)(r)?;
    (base > 0.0).then_some((name, value / base))
}

pub fn compare(old: &RunReport, new: &RunReport, t: Thresholds) -> Comparison {
    let mut rows = Vec::new();
    for m in METRICS {
        let (Some(old_raw), Some(new_raw)) = ((m.value)(old), (m.value)(new)) else {
            continue;
        };
        let (basis, baseline, current) = match (normalised(m, old), normalised(m, new)) {
            (Some((name_old, a)), Some((name_new, b))) if name_old == name_new => {
                (format!("ratio to {name_old}"), a, b)
            }
            _ => (format!("raw ({})", m.unit), old_raw, new_raw),
        };
        let mut row = Row {
            name: m.name.to_owned(),
            basis,
            baseline,
            current,
            higher_is_better: m.higher_is_better,
            gates: m.gates,
            regression: false,
        };
        row.regression = m.gates
            && if m.higher_is_better { row.change() < -t.throughput_drop } else { row.change() > t.latency_rise };
        rows.push(row);
    }
    Comparison { rows }
}

pub fn render(c: &Comparison, old_name: &str, new_name: &str, t: Thresholds) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "compare: {old_name} → {new_name} (regression: throughput drop > {:.0}%, latency rise > {:.0}%)",
        t.throughput_drop * 100.0,
        t.latency_rise * 100.0
    );
    let _ = writeln!(
        out,
        "{:<16} {:<32} {:>14} {:>14} {:>9}  verdict",
        "figure", "compared as", "baseline", "current", "change"
    );
    for r in &c.rows {
        let verdict = match (r.regression, r.gates) {
            (true, _) => "REGRESSION",
            (false, true) => "ok",
            (false, false) => "(shown, not gated)",
        };
        let _ = writeln!(
            out,
            "{:<16} {:<32} {:>14.4} {:>14.4} {:>+8.1}%  {verdict}",
            r.name,
            r.basis,
            r.baseline,
            r.current,
            r.change() * 100.0
        );
    }
    if c.rows.is_empty() {
        let _ = writeln!(out, "(no figure present in both reports)");
    }
    let _ = writeln!(out, "{}", if c.regressed() { "result: REGRESSION" } else { "result: no regression" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse() {
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("20"), Ok(0.2));
        assert!(parse_percent("-1%").is_err());
        assert!(parse_percent("lots").is_err());
    }
}
