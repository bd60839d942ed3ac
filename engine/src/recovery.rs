//! What `Log::open` does to a directory before anything is served from it.
//!
//! For each segment, oldest first:
//! - a sealed segment (not the last) whose valid index file ends exactly where the file ends is
//!   trusted as is;
//! - the last segment after a clean shutdown (marker file present, index flagged clean, sizes
//!   agree) is trusted as is;
//! - any other segment is re-validated from its index's last entry, or from its start when
//!   the index is missing, corrupt, or points past the end of the file.
//!
//! A scan checks every batch — length, magic, CRC-32C, and that its base offset continues the
//! previous batch — and stops at the first batch that fails: a torn write, the zeroes of a
//! preallocated tail, or garbage. The file is truncated there, so a torn tail is never served
//! and the next append overwrites it.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use crate::batch::{peek_batch_size, BatchError, BatchHeader};
use crate::error::{IoError, OpenError};
use crate::fs::{read_file, write_file_atomic};
use crate::io::SegmentFile;
use crate::limits::{BATCH_HEADER_BYTES, RECOVERY_READ_BYTES};
use crate::segment::index::{SegmentIndex, FLAG_CLEAN};
use crate::segment::reader::check_stored;
use crate::segment::{index_file_name, log_file_name, Segment};

/// Why a scan stopped; logged, and used by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// Reached the end of the file exactly at a batch boundary.
    EndOfFile,
    /// Fewer bytes left than the next batch needs.
    Torn,
    /// A header that is not a batch (zeroes of a preallocated tail land here).
    Invalid,
    BadCrc,
    /// A valid batch whose base offset does not continue the log (stale bytes).
    OffsetGap,
}

/// Opens one segment and makes its index agree with its data. `is_last` selects the active
/// segment rules; `clean` says the clean-shutdown marker was present.
pub(crate) async fn open_segment(
    dir: &Path,
    base_offset: u64,
    is_last: bool,
    clean: bool,
) -> Result<Segment, OpenError> {
    let log_path = dir.join(log_file_name(base_offset));
    let file = Segment::open_file(&log_path, false).await.map_err(OpenError::Io)?;
    let file_size = file.file_size().await.map_err(|e| OpenError::Io(IoError::new("stat", &log_path, e)))?;
    let stored = load_index(dir, base_offset).await?;
    // Trust an index only if it describes the file exactly: sealing and clean close cut the
    // file to its data. A segment written to after its index was saved (reopened after a clean
    // close, then rolled, then a crash before the seal finished) is longer than its index
    // says, and must be rescanned, or acknowledged batches would be cut off.
    let trusted = |index: &SegmentIndex, flags: u16| {
        index.end_position == file_size && (!is_last || (clean && flags & FLAG_CLEAN != 0))
    };
    let mut index = match stored {
        Some((index, flags)) if trusted(&index, flags) => return Ok(segment(base_offset, log_path, file, index)),
        // Otherwise its entries still point into data that was durable when they were saved,
        // so re-validate only from the last one (if the file still reaches it).
        Some((mut index, _)) => {
            index.rewind_to_last_entry();
            if index.end_position <= file_size {
                index
            } else {
                SegmentIndex::new(base_offset)
            }
        }
        None => SegmentIndex::new(base_offset),
    };
    let stop = scan(&file, &log_path, &mut index, file_size).await?;
    if stop != ScanStop::EndOfFile || index.end_position < file_size {
        tracing::info!(
            path = %log_path.display(),
            valid_bytes = index.end_position,
            file_bytes = file_size,
            stop = ?stop,
            "segment recovery truncates the tail"
        );
    }
    if index.end_position < file_size {
        truncate(&file, &log_path, index.end_position).await?;
    }
    if !is_last {
        // Save the rebuilt index so the next open trusts it.
        write_file_atomic(dir, &index_file_name(base_offset), &index.encode(0)).await.map_err(OpenError::Io)?;
    }
    Ok(segment(base_offset, log_path, file, index))
}

fn segment(base_offset: u64, log_path: std::path::PathBuf, file: Rc<SegmentFile>, index: SegmentIndex) -> Segment {
    Segment { base_offset, log_path, file, index, appender: None, opened_at: Instant::now() }
}

async fn load_index(dir: &Path, base_offset: u64) -> Result<Option<(SegmentIndex, u16)>, OpenError> {
    let path = dir.join(index_file_name(base_offset));
    let Some(bytes) = read_file(&path).await.map_err(OpenError::Io)? else {
        return Ok(None);
    };
    match SegmentIndex::decode(&bytes, base_offset) {
        Ok(decoded) => Ok(Some(decoded)),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring index file; rebuilding by scan");
            Ok(None)
        }
    }
}

async fn truncate(file: &SegmentFile, path: &Path, size_bytes: u64) -> Result<(), OpenError> {
    file.truncate(size_bytes).await.map_err(|e| OpenError::Io(IoError::new("truncate", path, e)))?;
    file.fdatasync().await.map_err(|e| OpenError::Io(IoError::new("fdatasync", path, e)))
}

/// Feeds every valid batch from `index.end_position` on into `index`, and says why it stopped.
pub(crate) async fn scan(
    file: &SegmentFile,
    path: &Path,
    index: &mut SegmentIndex,
    file_size: u64,
) -> Result<ScanStop, OpenError> {
    let mut window_bytes = RECOVERY_READ_BYTES;
    loop {
        let position = index.end_position;
        let left = file_size - position;
        if left == 0 {
            return Ok(ScanStop::EndOfFile);
        }
        if left < BATCH_HEADER_BYTES as u64 {
            return classify_short_tail(file, path, position, left).await;
        }
        let want = left.min(window_bytes as u64) as usize;
        let buf = file.read_at(position, want).await.map_err(|e| OpenError::Io(IoError::new("read", path, e)))?;
        let mut cursor = 0usize;
        while cursor < buf.len() {
            let rest = &buf[cursor..];
            let size = match peek_batch_size(rest) {
                Ok(Some(size)) => size,
                Ok(None) => break,
                Err(_) => return Ok(ScanStop::Invalid),
            };
            if rest.len() < size {
                if position + (cursor + size) as u64 > file_size {
                    return Ok(ScanStop::Torn);
                }
                window_bytes = window_bytes.max(size);
                break;
            }
            let batch = &rest[..size];
            let Ok(header) = BatchHeader::parse(batch) else {
                return Ok(ScanStop::Invalid);
            };
            match check_stored(batch, &header) {
                Ok(()) => {}
                Err(BatchError::BadLeaderEpoch { .. }) => return Ok(ScanStop::Invalid),
                Err(_) => return Ok(ScanStop::BadCrc),
            }
            if header.base_offset < 0
                || header.base_offset as u64 != index.next_offset
                || header.last_offset() < header.base_offset
            {
                return Ok(ScanStop::OffsetGap);
            }
            let batch_position = position + cursor as u64;
            index.on_batch(
                header.base_offset as u64,
                header.last_offset() as u64,
                batch_position,
                size as u64,
                header.max_timestamp,
            );
            cursor += size;
        }
        if index.end_position == position {
            // Not one whole batch fitted and the window was not widened: nothing valid here.
            if window_bytes <= want {
                return Ok(ScanStop::Torn);
            }
        }
    }
}

async fn classify_short_tail(file: &SegmentFile, path: &Path, position: u64, left: u64) -> Result<ScanStop, OpenError> {
    let buf = file.read_at(position, left as usize).await.map_err(|e| OpenError::Io(IoError::new("read", path, e)))?;
    Ok(if buf.iter().all(|&b| b == 0) { ScanStop::Invalid } else { ScanStop::Torn })
}
