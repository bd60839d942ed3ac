//! Every figure as a ratio to the baseline it is bounded by, measured in the same run:
//!
//! | ratio | figure | baseline |
//! |---|---|---|
//! | `publish_to_disk_write` | publish MB/s (values) | raw O_DIRECT write MB/s |
//! | `publish_to_loopback` | publish MB/s (values) | loopback TCP MB/s |
//! | `consume_to_loopback` | consume MB/s | loopback TCP MB/s |
//! | `consume_to_disk_read` | consume MB/s | raw O_DIRECT read MB/s |
//! | `publish_p99_to_fsync_p99` | publish latency p99 | 4 KiB write + fdatasync p99 |
//! | `publish_p999_to_fsync_p999` | publish latency p99.9 | fdatasync p99.9 |
//! | `publish_p999_to_rtt_p999` | publish latency p99.9 | loopback 128 B round trip p99.9 |
//! | `e2e_p999_to_rtt_p999` | end-to-end p99.9 | loopback round trip p99.9 |
//! | `publish_p999_to_durable_bound` | publish p99.9 | 1.5 × fdatasync p99.9 + 3 × round trip p99.9 (issue #14's durable target: ≤ 1) |
//! | `publish_p999_to_p50` | publish p99.9 | publish p50 of the same run (flatness: issue #14 asks ≤ 10 at 50 % of max) |

use std::collections::BTreeMap;

use super::Results;
use crate::baseline::Baselines;

pub fn compute(results: &Results, baselines: &Baselines) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, figure: f64, base: Option<f64>| {
        if let Some(base) = base.filter(|b| *b > 0.0) {
            if figure > 0.0 {
                out.insert(name.to_owned(), figure / base);
            }
        }
    };
    let (publish, consume) = (results.publish.mb_per_s, results.consume.mb_per_s);
    put("publish_to_disk_write", publish, baselines.disk_write_mb_per_s);
    put("publish_to_loopback", publish, baselines.loopback_mb_per_s);
    put("consume_to_loopback", consume, baselines.loopback_mb_per_s);
    put("consume_to_disk_read", consume, baselines.disk_read_mb_per_s);
    let lat = &results.publish_latency_us;
    let fsync = baselines.fsync_latency_us.as_ref();
    let rtt = baselines.loopback_rtt_us.as_ref();
    put("publish_p99_to_fsync_p99", lat.p99_us as f64, fsync.map(|f| f.p99_us as f64));
    put("publish_p999_to_fsync_p999", lat.p999_us as f64, fsync.map(|f| f.p999_us as f64));
    put("publish_p999_to_rtt_p999", lat.p999_us as f64, rtt.map(|r| r.p999_us as f64));
    put("e2e_p999_to_rtt_p999", results.end_to_end_latency_us.p999_us as f64, rtt.map(|r| r.p999_us as f64));
    let durable_bound = fsync.zip(rtt).map(|(f, r)| 1.5 * f.p999_us as f64 + 3.0 * r.p999_us as f64);
    put("publish_p999_to_durable_bound", lat.p999_us as f64, durable_bound);
    put("publish_p999_to_p50", lat.p999_us as f64, Some(lat.p50_us as f64));
    out
}
