//! Latency histograms (HdrHistogram, microseconds) and the percentiles every report prints.
//!
//! Coordinated omission: a load generator that waits for a slow response before sending the
//! next request stops measuring exactly while the system is slow. Ours is open loop: every
//! message has an intended send time on a fixed schedule (`workload/rate.rs`), and every
//! latency is measured from that intended time, not from when the message actually left. A
//! 1 s stall therefore shows up as the 1000 messages that should have been sent during it,
//! with latencies from 1 s down to 1 ms (see the tests), instead of one slow sample.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::LoadgenError;

/// Highest recordable latency: 10 minutes. Larger values saturate at it.
pub const LATENCY_US_MAX: u64 = 600_000_000;
/// Three significant digits: values are exact to 0.1 %.
pub const SIGNIFICANT_DIGITS: u8 = 3;

pub fn latency_histogram() -> Result<Histogram<u64>, LoadgenError> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS)
        .map_err(|e| LoadgenError::Histogram(e.to_string()))
}

/// Latency of one message, from its intended send time to `done_us`, both on the same clock.
/// A completion before the intended time (impossible with a correct schedule) counts as 0.
pub fn latency_from_intended_us(intended_us: u64, done_us: u64) -> u64 {
    done_us.saturating_sub(intended_us)
}

/// Records a latency; 0 µs is recorded as 1 µs (the histogram's lowest value).
pub fn record(histogram: &mut Histogram<u64>, latency_us: u64) {
    histogram.saturating_record(latency_us.max(1));
}

/// The figures every report prints, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            p9999_us: h.value_at_quantile(0.9999),
            max_us: h.max(),
        }
    }

    /// (label, value) in print order.
    pub fn columns(&self) -> [(&'static str, u64); 7] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p999_us),
            ("p99.99", self.p9999_us),
            ("max", self.max_us),
            ("min", self.min_us),
        ]
    }
}

/// "850 µs", "12.3 ms", "1.20 s".
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::rate::Schedule;

    /// Service time of the simulated system outside the stall.
    const SERVICE_US: u64 = 100;
    const INTERVAL_US: u64 = 1000; // 1000 msg/s
    const STALL_FROM_US: u64 = 500_000;
    const STALL_UNTIL_US: u64 = 1_500_000; // a 1 s stall
    const RUN_US: u64 = 2_000_000;

    /// When a request sent at `send_us` completes: a system that answers in SERVICE_US except
    /// during the stall, when nothing is answered until it ends.
    fn completes_at(send_us: u64) -> u64 {
        let start = if (STALL_FROM_US..STALL_UNTIL_US).contains(&send_us) { STALL_UNTIL_US } else { send_us };
        start + SERVICE_US
    }

    fn assert_close(actual: u64, expected: u64) {
        // Three significant digits: within 0.1 % (plus 1 µs for tiny values).
        let tolerance = expected / 1000 + 1;
        assert!(actual.abs_diff(expected) <= tolerance, "got {actual} µs, expected {expected} µs");
    }

    #[test]
    fn open_loop_latency_counts_the_messages_a_stall_delayed() {
        let schedule = Schedule::from_interval_ns(INTERVAL_US * 1000);
        let mut h = latency_histogram().unwrap();
        let messages = RUN_US / INTERVAL_US;
        for k in 0..messages {
            let intended_us = schedule.offset_ns(k) / 1000;
            // Open loop: the message is sent at its intended time whatever happened before.
            record(&mut h, latency_from_intended_us(intended_us, completes_at(intended_us)));
        }
        // By hand: 2000 messages. The 1000 intended outside [0.5 s, 1.5 s) take 100 µs. The
        // 1000 intended inside it, at 0.5 s + j ms (j = 0..999), complete at 1.5 s + 100 µs:
        // latencies (1000 - j) ms + 100 µs, i.e. 1.1 ms, 2.1 ms, ..., 1000.1 ms, one each.
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 2000);
        assert_close(p.min_us, 100);
        assert_close(p.p50_us, 100); // the 1000th value is the last 100 µs one
        assert_close(p.p90_us, 800_100); // the 1800th: the 800th stalled value
        assert_close(p.p99_us, 980_100); // the 1980th
        assert_close(p.p999_us, 998_100); // the 1998th
        assert_close(p.max_us, 1_000_100);
        let expected_mean = (1000.0 * 100.0 + (1..=1000).map(|ms| ms as f64 * 1000.0 + 100.0).sum::<f64>()) / 2000.0;
        assert!((p.mean_us - expected_mean).abs() / expected_mean < 0.001, "mean {}", p.mean_us);
    }

    #[test]
    fn closed_loop_timing_hides_the_stall() {
        // The same system timed the naive way: each request sent when the previous one
        // completed (or on schedule, whichever is later), latency measured from the actual
        // send. One sample sees the stall; p99 does not.
        let mut h = latency_histogram().unwrap();
        let mut free_at_us = 0;
        for k in 0..RUN_US / INTERVAL_US {
            let send_us = (k * INTERVAL_US).max(free_at_us);
            if send_us >= RUN_US {
                break; // the run is over; what the stall pushed out is never sent
            }
            let done_us = completes_at(send_us);
            record(&mut h, done_us - send_us);
            free_at_us = done_us;
        }
        let p = Percentiles::of(&h);
        assert_close(p.p99_us, SERVICE_US);
        assert_close(p.max_us, STALL_UNTIL_US - STALL_FROM_US + SERVICE_US);
        // Exactly one sample saw the stall (the open-loop count above is 1000).
        assert_eq!(h.count_between(2 * SERVICE_US, LATENCY_US_MAX), 1);
    }

    #[test]
    fn percentiles_of_a_known_uniform_distribution() {
        let mut h = latency_histogram().unwrap();
        for v in 1..=10_000 {
            record(&mut h, v);
        }
        let p = Percentiles::of(&h);
        assert_close(p.p50_us, 5000);
        assert_close(p.p90_us, 9000);
        assert_close(p.p99_us, 9900);
        assert_close(p.p999_us, 9990);
        assert_close(p.p9999_us, 9999);
        assert_close(p.max_us, 10_000);
        assert_eq!(p.min_us, 1);
        assert_eq!(Percentiles::of(&latency_histogram().unwrap()), Percentiles::default());
    }
}
