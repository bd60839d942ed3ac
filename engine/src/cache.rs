//! Tail cache: the most recent batches of one partition, kept in memory so that consumers at
//! the tail are served without disk I/O — and so that bytes accepted but not yet written are
//! readable at all (the disk does not have them yet).
//!
//! Batches are kept as the producer's own `Bytes` (no copy): the log assigns a new baseOffset
//! and leader epoch, which live in the first 16 bytes, outside the CRC; a read hands out the
//! stored 16-byte head (kept beside the bytes) followed by the producer's bytes from byte 16 on.
//!
//! Bound: `budget_bytes`, except that a batch not yet written to disk is never evicted (the
//! appender's backpressure bounds those to `UNWRITTEN_BYTES_MAX`).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::segment::STORED_HEAD_BYTES;

pub(crate) struct CachedBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    pub segment_base_offset: u64,
    /// File position just past this batch in its segment.
    pub end_position: u64,
    /// The batch's first bytes as stored: assigned base offset, batchLength, leader epoch.
    pub head: [u8; STORED_HEAD_BYTES],
    /// The producer's batch; bytes 0..16 hold the producer's (replaced) head.
    pub bytes: Bytes,
}

pub(crate) struct TailCache {
    batches: VecDeque<CachedBatch>,
    size_bytes: u64,
    budget_bytes: u64,
}

impl TailCache {
    pub fn new(budget_bytes: u64) -> TailCache {
        TailCache { batches: VecDeque::new(), size_bytes: 0, budget_bytes }
    }

    pub fn push(&mut self, batch: CachedBatch) {
        if let Some(last) = self.batches.back() {
            assert_eq!(batch.base_offset, last.last_offset + 1, "cache must stay contiguous");
        }
        self.size_bytes += batch.bytes.len() as u64;
        self.batches.push_back(batch);
    }

    /// Evicts the oldest batches while over budget and `is_on_disk` says the disk has them.
    pub fn evict(&mut self, is_on_disk: impl Fn(&CachedBatch) -> bool) {
        while self.size_bytes > self.budget_bytes {
            match self.batches.front() {
                Some(front) if is_on_disk(front) => {
                    self.size_bytes -= front.bytes.len() as u64;
                    self.batches.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops every batch below `offset` (retention moved the log start).
    pub fn drop_before(&mut self, offset: u64) {
        while self.batches.front().is_some_and(|b| b.last_offset < offset) {
            if let Some(b) = self.batches.pop_front() {
                self.size_bytes -= b.bytes.len() as u64;
            }
        }
    }

    /// Drops every batch at or above `offset` (a truncation cut the log there).
    pub fn drop_from(&mut self, offset: u64) {
        while self.batches.back().is_some_and(|b| b.last_offset >= offset) {
            if let Some(b) = self.batches.pop_back() {
                self.size_bytes -= b.bytes.len() as u64;
            }
        }
    }

    pub fn first_offset(&self) -> Option<u64> {
        self.batches.front().map(|b| b.base_offset)
    }

    /// Whole batches from the one holding `offset`, ending before `end_offset`, at most
    /// `bytes_max` (but at least one batch). `None` when the cache does not reach back to
    /// `offset`. Returns the chunks to send and the offset after the last batch.
    pub fn read(&self, offset: u64, end_offset: u64, bytes_max: u64) -> Option<(Vec<Bytes>, u64)> {
        if self.first_offset()? > offset {
            return None;
        }
        let start = self.batches.partition_point(|b| b.last_offset < offset);
        let mut chunks = Vec::new();
        let mut size_bytes = 0u64;
        let mut next_offset = offset;
        for b in self.batches.iter().skip(start) {
            if b.last_offset >= end_offset {
                break;
            }
            let len = b.bytes.len() as u64;
            if !chunks.is_empty() && size_bytes + len > bytes_max {
                break;
            }
            chunks.push(Bytes::copy_from_slice(&b.head));
            chunks.push(b.bytes.slice(STORED_HEAD_BYTES..));
            size_bytes += len;
            next_offset = b.last_offset + 1;
        }
        Some((chunks, next_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(base_offset: u64, count: u64, size: usize) -> CachedBatch {
        CachedBatch {
            base_offset,
            last_offset: base_offset + count - 1,
            segment_base_offset: 0,
            end_position: 0,
            head: crate::segment::stored_head(base_offset, crate::ids::LeaderEpoch::ZERO, &[7u8; 16]),
            bytes: Bytes::from(vec![7u8; size]),
        }
    }

    #[test]
    fn read_returns_whole_batches_with_assigned_offsets() {
        let mut cache = TailCache::new(1 << 20);
        cache.push(batch(10, 5, 100));
        cache.push(batch(15, 5, 100));
        cache.push(batch(20, 1, 100));
        let (chunks, next) = cache.read(12, 21, 150).unwrap();
        assert_eq!(next, 15); // one batch: the second would exceed 150 bytes
        assert_eq!(chunks[0][..8], 10u64.to_be_bytes());
        assert_eq!(chunks[1].len(), 84);
        let (chunks, next) = cache.read(15, 21, 1 << 20).unwrap();
        assert_eq!(next, 21);
        assert_eq!(chunks.len(), 4);
        assert!(cache.read(9, 21, 100).is_none());
        // end_offset stops before a batch that is not visible yet.
        let (_, next) = cache.read(10, 20, 1 << 20).unwrap();
        assert_eq!(next, 20);
    }

    #[test]
    fn evicts_only_what_is_on_disk() {
        let mut cache = TailCache::new(150);
        cache.push(batch(0, 1, 100));
        cache.push(batch(1, 1, 100));
        cache.push(batch(2, 1, 100));
        cache.evict(|b| b.base_offset < 1);
        assert_eq!(cache.first_offset(), Some(1));
        cache.evict(|_| true);
        assert_eq!(cache.first_offset(), Some(2));
        cache.drop_before(3);
        assert_eq!(cache.first_offset(), None);
    }
}
