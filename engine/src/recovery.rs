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
//! A scan checks every batch — length, magic, CRC-32C, that its base offset continues the
//! previous batch, and its leader epoch (`EpochScan`: the one the epoch checkpoint holds for
//! its offset, or, when the checkpoint is missing or corrupt, an epoch that never decreases) —
//! and stops at the first batch that fails: a torn write, the zeroes of a preallocated tail, or
//! garbage. The file is truncated there, so a torn tail is never served and the next append
//! overwrites it.
//!
//! Without a usable epoch checkpoint, the epochs are rebuilt from the batches: trusted segments
//! are walked header by header (`walk_epochs`, no CRC), others scanned from their start, and a
//! decrease cuts the log there like any invalid batch. That reads the whole log once, which is
//! the price of a lost checkpoint.

use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use crate::batch::{check_crc, peek_batch_size, validate_frame, BatchHeader};
use crate::epochs::EpochScan;
use crate::error::{IoError, OpenError, ReadError};
use crate::fs::{read_file, remove_file, sync_dir, write_file_atomic};
use crate::ids::{FilePosition, Offset};
use crate::io::{crash_point, SegmentFile};
use crate::limits::{BATCH_HEADER_BYTES, RECOVERY_READ_BYTES};
use crate::segment::index::{SegmentIndex, FLAG_CLEAN};
use crate::segment::{index_file_name, log_file_name, Segment};

/// Why a scan stopped; logged, and used by tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanStop {
    /// Reached the end of the file exactly at a batch boundary.
    EndOfFile,
    /// Fewer bytes left than the next batch needs.
    Torn,
    /// A header that is not a batch (zeroes of a preallocated tail land here).
    Invalid,
    BadCrc,
    /// A valid batch whose base offset does not continue the log (stale bytes).
    OffsetGap,
    /// A valid batch whose leader epoch is unknown (negative), not the one the epoch checkpoint
    /// holds for its offset, or (rebuilding without a checkpoint) smaller than an earlier one.
    BadEpoch,
}

/// Opens one segment and makes its index agree with its data. `is_last` selects the active
/// segment rules; `clean` says the clean-shutdown marker was present. `epochs` checks (or,
/// rebuilding, collects) the leader epochs of the batches read, in log order.
pub(crate) async fn open_segment(
    dir: &Path,
    base_offset: Offset,
    is_last: bool,
    clean: bool,
    epochs: &mut EpochScan,
) -> Result<Segment, OpenError> {
    let log_path = dir.join(log_file_name(base_offset));
    let file = Segment::open_file(&log_path, false).await.map_err(OpenError::Io)?;
    let file_size = file.file_size().await.map_err(|e| OpenError::Io(IoError::new("stat", &log_path, e)))?;
    let file_size = FilePosition::new(file_size);
    let stored = load_index(dir, base_offset).await?;
    // Trust an index only if it describes the file exactly: sealing and clean close cut the
    // file to its data. A segment written to after its index was saved (reopened after a clean
    // close, then rolled, then a crash before the seal finished) is longer than its index
    // says, and must be rescanned, or acknowledged batches would be cut off.
    let trusted = |index: &SegmentIndex, flags: u16| {
        index.end_position == file_size && (!is_last || (clean && flags & FLAG_CLEAN != 0))
    };
    let mut index = match stored {
        Some((index, flags)) if trusted(&index, flags) => {
            if !epochs.is_rebuild() {
                return Ok(segment(base_offset, log_path, file, index));
            }
            // Rebuilding the epochs: learn them from the headers. If one fails, scan the
            // segment from its start instead, which cuts it there (and drops the later ones).
            let before = epochs.clone();
            let stop = walk_epochs(&file, &log_path, base_offset, index.end_position, epochs).await?;
            if stop.is_none() {
                return Ok(segment(base_offset, log_path, file, index));
            }
            *epochs = before;
            SegmentIndex::new(base_offset)
        }
        // Rebuilding the epochs needs every batch of the segment: scan it from the start.
        _ if epochs.is_rebuild() => SegmentIndex::new(base_offset),
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
    let stop = scan(&file, &log_path, &mut index, file_size, epochs).await?;
    if stop != ScanStop::EndOfFile || index.end_position < file_size {
        tracing::info!(
            path = %log_path.display(),
            valid_bytes = index.end_position.get(),
            file_bytes = file_size.get(),
            stop = ?stop,
            "segment recovery truncates the tail"
        );
    }
    if index.end_position < file_size {
        truncate(&file, &log_path, index.end_position.get()).await?;
    }
    if !is_last {
        // Save the rebuilt index so the next open trusts it.
        write_file_atomic(dir, &index_file_name(base_offset), &index.encode(0)).await.map_err(OpenError::Io)?;
    }
    Ok(segment(base_offset, log_path, file, index))
}

fn segment(base_offset: Offset, log_path: std::path::PathBuf, file: Rc<SegmentFile>, index: SegmentIndex) -> Segment {
    Segment { base_offset, log_path, file, index, appender: None, opened_at: Instant::now() }
}

async fn load_index(dir: &Path, base_offset: Offset) -> Result<Option<(SegmentIndex, u16)>, OpenError> {
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
    file_size: FilePosition,
    epochs: &mut EpochScan,
) -> Result<ScanStop, OpenError> {
    let file_size = file_size.get();
    let mut window_bytes = RECOVERY_READ_BYTES;
    loop {
        let position = index.end_position.get();
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
            let (batch, size) = match next_batch(&buf[cursor..], index.next_offset, epochs) {
                Step::Batch { batch, size } => (batch, size),
                Step::NeedHeader => break,
                Step::NeedBytes { size } => {
                    if position + (cursor + size) as u64 > file_size {
                        return Ok(ScanStop::Torn);
                    }
                    window_bytes = window_bytes.max(size);
                    break;
                }
                Step::Stop(stop) => return Ok(stop),
            };
            let batch_position = FilePosition::new(position + cursor as u64);
            index.on_batch(batch.base_offset, batch.last_offset, batch_position, size as u64, batch.max_timestamp);
            cursor += size;
        }
        if index.end_position.get() == position {
            // Not one whole batch fitted and the window was not widened: nothing valid here.
            if window_bytes <= want {
                return Ok(ScanStop::Torn);
            }
        }
    }
}

/// The facts of one valid batch the index needs.
struct ScannedBatch {
    base_offset: Offset,
    last_offset: Offset,
    max_timestamp: i64,
}

/// What the bytes at a scan position hold.
enum Step {
    /// A whole, intact batch continuing the log at the expected offset.
    Batch {
        batch: ScannedBatch,
        size: usize,
    },
    /// Fewer than the 12 bytes that give a batch's size.
    NeedHeader,
    /// A plausible batch of `size` bytes, not all of them in the buffer.
    NeedBytes {
        size: usize,
    },
    Stop(ScanStop),
}

/// Checks the batch at the start of `rest` — length, magic, CRC-32C, that it starts at
/// `next_offset`, and its leader epoch — without I/O, so that the file scan and
/// [`scan_segment_bytes`] apply exactly the same rules. The epoch comes last: `epochs` records
/// a batch it accepts, so it only sees batches that pass everything else.
fn next_batch(rest: &[u8], next_offset: Offset, epochs: &mut EpochScan) -> Step {
    let size = match peek_batch_size(rest) {
        Ok(Some(size)) => size,
        Ok(None) => return Step::NeedHeader,
        Err(_) => return Step::Stop(ScanStop::Invalid),
    };
    if rest.len() < size {
        return Step::NeedBytes { size };
    }
    let batch = &rest[..size];
    let Ok(header) = BatchHeader::parse(batch) else {
        return Step::Stop(ScanStop::Invalid);
    };
    if check_crc(batch, &header).is_err() {
        return Step::Stop(ScanStop::BadCrc);
    }
    // Counts and codec too (as validate_crc_only does): every batch the log wrote passed
    // them, so a CRC-valid batch that fails them is not ours and must not be served.
    if validate_frame(batch).is_err() {
        return Step::Stop(ScanStop::Invalid);
    }
    // validate_frame checked baseOffset + lastOffsetDelta does not overflow; a last offset of
    // Offset::MAX leaves no next offset, so the log could not continue after it.
    let base_offset = Offset::from_wire(header.base_offset);
    let last_offset = Offset::from_wire(header.last_offset()).filter(|last| last.next().is_some());
    let (Some(base_offset), Some(last_offset)) = (base_offset, last_offset) else {
        return Step::Stop(ScanStop::OffsetGap);
    };
    if base_offset != next_offset || last_offset < base_offset {
        return Step::Stop(ScanStop::OffsetGap);
    }
    if epochs.accept(base_offset, header.partition_leader_epoch).is_err() {
        return Step::Stop(ScanStop::BadEpoch);
    }
    Step::Batch { batch: ScannedBatch { base_offset, last_offset, max_timestamp: header.max_timestamp }, size }
}

/// The result of [`scan_segment_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentScan {
    /// Bytes from the start that recovery keeps; the rest would be truncated.
    pub valid_bytes: u64,
    /// The offset the next append would get.
    pub next_offset: Offset,
    pub batches: u64,
    pub stop: ScanStop,
}

/// Recovery's scan of a whole segment held in memory: the same per-batch rules as the scan of
/// a file on open, with the same index bookkeeping, but no I/O. For fuzzing (`fuzz/`) and
/// tests; `Log::open` uses the file scan. Epochs follow the rules of a log without a
/// checkpoint: known, and never decreasing.
pub fn scan_segment_bytes(bytes: &[u8], base_offset: Offset) -> SegmentScan {
    let mut epochs = EpochScan::Rebuild(Vec::new());
    let mut index = SegmentIndex::new(base_offset);
    let mut batches = 0u64;
    let stop = loop {
        let position = index.end_position.get() as usize;
        let rest = &bytes[position..];
        if rest.is_empty() {
            break ScanStop::EndOfFile;
        }
        if rest.len() < BATCH_HEADER_BYTES {
            break if rest.iter().all(|&b| b == 0) { ScanStop::Invalid } else { ScanStop::Torn };
        }
        match next_batch(rest, index.next_offset, &mut epochs) {
            Step::Batch { batch, size } => {
                let at = FilePosition::new(position as u64);
                index.on_batch(batch.base_offset, batch.last_offset, at, size as u64, batch.max_timestamp);
                batches += 1;
            }
            Step::NeedHeader | Step::NeedBytes { .. } => break ScanStop::Torn,
            Step::Stop(stop) => break stop,
        }
    };
    assert!(index.end_position.get() <= bytes.len() as u64);
    assert!(index.next_offset >= base_offset);
    SegmentScan { valid_bytes: index.end_position.get(), next_offset: index.next_offset, batches, stop }
}

/// What `walk_headers` does after one batch.
pub(crate) enum Visit {
    Continue,
    Stop,
}

/// How a header walk ended: at the end of the data, at a batch the visitor stopped at, or at
/// one whose framing or offsets do not continue the segment. Positions are file positions,
/// offsets the base offset of the batch there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    End { next_offset: Offset },
    Stopped { position: FilePosition, offset: Offset },
    Broken { position: FilePosition, offset: Offset },
}

/// Walks the headers of a segment's batches from `position` (where the batch `offset` starts)
/// to `end_position`, reading only what the headers need (big batches are skipped over), and
/// shows each to `visit` before stepping past it. Framing and offsets are checked (each batch
/// continues the one before); CRCs are not: the callers walk sealed data, whose CRCs every
/// read checks.
pub(crate) async fn walk_headers(
    file: &SegmentFile,
    path: &Path,
    start_position: FilePosition,
    mut offset: Offset,
    end_position: FilePosition,
    mut visit: impl FnMut(FilePosition, &BatchHeader) -> Visit,
) -> Result<WalkEnd, IoError> {
    let (mut position, end_position) = (start_position.get(), end_position.get());
    let mut window = bytes::Bytes::new();
    let mut window_position = 0u64;
    // Each pass steps past one batch of at least BATCH_HEADER_BYTES, or returns.
    for _ in 0..=end_position / BATCH_HEADER_BYTES as u64 {
        if position == end_position {
            return Ok(WalkEnd::End { next_offset: offset });
        }
        let broken = WalkEnd::Broken { position: FilePosition::new(position), offset };
        if position > end_position || end_position - position < BATCH_HEADER_BYTES as u64 {
            return Ok(broken);
        }
        let in_window = position >= window_position
            && position + BATCH_HEADER_BYTES as u64 <= window_position + window.len() as u64;
        if !in_window {
            let want = (end_position - position).min(RECOVERY_READ_BYTES as u64) as usize;
            let got = file.read_at(position, want).await.map_err(|e| IoError::new("read", path, e))?;
            window = bytes::Bytes::copy_from_slice(&got);
            window_position = position;
            if window.len() < BATCH_HEADER_BYTES {
                return Ok(broken);
            }
        }
        let at = (position - window_position) as usize;
        let Ok(header) = BatchHeader::parse(&window[at..]) else {
            return Ok(broken);
        };
        let size = header.size_bytes() as u64;
        let next = Offset::from_wire(header.last_offset()).and_then(Offset::next);
        let continues = Offset::from_wire(header.base_offset) == Some(offset)
            && header.last_offset() >= header.base_offset
            && size <= end_position - position;
        let Some(next) = next.filter(|_| continues) else {
            return Ok(broken);
        };
        if let Visit::Stop = visit(FilePosition::new(position), &header) {
            return Ok(WalkEnd::Stopped { position: FilePosition::new(position), offset });
        }
        position += size;
        offset = next;
    }
    Ok(WalkEnd::Broken { position: FilePosition::new(position), offset })
}

/// Checks the leader epochs of a trusted segment's batches, from its start to `end_position`,
/// reading only their headers. Returns the first batch that fails — an epoch `epochs` refuses,
/// or framing or offsets that do not continue — as `(position, base offset)`; `None` when
/// every batch passes.
async fn walk_epochs(
    file: &SegmentFile,
    path: &Path,
    base_offset: Offset,
    end_position: FilePosition,
    epochs: &mut EpochScan,
) -> Result<Option<(FilePosition, Offset)>, OpenError> {
    let walk = walk_headers(file, path, FilePosition::ZERO, base_offset, end_position, |_, header| {
        // walk_headers checked the base offset is one.
        match Offset::from_wire(header.base_offset).map(|base| epochs.accept(base, header.partition_leader_epoch)) {
            Some(Ok(())) => Visit::Continue,
            _ => Visit::Stop,
        }
    })
    .await
    .map_err(OpenError::Io)?;
    Ok(match walk {
        WalkEnd::End { .. } => None,
        WalkEnd::Stopped { position, offset } | WalkEnd::Broken { position, offset } => Some((position, offset)),
    })
}

/// The batch of a segment (`file` at `path`, with `index`) holding `target` (which lies inside
/// the segment's data): its base
/// offset and file position, found from the index entry at or before it. A truncation cuts
/// there.
pub(crate) async fn batch_holding(
    file: &SegmentFile,
    path: &Path,
    index: &SegmentIndex,
    target: Offset,
) -> Result<(Offset, FilePosition), ReadError> {
    assert!(target >= index.base_offset);
    assert!(target < index.next_offset);
    let (entry_offset, entry_position) = index.lookup(target);
    let end = index.end_position;
    let walk = walk_headers(file, path, entry_position, entry_offset, end, |_, header| {
        if header.last_offset() >= target.to_wire() {
            Visit::Stop
        } else {
            Visit::Continue
        }
    })
    .await
    .map_err(ReadError::Io)?;
    match walk {
        WalkEnd::Stopped { position, offset } => Ok((offset, position)),
        WalkEnd::End { .. } | WalkEnd::Broken { .. } => {
            let position = match walk {
                WalkEnd::Broken { position, .. } => position,
                _ => end,
            };
            Err(ReadError::Corrupt {
                offset: target,
                path: path.to_path_buf(),
                position,
                source: crate::batch::BatchError::Truncated { needed_bytes: BATCH_HEADER_BYTES, have_bytes: 0 },
            })
        }
    }
}

/// Cuts the log's files so that they end at the batch starting at `cut_position` of the first
/// segment of `tail` (every segment from the one holding the cut on, oldest first, none with
/// an appender). Crash-safe step by step: later segments are deleted newest first (what is
/// left is always a prefix of the log), then the holding segment loses its index, is truncated
/// and synced, and gets an index rebuilt by scanning from its last entry before the cut. The
/// returned segment is the log's new last one; its `index.next_offset` is the new log end
/// (below the cut only if the rebuild scan met a bad batch before it, which is then cut too).
pub(crate) async fn cut_segment_files(
    dir: &Path,
    mut tail: Vec<Segment>,
    cut_position: FilePosition,
    epochs: &mut EpochScan,
) -> Result<Segment, IoError> {
    assert!(!tail.is_empty());
    assert!(tail.iter().all(|s| s.appender.is_none()));
    assert!(tail.windows(2).all(|pair| pair[0].base_offset < pair[1].base_offset));
    let mut holding = tail.remove(0);
    assert!(cut_position <= holding.index.end_position);
    while let Some(doomed) = tail.pop() {
        // Newest first, each removal synced before the next: whatever a crash leaves is a
        // prefix of the log. A reader still holding the file keeps reading it (an unlinked file
        // lives until closed).
        crash_point("truncate: remove index", &doomed.log_path)?;
        remove_file(&doomed.index_path()).await?;
        crash_point("truncate: remove segment", &doomed.log_path)?;
        remove_file(&doomed.log_path).await?;
        crash_point("truncate: sync dir after remove", dir)?;
        sync_dir(dir).await?;
    }
    // Without its index, a crash from here on rescans the holding segment whole.
    crash_point("truncate: remove holding index", &holding.log_path)?;
    remove_file(&holding.index_path()).await?;
    crash_point("truncate: sync dir", dir)?;
    sync_dir(dir).await?;
    let path = holding.log_path.clone();
    crash_point("truncate: truncate holding segment", &path)?;
    holding.file.truncate(cut_position.get()).await.map_err(|e| IoError::new("truncate", &path, e))?;
    crash_point("truncate: sync holding segment", &path)?;
    holding.file.fdatasync().await.map_err(|e| IoError::new("fdatasync", &path, e))?;
    let mut index = holding.index.clone();
    // Bounded: each pass drops an entry, and an index without entries rewinds to position 0.
    while index.end_position > cut_position {
        index.rewind_to_last_entry();
    }
    let stop = scan(&holding.file, &path, &mut index, cut_position, epochs).await.map_err(|e| match e {
        OpenError::Io(io) => io,
        other => IoError::new("scan", &path, std::io::Error::other(other.to_string())),
    })?;
    if index.end_position < cut_position {
        tracing::warn!(path = %path.display(), ?stop, valid_bytes = %index.end_position, "a bad batch before the truncation point; cutting there too");
        holding.file.truncate(index.end_position.get()).await.map_err(|e| IoError::new("truncate", &path, e))?;
        holding.file.fdatasync().await.map_err(|e| IoError::new("fdatasync", &path, e))?;
    }
    assert!(index.end_position <= cut_position);
    crash_point("truncate: write holding index", &path)?;
    write_file_atomic(dir, &index_file_name(holding.base_offset), &index.encode(0)).await?;
    holding.index = index;
    Ok(holding)
}

async fn classify_short_tail(file: &SegmentFile, path: &Path, position: u64, left: u64) -> Result<ScanStop, OpenError> {
    let buf = file.read_at(position, left as usize).await.map_err(|e| OpenError::Io(IoError::new("read", path, e)))?;
    Ok(if buf.iter().all(|&b| b == 0) { ScanStop::Invalid } else { ScanStop::Torn })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::batch::{write_base_offset, BatchBuilder};

    fn o(offset: u64) -> Offset {
        Offset::new(offset)
    }

    /// `counts[i]` records per batch, numbered from `base_offset`, back to back.
    fn segment(base_offset: u64, counts: &[usize]) -> (Vec<u8>, Vec<usize>) {
        let (mut bytes, mut ends, mut next) = (Vec::new(), Vec::new(), base_offset);
        for &count in counts {
            let mut builder = BatchBuilder::new();
            for i in 0..count {
                builder.push(None, Some(format!("v{i}").as_bytes()), 1_000, &[]);
            }
            let mut batch = builder.build().unwrap().to_vec();
            write_base_offset(&mut batch, next as i64);
            // Epoch 0, as a brand-new log stores (the field is outside the CRC).
            batch[12..16].copy_from_slice(&0i32.to_be_bytes());
            next += count as u64;
            bytes.extend(batch);
            ends.push(bytes.len());
        }
        (bytes, ends)
    }

    #[test]
    fn in_memory_scan_keeps_the_valid_prefix_and_names_the_stop() {
        let (bytes, ends) = segment(100, &[1, 3, 2]);
        let all = scan_segment_bytes(&bytes, o(100));
        assert_eq!(
            all,
            SegmentScan { valid_bytes: ends[2] as u64, next_offset: o(106), batches: 3, stop: ScanStop::EndOfFile }
        );

        let torn = scan_segment_bytes(&bytes[..ends[2] - 1], o(100));
        assert_eq!((torn.valid_bytes, torn.next_offset, torn.stop), (ends[1] as u64, o(104), ScanStop::Torn));

        let mut zeroed = bytes.clone();
        zeroed.extend([0u8; 4096]);
        let zeroed = scan_segment_bytes(&zeroed, o(100));
        assert_eq!((zeroed.valid_bytes, zeroed.stop), (ends[2] as u64, ScanStop::Invalid));

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let flipped = scan_segment_bytes(&flipped, o(100));
        assert_eq!((flipped.valid_bytes, flipped.stop), (ends[1] as u64, ScanStop::BadCrc));

        // Found by the segment_recovery fuzz target: a batch with a valid CRC but
        // recordsCount 0 was kept (and then served, and refused by every client).
        let mut zero_count = bytes.clone();
        zero_count[ends[1] + 57..ends[1] + 61].copy_from_slice(&0i32.to_be_bytes());
        crate::batch::write_crc(&mut zero_count[ends[1]..ends[2]]);
        let zero_count = scan_segment_bytes(&zero_count, o(100));
        assert_eq!((zero_count.valid_bytes, zero_count.stop), (ends[1] as u64, ScanStop::Invalid));

        let gap = scan_segment_bytes(&bytes, o(99));
        assert_eq!((gap.valid_bytes, gap.batches, gap.stop), (0, 0, ScanStop::OffsetGap));
    }

    #[test]
    fn without_a_checkpoint_epochs_must_be_known_and_never_decrease() {
        let (bytes, ends) = segment(100, &[1, 3, 2, 1]);
        let with_epochs = |epochs: [i32; 4]| {
            let mut b = bytes.clone();
            let mut start = 0;
            for (end, epoch) in ends.iter().zip(epochs) {
                b[start + 12..start + 16].copy_from_slice(&epoch.to_be_bytes());
                start = *end;
            }
            scan_segment_bytes(&b, o(100))
        };
        let rising = with_epochs([0, 2, 2, 9]);
        assert_eq!((rising.valid_bytes, rising.stop), (ends[3] as u64, ScanStop::EndOfFile));
        let falling = with_epochs([0, 2, 1, 9]);
        assert_eq!(
            (falling.valid_bytes, falling.next_offset, falling.stop),
            (ends[1] as u64, o(104), ScanStop::BadEpoch)
        );
        let unknown = with_epochs([-1, 0, 0, 0]);
        assert_eq!((unknown.valid_bytes, unknown.stop), (0, ScanStop::BadEpoch));
    }
}
