//! What an operator does to a log's records while it is open: delete the records before an
//! offset (Kafka's DeleteRecords), change its settings (a topic's config altered), and find
//! the record with the largest timestamp (ListOffsets with Kafka's MAX_TIMESTAMP, -3).
//!
//! `delete_records_before` moves the log start durably: the new start is written to the
//! `log-start-checkpoint` file (atomically, synced) before any reader sees it, so after a
//! crash the deleted records stay deleted; whole sealed segments below the new start are then
//! removed, as retention removes them. Reads below the start get `OffsetOutOfRange`.

use super::{Log, LogConfig};
use crate::cache;
use crate::checkpoint::{decode_log_start, encode_log_start, LOG_START_FILE};
use crate::error::{MaintenanceError, OpenError, ReadError};
use crate::fs::{read_file, remove_file, sync_dir, write_file_atomic};
use crate::ids::{FilePosition, Offset};
use crate::limits::READ_BYTES_MAX;
use crate::segment::Segment;

/// The record with the largest timestamp (the first such, if several share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxTimestamp {
    pub timestamp_ms: i64,
    /// The record's offset; for a compressed batch (whose records are not decompressed), the
    /// batch's last offset, as Kafka answered before it decompressed them.
    pub offset: Offset,
}

impl Log {
    /// Deletes every record before `offset`: the log start becomes `offset` (durably, before
    /// this resolves), and whole sealed segments that end at or before it are removed. An
    /// `offset` at or below the current start changes nothing. Returns the log start after.
    pub async fn delete_records_before(&self, offset: Offset) -> Result<Offset, MaintenanceError> {
        // Retention and truncation delete segments too; one at a time.
        let _maintenance = self.inner.maintenance_lock.acquire_permit(1).await.map_err(|_| MaintenanceError::Closed)?;
        {
            let state = self.inner.state.borrow();
            if state.closed {
                return Err(MaintenanceError::Closed);
            }
            if let Some(reason) = &state.fenced {
                return Err(MaintenanceError::Fenced { reason: reason.clone() });
            }
            if offset > state.log_end_offset {
                return Err(MaintenanceError::DeleteBeyondEnd { offset, log_end_offset: state.log_end_offset });
            }
            if offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
        }
        // On disk before any reader is refused what it could read until now.
        write_file_atomic(&self.inner.dir, LOG_START_FILE, &encode_log_start(offset))
            .await
            .map_err(MaintenanceError::Io)?;
        let doomed: Vec<Segment> = {
            let mut state = self.inner.state.borrow_mut();
            // The log end cannot move backwards past `offset` without a truncation, which waits
            // for the maintenance lock held here.
            assert!(offset <= state.log_end_offset);
            state.log_start_offset = state.log_start_offset.max(offset);
            let removable: Vec<Offset> = state
                .segments
                .values()
                .take_while(|s| s.appender.is_none() && s.index.next_offset <= offset)
                .map(|s| s.base_offset)
                .collect();
            let doomed = removable.iter().filter_map(|base| state.segments.remove(base)).collect();
            assert!(!state.segments.is_empty(), "the active segment is never removed");
            cache::drop_before(self.inner.cache_id, state.log_start_offset);
            doomed
        };
        let start = self.log_start_offset();
        assert!(start >= offset);
        for segment in &doomed {
            // Readers holding the file keep reading it: an unlinked file lives until closed.
            remove_file(&segment.index_path()).await.map_err(MaintenanceError::Io)?;
            remove_file(&segment.log_path).await.map_err(MaintenanceError::Io)?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.inner.dir).await.map_err(MaintenanceError::Io)?;
        }
        tracing::info!(dir = %self.inner.dir.display(), log_start_offset = %start, segments_deleted = doomed.len(), "records deleted");
        Ok(start)
    }

    /// New settings for an open log (the topic's config changed): rolls and retention use them
    /// from the next append or retention pass on. Refused if they do not validate.
    pub fn reconfigure(&self, config: LogConfig) -> Result<(), String> {
        config.validate()?;
        let mut current = self.inner.config.borrow_mut();
        // Set when the log was opened, not by topic config: kept.
        let config = LogConfig {
            preallocate_step_bytes: current.preallocate_step_bytes,
            disk_free_floor_bytes: current.disk_free_floor_bytes,
            ..config
        };
        *current = config;
        Ok(())
    }

    /// The record with the largest timestamp, or `None` for an empty log. Reads from the time
    /// index entry before it in the segment that holds it, so the scan is short.
    pub async fn max_timestamp(&self) -> Result<Option<MaxTimestamp>, ReadError> {
        let (max_timestamp_ms, start, end) = {
            let state = self.inner.state.borrow();
            let best = state
                .segments
                .values()
                .filter(|s| s.index.next_offset > state.log_start_offset && s.index.max_timestamp != i64::MIN)
                .fold(None::<&Segment>, |best, s| match best {
                    Some(b) if b.index.max_timestamp >= s.index.max_timestamp => Some(b),
                    _ => Some(s),
                });
            let Some(segment) = best else {
                return Ok(None);
            };
            let ts = segment.index.max_timestamp;
            let (from, _position): (Offset, FilePosition) = segment.index.lookup_time(ts);
            (ts, from.max(state.log_start_offset), segment.index.next_offset)
        };
        let mut offset = start;
        // Every pass returns or moves `offset` forward, and stops at the segment's end.
        while offset < end {
            let read = self.read(offset, READ_BYTES_MAX).await?;
            if read.is_empty() || read.next_offset <= offset {
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
                if batch.max_timestamp() != max_timestamp_ms {
                    continue;
                }
                let last = Offset::from_wire(batch.last_offset());
                if batch.header().is_compressed() {
                    return Ok(last.map(|offset| MaxTimestamp { timestamp_ms: max_timestamp_ms, offset }));
                }
                for record in batch.records() {
                    let record = record.map_err(corrupt)?;
                    if record.timestamp == max_timestamp_ms {
                        let found = Offset::from_wire(record.offset);
                        return Ok(found.map(|offset| MaxTimestamp { timestamp_ms: max_timestamp_ms, offset }));
                    }
                }
                // A batch whose max timestamp no record carries (a producer's own batch
                // header): its last offset, as Kafka's shallow answer.
                return Ok(last.map(|offset| MaxTimestamp { timestamp_ms: max_timestamp_ms, offset }));
            }
            offset = read.next_offset;
        }
        Ok(None)
    }
}

/// The start `delete_records_before` recorded, or `None` (none recorded, or a corrupt file:
/// then the segments' start stands, which only brings back records a crash kept anyway).
pub(super) async fn load_log_start(dir: &std::path::Path) -> Result<Option<Offset>, OpenError> {
    let path = dir.join(LOG_START_FILE);
    let Some(bytes) = read_file(&path).await.map_err(OpenError::Io)? else {
        return Ok(None);
    };
    match decode_log_start(&bytes) {
        Ok(offset) => Ok(Some(offset)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring a corrupt log-start checkpoint");
            Ok(None)
        }
    }
}
