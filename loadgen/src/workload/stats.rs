//! What the executors share with the main thread while a workload runs: counters (atomics, read
//! every second for the live line and at the window's edges for the rates), the live
//! publish-latency histogram, the first errors, and the phase flags. Latency histograms for
//! the report stay on each executor (`Recorders`) and are merged at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::error::LoadgenResult;
use crate::histogram::latency_histogram;

/// Error texts kept for the report; the rest are only counted.
pub const ERRORS_KEPT_MAX: usize = 10;

#[derive(Default, Debug)]
pub struct Counters {
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub acked: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors_send: AtomicU64,
    pub errors_ack: AtomicU64,
    pub errors_consume: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub sent: u64,
    pub sent_bytes: u64,
    pub acked: u64,
    pub acked_bytes: u64,
    pub consumed: u64,
    pub consumed_bytes: u64,
    pub errors: u64,
}

impl Counters {
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            sent: get(&self.sent),
            sent_bytes: get(&self.sent_bytes),
            acked: get(&self.acked),
            acked_bytes: get(&self.acked_bytes),
            consumed: get(&self.consumed),
            consumed_bytes: get(&self.consumed_bytes),
            errors: get(&self.errors_send) + get(&self.errors_ack) + get(&self.errors_consume),
        }
    }
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Microseconds since the Unix epoch (0 before it).
pub fn epoch_us_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The run's clock: the common start, the measured window, and the mapping from `Instant` to
/// epoch microseconds (the end-to-end timestamp's clock).
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub start: Instant,
    pub start_epoch_us: u64,
    /// Messages intended in [measure_from, produce_until) are recorded.
    pub measure_from: Instant,
    /// Producers send nothing intended at or after this.
    pub produce_until: Instant,
}

impl Timeline {
    pub fn epoch_us(&self, t: Instant) -> u64 {
        self.start_epoch_us + t.saturating_duration_since(self.start).as_micros() as u64
    }

    pub fn in_window(&self, intended: Instant) -> bool {
        intended >= self.measure_from && intended < self.produce_until
    }

    pub fn in_window_epoch_us(&self, intended_us: u64) -> bool {
        intended_us >= self.epoch_us(self.measure_from) && intended_us < self.epoch_us(self.produce_until)
    }
}

pub struct Shared {
    pub counters: Counters,
    /// Publish latencies since the live line last took them.
    pub live_publish: Mutex<Histogram<u64>>,
    pub first_errors: Mutex<Vec<String>>,
    /// All executors and the main thread meet here twice: once connected, once the main thread
    /// has fixed the start time.
    pub barrier: Barrier,
    pub timeline: Mutex<Option<Timeline>>,
    /// Catch-up mode: consumers wait for this.
    pub consumers_go: AtomicBool,
    pub stop_producing: AtomicBool,
    pub stop_consuming: AtomicBool,
    pub producers_done: AtomicUsize,
    pub executors_done: AtomicUsize,
    /// Executors claim their index here.
    pub next_executor: AtomicUsize,
    /// Executors that could not connect (counted before the first barrier).
    pub connect_failures: AtomicUsize,
}

impl Shared {
    pub fn new(executors: usize) -> LoadgenResult<Shared> {
        Ok(Shared {
            counters: Counters::default(),
            live_publish: Mutex::new(latency_histogram()?),
            first_errors: Mutex::new(Vec::new()),
            barrier: Barrier::new(executors + 1),
            timeline: Mutex::new(None),
            consumers_go: AtomicBool::new(false),
            stop_producing: AtomicBool::new(false),
            stop_consuming: AtomicBool::new(false),
            producers_done: AtomicUsize::new(0),
            executors_done: AtomicUsize::new(0),
            next_executor: AtomicUsize::new(0),
            connect_failures: AtomicUsize::new(0),
        })
    }

    pub fn error(&self, counter: &AtomicU64, what: &str, reason: &str) {
        add(counter, 1);
        if let Ok(mut kept) = self.first_errors.lock() {
            if kept.len() < ERRORS_KEPT_MAX {
                kept.push(format!("{what}: {reason}"));
            }
        }
    }

    pub fn timeline(&self) -> Option<Timeline> {
        self.timeline.lock().ok().and_then(|t| *t)
    }

    /// Moves an executor's recent publish latencies into the live histogram.
    pub fn merge_live(&self, local: &mut Histogram<u64>) {
        if let Ok(mut live) = self.live_publish.lock() {
            let _ = live.add(&*local);
        }
        local.reset();
    }

    /// Takes the live histogram's p99 and clears it.
    pub fn take_live_p99_us(&self) -> Option<u64> {
        let mut live = self.live_publish.lock().ok()?;
        let p99 = (!live.is_empty()).then(|| live.value_at_quantile(0.99));
        live.reset();
        p99
    }
}

/// Latency histograms of one executor (merged across executors at the end).
pub struct Recorders {
    /// Intended send → acknowledgement.
    pub publish: Histogram<u64>,
    /// Intended send → the send call (how far behind schedule the producer ran).
    pub send_delay: Histogram<u64>,
    /// Intended send → consumer receive.
    pub end_to_end: Histogram<u64>,
}

impl Recorders {
    pub fn new() -> LoadgenResult<Recorders> {
        Ok(Recorders {
            publish: latency_histogram()?,
            send_delay: latency_histogram()?,
            end_to_end: latency_histogram()?,
        })
    }

    pub fn merge(&mut self, other: &Recorders) {
        let _ = self.publish.add(&other.publish);
        let _ = self.send_delay.add(&other.send_delay);
        let _ = self.end_to_end.add(&other.end_to_end);
    }
}

/// How often executors hand their recent latencies to the live line.
pub const LIVE_MERGE_INTERVAL: Duration = Duration::from_millis(250);
