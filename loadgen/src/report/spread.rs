//! `suite --repeat N`: the spread of each scenario's figures across its runs (minimum, median,
//! maximum), because one run on a noisy machine is one sample: a figure is worth quoting only
//! with the range it moved in, read beside the hiccup meter of the same runs.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::RunReport;

/// (label, value of one run); `None` where the run did not measure it.
type Figure = (&'static str, fn(&RunReport) -> Option<f64>);

const FIGURES: &[Figure] = &[
    ("publish MB/s", |r| Some(r.results.publish.mb_per_s)),
    ("publish p50 ms", |r| Some(r.results.publish_latency_us.p50_us as f64 / 1e3)),
    ("publish p99.9 ms", |r| Some(r.results.publish_latency_us.p999_us as f64 / 1e3)),
    ("e2e p99 ms", |r| {
        let p = &r.results.end_to_end_latency_us;
        (p.count > 0).then(|| p.p99_us as f64 / 1e3)
    }),
    ("send delay p99.9 ms", |r| Some(r.results.send_delay_us.p999_us as f64 / 1e3)),
    ("hiccup p99.9 ms", |r| r.results.platform.map(|p| p.hiccup_us.p999_us as f64 / 1e3)),
    ("broker CPU µs/msg", |r| r.results.platform.and_then(|p| p.broker_cpu_us_per_msg)),
    ("loadgen CPU µs/msg", |r| r.results.platform.and_then(|p| p.loadgen_cpu_us_per_msg)),
];

/// (min, median, max) of `values` (the lower median for an even count).
pub fn min_median_max(values: &mut [f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((values[0], values[(values.len() - 1) / 2], values[values.len() - 1]))
}

/// One markdown table: a row per scenario and figure with runs, min, median, max.
pub fn render(reports: &[RunReport]) -> String {
    let mut by_scenario: BTreeMap<&str, Vec<&RunReport>> = BTreeMap::new();
    for r in reports {
        by_scenario.entry(scenario_of(&r.scenario)).or_default().push(r);
    }
    let mut out = String::new();
    let _ = writeln!(out, "| scenario | figure | runs | min | median | max |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
    for (scenario, runs) in by_scenario {
        for (label, value) in FIGURES {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| value(r)).collect();
            let count = values.len();
            if let Some((min, median, max)) = min_median_max(&mut values) {
                let _ = writeln!(out, "| {scenario} | {label} | {count} | {min:.2} | {median:.2} | {max:.2} |");
            }
        }
    }
    out
}

/// A repeated run's scenario name without its `-rN` suffix.
pub fn scenario_of(name: &str) -> &str {
    match name.rsplit_once("-r") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_values() {
        assert_eq!(min_median_max(&mut []), None);
        assert_eq!(min_median_max(&mut [3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(min_median_max(&mut [4.0, 1.0, 3.0, 2.0]), Some((1.0, 2.0, 4.0)));
    }

    #[test]
    fn repeat_suffixes_are_dropped() {
        assert_eq!(scenario_of("01-max-r3"), "01-max");
        assert_eq!(scenario_of("01-max"), "01-max");
        assert_eq!(scenario_of("read-rate"), "read-rate");
    }
}
