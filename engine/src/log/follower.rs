//! The follower half of a log: appending batches a leader already stored (`append_replica`),
//! cutting a divergent tail (`truncate_to`, Kafka's `truncateTo`), and the high-watermark
//! checkpoint. The broker decides when to call each; the log only keeps them safe.
//!
//! Truncation is crash-safe by a redo record: once the cut point is known, a `truncate-intent`
//! file naming it is written (atomically) before anything is cut; every step after that keeps
//! the files a prefix of the log (later segments deleted newest first, then the holding one
//! truncated), and an open that finds the intent finishes the cut — segments, epochs, high
//! watermark — before it removes the record. So after a crash at any point the log is either
//! the log before the truncation or the truncated log, never a gap and never garbage.

use bytes::Bytes;

use super::{retire_stats, start_appender, validate_batches, AppendInfo, Log, Queued, Stamp};
use crate::batch::Batch;
use crate::catalog::Durability;
use crate::checkpoint::{
    decode_high_watermark, decode_truncate_intent, encode_high_watermark, encode_truncate_intent, HIGH_WATERMARK_FILE,
    TRUNCATE_INTENT_FILE,
};
use crate::epochs::{AssignError, EpochScan, Epochs};
use crate::error::{AppendError, IoError, MaintenanceError, OpenError, TruncateError};
use crate::fs::{read_file, remove_file, sync_dir, write_file_atomic};
use crate::ids::{LeaderEpoch, Offset};
use crate::io::crash_point;
use crate::limits::TRUNCATIONS_TRACKED_MAX;
use crate::recovery::{batch_holding, cut_segment_files};
use crate::segment::Segment;

impl Log {
    /// Appends batches exactly as a leader stored them — base offsets and leader epochs
    /// included, byte for byte — and resolves per `durability` like `append`.
    pub async fn append_replica(&self, batches: &[Bytes], durability: Durability) -> Result<AppendInfo, AppendError> {
        self.append_replica_queued(batches).await?.durable(durability).await
    }

    /// The first stage of `append_replica` (see `append_queued` for the two stages). The
    /// batches must continue the log exactly: the first starts at the log end, each next one
    /// right after the one before; their epochs must be known, never decrease, and be at least
    /// the log's latest epoch. A new epoch is written to the epoch checkpoint before any batch
    /// carrying it is queued.
    pub async fn append_replica_queued(&self, batches: &[Bytes]) -> Result<Queued, AppendError> {
        let validated = validate_replica_batches(batches)?;
        self.queue_batches(batches, &validated, Stamp::AsStored).await
    }

    /// With the append lock held: checks that `validated` (contiguous and ordered among
    /// themselves) continue the log, and returns the epochs with theirs added, if that adds one.
    pub(super) fn replica_epochs(&self, validated: &[Batch]) -> Result<Option<Epochs>, AppendError> {
        let state = self.inner.state.borrow();
        let log_end = state.log_end_offset;
        let Some(first) = validated.first() else {
            return Err(AppendError::Empty);
        };
        if Offset::from_wire(first.base_offset()) != Some(log_end) {
            return Err(AppendError::ReplicaOffsetMismatch { index: 0, expected: log_end, found: first.base_offset() });
        }
        let mut epochs = state.epochs.trimmed_before(state.log_start_offset);
        let mut changed = false;
        for (index, batch) in validated.iter().enumerate() {
            let stored = batch.header().partition_leader_epoch;
            let (Some(epoch), Some(base)) = (LeaderEpoch::from_wire(stored), Offset::from_wire(batch.base_offset()))
            else {
                unreachable!("validate_replica_batches checked epochs and offsets");
            };
            match epochs.with_epoch(epoch, base) {
                Ok(None) => {}
                Ok(Some(next)) => {
                    epochs = next;
                    changed = true;
                }
                Err(AssignError::TooMany) => return Err(AppendError::TooManyEpochs),
                Err(AssignError::Backwards { latest, .. }) => {
                    return Err(AppendError::ReplicaEpochBackwards { index, epoch, latest });
                }
                Err(AssignError::StartBeforeLatest { .. }) => {
                    unreachable!("replica batches start at or after the log end, where no epoch starts later")
                }
            }
        }
        Ok(changed.then_some(epochs))
    }

    /// Removes every batch at or above `end_offset` (Kafka's `truncateTo`); returns the new log
    /// end. An `end_offset` inside a batch cuts that whole batch (rounds down to its base
    /// offset), as Kafka does; one at or past the log end changes nothing. Below the log start
    /// it is an error.
    ///
    /// Segment files wholly above the cut are deleted, the one holding it is truncated and its
    /// index rebuilt and saved, the epoch checkpoint loses the epochs starting at or past the
    /// cut, the high-watermark checkpoint is lowered to it, and the tail cache forgets it.
    /// Appends wait (the append lock); disk reads in flight start over; a `Queued` append whose
    /// batches were cut resolves `AppendError::Truncated`. Crash-safe: see the module comment.
    /// A failure after the cut began fences the log; the next open finishes the cut.
    pub async fn truncate_to(&self, end_offset: Offset) -> Result<Offset, TruncateError> {
        let _append = self.inner.append_lock.acquire_permit(1).await.map_err(|_| TruncateError::Closed)?;
        let _maintenance = self.inner.maintenance_lock.acquire_permit(1).await.map_err(|_| TruncateError::Closed)?;
        self.check_writable().map_err(truncate_error)?;
        self.wait_sealed_before(Offset::MAX).await.map_err(truncate_error)?;
        let (log_start, log_end) = {
            let state = self.inner.state.borrow();
            (state.log_start_offset, state.log_end_offset)
        };
        if end_offset >= log_end {
            // Nothing to cut — but an epoch this replica began at its log end as a leader that
            // never appended (it lost the leadership at once) conflicts with the leader's log:
            // it goes (Kafka does the same), or the follower would keep sending it as its last
            // fetched epoch and be told to truncate here again, forever.
            let epochs = self.inner.state.borrow().epochs.truncated_from(log_end).trimmed_before(log_start);
            if epochs != self.inner.state.borrow().epochs {
                self.persist_epochs(epochs).await.map_err(TruncateError::Io)?;
                tracing::info!(dir = %self.inner.dir.display(), %log_end, "dropped an epoch begun at the log end");
            }
            return Ok(log_end);
        }
        if end_offset < log_start {
            return Err(TruncateError::BelowLogStart { offset: end_offset, log_start_offset: log_start });
        }
        let guard = TruncationGuard::begin(self);
        // 1. Stop the writes: everything appended is written and synced, the preallocation cut.
        let active = self.active_appender().map_err(truncate_error)?;
        if let Err(e) = active.seal().await {
            return Err(self.fence_truncation(e));
        }
        // 2. The batch boundary at or below `end_offset`.
        let (holding_base, file, path, index) = {
            let state = self.inner.state.borrow();
            let Some((&base, segment)) = state.segments.range(..=end_offset).next_back() else {
                unreachable!("a segment starts at the log start, at or below the offset")
            };
            (base, segment.file.clone(), segment.log_path.clone(), segment.index.clone())
        };
        let (cut, cut_position) = match batch_holding(&file, &path, &index, end_offset).await {
            Ok(found) => found,
            Err(e) => {
                // Nothing was cut: write on where the log ends.
                if let Err(restart) = self.restart_last_appender().await {
                    return Err(self.fence_truncation(restart));
                }
                return Err(TruncateError::Read(e));
            }
        };
        assert!(cut <= end_offset);
        assert!(cut >= log_start);
        // 3. The redo record: from here on, a crash is finished by the next open.
        guard.cut_at(cut);
        let dir = &self.inner.dir;
        let intent = encode_truncate_intent(cut);
        crash_point("truncate: write intent", dir).map_err(|e| self.fence_truncation(e))?;
        write_file_atomic(dir, TRUNCATE_INTENT_FILE, &intent).await.map_err(|e| self.fence_truncation(e))?;
        let _high_watermark =
            self.inner.high_watermark_lock.acquire_permit(1).await.map_err(|_| TruncateError::Closed)?;
        if self.inner.state.borrow().high_watermark > cut {
            crash_point("truncate: lower high watermark", dir).map_err(|e| self.fence_truncation(e))?;
            write_high_watermark(dir, cut).await.map_err(|e| self.fence_truncation(e))?;
            self.inner.state.borrow_mut().high_watermark = cut;
        }
        // 4. Memory first (readers wait while `truncating`), then the files.
        let (tail, mut epoch_scan) = {
            let mut state = self.inner.state.borrow_mut();
            state.log_end_offset = cut;
            crate::cache::drop_from(self.inner.cache_id, cut);
            retire_stats(&mut state, &active);
            let mut tail: Vec<Segment> = state.segments.split_off(&holding_base).into_values().collect();
            for segment in &mut tail {
                segment.appender = None;
            }
            (tail, EpochScan::Checkpoint(state.epochs.clone()))
        };
        drop(active);
        let mut holding =
            cut_segment_files(dir, tail, cut_position, &mut epoch_scan).await.map_err(|e| self.fence_truncation(e))?;
        let new_end = holding.index.next_offset;
        assert!(new_end <= cut);
        guard.cut_at(new_end);
        start_appender(&mut holding, self.partial_write_delay()).await.map_err(|e| self.fence_truncation(e))?;
        let epochs = {
            let mut state = self.inner.state.borrow_mut();
            state.segments.insert(holding.base_offset, holding);
            state.log_end_offset = new_end;
            crate::cache::drop_from(self.inner.cache_id, new_end);
            state.epochs.truncated_from(new_end).trimmed_before(log_start)
        };
        if epochs != self.inner.state.borrow().epochs {
            crash_point("truncate: write epochs", dir).map_err(|e| self.fence_truncation(e))?;
            self.persist_epochs(epochs).await.map_err(TruncateError::Io)?;
        }
        // 5. Done: the record goes, synced before any later append can be acknowledged (a
        // stale record would cut those on the next open).
        crash_point("truncate: remove intent", dir).map_err(|e| self.fence_truncation(e))?;
        remove_truncate_intent(dir).await.map_err(|e| self.fence_truncation(e))?;
        drop(guard);
        self.inner.appended.notify(usize::MAX);
        tracing::info!(dir = %dir.display(), %end_offset, %new_end, "log truncated");
        Ok(new_end)
    }

    /// Starts a fresh appender on the last segment (after `truncate_to` sealed it and then
    /// found it could not cut anything).
    async fn restart_last_appender(&self) -> Result<(), IoError> {
        let Some((base, mut segment)) = self.inner.state.borrow_mut().segments.pop_last() else {
            unreachable!("a log always has an active segment")
        };
        if let Some(old) = segment.appender.take() {
            retire_stats(&mut self.inner.state.borrow_mut(), &old);
        }
        let started = start_appender(&mut segment, self.partial_write_delay()).await;
        self.inner.state.borrow_mut().segments.insert(base, segment);
        started
    }

    fn fence_truncation(&self, e: IoError) -> TruncateError {
        tracing::error!(dir = %self.inner.dir.display(), error = %e, "truncation failed; fencing the log (the next open finishes it)");
        self.inner.state.borrow_mut().fenced.get_or_insert_with(|| e.to_string());
        TruncateError::Io(e)
    }

    /// For `Queued::durable`: `Err(Truncated)` if a truncation since `generation` cut the log
    /// below `end_offset` (waits for one in progress to finish first).
    pub(super) async fn check_not_truncated(&self, generation: u64, end_offset: Offset) -> Result<(), AppendError> {
        self.wait_not_truncating().await;
        let state = self.inner.state.borrow();
        if state.truncation_generation == generation {
            return Ok(());
        }
        // Generations move by two per truncation, so the first one after `generation` ends at
        // `generation + 2`; if that record was already dropped, assume the worst.
        if let Some(&(oldest, truncated_to)) = state.truncations.front() {
            if oldest > generation + 2 && state.truncations.len() >= TRUNCATIONS_TRACKED_MAX {
                return Err(AppendError::Truncated { end_offset, truncated_to });
            }
        }
        for &(ended, truncated_to) in &state.truncations {
            if ended > generation && truncated_to < end_offset {
                return Err(AppendError::Truncated { end_offset, truncated_to });
            }
        }
        Ok(())
    }

    /// The high watermark last checkpointed, kept within `[log start, log end]` (after a crash
    /// the log may end below what was checkpointed). The log start when none was.
    pub fn checkpointed_high_watermark(&self) -> Offset {
        let state = self.inner.state.borrow();
        state.high_watermark.clamp(state.log_start_offset, state.log_end_offset)
    }

    /// Writes the high-watermark checkpoint atomically (temp, fdatasync, rename, dir fsync):
    /// the broker calls it when the high watermark moved and it wants that to survive a
    /// restart. `offset` must not pass the log end. A failed write leaves the old value (on
    /// disk it may be either) and does not fence the log: it holds no data.
    pub async fn checkpoint_high_watermark(&self, offset: Offset) -> Result<(), MaintenanceError> {
        let _permit = self.inner.high_watermark_lock.acquire_permit(1).await.map_err(|_| MaintenanceError::Closed)?;
        {
            let state = self.inner.state.borrow();
            if state.closed {
                return Err(MaintenanceError::Closed);
            }
            let log_end_offset = state.log_end_offset;
            if offset > log_end_offset {
                return Err(MaintenanceError::HighWatermarkBeyondEnd { offset, log_end_offset });
            }
        }
        write_high_watermark(&self.inner.dir, offset).await.map_err(MaintenanceError::Io)?;
        self.inner.state.borrow_mut().high_watermark = offset;
        Ok(())
    }
}

/// Marks a truncation in progress for its whole life: readers wait and a disk read that
/// straddles it starts over (the generation moves at both ends); the cut it made, if it got
/// that far, is recorded for `Queued::durable` whether it finished or failed part way (a
/// failed one is finished by the next open).
struct TruncationGuard<'a> {
    log: &'a Log,
    cut: std::cell::Cell<Option<Offset>>,
}

impl<'a> TruncationGuard<'a> {
    fn begin(log: &'a Log) -> TruncationGuard<'a> {
        let mut state = log.inner.state.borrow_mut();
        assert!(!state.truncating, "truncations are serialised by the append lock");
        state.truncating = true;
        state.truncation_generation += 1;
        TruncationGuard { log, cut: std::cell::Cell::new(None) }
    }

    fn cut_at(&self, offset: Offset) {
        self.cut.set(Some(offset));
    }
}

impl Drop for TruncationGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.log.inner.state.borrow_mut();
        state.truncating = false;
        state.truncation_generation += 1;
        if let Some(cut) = self.cut.get() {
            let generation = state.truncation_generation;
            if state.truncations.len() >= TRUNCATIONS_TRACKED_MAX {
                state.truncations.pop_front();
            }
            state.truncations.push_back((generation, cut));
        }
        drop(state);
        self.log.inner.truncated.notify(usize::MAX);
    }
}

fn truncate_error(e: AppendError) -> TruncateError {
    match e {
        AppendError::Fenced { reason } => TruncateError::Fenced { reason },
        AppendError::Io(io) | AppendError::NoSpace(io) => TruncateError::Io(io),
        _ => TruncateError::Closed,
    }
}

/// Checks replica batches before anything is taken: each a valid batch claiming exactly its
/// records (what every leader append passed), with a known leader epoch; together contiguous
/// in offsets and never decreasing in epoch. Where they must start is checked under the lock.
fn validate_replica_batches(batches: &[Bytes]) -> Result<Vec<Batch>, AppendError> {
    let validated = validate_batches(batches)?;
    for (index, batch) in validated.iter().enumerate() {
        let stored_epoch = batch.header().partition_leader_epoch;
        let Some(epoch) = LeaderEpoch::from_wire(stored_epoch) else {
            return Err(AppendError::ReplicaEpochUnknown { index, epoch: stored_epoch });
        };
        let Some(previous) = index.checked_sub(1).map(|i| &validated[i]) else {
            if Offset::from_wire(batch.base_offset()).is_none() {
                let found = batch.base_offset();
                return Err(AppendError::ReplicaOffsetMismatch { index, expected: Offset::ZERO, found });
            }
            continue;
        };
        // validate_produced checked the last offset does not overflow.
        let expected = Offset::new(previous.last_offset() as u64 + 1);
        if Offset::from_wire(batch.base_offset()) != Some(expected) {
            return Err(AppendError::ReplicaOffsetMismatch { index, expected, found: batch.base_offset() });
        }
        let latest = LeaderEpoch::from_wire(previous.header().partition_leader_epoch).unwrap_or(LeaderEpoch::ZERO);
        if epoch < latest {
            return Err(AppendError::ReplicaEpochBackwards { index, epoch, latest });
        }
    }
    Ok(validated)
}

/// The truncation a crash interrupted, if any. A record that fails its checksum cannot be
/// finished (its cut is unknown); every step of a truncation leaves a prefix of the log, so it
/// is removed with a warning.
pub(super) async fn load_truncate_intent(dir: &std::path::Path) -> Result<Option<Offset>, OpenError> {
    let path = dir.join(TRUNCATE_INTENT_FILE);
    let Some(bytes) = read_file(&path).await.map_err(OpenError::Io)? else {
        return Ok(None);
    };
    match decode_truncate_intent(&bytes) {
        Ok(cut) => Ok(Some(cut)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring a corrupt truncation record");
            remove_truncate_intent(dir).await.map_err(OpenError::Io)?;
            Ok(None)
        }
    }
}

/// Finishes on open a truncation that a crash interrupted: cuts the segments (which have no
/// appender yet) at `cut`, if the recovered log still reaches past it. `epochs` are the
/// recovered ones (the holding segment's rebuilt index is checked against them).
pub(super) async fn redo_truncation(
    dir: &std::path::Path,
    segments: &mut std::collections::BTreeMap<Offset, Segment>,
    cut: Offset,
    epochs: &Epochs,
) -> Result<(), OpenError> {
    let log_end = segments.values().next_back().map_or(Offset::ZERO, |s| s.index.next_offset);
    if cut >= log_end {
        return Ok(());
    }
    let Some((&holding_base, holding)) = segments.range(..=cut).next_back() else {
        return Err(OpenError::Corrupt {
            path: dir.join(TRUNCATE_INTENT_FILE),
            reason: format!("truncation to {cut} lies below every segment"),
        });
    };
    let found = batch_holding(&holding.file, &holding.log_path, &holding.index, cut).await;
    let (base, cut_position) = found.map_err(|e| OpenError::Corrupt {
        path: holding.log_path.clone(),
        reason: format!("cannot find the batch boundary of an interrupted truncation to {cut}: {e}"),
    })?;
    assert!(base <= cut);
    tracing::warn!(dir = %dir.display(), %cut, %log_end, "finishing a truncation a crash interrupted");
    let tail: Vec<Segment> = segments.split_off(&holding_base).into_values().collect();
    let mut scan = EpochScan::Checkpoint(epochs.clone());
    let holding = cut_segment_files(dir, tail, cut_position, &mut scan).await.map_err(OpenError::Io)?;
    segments.insert(holding.base_offset, holding);
    Ok(())
}

pub(super) async fn load_high_watermark(dir: &std::path::Path) -> Result<Option<Offset>, OpenError> {
    let path = dir.join(HIGH_WATERMARK_FILE);
    let Some(bytes) = read_file(&path).await.map_err(OpenError::Io)? else {
        return Ok(None);
    };
    match decode_high_watermark(&bytes) {
        Ok(offset) => Ok(Some(offset)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring a corrupt high-watermark checkpoint");
            Ok(None)
        }
    }
}

pub(super) async fn write_high_watermark(dir: &std::path::Path, offset: Offset) -> Result<(), IoError> {
    write_file_atomic(dir, HIGH_WATERMARK_FILE, &encode_high_watermark(offset)).await
}

pub(super) async fn remove_truncate_intent(dir: &std::path::Path) -> Result<(), IoError> {
    remove_file(&dir.join(TRUNCATE_INTENT_FILE)).await?;
    sync_dir(dir).await
}
