//! The open-loop schedule: message k of a producer is intended to leave at start + k × interval,
//! whatever happened to the messages before it. A producer that falls behind sends the
//! overdue messages at once (as a real population of independent clients would), and their
//! latency still counts from the intended time (`histogram.rs`), so a stall is never hidden.

use std::time::{Duration, Instant};

/// Rates slower than one message an hour are a unit mistake.
pub const RATE_MSG_PER_S_MIN: f64 = 1.0 / 3600.0;

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    interval_ns: u64,
}

impl Schedule {
    /// One producer's share of the total rate.
    pub fn for_rate(msg_per_s: f64) -> Schedule {
        assert!(msg_per_s >= RATE_MSG_PER_S_MIN);
        Schedule::from_interval_ns(((1e9 / msg_per_s).round() as u64).max(1))
    }

    pub fn from_interval_ns(interval_ns: u64) -> Schedule {
        assert!(interval_ns > 0);
        Schedule { interval_ns }
    }

    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    /// Intended send time of message `k`, relative to the start.
    pub fn offset_ns(&self, k: u64) -> u64 {
        k.saturating_mul(self.interval_ns)
    }

    pub fn intended(&self, start: Instant, k: u64) -> Instant {
        start + Duration::from_nanos(self.offset_ns(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_evenly_spaced() {
        let s = Schedule::for_rate(4000.0);
        assert_eq!(s.offset_ns(0), 0);
        assert_eq!(s.offset_ns(1), 250_000);
        assert_eq!(s.offset_ns(4000), 1_000_000_000);
    }
}
