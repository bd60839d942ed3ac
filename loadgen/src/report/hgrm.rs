//! HdrHistogram percentile-distribution files (`.hgrm`), the text format of Java
//! HdrHistogram's `outputPercentileDistribution` that HdrHistogram's plotter reads: values in
//! milliseconds, five steps per halving of the distance to 100 %.

use std::fmt::Write;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::error::{LoadgenError, LoadgenResult};
use crate::workload::stats::Recorders;

/// Steps per half-distance to 100 %, as the Java default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Values are µs; the file is in ms.
const VALUE_SCALE: f64 = 1000.0;

pub fn render(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if h.is_empty() {
        let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", 0.0, 0.0);
        let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", 0.0, 0);
        return out;
    }
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let value = v.value_iterated_to() as f64 / VALUE_SCALE;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ =
                writeln!(out, "{value:12.3} {q:2.12} {:10} {:14.2}", v.count_since_last_iteration(), 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {:10}", v.count_since_last_iteration());
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / VALUE_SCALE,
        h.stdev() / VALUE_SCALE
    );
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / VALUE_SCALE, h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    out
}

/// Writes `publish.hgrm`, `send-delay.hgrm` and `end-to-end.hgrm` into `dir`.
pub fn write_all(dir: &Path, prefix: &str, recorders: &Recorders) -> LoadgenResult<()> {
    std::fs::create_dir_all(dir).map_err(LoadgenError::file(dir))?;
    for (name, h) in
        [("publish", &recorders.publish), ("send-delay", &recorders.send_delay), ("end-to-end", &recorders.end_to_end)]
    {
        let path = dir.join(format!("{prefix}{name}.hgrm"));
        std::fs::write(&path, render(h)).map_err(LoadgenError::file(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_ends_at_the_max_with_the_total_count() {
        let mut h = crate::histogram::latency_histogram().unwrap();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = render(&h);
        assert!(text.starts_with("       Value     Percentile"));
        assert!(text.contains("#[Max     =     1000.447, Total count    =         1000]"), "{text}");
        let last_row = text.lines().rfind(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
        assert!(last_row.contains("1.000000000000"), "{last_row}");
    }
}
