//! Sparse index of one segment: from an offset (or a timestamp) to a file position from which a
//! reader scans forward.
//!
//! One entry per `INDEX_INTERVAL_BYTES` of log. An entry is 16 bytes:
//! `relative_offset u32 | position u32 | max_timestamp_before i64`, where `max_timestamp_before`
//! is the largest batch max-timestamp of every batch *before* `position`. So for a target time
//! `t`, every batch before the last entry with `max_timestamp_before < t` is too old, and a scan
//! can start there (the offset index and the time index share one entry list).
//!
//! On disk (`{base_offset:020}.index`, beside the `.log`), all big-endian:
//!
//! | field            | type     | bytes |
//! |------------------|----------|-------|
//! | magic `SLIX`     | [u8; 4]  | 0     |
//! | version (= 1)    | u16      | 4     |
//! | flags (bit 0: clean shutdown of the active segment) | u16 | 6 |
//! | base_offset      | u64      | 8     |
//! | next_offset      | u64      | 16    |
//! | end_position     | u64      | 24    |
//! | max_timestamp    | i64      | 32    |
//! | entry_count      | u32      | 40    |
//! | entries          | 16 × n   | 44    |
//! | crc32c of all of the above | u32 | 44 + 16n |
//!
//! The file is written whole and atomically (temp + rename) when a segment is sealed, and for
//! the active segment at a clean shutdown; so `end_position` and `next_offset` say exactly
//! where the segment's data ends.

use crate::ids::{FilePosition, Offset};
use crate::limits::{INDEX_ENTRIES_MAX, INDEX_INTERVAL_BYTES};

const MAGIC: &[u8; 4] = b"SLIX";
const VERSION: u16 = 1;
const HEADER_BYTES: usize = 44;
const ENTRY_BYTES: usize = 16;
const CRC_BYTES: usize = 4;
pub(crate) const FLAG_CLEAN: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
    pub max_timestamp_before: i64,
}

/// The in-memory index of one segment, plus the facts about its data that the index file
/// records (where the data ends, the next offset, the newest timestamp). Offsets and file
/// positions meet here, so they are typed: a swap cannot compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    pub base_offset: Offset,
    pub next_offset: Offset,
    pub end_position: FilePosition,
    /// Largest batch max-timestamp in the segment; `i64::MIN` while empty.
    pub max_timestamp: i64,
    entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    pub fn new(base_offset: Offset) -> SegmentIndex {
        SegmentIndex {
            base_offset,
            next_offset: base_offset,
            end_position: FilePosition::ZERO,
            max_timestamp: i64::MIN,
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end_position == FilePosition::ZERO
    }

    #[cfg(test)]
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Records one appended batch. Batches arrive in order, back to back.
    pub fn on_batch(
        &mut self,
        base_offset: Offset,
        last_offset: Offset,
        position: FilePosition,
        size_bytes: u64,
        max_timestamp: i64,
    ) {
        assert_eq!(base_offset, self.next_offset, "offsets must be contiguous");
        assert_eq!(position, self.end_position, "batches must be back to back");
        assert!(last_offset >= base_offset);
        let due = match self.entries.last() {
            None => true,
            Some(last) => position.get() - u64::from(last.position) >= u64::from(INDEX_INTERVAL_BYTES),
        };
        if due && self.entries.len() < INDEX_ENTRIES_MAX {
            let Some(relative_offset) = base_offset.delta_from(self.base_offset) else {
                unreachable!("a batch of a segment starts at or after the segment's base")
            };
            assert!(relative_offset <= u64::from(u32::MAX));
            assert!(position.get() <= u64::from(u32::MAX));
            self.entries.push(IndexEntry {
                relative_offset: relative_offset as u32,
                position: position.get() as u32,
                max_timestamp_before: self.max_timestamp,
            });
        }
        let (Some(next_offset), Some(end_position)) = (last_offset.next(), position.checked_add(size_bytes)) else {
            unreachable!("validated batches end below Offset::MAX, and segments below 4 GiB")
        };
        self.next_offset = next_offset;
        self.end_position = end_position;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// The offset and file position of an entry.
    fn at(&self, entry: &IndexEntry) -> (Offset, FilePosition) {
        let Some(offset) = self.base_offset.checked_add(u64::from(entry.relative_offset)) else {
            unreachable!("entries lie inside the segment, below its next offset")
        };
        (offset, FilePosition::new(u64::from(entry.position)))
    }

    /// The last entry at or before `offset`: `(offset, position)` from which to scan forward.
    pub fn lookup(&self, offset: Offset) -> (Offset, FilePosition) {
        debug_assert!(offset >= self.base_offset);
        let relative = offset.delta_from(self.base_offset).unwrap_or(0);
        let at = self.entries.partition_point(|e| u64::from(e.relative_offset) <= relative);
        match at.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(e) => self.at(e),
            None => (self.base_offset, FilePosition::ZERO),
        }
    }

    /// The last entry whose preceding batches are all older than `timestamp`: a scan for the
    /// first batch with max-timestamp ≥ `timestamp` may start at its `(offset, position)`.
    pub fn lookup_time(&self, timestamp: i64) -> (Offset, FilePosition) {
        let at = self.entries.partition_point(|e| e.max_timestamp_before < timestamp);
        match at.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(e) => self.at(e),
            None => (self.base_offset, FilePosition::ZERO),
        }
    }

    /// Drops the last entry and restarts the data facts at its batch, so that recovery can
    /// re-feed batches from there through `on_batch`. Returns `(offset, position)` to rescan
    /// from; `(base_offset, 0)` when there are no entries.
    pub fn rewind_to_last_entry(&mut self) -> (Offset, FilePosition) {
        match self.entries.pop() {
            Some(e) => {
                (self.next_offset, self.end_position) = self.at(&e);
                // By definition the max timestamp of everything before this entry's batch.
                self.max_timestamp = e.max_timestamp_before;
            }
            None => {
                self.next_offset = self.base_offset;
                self.end_position = FilePosition::ZERO;
                self.max_timestamp = i64::MIN;
            }
        }
        (self.next_offset, self.end_position)
    }

    pub fn encode(&self, flags: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES + CRC_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&self.base_offset.get().to_be_bytes());
        out.extend_from_slice(&self.next_offset.get().to_be_bytes());
        out.extend_from_slice(&self.end_position.get().to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
            out.extend_from_slice(&e.max_timestamp_before.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes an index file; returns it with its flags, or why it cannot be trusted.
    pub fn decode(bytes: &[u8], expected_base_offset: Offset) -> Result<(SegmentIndex, u16), &'static str> {
        if bytes.len() < HEADER_BYTES + CRC_BYTES {
            return Err("shorter than its header");
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - CRC_BYTES);
        if crc32c::crc32c(body).to_be_bytes() != crc_bytes {
            return Err("checksum mismatch");
        }
        if &body[0..4] != MAGIC {
            return Err("bad magic");
        }
        if be_u16(body, 4) != VERSION {
            return Err("unknown version");
        }
        let flags = be_u16(body, 6);
        let base_offset = Offset::from_wire(be_u64(body, 8) as i64).ok_or("base offset beyond i64::MAX")?;
        if base_offset != expected_base_offset {
            return Err("base offset does not match the file name");
        }
        let entry_count = be_u32(body, 40) as usize;
        if entry_count > INDEX_ENTRIES_MAX || body.len() != HEADER_BYTES + entry_count * ENTRY_BYTES {
            return Err("entry count does not match the length");
        }
        let next_offset = Offset::from_wire(be_u64(body, 16) as i64).ok_or("next offset beyond i64::MAX")?;
        let mut index = SegmentIndex {
            base_offset,
            next_offset,
            end_position: FilePosition::new(be_u64(body, 24)),
            max_timestamp: be_u64(body, 32) as i64,
            entries: Vec::with_capacity(entry_count),
        };
        for i in 0..entry_count {
            let at = HEADER_BYTES + i * ENTRY_BYTES;
            index.entries.push(IndexEntry {
                relative_offset: be_u32(body, at),
                position: be_u32(body, at + 4),
                max_timestamp_before: be_u64(body, at + 8) as i64,
            });
        }
        index.check()?;
        Ok((index, flags))
    }

    /// Entries strictly increasing in offset and position, inside the data.
    fn check(&self) -> Result<(), &'static str> {
        if self.next_offset < self.base_offset {
            return Err("next offset before base offset");
        }
        for pair in self.entries.windows(2) {
            if pair[1].relative_offset <= pair[0].relative_offset || pair[1].position <= pair[0].position {
                return Err("entries out of order");
            }
        }
        if let Some(last) = self.entries.last() {
            let last_offset = self.base_offset.checked_add(u64::from(last.relative_offset));
            if u64::from(last.position) >= self.end_position.get() || last_offset.is_none_or(|o| o >= self.next_offset)
            {
                return Err("entry beyond the end of the data");
            }
        }
        Ok(())
    }
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(offset: u64) -> Offset {
        Offset::new(offset)
    }

    fn p(position: u64) -> FilePosition {
        FilePosition::new(position)
    }

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::new(o(100));
        let mut position = 0u64;
        for i in 0..50u64 {
            let size = 10_000;
            index.on_batch(o(100 + i * 3), o(100 + i * 3 + 2), p(position), size, 1000 + i as i64);
            position += size;
        }
        index
    }

    #[test]
    fn sparse_entries_and_lookups() {
        let index = sample();
        assert!(index.entries().len() < 50);
        assert!(index.entries().len() > 5);
        assert_eq!(index.lookup(o(100)), (o(100), p(0)));
        let (offset, position) = index.lookup(o(130));
        assert!(offset <= o(130) && position <= p(10 * 10_000));
        assert_eq!(index.next_offset, o(250));
        assert_eq!(index.end_position, p(500_000));
        assert_eq!(index.max_timestamp, 1049);
        // Everything before the returned entry is older than the target.
        let (offset, _) = index.lookup_time(1020);
        assert!(offset <= o(100 + 20 * 3));
        assert_eq!(index.lookup_time(i64::MIN), (o(100), p(0)));
    }

    #[test]
    fn encode_decode_round_trip_and_corruption() {
        let index = sample();
        let bytes = index.encode(FLAG_CLEAN);
        let (back, flags) = SegmentIndex::decode(&bytes, o(100)).unwrap();
        assert_eq!(back, index);
        assert_eq!(flags, FLAG_CLEAN);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(SegmentIndex::decode(&bad, o(100)).is_err(), "flip at {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(SegmentIndex::decode(&bytes[..len], o(100)).is_err());
        }
        assert!(SegmentIndex::decode(&bytes, o(101)).is_err());
    }

    #[test]
    fn rewind_then_refeed_rebuilds_the_same_index() {
        let full = sample();
        let mut index = full.clone();
        let (offset, position) = index.rewind_to_last_entry();
        assert_eq!(index.next_offset, offset);
        assert_eq!(index.end_position, position);
        assert!(index.entries().iter().all(|e| u64::from(e.position) < position.get()));
        // Re-feed the batches from there, as recovery does.
        let mut at = position.get();
        let mut next = offset.get();
        while at < full.end_position.get() {
            let i = (next - 100) / 3;
            index.on_batch(o(next), o(next + 2), p(at), 10_000, 1000 + i as i64);
            at += 10_000;
            next += 3;
        }
        assert_eq!(index, full);
    }
}
