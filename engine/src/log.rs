//! One partition: an ordered set of segments, the last one active.
//!
//! Write path (`append`): validate every batch (CRC, lengths, record count) → take the append
//! lock → backpressure if the disk is behind → roll the segment if full or old → reserve disk
//! space (fallocate; ENOSPC fails here, before anything is accepted) → assign offsets and copy
//! each batch into the appender's DMA chunks, index it, cache it → release the lock → wait for
//! the durability asked for. The copy-in and offset assignment happen with no `.await` in
//! between, so appends are atomic with respect to each other and to readers.
//!
//! Read path (`read`): batches still in the tail cache come from memory; older ones from the
//! segment file through the sparse index, CRC-checked.
//!
//! Visibility: readers see everything appended (`log_end_offset`), as a Kafka leader with one
//! replica does; `read_durable` stops at `durable_end_offset` for callers that must only hand
//! out bytes that survive a crash.
//!
//! A `Log` is a cheap handle (`Rc`) owned by one executor; clone it into tasks freely.

mod follower;
mod records;

pub use records::MaxTimestamp;

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use glommio::sync::Semaphore;

use crate::batch::{Batch, BatchError};
use crate::cache::{self, CachedBatch, LogId};
use crate::catalog::{Durability, TopicConfig};
use crate::checkpoint::EPOCHS_FILE;
use crate::disk_space::FreeSpaceGuard;
use crate::epochs::{AssignError, EpochEntry, EpochScan, Epochs};
use crate::error::{AppendError, EpochError, IoError, MaintenanceError, OpenError, ReadError};
use crate::fs::{
    align_down, create_dir_all, list_dir, prime_direct_io_probe, read_file, remove_dir_all, remove_file, sync_dir,
    write_file_atomic,
};
use crate::ids::{FilePosition, LeaderEpoch, Offset};
use crate::latency::LatencyHistogram;
use crate::limits::{
    BATCH_SIZE_BYTES_MAX, IO_ALIGN_BYTES, PARTIAL_WRITE_DELAY, PREALLOCATE_STEP_BYTES, READ_BYTES_MAX,
    READ_TRUNCATION_RETRIES_MAX, SEGMENT_SIZE_BYTES_DEFAULT, SEGMENT_SIZE_BYTES_MAX, SEGMENT_SIZE_BYTES_MIN,
};
use crate::recovery::open_segment;
use crate::segment::appender::{Appender, AppenderStats};
use crate::segment::index::{SegmentIndex, FLAG_CLEAN};
use crate::segment::reader::{read_batches, read_exact, ReadRequest};
use crate::segment::{
    index_file_name, log_file_name, parse_index_file_name, parse_log_file_name, stored_head, Segment, STORED_HEAD_BYTES,
};

/// Present in a log directory after a clean `close`; removed on open before any write.
const CLEAN_SHUTDOWN_FILE: &str = "clean_shutdown";

/// Per-partition settings (a topic's config, resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll the active segment when the next append would take it past this size.
    pub segment_bytes: u64,
    /// Roll the active segment once it has been written to for this long.
    pub segment_ms: Option<u64>,
    /// Delete the oldest sealed segments while the log is bigger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest batch is older than this.
    pub retention_ms: Option<u64>,
    /// fallocate step for the active segment.
    pub preallocate_step_bytes: u64,
    /// Refuse appends (`AppendError::DiskFull`) once the file system holding the log has
    /// fewer free bytes than this, after the append; 0 = no floor (see `disk_space.rs`).
    pub disk_free_floor_bytes: u64,
    /// How long bytes no one waits on may sit in the active segment's partial write buffer
    /// before they are written (`PARTIAL_WRITE_DELAY`; zero writes at once). Taken when a
    /// segment becomes active.
    pub partial_write_delay: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_SIZE_BYTES_DEFAULT,
            segment_ms: None,
            retention_bytes: None,
            retention_ms: None,
            preallocate_step_bytes: PREALLOCATE_STEP_BYTES,
            disk_free_floor_bytes: 0,
            partial_write_delay: PARTIAL_WRITE_DELAY,
        }
    }
}

impl LogConfig {
    pub fn from_topic(topic: &TopicConfig) -> LogConfig {
        LogConfig {
            segment_bytes: topic.segment_bytes,
            segment_ms: topic.segment_ms,
            retention_bytes: topic.retention_bytes,
            retention_ms: topic.retention_ms,
            ..LogConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(SEGMENT_SIZE_BYTES_MIN..=SEGMENT_SIZE_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes {} outside [{SEGMENT_SIZE_BYTES_MIN}, {SEGMENT_SIZE_BYTES_MAX}]",
                self.segment_bytes
            ));
        }
        if self.preallocate_step_bytes < IO_ALIGN_BYTES || !self.preallocate_step_bytes.is_multiple_of(IO_ALIGN_BYTES) {
            return Err(format!(
                "preallocate_step_bytes {} must be a positive multiple of {IO_ALIGN_BYTES}",
                self.preallocate_step_bytes
            ));
        }
        Ok(())
    }
}

/// What an append was given: the offsets assigned to each batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Assigned base offset of each batch, in request order.
    pub base_offsets: Vec<Offset>,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// The log end offset right after this append.
    pub log_end_offset: Offset,
}

/// Batches `Log::append_queued` has given offsets and queued for the disk, not yet known to
/// be durable.
#[must_use = "an append is acknowledged only after `durable` says it meets its durability"]
pub struct Queued {
    log: Log,
    appender: Rc<Appender>,
    info: AppendInfo,
    /// The segment the batches went to, and where they end in it.
    segment_base: Offset,
    end_position: FilePosition,
    /// `State::truncation_generation` when they were queued.
    truncation_generation: u64,
}

impl Queued {
    /// The offsets assigned.
    pub fn info(&self) -> &AppendInfo {
        &self.info
    }

    /// The second stage of `Log::append`: resolves per `durability` — `Sync` after an
    /// fdatasync covering the batches, `Interval` and `None` at once (with `Interval { ms }`
    /// an fdatasync is issued within `ms`). If `Log::truncate_to` cut the batches away
    /// meanwhile, `AppendError::Truncated`: they were never acknowledged.
    pub async fn durable(self, durability: Durability) -> Result<AppendInfo, AppendError> {
        match durability {
            Durability::Sync => {
                self.log.wait_sealed_before(self.segment_base).await?;
                self.appender.wait_durable(self.end_position).await?;
            }
            Durability::Interval { ms } => self.appender.sync_by(Instant::now() + Duration::from_millis(u64::from(ms))),
            Durability::None => {}
        }
        self.log.check_not_truncated(self.truncation_generation, self.info.log_end_offset).await?;
        Ok(self.info)
    }
}

/// Whole batches returned by a read, as chunks to send back to back (vectored write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatches {
    pub chunks: Vec<Bytes>,
    /// The offset after the last returned batch (= the requested offset when empty).
    pub next_offset: Offset,
    /// The log end offset when the read was served (Kafka's high watermark here).
    pub log_end_offset: Offset,
}

impl ReadBatches {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn size_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// The chunks concatenated (copies; for tests and tools, not the fetch path).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = Vec::with_capacity(self.size_bytes());
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        Bytes::from(out)
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: u32,
    pub bytes_deleted: u64,
    pub log_start_offset: Offset,
}

/// Write-path counters, summed over this log's appenders since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segments: u32,
    pub size_bytes: u64,
    pub writes_count: u64,
    pub syncs_count: u64,
    /// Latency of every fdatasync this log issued since open.
    pub sync_latency: LatencyHistogram,
    /// DMA write buffers its appenders hold now (one page when idle, see `segment/appender.rs`).
    pub buffer_bytes: u64,
}

struct State {
    segments: BTreeMap<Offset, Segment>,
    log_start_offset: Offset,
    log_end_offset: Offset,
    /// The leader epochs, as the checkpoint file holds them (changed only after it was written).
    epochs: Epochs,
    /// Base offset of a segment whose seal (flush, sync, truncate, index) is running.
    sealing: Option<Offset>,
    fenced: Option<String>,
    closed: bool,
    /// Stats of appenders already retired.
    retired: AppenderStats,
    /// Moves at the start and at the end of every truncation: a disk read that saw it move
    /// retries (the bytes it read may be gone).
    truncation_generation: u64,
    /// A truncation is cutting files: disk reads wait for it.
    truncating: bool,
    /// `(truncation_generation at its end, new log end)` of the latest truncations, oldest
    /// first, at most `TRUNCATIONS_TRACKED_MAX` (for `Queued::durable`).
    truncations: VecDeque<(u64, Offset)>,
    /// The last high watermark checkpointed (`checkpoint_high_watermark`), as stored.
    high_watermark: Offset,
}

struct Inner {
    dir: PathBuf,
    /// Changed only by `reconfigure` (a topic's config altered while the log is open).
    config: RefCell<LogConfig>,
    /// This log's key in its shard's batch cache (`cache.rs`).
    cache_id: LogId,
    state: RefCell<State>,
    /// Serialises appends, rolls and close.
    append_lock: Semaphore,
    /// The log end offset moved, or the log closed.
    appended: Event,
    /// A seal finished (or failed).
    sealed: Event,
    /// A truncation finished (or failed).
    truncated: Event,
    /// Serialises retention and truncation (both delete segments).
    maintenance_lock: Semaphore,
    /// Serialises writes of the high-watermark checkpoint.
    high_watermark_lock: Semaphore,
    free_space: FreeSpaceGuard,
}

#[derive(Clone)]
pub struct Log {
    inner: Rc<Inner>,
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering it as `recovery.rs` describes.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<Log, OpenError> {
        Log::open_with(dir, config, Offset::ZERO).await
    }

    /// Opens the log in `dir`, which, if it holds no log yet, starts empty at `start` (log
    /// start = log end = `start`): a new follower replica of a partition whose leader no longer
    /// has offsets below `start` (retention, DeleteRecords) — Kafka's truncateFullyAndStartAt
    /// on a fresh directory. A directory that already holds a log opens as with `open`.
    pub async fn open_starting_at(dir: &Path, config: LogConfig, start: Offset) -> Result<Log, OpenError> {
        Log::open_with(dir, config, start).await
    }

    async fn open_with(dir: &Path, config: LogConfig, empty_start: Offset) -> Result<Log, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        create_dir_all(dir).await.map_err(OpenError::Io)?;
        prime_direct_io_probe(dir).await.map_err(OpenError::Io)?;
        let names = list_dir(dir).await.map_err(OpenError::Io)?;
        let mut bases: Vec<Offset> = names.iter().filter_map(|n| parse_log_file_name(n)).collect();
        bases.sort_unstable();
        for name in &names {
            let orphan_index = parse_index_file_name(name).is_some_and(|b| !bases.contains(&b));
            if name.ends_with(".tmp") || orphan_index {
                remove_file(&dir.join(name)).await.map_err(OpenError::Io)?;
            }
        }
        let clean = names.iter().any(|n| n == CLEAN_SHUTDOWN_FILE);
        let stored_epochs = load_epochs(dir).await?;
        let mut epoch_scan = epoch_scan(dir, stored_epochs.as_ref(), bases.first().copied().unwrap_or(Offset::ZERO));
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            if ends_before(&segments, base) {
                drop_unreachable_segments(dir, &segments, &bases[i..]).await?;
                break;
            }
            let segment = open_segment(dir, base, i + 1 == bases.len(), clean, &mut epoch_scan).await?;
            check_overlap(dir, &segments, &segment)?;
            segments.insert(base, segment);
        }
        if clean {
            // From the first write on, this directory is no longer cleanly shut down.
            remove_file(&dir.join(CLEAN_SHUTDOWN_FILE)).await.map_err(OpenError::Io)?;
            sync_dir(dir).await.map_err(OpenError::Io)?;
        }
        let log_start_offset = segments.keys().next().copied().unwrap_or(Offset::ZERO);
        let recovered_end = segments.values().next_back().map_or(log_start_offset, |s| s.index.next_offset);
        let mut epochs = recovered_epochs(dir, epoch_scan, log_start_offset, recovered_end)?;
        // Records deleted inside the first segment (DeleteRecords) stay deleted.
        let log_start_offset = records::load_log_start(dir).await?.map_or(log_start_offset, |deleted_before| {
            deleted_before.clamp(log_start_offset, recovered_end.max(log_start_offset))
        });
        let mut high_watermark = follower::load_high_watermark(dir).await?.unwrap_or(log_start_offset);
        // A truncation that a crash interrupted is finished before anything else.
        let truncate_intent = follower::load_truncate_intent(dir).await?;
        if let Some(cut) = truncate_intent {
            follower::redo_truncation(dir, &mut segments, cut, &epochs).await?;
            epochs = epochs.truncated_from(cut);
            if high_watermark > cut {
                high_watermark = cut;
                follower::write_high_watermark(dir, cut).await.map_err(OpenError::Io)?;
            }
        }
        // A new log starts at `empty_start` (0 unless a follower starts after its leader's
        // log start); nothing below it was ever here.
        let log_start_offset = if segments.is_empty() { log_start_offset.max(empty_start) } else { log_start_offset };
        if segments.is_empty() {
            let segment = create_segment(dir, log_start_offset).await.map_err(OpenError::Io)?;
            segments.insert(log_start_offset, segment);
            high_watermark = high_watermark.max(log_start_offset);
        }
        let last = segments
            .values_mut()
            .next_back()
            .ok_or_else(|| OpenError::Corrupt { path: dir.to_path_buf(), reason: "no segment".into() })?;
        start_appender(last, config.partial_write_delay).await.map_err(OpenError::Io)?;
        let log_end_offset = last.index.next_offset;
        // A truncation finished above may have cut below a start DeleteRecords recorded.
        let log_start_offset = log_start_offset.min(log_end_offset);
        assert!(epochs.latest().start_offset <= log_end_offset);
        if stored_epochs.as_ref() != Some(&epochs) {
            write_file_atomic(dir, EPOCHS_FILE, &epochs.encode()).await.map_err(OpenError::Io)?;
        }
        if truncate_intent.is_some() {
            // Only once the epochs and the high watermark are cut too.
            follower::remove_truncate_intent(dir).await.map_err(OpenError::Io)?;
        }
        tracing::debug!(dir = %dir.display(), %log_start_offset, %log_end_offset, clean, "log opened");
        let state = State {
            segments,
            log_start_offset,
            log_end_offset,
            epochs,
            sealing: None,
            fenced: None,
            closed: false,
            retired: AppenderStats::default(),
            truncation_generation: 0,
            truncating: false,
            truncations: VecDeque::new(),
            high_watermark,
        };
        let free_space = FreeSpaceGuard::new(dir, config.disk_free_floor_bytes);
        Ok(Log {
            inner: Rc::new(Inner {
                dir: dir.to_path_buf(),
                config: RefCell::new(config),
                cache_id: LogId::next(),
                state: RefCell::new(state),
                append_lock: Semaphore::new(1),
                appended: Event::new(),
                sealed: Event::new(),
                truncated: Event::new(),
                maintenance_lock: Semaphore::new(1),
                high_watermark_lock: Semaphore::new(1),
                free_space,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The first offset this log has in its shard's batch cache (reads from there on need no
    /// disk I/O), or `None`. For metrics and tests.
    pub fn cache_first_offset(&self) -> Option<Offset> {
        cache::first_offset(self.inner.cache_id)
    }

    /// `LogConfig::partial_write_delay` for the next appender started.
    fn partial_write_delay(&self) -> Duration {
        self.inner.config.borrow().partial_write_delay
    }

    /// The settings now (a copy: `reconfigure` may change them).
    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    pub fn log_start_offset(&self) -> Offset {
        self.inner.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> Offset {
        self.inner.state.borrow().log_end_offset
    }

    /// The offset after the last batch that survived an fdatasync (every offset below it
    /// would survive a crash now).
    pub fn durable_end_offset(&self) -> Offset {
        let state = self.inner.state.borrow();
        // Segments seal in order, so the first segment with an appender bounds durability.
        for segment in state.segments.values() {
            if let Some(appender) = &segment.appender {
                return appender.durable_next_offset();
            }
        }
        state.log_end_offset
    }

    pub fn stats(&self) -> LogStats {
        let state = self.inner.state.borrow();
        let mut stats = LogStats {
            segments: state.segments.len() as u32,
            size_bytes: state.segments.values().map(Segment::size_bytes).sum(),
            writes_count: state.retired.writes_count,
            syncs_count: state.retired.syncs_count,
            sync_latency: state.retired.sync_latency,
            buffer_bytes: 0,
        };
        for appender in state.segments.values().filter_map(|s| s.appender.as_ref()) {
            let a = appender.stats();
            stats.buffer_bytes += appender.buffer_bytes();
            stats.writes_count += a.writes_count;
            stats.syncs_count += a.syncs_count;
            stats.sync_latency.merge(&a.sync_latency);
        }
        stats
    }

    /// The latest leader epoch: the one `append` stamps into the batches it stores.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.inner.state.borrow().epochs.latest().epoch
    }

    /// Every leader epoch the log holds, oldest first, with the offset it starts at.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.inner.state.borrow().epochs.entries().to_vec()
    }

    /// Kafka's OffsetForLeaderEpoch: the largest epoch ≤ `epoch` this log knows, and the offset
    /// where the next larger epoch starts (the log end for the latest epoch). `None` for an
    /// epoch past the latest (Kafka's UNDEFINED_EPOCH); for one older than every epoch kept,
    /// `(epoch, start of the oldest)` as Kafka answers.
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let state = self.inner.state.borrow();
        state.epochs.end_offset_for(epoch, state.log_end_offset)
    }

    /// Records that leader epoch `epoch` starts at the current log end: later `append`s stamp
    /// it into every batch. The checkpoint file is written (atomically, synced) before this
    /// resolves, and before any batch carries the epoch. The same epoch again is a no-op; an
    /// older one is `EpochError::Backwards`. A failed write fences the log.
    pub async fn begin_epoch(&self, epoch: LeaderEpoch) -> Result<(), EpochError> {
        let _permit = self.inner.append_lock.acquire_permit(1).await.map_err(|_| EpochError::Closed)?;
        self.check_writable().map_err(|e| match e {
            AppendError::Fenced { reason } => EpochError::Fenced { reason },
            _ => EpochError::Closed,
        })?;
        let next = {
            let state = self.inner.state.borrow();
            let trimmed = state.epochs.trimmed_before(state.log_start_offset);
            assert!(trimmed.latest().start_offset <= state.log_end_offset);
            trimmed.with_epoch(epoch, state.log_end_offset)
        };
        match next {
            Ok(None) => Ok(()),
            Ok(Some(epochs)) => self.persist_epochs(epochs).await.map_err(EpochError::Io),
            Err(AssignError::Backwards { epoch, latest }) => Err(EpochError::Backwards { epoch, latest }),
            Err(AssignError::TooMany) => Err(EpochError::TooManyEpochs),
            Err(AssignError::StartBeforeLatest { .. }) => {
                unreachable!("the log end never lies before the latest epoch's start")
            }
        }
    }

    /// Writes `epochs` to the checkpoint file, then makes them current. Called with the append
    /// lock held (every epoch change is). A failure fences the log: the file may or may not
    /// hold the new epochs, and batches stamped with an epoch the file does not hold would be
    /// cut by the next recovery.
    async fn persist_epochs(&self, epochs: Epochs) -> Result<(), IoError> {
        // A replica's new epochs may start inside the request about to be pushed, past the log
        // end; `push_batches` runs right after this resolves, with no await between.
        match write_file_atomic(&self.inner.dir, EPOCHS_FILE, &epochs.encode()).await {
            Ok(()) => {
                self.inner.state.borrow_mut().epochs = epochs;
                Ok(())
            }
            Err(e) => {
                tracing::error!(dir = %self.inner.dir.display(), error = %e, "writing the leader epoch checkpoint failed; fencing the log");
                self.inner.state.borrow_mut().fenced.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }

    /// Appends `batches` (Kafka RecordBatch v2, one per `Bytes`), assigning offsets from the
    /// log end; the producer's baseOffset is ignored. Resolves per `durability`: `Sync` after
    /// an fdatasync covering the batches, `Interval` and `None` once they are queued (with
    /// `Interval { ms }` an fdatasync is issued within `ms`).
    pub async fn append(&self, batches: &[Bytes], durability: Durability) -> Result<AppendInfo, AppendError> {
        self.append_queued(batches).await?.durable(durability).await
    }

    /// The first stage of `append`: validates `batches`, assigns their offsets and queues them
    /// for the disk; readers see them from here on. The offsets are assigned in the order the
    /// calls take the append lock, so a caller that must keep its appends in order (a client
    /// connection pipelining produces to one partition) lets the next one start only after
    /// this resolves — and need not wait for the durability of the first: `Queued::durable`
    /// is the second stage, and concurrent ones share an fdatasync.
    #[tracing::instrument(level = "trace", skip_all, fields(dir = %self.inner.dir.display(), batches = batches.len()))]
    pub async fn append_queued(&self, batches: &[Bytes]) -> Result<Queued, AppendError> {
        let validated = validate_batches(batches)?;
        self.queue_batches(batches, &validated, Stamp::Leader).await
    }

    /// The locked part of `append_queued` and `append_replica_queued`: backpressure, roll,
    /// reservation, then (for a replica) the epoch checkpoint, then the copy-in.
    async fn queue_batches(&self, batches: &[Bytes], validated: &[Batch], stamp: Stamp) -> Result<Queued, AppendError> {
        let size_bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let permit = self.inner.append_lock.acquire_permit(1).await.map_err(|_| AppendError::Closed)?;
        self.check_writable()?;
        let records: u64 = validated.iter().map(|b| u64::from(b.record_count())).sum();
        if self.log_end_offset().checked_add(records).is_none() {
            return Err(AppendError::OffsetOverflow { log_end_offset: self.log_end_offset(), records });
        }
        // A replica's batches must continue the log; checked once the log end cannot move.
        let new_epochs = match stamp {
            Stamp::Leader => None,
            Stamp::AsStored => self.replica_epochs(validated)?,
        };
        self.inner.free_space.check(size_bytes)?;
        let appender = self.active_appender()?;
        appender.wait_for_capacity().await?;
        if self.should_roll(size_bytes) {
            self.roll().await?;
        }
        let appender = self.active_appender()?;
        let (step_bytes, segment_bytes) = {
            let config = self.inner.config.borrow();
            (config.preallocate_step_bytes, config.segment_bytes)
        };
        appender.reserve(size_bytes, step_bytes, segment_bytes).await?;
        self.check_writable()?;
        if let Some(epochs) = new_epochs {
            // On disk before any batch carrying the new epoch can be.
            self.persist_epochs(epochs).await?;
            self.check_writable()?;
        }
        let (info, segment_base, end_position) = self.push_batches(&appender, batches, validated, stamp);
        self.inner.free_space.on_append(size_bytes);
        let truncation_generation = self.inner.state.borrow().truncation_generation;
        drop(permit);
        self.inner.appended.notify(usize::MAX);
        Ok(Queued { log: self.clone(), appender, info, segment_base, end_position, truncation_generation })
    }

    /// Resolves once everything appended before the call is durable (an fdatasync covers it),
    /// whatever durability the appends asked for.
    pub async fn flush(&self) -> Result<(), AppendError> {
        let (segment_base, appender, end_position) = {
            let state = self.inner.state.borrow();
            let Some(active) = state.segments.values().next_back() else {
                return Ok(());
            };
            let Some(appender) = active.appender.clone() else {
                return Ok(()); // Closed: everything was synced.
            };
            let end_position = appender.end_position();
            (active.base_offset, appender, end_position)
        };
        self.wait_sealed_before(segment_base).await?;
        appender.wait_durable(end_position).await?;
        Ok(())
    }

    /// The synchronous heart of `append`: offsets, copy-in, index, cache. No `.await` here.
    fn push_batches(
        &self,
        appender: &Rc<Appender>,
        batches: &[Bytes],
        validated: &[Batch],
        stamp: Stamp,
    ) -> (AppendInfo, Offset, FilePosition) {
        let mut state = self.inner.state.borrow_mut();
        let state = &mut *state;
        let mut base_offsets = Vec::with_capacity(batches.len());
        let segment = match state.segments.values_mut().next_back() {
            Some(segment) => segment,
            None => unreachable!("a log always has an active segment"),
        };
        for (bytes, batch) in batches.iter().zip(validated) {
            let base_offset = state.log_end_offset;
            // `queue_batches` checked the request fits below Offset::MAX.
            let last_offset = base_offset.checked_add(u64::from(batch.record_count()) - 1);
            let (Some(last_offset), Some(next_offset)) = (last_offset, last_offset.and_then(Offset::next)) else {
                unreachable!("the request was checked to fit below Offset::MAX")
            };
            // The epoch the checkpoint holds for this offset: a leader stamps it, a replica's
            // batch must already carry it (checked before the lock was taken and the epochs
            // persisted). Write-side half of the check every read makes.
            let epoch = state.epochs.epoch_at(base_offset);
            let head = match stamp {
                Stamp::Leader => stored_head(base_offset, state.epochs.latest().epoch, bytes),
                Stamp::AsStored => {
                    let mut head = [0u8; STORED_HEAD_BYTES];
                    head.copy_from_slice(&bytes[..STORED_HEAD_BYTES]);
                    head
                }
            };
            let (stored_base, stored_epoch) = head_fields(&head);
            assert_eq!(stored_base, base_offset.to_wire(), "a stored batch's baseOffset is its offset");
            assert_eq!(Some(stored_epoch), epoch.map(LeaderEpoch::to_wire), "a stored batch's epoch is its offset's");
            let position = appender.push(&head, &bytes[STORED_HEAD_BYTES..], next_offset);
            segment.index.on_batch(base_offset, last_offset, position, bytes.len() as u64, batch.max_timestamp());
            let Some(end_position) = position.checked_add(bytes.len() as u64) else {
                unreachable!("segments stay below 4 GiB")
            };
            cache::push(
                self.inner.cache_id,
                CachedBatch {
                    base_offset,
                    last_offset,
                    appender: Rc::downgrade(appender),
                    end_position,
                    head,
                    bytes: bytes.clone(),
                },
            );
            state.log_end_offset = next_offset;
            base_offsets.push(base_offset);
        }
        assert_eq!(segment.index.end_position, appender.end_position());
        assert_eq!(segment.index.next_offset, state.log_end_offset);
        let segment_base_offset = segment.base_offset;
        let Some(last_offset) = state.log_end_offset.checked_sub(1) else {
            unreachable!("an append adds at least one offset")
        };
        let info = AppendInfo { base_offsets, last_offset, log_end_offset: state.log_end_offset };
        // Shard-wide: the oldest batches of any log of this shard go first.
        cache::evict();
        (info, segment_base_offset, appender.end_position())
    }

    fn check_writable(&self) -> Result<(), AppendError> {
        if self.inner.state.borrow().closed {
            return Err(AppendError::Closed);
        }
        match self.fenced() {
            Some(reason) => Err(AppendError::Fenced { reason }),
            None => Ok(()),
        }
    }

    /// Why the log refuses appends after a failed write or fdatasync (until it is reopened,
    /// which re-verifies it from disk); `None` while it is healthy.
    pub fn fenced(&self) -> Option<String> {
        let state = self.inner.state.borrow();
        if let Some(reason) = &state.fenced {
            return Some(reason.clone());
        }
        let active = state.segments.values().next_back().and_then(|s| s.appender.as_ref());
        active.and_then(|a| a.fenced())
    }

    fn active_appender(&self) -> Result<Rc<Appender>, AppendError> {
        let state = self.inner.state.borrow();
        state.segments.values().next_back().and_then(|s| s.appender.clone()).ok_or(AppendError::Closed)
    }

    fn should_roll(&self, size_bytes: u64) -> bool {
        let state = self.inner.state.borrow();
        let Some(active) = state.segments.values().next_back() else {
            return false;
        };
        if active.index.is_empty() {
            return false; // Never leave an empty segment behind; a huge batch gets its own.
        }
        let config = self.inner.config.borrow();
        let full = active.index.end_position.get() + size_bytes > config.segment_bytes;
        let old = config.segment_ms.is_some_and(|ms| active.opened_at.elapsed() >= Duration::from_millis(ms));
        full || old
    }

    /// Starts a new active segment at the log end and seals the old one in the background.
    /// Called with the append lock held.
    async fn roll(&self) -> Result<(), AppendError> {
        // One seal at a time bounds the memory and files in flight.
        self.wait_sealed_before(Offset::MAX).await?;
        let base_offset = self.log_end_offset();
        let mut segment = create_segment(&self.inner.dir, base_offset).await?;
        start_appender(&mut segment, self.partial_write_delay()).await?;
        let old_base = {
            let mut state = self.inner.state.borrow_mut();
            let old_base = state.segments.keys().next_back().copied();
            state.segments.insert(base_offset, segment);
            state.sealing = old_base;
            old_base
        };
        if let Some(old_base) = old_base {
            glommio::spawn_local(seal_segment(self.clone(), old_base)).detach();
        }
        Ok(())
    }

    /// Waits until no segment below `segment_base` is being sealed.
    async fn wait_sealed_before(&self, segment_base: Offset) -> Result<(), AppendError> {
        loop {
            let listener = self.inner.sealed.listen();
            {
                let state = self.inner.state.borrow();
                if let Some(reason) = &state.fenced {
                    return Err(AppendError::Fenced { reason: reason.clone() });
                }
                if state.sealing.is_none_or(|b| b >= segment_base) {
                    return Ok(());
                }
            }
            listener.await;
        }
    }

    /// Whole batches from the one holding `offset`, up to about `bytes_max` bytes (at least
    /// one batch), up to the log end.
    #[tracing::instrument(level = "trace", skip(self), fields(dir = %self.inner.dir.display()))]
    pub async fn read(&self, offset: Offset, bytes_max: u32) -> Result<ReadBatches, ReadError> {
        self.read_until(offset, bytes_max, ReadEnd::LogEnd).await
    }

    /// Like `read`, but only batches below `durable_end_offset`.
    pub async fn read_durable(&self, offset: Offset, bytes_max: u32) -> Result<ReadBatches, ReadError> {
        self.read_until(offset, bytes_max, ReadEnd::DurableEnd).await
    }

    /// Like `read`, but only batches that end at or below `end_offset` (a replicated
    /// partition's high watermark: consumers never see what is not yet on every in-sync
    /// replica). An `end_offset` past the log end reads to the log end.
    pub async fn read_below(
        &self,
        offset: Offset,
        bytes_max: u32,
        end_offset: Offset,
    ) -> Result<ReadBatches, ReadError> {
        self.read_until(offset, bytes_max, ReadEnd::Below(end_offset)).await
    }

    async fn read_until(&self, offset: Offset, bytes_max: u32, read_end: ReadEnd) -> Result<ReadBatches, ReadError> {
        let bytes_max = bytes_max.clamp(1, READ_BYTES_MAX);
        // A truncation that starts while a disk read is in flight may cut what it read: the read
        // starts over. Bounded, so that back-to-back truncations cannot loop a reader forever.
        for _ in 0..READ_TRUNCATION_RETRIES_MAX {
            self.wait_not_truncating().await;
            let end_offset = match read_end {
                ReadEnd::LogEnd => self.log_end_offset(),
                ReadEnd::DurableEnd => self.durable_end_offset(),
                ReadEnd::Below(end) => end.min(self.log_end_offset()),
            };
            let (plan, generation) = {
                let state = self.inner.state.borrow();
                if offset < state.log_start_offset || offset > state.log_end_offset {
                    return Err(ReadError::OffsetOutOfRange {
                        offset,
                        log_start_offset: state.log_start_offset,
                        log_end_offset: state.log_end_offset,
                    });
                }
                let log_end_offset = state.log_end_offset;
                if offset >= end_offset {
                    return Ok(ReadBatches { chunks: Vec::new(), next_offset: offset, log_end_offset });
                }
                let cached = cache::read(self.inner.cache_id, offset, end_offset, u64::from(bytes_max));
                if let Some((chunks, next_offset)) = cached {
                    return Ok(ReadBatches { chunks, next_offset, log_end_offset });
                }
                (disk_plan(&state, offset)?, state.truncation_generation)
            };
            let read = read_batches(ReadRequest {
                file: &plan.file,
                path: &plan.path,
                start_position: plan.start_position,
                start_offset: plan.start_offset,
                end_position: plan.end_position,
                offset,
                bytes_max,
                epochs: &plan.epochs,
            })
            .await;
            if self.inner.state.borrow().truncation_generation != generation {
                continue;
            }
            let read = read?;
            let (bytes, next_offset) = cut_at(read.bytes, read.next_offset, end_offset, offset);
            return Ok(ReadBatches {
                chunks: if bytes.is_empty() { Vec::new() } else { vec![bytes] },
                next_offset,
                log_end_offset: plan.log_end_offset,
            });
        }
        Err(ReadError::ConcurrentTruncation { offset, retries: READ_TRUNCATION_RETRIES_MAX })
    }

    /// Waits while a truncation is cutting files.
    async fn wait_not_truncating(&self) {
        loop {
            let listener = self.inner.truncated.listen();
            if !self.inner.state.borrow().truncating {
                return;
            }
            listener.await;
        }
    }

    /// Resolves once the log end passes `offset` (data at `offset` exists), or the log closes.
    /// Long-poll fetches race it against their timeout.
    pub async fn wait_for_offset(&self, offset: Offset) {
        loop {
            let listener = self.inner.appended.listen();
            {
                let state = self.inner.state.borrow();
                if state.log_end_offset > offset || state.closed || state.fenced.is_some() {
                    return;
                }
            }
            listener.await;
        }
    }

    /// The first offset whose record timestamp is ≥ `timestamp_ms`, or `None` if every record
    /// is older (Kafka's ListOffsets by time). For compressed batches the answer is the batch's
    /// base offset.
    pub async fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<Offset>, ReadError> {
        let start = {
            let state = self.inner.state.borrow();
            let found = state.segments.values().find(|s| s.index.max_timestamp >= timestamp_ms);
            match found {
                Some(segment) => segment.index.lookup_time(timestamp_ms).0.max(state.log_start_offset),
                None => return Ok(None),
            }
        };
        let mut offset = start;
        // Bounded by the log end: every pass returns or moves `offset` forward.
        while offset < self.log_end_offset() {
            let read = self.read(offset, READ_BYTES_MAX).await?;
            if read.is_empty() {
                break;
            }
            for batch in crate::batch::split_batches(read.to_bytes()) {
                let corrupt = |source| ReadError::Corrupt {
                    offset,
                    path: self.inner.dir.clone(),
                    position: FilePosition::ZERO,
                    source,
                };
                let batch = batch.map_err(corrupt)?;
                // A read returns batches at valid offsets (checked on the way), so these exist.
                let last_offset = Offset::from_wire(batch.last_offset());
                if batch.max_timestamp() < timestamp_ms || last_offset.is_none_or(|last| last < offset) {
                    continue;
                }
                if batch.header().is_compressed() {
                    return Ok(Offset::from_wire(batch.base_offset()).map(|base| base.max(offset)));
                }
                for record in batch.records() {
                    let record = record.map_err(corrupt)?;
                    let record_offset = Offset::from_wire(record.offset);
                    if record.timestamp >= timestamp_ms && record_offset.is_some_and(|o| o >= offset) {
                        return Ok(record_offset);
                    }
                }
            }
            offset = read.next_offset;
        }
        Ok(None)
    }

    /// Deletes whole sealed segments, oldest first, while the log is over `retention_bytes`
    /// or a segment's newest batch is older than `retention_ms` before `now_ms`. The active
    /// segment (and one being sealed) is never deleted.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, MaintenanceError> {
        // Truncation deletes segments too; one at a time.
        let _maintenance = self.inner.maintenance_lock.acquire_permit(1).await.map_err(|_| MaintenanceError::Closed)?;
        let config = self.config();
        let (doomed, outcome) = {
            let mut state = self.inner.state.borrow_mut();
            if let Some(reason) = &state.fenced {
                return Err(MaintenanceError::Fenced { reason: reason.clone() });
            }
            let mut total_bytes: u64 = state.segments.values().map(Segment::size_bytes).sum();
            let mut doomed = Vec::new();
            for segment in state.segments.values() {
                if segment.appender.is_some() {
                    break; // Active or sealing: it and everything after it stay.
                }
                let too_old = config
                    .retention_ms
                    .is_some_and(|ms| segment.index.max_timestamp < now_ms.saturating_sub(ms as i64));
                let too_big = config.retention_bytes.is_some_and(|max| total_bytes - segment.size_bytes() >= max);
                if !(too_old || too_big) {
                    break;
                }
                total_bytes -= segment.size_bytes();
                doomed.push(segment.base_offset);
            }
            let mut outcome = RetentionOutcome::default();
            let mut removed = Vec::new();
            for base in &doomed {
                if let Some(segment) = state.segments.remove(base) {
                    outcome.segments_deleted += 1;
                    outcome.bytes_deleted += segment.size_bytes();
                    removed.push(segment);
                }
            }
            if let Some(&first) = state.segments.keys().next() {
                // Never back below a start `delete_records_before` moved inside a segment.
                state.log_start_offset = first.max(state.log_start_offset);
            }
            let start = state.log_start_offset;
            cache::drop_before(self.inner.cache_id, start);
            outcome.log_start_offset = start;
            (removed, outcome)
        };
        if doomed.is_empty() {
            return Ok(outcome);
        }
        for segment in &doomed {
            // Readers holding the file keep reading it: an unlinked file lives until closed.
            remove_file(&segment.index_path()).await.map_err(MaintenanceError::Io)?;
            remove_file(&segment.log_path).await.map_err(MaintenanceError::Io)?;
        }
        sync_dir(&self.inner.dir).await.map_err(MaintenanceError::Io)?;
        tracing::info!(dir = %self.inner.dir.display(), ?outcome, "retention deleted segments");
        Ok(outcome)
    }

    /// Writes and syncs everything, persists the active segment's index and the clean-shutdown
    /// marker, so the next open skips the scan. Appends after this fail with `Closed`.
    pub async fn close(&self) -> Result<(), MaintenanceError> {
        let permit = self.inner.append_lock.acquire_permit(1).await;
        let already_closed = std::mem::replace(&mut self.inner.state.borrow_mut().closed, true);
        self.inner.appended.notify(usize::MAX);
        if already_closed || permit.is_err() {
            return Ok(());
        }
        let fenced = |reason: String| MaintenanceError::Fenced { reason };
        self.wait_sealed_before(Offset::MAX).await.map_err(|e| fenced(e.to_string()))?;
        let (appender, index_bytes) = {
            let state = self.inner.state.borrow();
            if let Some(reason) = &state.fenced {
                return Err(fenced(reason.clone()));
            }
            match state.segments.values().next_back() {
                Some(s) => (s.appender.clone(), (s.base_offset, s.index.encode(FLAG_CLEAN))),
                None => (None, (Offset::ZERO, Vec::new())),
            }
        };
        if let Some(appender) = appender {
            appender.seal().await.map_err(MaintenanceError::Io)?;
            let (base, bytes) = index_bytes;
            let dir = &self.inner.dir;
            write_file_atomic(dir, &index_file_name(base), &bytes).await.map_err(MaintenanceError::Io)?;
            write_file_atomic(dir, CLEAN_SHUTDOWN_FILE, b"clean\n").await.map_err(MaintenanceError::Io)?;
            let mut state = self.inner.state.borrow_mut();
            retire_stats(&mut state, &appender);
            if let Some(s) = state.segments.values_mut().next_back() {
                s.appender = None;
            }
        }
        drop(permit);
        self.inner.append_lock.close();
        Ok(())
    }
}

impl Log {
    /// Closes the log and removes its directory (the topic was deleted).
    pub async fn delete(self) -> Result<(), MaintenanceError> {
        // A fenced log cannot close cleanly; it is being deleted anyway.
        let _ = self.close().await;
        remove_dir_all(&self.inner.dir).await.map_err(MaintenanceError::Io)
    }
}

/// Where a read stops: the log end (`read`) or the durable end (`read_durable`).
#[derive(Debug, Clone, Copy)]
enum ReadEnd {
    LogEnd,
    DurableEnd,
    /// A bound the caller keeps (a replicated partition's high watermark), within the log end.
    Below(Offset),
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The shard's cache outlives any one log; this one's batches go with it.
        cache::remove_log(self.cache_id);
    }
}

/// How `push_batches` writes a batch's first 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamp {
    /// A leader append: the log's offset and latest epoch.
    Leader,
    /// A replica append: the bytes as the leader stored them.
    AsStored,
}

/// `(baseOffset, partitionLeaderEpoch)` of a stored head.
fn head_fields(head: &[u8; STORED_HEAD_BYTES]) -> (i64, i32) {
    let mut base = [0u8; 8];
    base.copy_from_slice(&head[0..8]);
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&head[12..16]);
    (i64::from_be_bytes(base), i32::from_be_bytes(epoch))
}

/// Checks each batch before anything is accepted: an invalid one rejects the whole request.
/// `Batch::validate_produced`: framing, CRC, every record of an uncompressed batch, and — for
/// compressed ones too — lastOffsetDelta = recordsCount − 1, so that a batch claims exactly
/// as many offsets as it holds records.
fn validate_batches(batches: &[Bytes]) -> Result<Vec<Batch>, AppendError> {
    if batches.is_empty() {
        return Err(AppendError::Empty);
    }
    let mut validated = Vec::with_capacity(batches.len());
    for (index, bytes) in batches.iter().enumerate() {
        if bytes.len() as u64 > u64::from(BATCH_SIZE_BYTES_MAX) {
            return Err(AppendError::BatchTooLarge { index, size_bytes: bytes.len() as u64 });
        }
        let batch = Batch::validate_produced(bytes.clone()).map_err(|source| match source {
            BatchError::TooLarge { size_bytes } => AppendError::BatchTooLarge { index, size_bytes },
            source => AppendError::InvalidBatch { index, source },
        })?;
        validated.push(batch);
    }
    Ok(validated)
}

struct DiskPlan {
    file: Rc<crate::io::SegmentFile>,
    path: PathBuf,
    start_offset: Offset,
    start_position: FilePosition,
    end_position: FilePosition,
    log_end_offset: Offset,
    /// The epochs whose ranges meet the segment (a copy: the read outlives the borrow).
    epochs: Vec<EpochEntry>,
}

fn disk_plan(state: &State, offset: Offset) -> Result<DiskPlan, ReadError> {
    let corrupt_gap = |path: PathBuf| ReadError::Corrupt {
        offset,
        path,
        position: FilePosition::ZERO,
        source: BatchError::Truncated { needed_bytes: 0, have_bytes: 0 },
    };
    let Some((_, segment)) = state.segments.range(..=offset).next_back() else {
        return Err(ReadError::OffsetOutOfRange {
            offset,
            log_start_offset: state.log_start_offset,
            log_end_offset: state.log_end_offset,
        });
    };
    if offset >= segment.index.next_offset {
        // Open keeps segments contiguous, so this is a broken invariant: refuse rather than
        // read the wrong segment.
        return Err(corrupt_gap(segment.log_path.clone()));
    }
    let (start_offset, start_position) = segment.index.lookup(offset);
    let entries = state.epochs.entries();
    // From the epoch holding the segment's first offset to the last one starting inside it.
    let first = entries.partition_point(|e| e.start_offset <= segment.base_offset).saturating_sub(1);
    let end = entries.partition_point(|e| e.start_offset < segment.index.next_offset).max(first + 1);
    Ok(DiskPlan {
        file: segment.file.clone(),
        path: segment.log_path.clone(),
        start_offset,
        start_position,
        end_position: segment.readable_end(),
        log_end_offset: state.log_end_offset,
        epochs: entries[first..end.min(entries.len())].to_vec(),
    })
}

/// Drops whole batches at or past `end_offset` from a disk read (for `read_durable`).
fn cut_at(bytes: Bytes, next_offset: Offset, end_offset: Offset, offset: Offset) -> (Bytes, Offset) {
    if next_offset <= end_offset {
        return (bytes, next_offset);
    }
    let mut cursor = 0usize;
    let mut next = offset;
    while cursor < bytes.len() {
        let Ok(header) = crate::batch::BatchHeader::parse(&bytes[cursor..]) else {
            break;
        };
        // The reader checked every batch it returned continues the offsets before it.
        let Some(after) = Offset::from_wire(header.last_offset()).and_then(Offset::next) else {
            break;
        };
        if after > end_offset {
            break;
        }
        cursor += header.size_bytes();
        next = after;
    }
    (bytes.slice(..cursor), next)
}

/// True when the last opened segment ends before `next_base`: recovery cut it short.
fn ends_before(segments: &BTreeMap<Offset, Segment>, next_base: Offset) -> bool {
    segments.values().next_back().is_some_and(|prev| prev.index.next_offset < next_base)
}

/// A segment that recovery cut short was never sealed (a sealed one is trusted whole), and a
/// `Sync` append in a later segment is acknowledged only after every earlier seal finished; so
/// nothing in the later segments was acknowledged as durable. Delete them, as Kafka does, so
/// the log stays contiguous and appends continue where the valid data ends.
async fn drop_unreachable_segments(
    dir: &Path,
    segments: &BTreeMap<Offset, Segment>,
    doomed: &[Offset],
) -> Result<(), OpenError> {
    let valid_until = segments.values().next_back().map_or(Offset::ZERO, |s| s.index.next_offset);
    tracing::warn!(
        dir = %dir.display(),
        %valid_until,
        segments_dropped = doomed.len(),
        "recovery cut an unsealed segment short; dropping the unacknowledged segments after it"
    );
    for &base in doomed {
        remove_file(&dir.join(index_file_name(base))).await.map_err(OpenError::Io)?;
        remove_file(&dir.join(log_file_name(base))).await.map_err(OpenError::Io)?;
    }
    sync_dir(dir).await.map_err(OpenError::Io)
}

fn check_overlap(dir: &Path, segments: &BTreeMap<Offset, Segment>, next: &Segment) -> Result<(), OpenError> {
    let Some(prev) = segments.values().next_back() else {
        return Ok(());
    };
    if prev.index.next_offset > next.base_offset {
        return Err(OpenError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!(
                "segment {} ends at offset {} past the start of segment {}",
                prev.base_offset, prev.index.next_offset, next.base_offset
            ),
        });
    }
    Ok(())
}

async fn create_segment(dir: &Path, base_offset: Offset) -> Result<Segment, IoError> {
    let log_path = dir.join(log_file_name(base_offset));
    let file = Segment::open_file(&log_path, true).await?;
    // The new name must survive a crash before any batch in it is acknowledged as durable.
    sync_dir(dir).await?;
    Ok(Segment {
        base_offset,
        log_path,
        file,
        index: SegmentIndex::new(base_offset),
        appender: None,
        opened_at: Instant::now(),
    })
}

/// Makes `segment` the active one: reads back its last partial page (the first write will
/// rewrite it) and starts an appender at its end.
async fn start_appender(segment: &mut Segment, partial_write_delay: Duration) -> Result<(), IoError> {
    let end = segment.index.end_position;
    let end_position = end.get();
    let page_position = align_down(end_position);
    let tail_page = if end_position > page_position {
        read_exact(&segment.file, &segment.log_path, page_position, (end_position - page_position) as usize)
            .await
            .map_err(|e| match e {
                ReadError::Io(io) => io,
                other => IoError::new("read", &segment.log_path, std::io::Error::other(other.to_string())),
            })?
    } else {
        Bytes::new()
    };
    if tail_page.len() as u64 != end_position - page_position {
        return Err(IoError::new(
            "read",
            &segment.log_path,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read of the last page"),
        ));
    }
    let appender = Appender::start(
        segment.file.clone(),
        &segment.log_path,
        end,
        segment.index.next_offset,
        &tail_page,
        end_position,
        partial_write_delay,
    );
    segment.appender = Some(Rc::new(appender));
    segment.opened_at = Instant::now();
    Ok(())
}

/// Background half of a roll: flush and sync the old segment, cut its preallocated tail,
/// persist its index, then retire its appender.
async fn seal_segment(log: Log, base_offset: Offset) {
    let target = {
        let state = log.inner.state.borrow();
        state.segments.get(&base_offset).and_then(|s| s.appender.clone().map(|a| (a, s.index.encode(0))))
    };
    let result = match target {
        Some((appender, index_bytes)) => {
            let sealed = appender.seal().await;
            let written = match sealed {
                Ok(_) => {
                    // The data is synced and cut to size: the segment is sealed whether or not
                    // its index reaches the disk. Without one, the next open rebuilds it by a
                    // scan; so a failed index write (a full disk, typically) only costs that
                    // scan, and must not fence a log whose data is intact.
                    let dir = &log.inner.dir;
                    if let Err(e) = write_file_atomic(dir, &index_file_name(base_offset), &index_bytes).await {
                        tracing::warn!(error = %e, "writing a sealed segment's index failed; the next open rebuilds it");
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            retire_stats(&mut log.inner.state.borrow_mut(), &appender);
            written
        }
        None => Ok(()),
    };
    {
        let mut state = log.inner.state.borrow_mut();
        state.sealing = None;
        match result {
            Ok(()) => {
                if let Some(segment) = state.segments.get_mut(&base_offset) {
                    segment.appender = None;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sealing a segment failed; fencing the log");
                state.fenced = Some(e.to_string());
            }
        }
    }
    log.inner.sealed.notify(usize::MAX);
    log.inner.appended.notify(usize::MAX);
}

/// The leader-epoch checkpoint, or `None` when it is missing or fails its checks (recovery then
/// rebuilds it from the batches).
async fn load_epochs(dir: &Path) -> Result<Option<Epochs>, OpenError> {
    let path = dir.join(EPOCHS_FILE);
    let Some(bytes) = read_file(&path).await.map_err(OpenError::Io)? else {
        return Ok(None);
    };
    match Epochs::decode(&bytes) {
        Ok(epochs) => Ok(Some(epochs)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring the leader epoch checkpoint; rebuilding it from the batches");
            Ok(None)
        }
    }
}

/// How recovery checks epochs: against the checkpoint, if there is one that covers the log
/// from its first segment on; otherwise by rebuilding them.
fn epoch_scan(dir: &Path, stored: Option<&Epochs>, first_base_offset: Offset) -> EpochScan {
    match stored {
        Some(epochs) if epochs.first().start_offset <= first_base_offset => EpochScan::Checkpoint(epochs.clone()),
        Some(epochs) => {
            tracing::warn!(
                dir = %dir.display(),
                first_epoch_start = %epochs.first().start_offset,
                %first_base_offset,
                "the leader epoch checkpoint starts after the log; rebuilding it from the batches"
            );
            EpochScan::Rebuild(Vec::new())
        }
        None => EpochScan::Rebuild(Vec::new()),
    }
}

/// The epochs after recovery: the checkpoint without entries past the recovered end, or the
/// ones rebuilt from the batches (epoch 0 from the log start for an empty log).
fn recovered_epochs(dir: &Path, scan: EpochScan, log_start: Offset, log_end: Offset) -> Result<Epochs, OpenError> {
    let epochs = match scan {
        EpochScan::Checkpoint(epochs) => epochs.without_after(log_end),
        EpochScan::Rebuild(seen) if seen.is_empty() => Epochs::new(log_start),
        EpochScan::Rebuild(seen) => Epochs::from_entries(seen)
            .map_err(|reason| OpenError::Corrupt { path: dir.join(EPOCHS_FILE), reason: reason.to_owned() })?,
    };
    assert!(epochs.first().start_offset <= log_start || epochs.entries().len() == 1);
    assert!(epochs.latest().start_offset <= log_end);
    Ok(epochs)
}

/// Adds a retiring appender's counters to the log's.
fn retire_stats(state: &mut State, appender: &Appender) {
    let stats = appender.stats();
    state.retired.writes_count += stats.writes_count;
    state.retired.syncs_count += stats.syncs_count;
    state.retired.sync_latency.merge(&stats.sync_latency);
}

/// Reads the clean-shutdown marker (tests use this to tell a clean from an unclean close).
pub async fn has_clean_shutdown_marker(dir: &Path) -> bool {
    matches!(read_file(&dir.join(CLEAN_SHUTDOWN_FILE)).await, Ok(Some(_)))
}
