//! A fixed-size latency histogram with power-of-two microsecond buckets: cheap enough to
//! update on every fdatasync, mergeable across partitions, and renderable as a Prometheus
//! histogram. (Load-generator reports use HdrHistogram; this one only feeds metrics.)

use std::time::Duration;

/// Bucket `i` counts samples ≤ 2^i µs; the last bucket also takes everything above.
pub const LATENCY_BUCKETS: usize = 26; // 2^25 µs ≈ 33 s

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS],
    pub count: u64,
    pub sum_us: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: [0; LATENCY_BUCKETS], count: 0, sum_us: 0 }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = (u64::BITS - us.saturating_sub(1).leading_zeros()) as usize;
        self.buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Upper bound of bucket `i` in µs.
    pub fn bucket_upper_us(i: usize) -> u64 {
        1u64 << i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        let mut h = LatencyHistogram::default();
        for us in [0u64, 1, 2, 3, 4, 5, 1000, 1024, 1025] {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count, 9);
        assert_eq!(h.buckets[0], 2); // 0 and 1
        assert_eq!(h.buckets[1], 1); // 2
        assert_eq!(h.buckets[2], 2); // 3, 4
        assert_eq!(h.buckets[3], 1); // 5
        assert_eq!(h.buckets[10], 2); // 1000, 1024
        assert_eq!(h.buckets[11], 1); // 1025
        let mut m = LatencyHistogram::default();
        m.merge(&h);
        m.merge(&h);
        assert_eq!(m.count, 18);
        assert_eq!(m.sum_us, 2 * h.sum_us);
    }
}
