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
    out
}
