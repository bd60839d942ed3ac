//! Engine benchmarks, each on a fresh `engine::Log` directory with `LogConfig::default()`.
//! Every function returns raw measurements; `main.rs` turns them into rows against the
//! baselines of the same run.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use engine::batch::BatchBuilder;
use engine::ids::Offset;
use engine::{Durability, Log, LogConfig, LogStats};
use hdrhistogram::Histogram;

use crate::baseline::{fill_pseudo_random, latency_histogram, LatencyUs, Meter, Throughput};
use crate::BenchResult;

/// Kafka benchmarks' standard message size (OpenMessaging: 1 KiB).
pub const RECORD_VALUE_BYTES: usize = 1024;
/// One consumer fetch: 1 MiB, the engine's write chunk and the raw read baseline's I/O size.
pub const READ_BYTES: u32 = 1 << 20;

/// Pre-built batches of identical size, so producers send ready bytes (as a real producer's
/// batch arrives ready) and byte counts follow from offsets.
pub struct BatchSet {
    pub batches: Vec<Bytes>,
    pub batch_bytes: usize,
    pub records_per_batch: u64,
}

/// `count` batches of 1 KiB-value records, each as large as fits in `target_bytes`.
pub fn build_batches(target_bytes: usize, count: usize) -> BenchResult<BatchSet> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut value = vec![0u8; RECORD_VALUE_BYTES];
    let mut batches = Vec::with_capacity(count);
    for batch_index in 0..count.max(1) {
        let mut builder = BatchBuilder::with_capacity(target_bytes);
        // A record's framing is a few bytes; the last record's size predicts the next one's.
        let mut record_bytes = RECORD_VALUE_BYTES + 16;
        let mut record_index = 0u64;
        while builder.size_bytes() + record_bytes <= target_bytes {
            fill_pseudo_random(&mut value, (batch_index as u64) << 32 | record_index);
            let before = builder.size_bytes();
            builder.push(None, Some(&value), now_ms, &[]);
            record_bytes = builder.size_bytes() - before;
            record_index += 1;
        }
        batches.push(builder.build()?);
    }
    let batch_bytes = batches.first().map_or(0, Bytes::len);
    if batches.iter().any(|b| b.len() != batch_bytes) || batch_bytes == 0 {
        return Err("benchmark batches must all have the same, non-zero size".into());
    }
    let header = engine::batch::BatchHeader::parse(&batches[0])?;
    Ok(BatchSet { batches, batch_bytes, records_per_batch: header.records_count as u64 })
}

/// What a group of producers did, on one log.
#[derive(Debug, Clone, Copy)]
pub struct ProduceOutcome {
    pub measured: Throughput,
    pub appends_count: u64,
    /// When producing started and ended, to combine shards running on other threads.
    pub start: Instant,
    pub end: Instant,
}

/// `producers` tasks append one batch per request until `bytes_total` is used up. For
/// `Durability::None` the clock stops only when a final one-record `Sync` append returns —
/// one fdatasync covering everything, like the raw baseline's final fdatasync.
pub async fn produce(
    log: &Log,
    set: &BatchSet,
    bytes_total: u64,
    producers: usize,
    durability: Durability,
) -> BenchResult<ProduceOutcome> {
    let remaining_bytes = Rc::new(Cell::new(bytes_total));
    let meter = Meter::start();
    let tasks: Vec<_> = (0..producers.max(1))
        .map(|i| {
            let batch = set.batches[i % set.batches.len()].clone();
            glommio::spawn_local(produce_until_spent(log.clone(), batch, remaining_bytes.clone(), durability))
        })
        .collect();
    let (mut bytes_produced, mut appends_count) = (0u64, 0u64);
    for task in tasks {
        let (appends, bytes) = task.await?;
        appends_count += appends;
        bytes_produced += bytes;
    }
    if durability != Durability::Sync {
        let last = build_batches(RECORD_VALUE_BYTES + 128, 1)?;
        log.append(&last.batches, Durability::Sync).await?;
        bytes_produced += last.batch_bytes as u64;
        appends_count += 1;
    }
    let measured = meter.stop(bytes_produced);
    Ok(ProduceOutcome { measured, appends_count, start: meter.start, end: meter.start + measured.elapsed })
}

async fn produce_until_spent(
    log: Log,
    batch: Bytes,
    remaining_bytes: Rc<Cell<u64>>,
    durability: Durability,
) -> BenchResult<(u64, u64)> {
    let batch_bytes = batch.len() as u64;
    let batches = [batch];
    let mut appends_count = 0u64;
    while remaining_bytes.get() >= batch_bytes {
        remaining_bytes.set(remaining_bytes.get() - batch_bytes);
        log.append(&batches, durability).await?;
        appends_count += 1;
    }
    Ok((appends_count, appends_count * batch_bytes))
}

/// Case A: one log, many producers, one batch size and durability.
pub struct AppendOutcome {
    pub produced: ProduceOutcome,
    pub stats: LogStats,
    pub close_elapsed: Duration,
}

pub async fn append_throughput(
    dir: &Path,
    set: &BatchSet,
    bytes_total: u64,
    producers: usize,
    durability: Durability,
) -> BenchResult<AppendOutcome> {
    let log = Log::open(dir, LogConfig::default()).await?;
    let produced = produce(&log, set, bytes_total, producers, durability).await?;
    let stats = log.stats();
    let close_start = Instant::now();
    log.close().await?;
    let close_elapsed = close_start.elapsed();
    std::fs::remove_dir_all(dir)?;
    Ok(AppendOutcome { produced, stats, close_elapsed })
}

/// Case B, one shard's half: open its log, wait for the other shard, produce with `Sync`.
/// `start_together` blocks the executor thread, which is idle at that point anyway.
pub async fn shard_append(
    dir: &Path,
    bytes_total: u64,
    producers: usize,
    start_together: &std::sync::Barrier,
) -> BenchResult<(ProduceOutcome, LogStats)> {
    crate::baseline::prime_direct_io(dir.parent().unwrap_or(dir)).await?;
    let set = build_batches(1 << 20, producers)?;
    let log = Log::open(dir, LogConfig::default()).await?;
    start_together.wait();
    let produced = produce(&log, &set, bytes_total, producers, Durability::Sync).await?;
    let stats = log.stats();
    log.close().await?;
    std::fs::remove_dir_all(dir)?;
    Ok((produced, stats))
}

/// Case C: closed-loop producers, each waiting for its `Sync` ack before the next append.
pub struct LatencyOutcome {
    pub latency: LatencyUs,
    pub appends_count: u64,
    pub syncs_count: u64,
    pub elapsed: Duration,
}

pub async fn append_latency(
    dir: &Path,
    set: &BatchSet,
    producers: usize,
    duration: Duration,
) -> BenchResult<LatencyOutcome> {
    let log = Log::open(dir, LogConfig::default()).await?;
    let syncs_before = log.stats().syncs_count;
    let histogram = Rc::new(RefCell::new(latency_histogram()?));
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..producers.max(1))
        .map(|i| {
            let batch = set.batches[i % set.batches.len()].clone();
            glommio::spawn_local(timed_appends(log.clone(), batch, deadline, histogram.clone()))
        })
        .collect();
    let mut appends_count = 0u64;
    for task in tasks {
        appends_count += task.await?;
    }
    let elapsed = start.elapsed();
    let syncs_count = log.stats().syncs_count - syncs_before;
    log.close().await?;
    std::fs::remove_dir_all(dir)?;
    let latency = LatencyUs::from_histogram(&histogram.borrow());
    Ok(LatencyOutcome { latency, appends_count, syncs_count, elapsed })
}

async fn timed_appends(
    log: Log,
    batch: Bytes,
    deadline: Instant,
    histogram: Rc<RefCell<Histogram<u64>>>,
) -> BenchResult<u64> {
    let batches = [batch];
    let mut appends_count = 0u64;
    while Instant::now() < deadline {
        let start = Instant::now();
        log.append(&batches, Durability::Sync).await?;
        histogram.borrow_mut().saturating_record(start.elapsed().as_micros() as u64);
        appends_count += 1;
    }
    Ok(appends_count)
}

/// Case D: fill, close, reopen (empty tail cache), then read everything back from disk with
/// `readers` tasks on disjoint offset ranges.
pub struct ColdReadOutcome {
    pub read: Throughput,
    pub reopen_elapsed: Duration,
    pub reads_count: u64,
}

pub async fn cold_read(dir: &Path, set: &BatchSet, bytes_total: u64, readers: usize) -> BenchResult<ColdReadOutcome> {
    let log = Log::open(dir, LogConfig::default()).await?;
    produce(&log, set, bytes_total, 4, Durability::None).await?;
    log.close().await?;
    drop(log);
    let reopen_start = Instant::now();
    let log = Log::open(dir, LogConfig::default()).await?;
    let reopen_elapsed = reopen_start.elapsed();
    // The last batch is the one-record closing append of `produce`; read whole benchmark
    // batches only, so each range's bytes follow from its offsets.
    let batches_total = log.log_end_offset().get() / set.records_per_batch;
    let readers = readers.clamp(1, batches_total.max(1) as usize);
    let meter = Meter::start();
    let tasks: Vec<_> = (0..readers as u64)
        .map(|i| {
            let first_batch = batches_total * i / readers as u64;
            let end_batch = batches_total * (i + 1) / readers as u64;
            let range = (first_batch * set.records_per_batch, end_batch * set.records_per_batch);
            glommio::spawn_local(read_range(log.clone(), range, set.records_per_batch, set.batch_bytes as u64))
        })
        .collect();
    let (mut bytes_read, mut reads_count) = (0u64, 0u64);
    for task in tasks {
        let (bytes, count) = task.await?;
        bytes_read += bytes;
        reads_count += count;
    }
    let read = meter.stop(bytes_read);
    log.close().await?;
    std::fs::remove_dir_all(dir)?;
    let expected_bytes = batches_total * set.batch_bytes as u64;
    if read.bytes_total != expected_bytes {
        return Err(format!("cold read returned {} bytes, expected {expected_bytes}", read.bytes_total).into());
    }
    Ok(ColdReadOutcome { read, reopen_elapsed, reads_count })
}

/// Reads offsets `[range.0, range.1)` in `READ_BYTES` fetches; the last fetch asks for no more
/// than the range holds, so ranges never overlap. Returns (bytes, reads).
async fn read_range(log: Log, range: (u64, u64), records_per_batch: u64, batch_bytes: u64) -> BenchResult<(u64, u64)> {
    let (mut offset, end_offset) = range;
    let mut bytes_total = 0u64;
    let mut reads_count = 0u64;
    while offset < end_offset {
        let left_bytes = (end_offset - offset) / records_per_batch * batch_bytes;
        let bytes_max = left_bytes.min(u64::from(READ_BYTES)) as u32;
        let read = log.read(Offset::new(offset), bytes_max).await?;
        if read.is_empty() || read.next_offset.get() > end_offset {
            return Err(format!("read at {offset} returned up to {} (range end {end_offset})", read.next_offset).into());
        }
        bytes_total += read.size_bytes() as u64;
        reads_count += 1;
        offset = read.next_offset.get();
    }
    Ok((bytes_total, reads_count))
}

/// Case E1: batches resident in the tail cache, read back with `READ_BYTES` fetches until
/// `bytes_total` has been returned. Counts fetches whose shape shows they came from disk
/// (the cache returns two chunks per batch, a disk read one chunk).
pub struct TailReadOutcome {
    pub read: Throughput,
    pub reads_count: u64,
    pub disk_reads_count: u64,
}

pub async fn tail_reread(
    dir: &Path,
    set: &BatchSet,
    resident_bytes: u64,
    bytes_total: u64,
) -> BenchResult<TailReadOutcome> {
    let log = Log::open(dir, LogConfig::default()).await?;
    produce(&log, set, resident_bytes, 1, Durability::None).await?;
    let (first_offset, end_offset) = (log.log_start_offset(), log.log_end_offset());
    let (mut bytes_read, mut reads_count, mut disk_reads_count) = (0u64, 0u64, 0u64);
    let meter = Meter::start();
    while bytes_read < bytes_total {
        let mut offset = first_offset;
        while offset < end_offset {
            let read = log.read(offset, READ_BYTES).await?;
            if read.is_empty() {
                return Err(format!("tail read at {offset} returned nothing (end {end_offset})").into());
            }
            disk_reads_count += u64::from(read.chunks.len() == 1);
            bytes_read += read.size_bytes() as u64;
            reads_count += 1;
            offset = read.next_offset;
        }
    }
    let read = meter.stop(bytes_read);
    log.close().await?;
    std::fs::remove_dir_all(dir)?;
    Ok(TailReadOutcome { read, reads_count, disk_reads_count })
}

/// Case E2: append one batch (`None`), read it back at once; only the read is timed.
pub struct AppendThenReadOutcome {
    pub latency_ns: Histogram<u64>,
    pub read_elapsed: Duration,
    pub reads_count: u64,
    pub disk_reads_count: u64,
    pub bytes_total: u64,
}

pub async fn append_then_read(dir: &Path, set: &BatchSet, appends_count: u64) -> BenchResult<AppendThenReadOutcome> {
    let log = Log::open(dir, LogConfig::default()).await?;
    let mut outcome = AppendThenReadOutcome {
        latency_ns: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        read_elapsed: Duration::ZERO,
        reads_count: 0,
        disk_reads_count: 0,
        bytes_total: 0,
    };
    for i in 0..appends_count {
        let batch = &set.batches[i as usize % set.batches.len()];
        let info = log.append(std::slice::from_ref(batch), Durability::None).await?;
        let start = Instant::now();
        let read = log.read(info.last_offset, READ_BYTES).await?;
        let elapsed = start.elapsed();
        if read.next_offset != info.log_end_offset {
            return Err(
                format!("tail read after append ended at {}, not {}", read.next_offset, info.log_end_offset).into()
            );
        }
        outcome.latency_ns.saturating_record(elapsed.as_nanos() as u64);
        outcome.read_elapsed += elapsed;
        outcome.reads_count += 1;
        outcome.disk_reads_count += u64::from(read.chunks.len() == 1);
        outcome.bytes_total += read.size_bytes() as u64;
    }
    log.close().await?;
    std::fs::remove_dir_all(dir)?;
    Ok(outcome)
}
