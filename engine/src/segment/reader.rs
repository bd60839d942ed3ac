//! Reads whole batches of one segment from a file position, with DMA reads.
//!
//! A read starts at a sparse-index entry at or before the wanted offset, skips the batches
//! that end before it, and returns whole batches, at least one even if it is larger than
//! `bytes_max` (as Kafka does, so a consumer always makes progress). Every returned batch is
//! CRC-checked here, and its baseOffset (which the CRC does not cover) must continue the
//! offsets counted from the index entry: a flipped bit in a sealed segment is reported, never
//! served. A corrupt batch after the first one returned ends the read just before it, so the
//! intact batches ahead of it are still served; a read that starts at it gets the error.
//!
//! glommio's read buffers are `!Send` (they borrow the executor's I/O slab through an `Rc`),
//! so the bytes are copied once into a `Bytes` that the broker may pass to another shard.

use std::path::Path;

use bytes::Bytes;

use crate::batch::{peek_batch_size, BatchHeader};
use crate::epochs::{epoch_at, EpochEntry};
use crate::error::{IoError, ReadError};
use crate::ids::{FilePosition, LeaderEpoch, Offset};
use crate::io::SegmentFile;
use crate::limits::{BATCH_HEADER_BYTES, INDEX_INTERVAL_BYTES, READ_BYTES_MAX};

/// Whole batches read from disk, and the offset after the last of them.
pub(crate) struct DiskRead {
    pub bytes: Bytes,
    pub next_offset: Offset,
}

/// Where to read and what to return.
pub(crate) struct ReadRequest<'a> {
    pub file: &'a SegmentFile,
    pub path: &'a Path,
    /// A position at or before the batch holding `offset` (from the index).
    pub start_position: FilePosition,
    /// The base offset of the batch at `start_position` (the index entry's offset).
    pub start_offset: Offset,
    /// The readable end of the segment: its size once sealed, its written prefix while active.
    pub end_position: FilePosition,
    pub offset: Offset,
    pub bytes_max: u32,
    /// The log's leader epochs covering this segment: each batch must carry the epoch whose
    /// range holds its base offset (the field is outside the CRC).
    pub epochs: &'a [EpochEntry],
}

pub(crate) async fn read_batches(req: ReadRequest<'_>) -> Result<DiskRead, ReadError> {
    let bytes_max = req.bytes_max.min(READ_BYTES_MAX) as usize;
    let mut position = req.start_position.get();
    let end_position = req.end_position.get();
    let mut expected_base = req.start_offset;
    // One read usually covers the skip from the index entry plus the batches returned.
    let mut window_bytes = bytes_max + INDEX_INTERVAL_BYTES as usize;
    // Each pass either returns or moves `position` forward or widens the window to a batch's
    // size, so the loop ends; the bound makes that explicit.
    for _ in 0..=(end_position / BATCH_HEADER_BYTES as u64 + 2) {
        let want = (end_position.saturating_sub(position)).min(window_bytes as u64) as usize;
        if want < BATCH_HEADER_BYTES {
            break;
        }
        let buf = read_exact(req.file, req.path, position, want).await?;
        match scan(&buf, position, &mut expected_base, &req, bytes_max)? {
            Scan::Found { start, end, next_offset } => {
                return Ok(DiskRead { bytes: buf.slice(start..end), next_offset });
            }
            Scan::Skipped { consumed } if consumed > 0 => position += consumed as u64,
            Scan::Skipped { .. } => break,
            Scan::NeedWindow { consumed, batch_bytes } => {
                position += consumed as u64;
                window_bytes = window_bytes.max(batch_bytes);
            }
        }
    }
    Err(ReadError::Corrupt {
        offset: req.offset,
        path: req.path.to_path_buf(),
        position: FilePosition::new(position),
        source: crate::batch::BatchError::Truncated { needed_bytes: BATCH_HEADER_BYTES, have_bytes: 0 },
    })
}

enum Scan {
    Found {
        start: usize,
        end: usize,
        next_offset: Offset,
    },
    /// No wanted batch in this buffer; `consumed` bytes of whole batches were skipped.
    Skipped {
        consumed: usize,
    },
    /// The batch at `consumed` is larger than the buffer.
    NeedWindow {
        consumed: usize,
        batch_bytes: usize,
    },
}

/// Walks the whole batches of `buf` (file bytes from `position`); `expected_base` is the base
/// offset the next batch must have, and moves past every batch consumed.
fn scan(
    buf: &[u8],
    position: u64,
    expected_base: &mut Offset,
    req: &ReadRequest<'_>,
    bytes_max: usize,
) -> Result<Scan, ReadError> {
    let (offset, path) = (req.offset, req.path);
    let corrupt = |at: usize, source| ReadError::Corrupt {
        offset,
        path: path.to_path_buf(),
        position: FilePosition::new(position + at as u64),
        source,
    };
    let mut cursor = 0usize;
    let mut first: Option<usize> = None;
    let mut next_offset = Offset::ZERO;
    // A batch that fails a check: an error if nothing was found yet, else the end of the read.
    macro_rules! bad {
        ($err:expr) => {{
            if first.is_some() {
                break;
            }
            return Err($err);
        }};
    }
    while cursor < buf.len() {
        let size = match peek_batch_size(&buf[cursor..]) {
            Ok(Some(size)) => size,
            Ok(None) => break,
            Err(e) => bad!(corrupt(cursor, e)),
        };
        if cursor + size > buf.len() {
            if first.is_none() {
                return Ok(Scan::NeedWindow { consumed: cursor, batch_bytes: size });
            }
            break;
        }
        let batch = &buf[cursor..cursor + size];
        let header = match BatchHeader::parse(batch) {
            Ok(header) => header,
            Err(e) => bad!(corrupt(cursor, e)),
        };
        if Offset::from_wire(header.base_offset) != Some(*expected_base) {
            bad!(ReadError::CorruptOffset {
                offset,
                path: path.to_path_buf(),
                position: FilePosition::new(position + cursor as u64),
                expected_base_offset: *expected_base,
                stored_base_offset: header.base_offset,
            });
        }
        // The offset after this batch; a lastOffsetDelta that does not move forward (possible
        // only in corrupt bytes, the CRC is checked below) cannot be walked past.
        let Some(after) = Offset::from_wire(header.last_offset()).and_then(Offset::next).filter(|a| a > expected_base)
        else {
            let (base_offset, last_offset_delta) = (header.base_offset, header.last_offset_delta);
            bad!(corrupt(cursor, crate::batch::BatchError::OffsetOverflow { base_offset, last_offset_delta }));
        };
        if first.is_none() && after <= offset {
            cursor += size;
            *expected_base = after;
            continue;
        }
        if let Some(start) = first {
            if cursor + size - start > bytes_max {
                break;
            }
        }
        let expected_epoch = epoch_at(req.epochs, *expected_base);
        if let Err(e) = check_stored(batch, &header, expected_epoch) {
            bad!(corrupt(cursor, e));
        }
        first.get_or_insert(cursor);
        cursor += size;
        *expected_base = after;
        next_offset = after;
    }
    Ok(match first {
        Some(start) => Scan::Found { start, end: cursor, next_offset },
        None => Scan::Skipped { consumed: cursor },
    })
}

/// A stored batch is intact when its leader epoch is `expected` — the one the log's epoch
/// checkpoint holds for its offset (the CRC does not cover that field) — and its CRC matches.
pub(crate) fn check_stored(
    batch: &[u8],
    header: &BatchHeader,
    expected: Option<LeaderEpoch>,
) -> Result<(), crate::batch::BatchError> {
    let stored = LeaderEpoch::from_wire(header.partition_leader_epoch);
    if stored.is_none() || stored != expected {
        return Err(crate::batch::BatchError::BadLeaderEpoch { epoch: header.partition_leader_epoch });
    }
    crate::batch::check_crc(batch, header)
}

/// Reads `len` bytes at `position` into a `Bytes` (the one copy; see the module comment).
pub(crate) async fn read_exact(file: &SegmentFile, path: &Path, position: u64, len: usize) -> Result<Bytes, ReadError> {
    let got = file.read_at(position, len).await.map_err(|e| ReadError::Io(IoError::new("read", path, e)))?;
    Ok(Bytes::copy_from_slice(&got))
}
