//! Per-shard counters and latency histograms, and the Prometheus text rendering. Each shard
//! updates only its own (plain `Cell`s, no atomics); the metrics endpoint asks every shard for
//! a snapshot through the router.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::Duration;

use engine::latency::{LatencyHistogram, LATENCY_BUCKETS};
use hdrhistogram::Histogram;

/// Latency histograms track 1 µs .. 60 s with 3 significant digits.
const LATENCY_US_MAX: u64 = 60_000_000;

pub struct ShardMetrics {
    pub produce_requests: Cell<u64>,
    pub produce_bytes: Cell<u64>,
    pub produce_errors: Cell<u64>,
    pub fetch_requests: Cell<u64>,
    pub fetch_bytes: Cell<u64>,
    pub connections: Cell<u64>,
    pub connections_total: Cell<u64>,
    pub forwards_out: Cell<u64>,
    pub forwards_in: Cell<u64>,
    pub malformed_frames: Cell<u64>,
    pub partitions: Cell<u64>,
    append_latency_us: RefCell<Option<Histogram<u64>>>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            produce_requests: Cell::new(0),
            produce_bytes: Cell::new(0),
            produce_errors: Cell::new(0),
            fetch_requests: Cell::new(0),
            fetch_bytes: Cell::new(0),
            connections: Cell::new(0),
            connections_total: Cell::new(0),
            forwards_out: Cell::new(0),
            forwards_in: Cell::new(0),
            malformed_frames: Cell::new(0),
            partitions: Cell::new(0),
            append_latency_us: RefCell::new(Histogram::new_with_max(LATENCY_US_MAX, 3).ok()),
        }
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

impl ShardMetrics {
    pub fn record_append(&self, elapsed: Duration, bytes: u64, ok: bool) {
        bump(&self.produce_requests, 1);
        if ok {
            bump(&self.produce_bytes, bytes);
        } else {
            bump(&self.produce_errors, 1);
        }
        if let Some(h) = self.append_latency_us.borrow_mut().as_mut() {
            let _ = h.record((elapsed.as_micros() as u64).clamp(1, LATENCY_US_MAX));
        }
    }

    pub fn malformed_frame(&self) {
        bump(&self.malformed_frames, 1);
    }

    pub fn connection_opened(&self) {
        bump(&self.connections, 1);
        bump(&self.connections_total, 1);
    }

    pub fn connection_closed(&self) {
        self.connections.set(self.connections.get().saturating_sub(1));
    }

    /// `fdatasync_latency` is merged over this shard's logs by the caller (the engine keeps it);
    /// `storage` is what the engine reports about the shard's partitions and cache.
    pub fn snapshot(
        &self,
        shard: usize,
        fdatasync_latency: LatencyHistogram,
        storage: StorageGauges,
    ) -> ShardMetricsSnapshot {
        let quantiles =
            self.append_latency_us.borrow().as_ref().map(|h| [0.5, 0.99, 0.999].map(|q| (q, h.value_at_quantile(q))));
        ShardMetricsSnapshot {
            shard,
            counters: vec![
                ("produce_requests_total", self.produce_requests.get()),
                ("produce_bytes_total", self.produce_bytes.get()),
                ("produce_errors_total", self.produce_errors.get()),
                ("fetch_requests_total", self.fetch_requests.get()),
                ("fetch_bytes_total", self.fetch_bytes.get()),
                ("connections_total", self.connections_total.get()),
                ("forwards_out_total", self.forwards_out.get()),
                ("forwards_in_total", self.forwards_in.get()),
                ("malformed_frames_total", self.malformed_frames.get()),
                ("syncs_alone_total", storage.syncs.alone),
                ("syncs_shared_total", storage.syncs.shared),
                ("sync_rounds_total", storage.syncs.rounds),
            ],
            gauges: vec![
                ("connections", self.connections.get()),
                ("partitions", self.partitions.get()),
                ("partitions_fenced", storage.partitions_fenced),
                ("batch_cache_bytes", storage.batch_cache_bytes),
                ("batch_cache_budget_bytes", storage.batch_cache_budget_bytes),
                ("unwritten_bytes", storage.unwritten_bytes),
            ],
            append_latency_us: quantiles.map(|q| q.to_vec()).unwrap_or_default(),
            fdatasync_latency,
        }
    }
}

/// What the engine reports about a shard's storage, for the gauges.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageGauges {
    /// Partitions whose log refuses appends after a failed write or fdatasync (until restart).
    pub partitions_fenced: u64,
    /// The shard's batch cache: bytes held, and its budget.
    pub batch_cache_bytes: u64,
    pub batch_cache_budget_bytes: u64,
    /// Bytes accepted by the shard's logs and not yet written to disk.
    pub unwritten_bytes: u64,
    /// The shard's syncs: alone (a file's fdatasync) or shared (one `syncfs` per round).
    pub syncs: engine::shard_sync::SyncStats,
}

/// A `Send` copy of one shard's metrics.
#[derive(Debug, Clone, Default)]
pub struct ShardMetricsSnapshot {
    pub shard: usize,
    pub counters: Vec<(&'static str, u64)>,
    pub gauges: Vec<(&'static str, u64)>,
    pub append_latency_us: Vec<(f64, u64)>,
    pub fdatasync_latency: LatencyHistogram,
}

/// Renders snapshots in the Prometheus text exposition format.
pub fn render(snapshots: &[ShardMetricsSnapshot]) -> String {
    let mut out = String::new();
    let Some(first) = snapshots.first() else {
        return out;
    };
    for (i, (name, _)) in first.counters.iter().enumerate() {
        let _ = writeln!(out, "# TYPE shardlog_{name} counter");
        for s in snapshots {
            let _ = writeln!(out, "shardlog_{name}{{shard=\"{}\"}} {}", s.shard, s.counters[i].1);
        }
    }
    for (i, (name, _)) in first.gauges.iter().enumerate() {
        let _ = writeln!(out, "# TYPE shardlog_{name} gauge");
        for s in snapshots {
            let _ = writeln!(out, "shardlog_{name}{{shard=\"{}\"}} {}", s.shard, s.gauges[i].1);
        }
    }
    let _ = writeln!(out, "# TYPE shardlog_append_latency_us summary");
    for s in snapshots {
        for (q, v) in &s.append_latency_us {
            let _ = writeln!(out, "shardlog_append_latency_us{{shard=\"{}\",quantile=\"{q}\"}} {v}", s.shard);
        }
    }
    let _ = writeln!(out, "# TYPE shardlog_fdatasync_latency_seconds histogram");
    for s in snapshots {
        let h = &s.fdatasync_latency;
        let mut cumulative = 0u64;
        for i in 0..LATENCY_BUCKETS {
            cumulative += h.buckets[i];
            let le = LatencyHistogram::bucket_upper_us(i) as f64 / 1e6;
            let _ = writeln!(
                out,
                "shardlog_fdatasync_latency_seconds_bucket{{shard=\"{}\",le=\"{le}\"}} {cumulative}",
                s.shard
            );
        }
        let _ =
            writeln!(out, "shardlog_fdatasync_latency_seconds_bucket{{shard=\"{}\",le=\"+Inf\"}} {}", s.shard, h.count);
        let _ =
            writeln!(out, "shardlog_fdatasync_latency_seconds_sum{{shard=\"{}\"}} {}", s.shard, h.sum_us as f64 / 1e6);
        let _ = writeln!(out, "shardlog_fdatasync_latency_seconds_count{{shard=\"{}\"}} {}", s.shard, h.count);
    }
    out
}
