//! One segment: a `.log` file of back-to-back batches named by its base offset, and the
//! `.index` beside it. The active segment also has an `Appender`.

pub(crate) mod appender;
pub(crate) mod index;
pub(crate) mod reader;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use crate::error::IoError;
use crate::ids::{FilePosition, LeaderEpoch, Offset};
use crate::io::SegmentFile;
use appender::Appender;
use index::SegmentIndex;

const LOG_SUFFIX: &str = ".log";
const INDEX_SUFFIX: &str = ".index";
/// Base offsets are printed as 20 decimal digits, as Kafka does, so names sort by offset.
const NAME_DIGITS: usize = 20;

/// Bytes of a batch the log rewrites: baseOffset (0..8), batchLength kept (8..12),
/// partitionLeaderEpoch (12..16). None of them is covered by the CRC, so recovery and readers
/// check the offset and the epoch explicitly: a flipped bit there is caught like any other.
pub(crate) const STORED_HEAD_BYTES: usize = 16;

/// The first `STORED_HEAD_BYTES` of a batch as a leader stores it: the assigned base offset,
/// the producer's batchLength, and the leader epoch that appends it.
pub(crate) fn stored_head(base_offset: Offset, epoch: LeaderEpoch, batch: &[u8]) -> [u8; STORED_HEAD_BYTES] {
    let mut head = [0u8; STORED_HEAD_BYTES];
    head[0..8].copy_from_slice(&base_offset.to_wire().to_be_bytes());
    head[8..12].copy_from_slice(&batch[8..12]);
    head[12..16].copy_from_slice(&epoch.to_wire().to_be_bytes());
    head
}

pub(crate) fn log_file_name(base_offset: Offset) -> String {
    format!("{:020}{LOG_SUFFIX}", base_offset.get())
}

pub(crate) fn index_file_name(base_offset: Offset) -> String {
    format!("{:020}{INDEX_SUFFIX}", base_offset.get())
}

/// `Some(base_offset)` for a segment file name, `None` for anything else (a number past
/// `Offset::MAX` included: no batch can start there).
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<Offset> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().and_then(Offset::from_wire)
}

pub(crate) fn parse_log_file_name(name: &str) -> Option<Offset> {
    parse_file_name(name, LOG_SUFFIX)
}

pub(crate) fn parse_index_file_name(name: &str) -> Option<Offset> {
    parse_file_name(name, INDEX_SUFFIX)
}

pub(crate) struct Segment {
    pub base_offset: Offset,
    pub log_path: PathBuf,
    pub file: Rc<SegmentFile>,
    pub index: SegmentIndex,
    /// Present while the segment is active or being sealed.
    pub appender: Option<Rc<Appender>>,
    /// When this process started writing the segment (for `segment_ms`).
    pub opened_at: Instant,
}

impl Segment {
    /// Bytes a reader may read from disk: the written prefix while an appender runs (newer
    /// bytes are served from the tail cache), the whole data once sealed.
    pub fn readable_end(&self) -> FilePosition {
        match &self.appender {
            Some(appender) => appender.written_position(),
            None => self.index.end_position,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.index.end_position.get()
    }

    /// Opens a segment file for reading and writing with O_DIRECT (creating it if asked).
    pub async fn open_file(path: &Path, create: bool) -> Result<Rc<SegmentFile>, IoError> {
        SegmentFile::open(path, create).await
    }

    pub fn index_path(&self) -> PathBuf {
        self.log_path.with_file_name(index_file_name(self.base_offset))
    }
}
