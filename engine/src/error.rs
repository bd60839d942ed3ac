//! Typed errors at the engine's boundary. One enum per family of operations, so that a caller
//! can tell "your input is bad" from "the disk failed" from "this log must be reopened".

use std::path::PathBuf;

use crate::batch::BatchError;
use crate::ids::{FilePosition, LeaderEpoch, Offset};
use crate::limits::{BATCH_SIZE_BYTES_MAX, LEADER_EPOCH_ENTRIES_MAX};

/// Why an I/O operation failed, with the file it touched.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path:?}: {source}")]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        IoError { op, path: path.into(), source: source.into() }
    }

    /// True when the disk is full: the caller may retry once space returns. glommio's error
    /// conversion keeps the error kind but drops the OS error code, so check both.
    pub fn is_no_space(&self) -> bool {
        matches!(self.source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || matches!(self.source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
    }
}

/// Errors from `Log::append`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("invalid batch #{index} in request: {source}")]
    InvalidBatch {
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("batch #{index} is {size_bytes} bytes, limit {BATCH_SIZE_BYTES_MAX}")]
    BatchTooLarge { index: usize, size_bytes: u64 },
    #[error("append of no batches")]
    Empty,
    #[error("disk full: {0}")]
    NoSpace(#[source] IoError),
    /// The file system is below the configured free-space floor; retry once space is freed.
    #[error("disk full: {free_bytes} bytes free, below the floor of {floor_bytes} bytes (disk_free_floor_bytes)")]
    DiskFull { free_bytes: u64, floor_bytes: u64 },
    #[error("log fenced by an earlier I/O error ({reason}); it must be reopened")]
    Fenced { reason: String },
    #[error("log is closed")]
    Closed,
    #[error(transparent)]
    Io(IoError),
    /// `append_replica`: a batch does not continue the log exactly where it must.
    #[error("replica batch #{index} has baseOffset {found}, expected {expected}")]
    ReplicaOffsetMismatch { index: usize, expected: Offset, found: i64 },
    /// `append_replica`: a batch without a leader epoch (Kafka's −1): a leader stamps one.
    #[error("replica batch #{index} carries no leader epoch ({epoch})")]
    ReplicaEpochUnknown { index: usize, epoch: i32 },
    /// `append_replica`: a batch whose leader epoch is older than the one before it, or than
    /// the log's latest epoch.
    #[error("replica batch #{index} has leader epoch {epoch}, older than {latest}")]
    ReplicaEpochBackwards { index: usize, epoch: LeaderEpoch, latest: LeaderEpoch },
    #[error("the log already holds {LEADER_EPOCH_ENTRIES_MAX} leader epochs (LEADER_EPOCH_ENTRIES_MAX)")]
    TooManyEpochs,
    /// The batches would take the log past `Offset::MAX` (the largest offset a batch can carry).
    #[error("{records} more records would take the log end {log_end_offset} past the largest offset")]
    OffsetOverflow { log_end_offset: Offset, records: u64 },
    /// `Queued::durable`: the log was truncated below the end of these batches after they
    /// were queued (`Log::truncate_to`); they are gone, and were never acknowledged.
    #[error("batches ending at offset {end_offset} were truncated away (the log was cut to {truncated_to})")]
    Truncated { end_offset: Offset, truncated_to: Offset },
}

/// Errors from `Log::truncate_to`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TruncateError {
    #[error("cannot truncate to offset {offset}: below the log start {log_start_offset}")]
    BelowLogStart { offset: Offset, log_start_offset: Offset },
    /// The batch boundary at or below the offset could not be read.
    #[error("cannot find the batch boundary to truncate at: {0}")]
    Read(#[source] ReadError),
    #[error("log fenced by an earlier I/O error ({reason}); it must be reopened")]
    Fenced { reason: String },
    #[error("log is closed")]
    Closed,
    /// The truncation failed part way; the log is fenced, and the next open finishes it.
    #[error(transparent)]
    Io(IoError),
}

/// Errors from `Log::read` and friends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: Offset, log_start_offset: Offset, log_end_offset: Offset },
    #[error("corrupt batch at offset {offset} in {path:?} position {position}: {source}")]
    Corrupt {
        offset: Offset,
        path: PathBuf,
        position: FilePosition,
        #[source]
        source: BatchError,
    },
    /// A stored batch whose baseOffset (outside the CRC) does not continue the log there.
    #[error(
        "corrupt batch at offset {offset} in {path:?} position {position}: stored baseOffset {stored_base_offset}, \
         expected {expected_base_offset}"
    )]
    CorruptOffset {
        offset: Offset,
        path: PathBuf,
        position: FilePosition,
        expected_base_offset: Offset,
        stored_base_offset: i64,
    },
    #[error(transparent)]
    Io(IoError),
    /// Truncations kept cutting the log under this read (`READ_TRUNCATION_RETRIES_MAX` in a
    /// row); retry later.
    #[error("the log was truncated under a read at offset {offset}, {retries} times in a row")]
    ConcurrentTruncation { offset: Offset, retries: u32 },
}

impl ReadError {
    /// True when stored data failed a check: it is reported and never served.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, ReadError::Corrupt { .. } | ReadError::CorruptOffset { .. })
    }
}

/// Errors from `Log::open`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error("corrupt log in {path:?}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(transparent)]
    Io(IoError),
}

/// Errors from `Log::begin_epoch`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// Epochs never go backwards: a leader of an older epoch is stale.
    #[error("leader epoch {epoch} is older than the log's latest epoch {latest}")]
    Backwards { epoch: LeaderEpoch, latest: LeaderEpoch },
    #[error("the log already holds {LEADER_EPOCH_ENTRIES_MAX} leader epochs (LEADER_EPOCH_ENTRIES_MAX)")]
    TooManyEpochs,
    #[error("log fenced by an earlier I/O error ({reason}); it must be reopened")]
    Fenced { reason: String },
    #[error("log is closed")]
    Closed,
    /// Writing the epoch checkpoint failed; the log is fenced.
    #[error(transparent)]
    Io(IoError),
}

/// Errors from `Log::close`, retention and other maintenance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    #[error("log fenced by an earlier I/O error ({reason}); it must be reopened")]
    Fenced { reason: String },
    /// `checkpoint_high_watermark` past the log end: a high watermark is at most the log end.
    #[error("high watermark {offset} is past the log end {log_end_offset}")]
    HighWatermarkBeyondEnd { offset: Offset, log_end_offset: Offset },
    #[error("log is closed")]
    Closed,
    #[error(transparent)]
    Io(IoError),
    /// `delete_records_before` past the log end: records that do not exist cannot be deleted.
    #[error("offset {offset} is past the log end {log_end_offset}")]
    DeleteBeyondEnd { offset: Offset, log_end_offset: Offset },
}

impl From<IoError> for AppendError {
    fn from(e: IoError) -> Self {
        if e.is_no_space() {
            AppendError::NoSpace(e)
        } else {
            AppendError::Io(e)
        }
    }
}
